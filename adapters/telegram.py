"""The Telegram adapter: python-telegram-bot 22 in front of the engine.

It decides which updates are meant for the bot (everything in a private chat; in groups
only our commands, @mentions and replies to our messages), collects albums into one
turn, checks and downloads images, and hands the engine an :class:`Incoming` plus a
:class:`TelegramChannel` that answers in the same chat and forum topic, as a reply to
the user's message. Handlers run concurrently (a slow model call must not hold up other
chats); the engine keeps the turns of one thread in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from telegram import (
    BotCommand,
    InputMediaPhoto,
    Message,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ChatMemberStatus
from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError, TimedOut
from telegram.ext import AIORateLimiter, Application, BaseRateLimiter, ContextTypes, TypeHandler
from telegram.request import HTTPXRequest

from adapters.telegram_translate import (
    CAPTION_LIMIT,
    BotIdentity,
    MediaProblem,
    MediaRef,
    command_target,
    fits_photo,
    is_addressed,
    is_private,
    media_of,
    prompt_text,
    reply_target,
    sender_of,
    speaks_for_chat,
    split_text,
    too_large,
    topic_id,
    unsupported_content,
)
from bot.commands import COMMANDS
from bot.config import SettingsError
from bot.events import (
    ChatKey,
    Incoming,
    InputImage,
    InputRefused,
    OutputImage,
    Progress,
    Sender,
)

if TYPE_CHECKING:
    from aiohttp import web

    from bot.config import Settings
    from bot.engine import Engine

log = logging.getLogger(__name__)

PLATFORM = "telegram"
QUEUED_NOTICE = (
    "Another request in this conversation is still being worked on; yours is next in line."
)
NOT_ALLOWED = "Sorry, this bot isn't available here."
UNSUPPORTED = (
    "I can only work with text and images. Send a photo, or a PNG, JPEG, WebP or HEIC file."
)
DOWNLOAD_FAILED = "I couldn't download that image from Telegram. Please send it again."
#: connections to the Bot API; more requests than this wait their turn in asyncio
HTTP_CONNECTIONS = 32
#: Endpoints Telegram does not count as messages: they skip the flood limiter's budget
#: (a chat action every few seconds would otherwise eat a group's 20 messages a minute).
_UNMETERED = frozenset({"sendChatAction", "getChatMember", "getFile", "getMe", "getUpdates"})


class _Limiter(AIORateLimiter):
    """``AIORateLimiter`` that still retries every call on 429, but only meters messages."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        if endpoint in _UNMETERED:
            data = {k: v for k, v in data.items() if k != "chat_id"}
        return await super().process_request(
            callback, args, kwargs, endpoint, data, rate_limit_args
        )


class _RedactToken(logging.Filter):
    """Keep the bot token (it sits in every Bot API URL) out of library log lines."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token
        # file downloads carry it URL-encoded (``123%3AABC``)
        self._forms = {token, quote(token, safe=""), quote(token)}

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        if any(form in message for form in self._forms):
            for form in self._forms:
                message = message.replace(form, "<telegram-token>")
            record.msg = message
            record.args = None
        return True


def _scrub(text: str) -> str:
    """Error texts can quote the request URL, which holds the token: keep only the gist."""
    return re.sub(r"/bot[^/\s]+", "/bot<telegram-token>", text)[:200]


def _install_redaction(token: str) -> _RedactToken:
    redact = _RedactToken(token)
    names = ["httpx", "httpcore", "telegram", "telegram.ext", "telegram.Bot", "telegram.ext.ExtBot"]
    names += [n for n in logging.Logger.manager.loggerDict if n.startswith(("telegram", "httpx"))]
    for name in set(names):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactToken) and f._token == token for f in logger.filters):
            logger.addFilter(redact)
    return redact


# ---------------------------------------------------------------------- the channel
class TelegramChannel:
    """Answers one incoming message: same chat, same forum topic, as a reply to it."""

    def __init__(
        self,
        adapter: TelegramAdapter,
        message: Message,
        *,
        chat_action_interval: float,
    ) -> None:
        self._adapter = adapter
        self._bot = adapter.application.bot
        self._chat_id = message.chat.id
        thread = topic_id(message)
        self._thread_id = int(thread) if thread is not None else None
        self._reply_to = message.message_id
        self._private = is_private(message)
        self._speaks_for_chat = speaks_for_chat(message)
        self._interval = chat_action_interval
        self._action_task: asyncio.Task[None] | None = None
        self._queued_said = False

    def _where(self) -> dict[str, Any]:
        where: dict[str, Any] = {
            "chat_id": self._chat_id,
            "reply_parameters": ReplyParameters(
                message_id=self._reply_to, allow_sending_without_reply=True
            ),
        }
        if self._thread_id is not None:
            where["message_thread_id"] = self._thread_id
        return where

    async def send_text(self, text: str) -> list[str]:
        ids = []
        for chunk in split_text(text) or ["…"]:
            sent = await self._bot.send_message(text=chunk, **self._where())
            ids.append(str(sent.message_id))
        return ids

    async def send_images(
        self, images: Sequence[OutputImage], caption: str | None = None
    ) -> list[str]:
        """Photos when Telegram takes them as photos, documents otherwise; a caption that
        does not fit under a photo follows as its own message."""
        caption = (caption or "").strip() or None
        fits_caption = caption is not None and len(caption) <= CAPTION_LIMIT
        photos: list[OutputImage] = []
        documents: list[OutputImage] = []
        for image in images:
            width, height = _dimensions(image)
            (photos if fits_photo(len(image.data), width, height) else documents).append(image)
        ids: list[str] = []
        pending_caption = caption if fits_caption else None
        for start in range(0, len(photos), 10):
            batch = photos[start : start + 10]
            if len(batch) == 1:
                ids += await self._send_one(batch[0], pending_caption)
            else:
                media = [
                    InputMediaPhoto(
                        img.data,
                        caption=pending_caption if n == 0 else None,
                        filename=f"chatbrush-{start + n + 1}.{img.extension}",
                    )
                    for n, img in enumerate(batch)
                ]
                sent = await self._bot.send_media_group(media=media, **self._where())
                ids += [str(m.message_id) for m in sent]
            pending_caption = None
        for image in documents:
            ids += await self._send_document(image, pending_caption)
            pending_caption = None
        if caption is not None and not fits_caption:
            ids += await self.send_text(caption)
        return ids

    async def _send_one(self, image: OutputImage, caption: str | None) -> list[str]:
        try:
            sent = await self._bot.send_photo(
                photo=image.data,
                caption=caption,
                filename=f"chatbrush.{image.extension}",
                **self._where(),
            )
        except BadRequest as exc:
            # Telegram's own photo checks are the last word; a document always goes through.
            if "PHOTO" not in exc.message.upper() and "IMAGE" not in exc.message.upper():
                raise
            log.info("photo refused by Telegram (%s); sending as a document", exc.message)
            return await self._send_document(image, caption)
        return [str(sent.message_id)]

    async def _send_document(self, image: OutputImage, caption: str | None) -> list[str]:
        sent = await self._bot.send_document(
            document=image.data,
            caption=caption,
            filename=f"chatbrush.{image.extension}",
            **self._where(),
        )
        return [str(sent.message_id)]

    async def progress(self, state: Progress) -> None:
        if state is Progress.QUEUED:
            if not self._queued_said:
                self._queued_said = True
                with contextlib.suppress(TelegramError):
                    await self._bot.send_message(text=QUEUED_NOTICE, **self._where())
        elif state is Progress.WORKING:
            if self._action_task is None or self._action_task.done():
                self._action_task = asyncio.create_task(self._keep_uploading())
        else:
            await self.stop_progress()

    async def stop_progress(self) -> None:
        task, self._action_task = self._action_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keep_uploading(self) -> None:
        """Telegram shows a chat action for about five seconds, so keep re-sending it."""
        while True:
            try:
                await self._bot.send_chat_action(
                    chat_id=self._chat_id,
                    action=ChatAction.UPLOAD_PHOTO,
                    message_thread_id=self._thread_id,
                )
            except TelegramError as exc:
                log.debug("chat action failed in %s: %s", self._chat_id, exc)
            await asyncio.sleep(self._interval)

    async def is_admin(self, sender: Sender) -> bool:
        if self._private:
            return True
        if self._speaks_for_chat and sender.id == str(self._chat_id):
            return True  # an anonymous admin posts as the chat itself
        return await self._adapter.is_chat_admin(self._chat_id, sender.id)


def _dimensions(image: OutputImage) -> tuple[int, int]:
    if image.width and image.height:
        return image.width, image.height
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(image.data)) as img:
            return img.size
    except Exception:
        return 0, 0


# ---------------------------------------------------------------------- albums
@dataclass
class _Album:
    items: list[tuple[int, Message]]
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


# ---------------------------------------------------------------------- the adapter
class TelegramAdapter:
    """Long polling (``serve``) around a PTB ``Application``; see the module docstring."""

    name = PLATFORM

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        rate_limiter: BaseRateLimiter[Any] | None = None,
        chat_action_interval: float = 4.0,
        admin_cache_seconds: float = 60.0,
        poll_timeout: float = 10.0,
        stop_grace: float = 30.0,
        concurrent_updates: int = 256,
    ) -> None:
        if settings.telegram_bot_token is None:
            raise ValueError("TELEGRAM_BOT_TOKEN is not set")
        self.settings = settings
        self.engine = engine
        token = settings.telegram_bot_token.get_secret_value()
        _install_redaction(token)
        base = settings.telegram_base_url.rstrip("/")
        self.application: Application[Any, Any, Any, Any, Any, Any] = _build(
            token, base, rate_limiter or _Limiter(max_retries=3), concurrent_updates
        )
        self.application.add_handler(TypeHandler(Update, self._on_update))
        self.application.add_error_handler(self._on_error)
        self._chat_action_interval = chat_action_interval
        self._admin_cache_seconds = admin_cache_seconds
        self._admin_cache: dict[tuple[int, str], tuple[float, bool]] = {}
        self._poll_timeout = poll_timeout
        self._stop_grace = stop_grace
        self._albums: dict[tuple[int, str], _Album] = {}
        #: per chat/topic: one event per message not yet handed to the engine
        self._lines: dict[tuple[int, str | None], list[asyncio.Event]] = {}
        self._denied: dict[int, float] = {}
        self._me: BotIdentity | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def me(self) -> BotIdentity:
        if self._me is None:
            raise RuntimeError("the Telegram adapter is not started")
        return self._me

    def mount(self, web_app: web.Application) -> bool:
        """No webhook mode yet: ``chatbrush web`` runs Telegram by long polling."""
        return False

    async def serve(self, *, webhook: bool) -> None:
        """Long-poll until cancelled, then stop cleanly (pending updates acknowledged)."""
        try:
            await self.start()
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self.stop())

    async def start(self) -> None:
        """Connect (``getMe``), register the commands, start polling.

        A rejected token or an unreachable Bot API server is a configuration problem: it
        becomes one :class:`SettingsError` line naming the variable, never a traceback.
        """
        app = self.application
        try:
            await app.initialize()
        except InvalidToken:
            await self._abandon()
            raise SettingsError(
                "Telegram rejected TELEGRAM_BOT_TOKEN (Unauthorized): copy the token again "
                "from @BotFather"
            ) from None
        except (NetworkError, TimedOut) as exc:
            await self._abandon()
            base = self.settings.telegram_base_url
            raise SettingsError(
                f"cannot reach the Telegram Bot API at {base} ({_scrub(str(exc))}): "
                "check TELEGRAM_BASE_URL and the network"
            ) from None
        bot = app.bot
        self._me = BotIdentity(bot.id, bot.username)
        try:
            await bot.set_my_commands([BotCommand(c.name, c.description) for c in COMMANDS])
        except TelegramError as exc:
            log.warning("could not register the command list: %s", exc)
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(
            timeout=int(self._poll_timeout),
            allowed_updates=["message"],  # no edits, reactions, member changes
            drop_pending_updates=False,
        )
        log.info("Telegram: polling as @%s", self._me.username)

    async def _abandon(self) -> None:
        with contextlib.suppress(Exception):
            await self.application.shutdown()

    async def stop(self) -> None:
        """Stop polling (acknowledging what was fetched), let running requests finish for
        up to ``stop_grace`` seconds, close the connections. Safe after a failed start."""
        app = self.application
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            try:
                await asyncio.wait_for(app.stop(), self._stop_grace)
            except TimeoutError:
                log.warning(
                    "Telegram: gave up waiting for running requests after %ss", self._stop_grace
                )
        with contextlib.suppress(Exception):
            await app.shutdown()

    # ------------------------------------------------------------------ updates
    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("Telegram update failed: %r", context.error, exc_info=context.error)

    async def _on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None:
            return  # edits, member changes...: nothing to draw
        try:
            await self._on_message(update.update_id, message)
        except Exception:
            log.exception("Telegram: update %s failed", update.update_id)

    async def _on_message(self, update_id: int, message: Message) -> None:
        if message.media_group_id is not None:
            await self._on_album_item(update_id, message)
            return
        if not is_addressed(message, self.me):
            return  # group chatter: nothing stored, nothing downloaded

        async def just_this() -> list[tuple[int, Message]]:
            return [(update_id, message)]

        await self._in_line(message, just_this)

    async def _on_album_item(self, update_id: int, message: Message) -> None:
        """Album items arrive as separate updates. The first one takes the album's place
        in line (so a message typed right after the album comes after it) and waits until
        no new item has arrived for ``TELEGRAM_ALBUM_DEBOUNCE`` seconds."""
        key = (message.chat.id, str(message.media_group_id))
        album = self._albums.get(key)
        if album is not None:
            if all(m.message_id != message.message_id for _, m in album.items):
                album.items.append((update_id, message))
                album.arrived.set()
            return
        album = self._albums[key] = _Album([(update_id, message)])

        async def collect() -> list[tuple[int, Message]]:
            try:
                while True:
                    try:
                        await asyncio.wait_for(
                            album.arrived.wait(), self.settings.telegram_album_debounce
                        )
                    except TimeoutError:
                        break
                    album.arrived.clear()
            finally:
                self._albums.pop(key, None)
            items = sorted(album.items, key=lambda item: item[1].message_id)
            return items if any(is_addressed(m, self.me) for _, m in items) else []

        await self._in_line(message, collect)

    async def _in_line(
        self,
        message: Message,
        collect: Callable[[], Awaitable[list[tuple[int, Message]]]],
    ) -> None:
        """Download while earlier messages of the same chat/topic are still downloading,
        but hand them to the engine in arrival order (the engine keeps that order from
        there on, and says so when a message waits behind another of its thread)."""
        key = (message.chat.id, topic_id(message))
        line = self._lines.setdefault(key, [])
        before = line[-1] if line else None
        mine = asyncio.Event()
        line.append(mine)
        try:
            items = await collect()
            prepared = await self._prepare(items) if items else None
            if before is not None:
                await before.wait()
            mine.set()
            if prepared is not None:
                await self._run(*prepared)
        finally:
            mine.set()
            if mine in line:
                line.remove(mine)
            if not line and self._lines.get(key) is line:
                del self._lines[key]

    async def _prepare(
        self, items: list[tuple[int, Message]]
    ) -> tuple[Incoming, TelegramChannel] | None:
        """Filter, claim and download one turn (a message or an album, in message order).

        ``None`` when there is nothing for the engine (refused, a duplicate, a file we
        told the user we cannot take)."""
        me = self.me
        messages = [m for _, m in items]
        primary = next((m for m in messages if m.text or m.caption), messages[0])
        is_command, target = command_target(primary)
        if is_command and target is not None and target.lower() != me.username.lower():
            return None
        if not self._allowed(primary):
            await self._deny(primary)
            return None
        channel = TelegramChannel(self, primary, chat_action_interval=self._chat_action_interval)
        has_text = bool(primary.text or primary.caption)
        if not has_text and not any(m.photo or m.document for m in messages):
            if unsupported_content(primary) and is_private(primary):
                await channel.send_text(UNSUPPORTED)
            return None
        fresh = [
            await self.engine.claim_event(PLATFORM, f"{me.id}:{update_id}")
            for update_id, _ in items
        ]
        if not all(fresh):
            log.info("Telegram: update(s) %s already handled", [u for u, _ in items])
            return None
        images, problem = await self._download_all(messages)
        if problem is not None:
            await channel.send_text(problem.user_message)
            return None
        return self._incoming(primary, messages, images), channel

    async def _run(self, incoming: Incoming, channel: TelegramChannel) -> None:
        try:
            await self.engine.handle(incoming, channel)
        finally:
            await channel.stop_progress()

    def _incoming(
        self, primary: Message, messages: list[Message], images: list[InputImage]
    ) -> Incoming:
        me = self.me
        topic = topic_id(primary)
        replied = next((r for m in messages if (r := reply_target(m)) is not None), None)
        loader = self._reply_loader(replied) if replied is not None else None
        return Incoming(
            chat=ChatKey(PLATFORM, str(primary.chat.id), topic),
            message_id=str(primary.message_id),
            sender=sender_of(primary),
            text=prompt_text(primary, me),
            images=tuple(images),
            is_private=is_private(primary),
            addressed=True,
            reply_to=str(replied.message_id) if replied is not None else None,
            reply_to_images=loader,
        )

    def _reply_loader(self, replied: Message) -> Callable[[], Awaitable[Sequence[InputImage]]]:
        """Fetch the replied-to message's image only if the engine asks for it."""

        async def load() -> Sequence[InputImage]:
            images, problem = await self._download_all([replied])
            if problem is not None:
                raise InputRefused(problem.user_message)
            return images

        return load

    # ------------------------------------------------------------------ images
    async def _download_all(
        self, messages: list[Message]
    ) -> tuple[list[InputImage], MediaProblem | None]:
        limit = self.settings.chatbrush_max_upload_bytes
        refs: list[MediaRef] = []
        for message in messages:
            found = media_of(message, limit)
            if isinstance(found, MediaProblem):
                return [], found
            if found is not None:
                refs.append(found)
        images = []
        for ref in refs:
            downloaded = await self._download(ref, limit)
            if isinstance(downloaded, MediaProblem):
                return [], downloaded
            images.append(downloaded)
        return images, None

    async def _download(self, ref: MediaRef, limit: int) -> InputImage | MediaProblem:
        try:
            file = await self.application.bot.get_file(ref.file_id)
            if file.file_size is not None and file.file_size > limit:
                return too_large(file.file_size, limit)
            data = bytes(await file.download_as_bytearray())
        except BadRequest as exc:
            if "too big" in exc.message.lower():
                return too_large(ref.size, limit)
            log.warning("Telegram: download failed: %s", exc.message)
            return MediaProblem(DOWNLOAD_FAILED)
        except TelegramError as exc:
            log.warning("Telegram: download failed: %s", exc)
            return MediaProblem(DOWNLOAD_FAILED)
        if len(data) > limit:
            return too_large(len(data), limit)
        return InputImage(data, ref.mime_type, ref.filename)

    # ------------------------------------------------------------------ access
    def _allowed(self, message: Message) -> bool:
        chats = self.settings.telegram_allowed_chats
        users = self.settings.telegram_allowed_users
        if not chats and not users:
            return True
        if str(message.chat.id) in chats:
            return True
        user = message.from_user
        if user is None or not users:
            return False
        names = {u.lower().lstrip("@") for u in users}
        return str(user.id) in users or (
            user.username is not None and user.username.lower() in names
        )

    async def _deny(self, message: Message) -> None:
        """One polite line per chat now and then; nothing more, no model call."""
        now = time.monotonic()
        if now - self._denied.get(message.chat.id, -1e9) < 600:
            return
        if len(self._denied) > 4096:
            self._denied = {k: t for k, t in self._denied.items() if now - t < 600}
        self._denied[message.chat.id] = now
        user = message.from_user.id if message.from_user else None
        log.info(
            "Telegram: refused chat %s, user %s (not in the allowed lists)",
            message.chat.id,
            user,
        )
        channel = TelegramChannel(self, message, chat_action_interval=self._chat_action_interval)
        with contextlib.suppress(TelegramError):
            await channel.send_text(NOT_ALLOWED)

    async def is_chat_admin(self, chat_id: int, user_id: str) -> bool:
        """Chat administrator or owner, from ``getChatMember``, cached briefly."""
        key = (chat_id, user_id)
        now = time.monotonic()
        cached = self._admin_cache.get(key)
        if cached is not None and now - cached[0] < self._admin_cache_seconds:
            return cached[1]
        try:
            member = await self.application.bot.get_chat_member(chat_id, int(user_id))
        except (TelegramError, ValueError) as exc:
            log.warning("Telegram: admin check failed in %s: %s", chat_id, exc)
            return False
        admin = member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)
        if len(self._admin_cache) > 4096:  # keep a long-running bot's memory flat
            ttl = self._admin_cache_seconds
            self._admin_cache = {k: v for k, v in self._admin_cache.items() if now - v[0] < ttl}
        self._admin_cache[key] = (now, admin)
        return admin


class _GatedRequest(HTTPXRequest):
    """PTB's HTTPX request with the waiting done in an asyncio queue, not in httpcore.

    httpcore re-scans every connection for every queued request each time one finishes,
    which turns a burst of a few hundred concurrent sends into quadratic CPU; queueing
    in front of a modest pool keeps each send O(1) and never hits the pool timeout.
    """

    def __init__(self, size: int) -> None:
        super().__init__(connection_pool_size=size, media_write_timeout=60.0)
        self._gate = asyncio.Semaphore(size)

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        async with self._gate:
            return await super().do_request(*args, **kwargs)


def _build(
    token: str, base: str, limiter: BaseRateLimiter[Any], concurrent_updates: int
) -> Application[Any, Any, Any, Any, Any, Any]:
    return (
        Application.builder()
        .token(token)
        .base_url(f"{base}/bot")
        .base_file_url(f"{base}/file/bot")
        .request(_GatedRequest(HTTP_CONNECTIONS))
        .rate_limiter(limiter)
        .concurrent_updates(concurrent_updates)
        .job_queue(None)  # nothing scheduled: progress refreshes are plain tasks
        .build()
    )


def create(settings: Settings, engine: Engine) -> TelegramAdapter | None:
    """The ``chatbrush.adapters`` entry point: ``None`` unless TELEGRAM_BOT_TOKEN is set."""
    if settings.telegram_bot_token is None or not settings.telegram_bot_token.get_secret_value():
        return None
    return TelegramAdapter(settings, engine)


__all__ = ["TelegramAdapter", "TelegramChannel", "create"]
