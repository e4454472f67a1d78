"""Slack: mentions, threads and DMs in; edited pictures back into the same thread.

Built on slack-bolt's :class:`AsyncApp` with slack_sdk's async client pointed at
``SLACK_API_URL``. Events arrive over Socket Mode (``chatbrush run`` with
``SLACK_APP_TOKEN``) or HTTP at ``/slack/events`` (``chatbrush web`` with
``SLACK_SIGNING_SECRET``; bolt checks the v0 signature and answers ``url_verification``).

Slack retries any delivery not acknowledged within 3 seconds, so a listener only
filters, claims the event (retries and the mention/message double delivery are handled
once, durably, through the engine's store) and starts a background task; downloads and
the model call happen after the acknowledgement. The app runs with
``process_before_response`` so that short decision step is finished — and the task
registered — by the time Slack (or a test) sees the acknowledgement. Messages of one
conversation are handed to the engine in the order Slack sent them, even when an earlier
one is still downloading its pictures.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.slack_files import FileRefused, declared_image, download_image
from bot.commands import COMMANDS, bare_command
from bot.events import (
    Channel,
    ChatKey,
    Incoming,
    InputImage,
    OutputImage,
    Progress,
    Sender,
)

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

PLATFORM = "slack"
#: Message subtypes that are a person's own words or files; everything else (edits,
#: deletions, joins, bot messages, channel topic changes…) is not a request.
USER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
REACTION_WORKING = "hourglass_flowing_sand"
REACTION_DONE = "white_check_mark"
REACTION_FAILED = "x"
QUEUED_NOTE = "Waiting for the previous request in this thread to finish; yours is next."
ADMIN_CACHE_SECONDS = 60.0
#: Commands that act on one conversation; a slash command can't tell which thread it
#: was typed in, so in channels these are only accepted as ``@bot undo`` in the thread.
THREAD_COMMANDS = frozenset({"new", "undo", "history", "reset"})
SLASH_COMMAND = "/chatbrush"

_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")


class EngineLike(Protocol):
    """The part of :class:`bot.engine.Engine` this adapter uses."""

    async def handle(self, incoming: Incoming, channel: Channel) -> None: ...

    async def claim_event(self, platform: str, event_key: str) -> bool: ...

    async def has_thread(self, chat: ChatKey, thread_hint: str) -> bool: ...


# ---------------------------------------------------------------------- translation
@dataclass(frozen=True)
class SlackMessage:
    """A Slack message event we may answer, reduced to what decides how.

    ``kind`` is ``"mention"`` (addressed to the bot in a channel), ``"thread"`` (a reply
    in a thread, ours only if the bot takes part in it) or ``"dm"``.
    """

    kind: str
    channel: str
    ts: str
    user: str
    text: str
    thread_ts: str | None
    files: tuple[Mapping[str, Any], ...]
    is_private: bool

    @property
    def chat(self) -> ChatKey:
        return ChatKey(PLATFORM, self.channel)

    @property
    def thread_hint(self) -> str | None:
        """The conversation key: the Slack thread, or the mention that starts one."""
        if self.kind == "mention":
            return self.thread_ts or self.ts
        return self.thread_ts

    @property
    def reply_thread(self) -> str | None:
        """Where answers go: in-thread in channels; top level for a top-level DM."""
        if self.kind == "dm":
            return self.thread_ts
        return self.thread_ts or self.ts


def clean_text(text: str, bot_user_id: str | None) -> str:
    """The prompt as the user meant it: our mention removed, Slack markup undone, and
    a bare command word (``undo 2``) turned into its ``/undo 2`` form."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    text = _LINK.sub(lambda m: m.group(2) or m.group(1), text)
    text = html.unescape(text)  # Slack escapes only &, < and >
    text = re.sub(r"[ \t]{2,}", " ", text).strip()
    return bare_command(text) or text


def mentions(text: str, bot_user_id: str | None) -> bool:
    if not bot_user_id:
        return False
    return re.search(rf"<@{re.escape(bot_user_id)}[|>]", text) is not None


def translate_event(event: Mapping[str, Any], bot_user_id: str | None) -> SlackMessage | None:
    """Decide whether an ``app_mention``/``message`` event could be for us (pure)."""
    etype = event.get("type")
    if etype not in ("app_mention", "message"):
        return None
    subtype = event.get("subtype")
    if etype == "message" and subtype not in USER_SUBTYPES:
        return None
    user = event.get("user")
    if not isinstance(user, str) or not user or event.get("bot_id") or event.get("hidden"):
        return None
    if bot_user_id and user == bot_user_id:
        return None
    channel, ts = event.get("channel"), event.get("ts")
    if not isinstance(channel, str) or not isinstance(ts, str):
        return None
    raw_text = str(event.get("text") or "")
    thread_ts = event.get("thread_ts")
    thread_ts = thread_ts if isinstance(thread_ts, str) and thread_ts != ts else None
    files = tuple(f for f in event.get("files") or () if isinstance(f, Mapping))
    is_dm = event.get("channel_type") == "im" or (etype == "app_mention" and channel[:1] == "D")
    if is_dm:
        kind = "dm"
    elif etype == "app_mention" or mentions(raw_text, bot_user_id):
        kind = "mention"
    elif thread_ts:
        kind = "thread"
    else:
        return None
    return SlackMessage(
        kind=kind,
        channel=channel,
        ts=ts,
        user=user,
        text=clean_text(raw_text, bot_user_id),
        thread_ts=thread_ts,
        files=files,
        is_private=is_dm,
    )


# ---------------------------------------------------------------------- the Channel port
class AdminCache:
    """Workspace admins/owners by ``users.info``, remembered briefly (roles rarely change,
    and a burst of admin commands should not spend the Tier 4 rate limit)."""

    def __init__(self, client: AsyncWebClient, ttl: float = ADMIN_CACHE_SECONDS) -> None:
        self._client = client
        self._ttl = ttl
        self._cache: dict[str, tuple[float, bool]] = {}

    async def is_admin(self, user_id: str) -> bool:
        now = time.monotonic()
        hit = self._cache.get(user_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            resp = await self._client.users_info(user=user_id)
        except SlackApiError as exc:
            log.warning("users.info failed for %s: %s", user_id, exc.response.get("error"))
            return False
        user = resp.get("user") or {}
        admin = bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
        self._cache[user_id] = (now + self._ttl, admin)
        return admin


class SlackChannel:
    """Answers one Slack message: in its thread, with reactions on it for progress."""

    def __init__(
        self,
        client: AsyncWebClient,
        admins: AdminCache,
        *,
        channel: str,
        thread_ts: str | None,
        message_ts: str | None,
    ) -> None:
        self.client = client
        self.admins = admins
        self.channel = channel
        self.thread_ts = thread_ts
        self.message_ts = message_ts
        self._uploads = 0
        self._queued_shown = False

    async def send_text(self, text: str) -> list[str]:
        resp = await self.client.chat_postMessage(
            channel=self.channel, text=text, thread_ts=self.thread_ts
        )
        return [str(resp["ts"])]

    async def send_images(
        self, images: Sequence[OutputImage], caption: str | None = None
    ) -> list[str]:
        if not images:
            return await self.send_text(caption) if caption else []
        uploads = []
        for image in images:
            self._uploads += 1
            stem = f"chatbrush-{(self.message_ts or 'image').replace('.', '-')}-{self._uploads}"
            uploads.append(
                {"file": image.data, "filename": f"{stem}.{image.extension}", "title": stem}
            )
        resp = await self.client.files_upload_v2(
            file_uploads=uploads,
            channel=self.channel,
            thread_ts=self.thread_ts,
            initial_comment=caption or None,
        )
        return [str(f["id"]) for f in resp.get("files") or [] if f.get("id")]

    async def progress(self, state: Progress) -> None:
        try:
            if state is Progress.QUEUED:
                if self._queued_shown:
                    return
                self._queued_shown = True
                await self.client.chat_postMessage(
                    channel=self.channel, text=QUEUED_NOTE, thread_ts=self.thread_ts
                )
            elif state is Progress.WORKING:
                await self._react("add", REACTION_WORKING)
            else:
                await self._react("remove", REACTION_WORKING)
                await self._react(
                    "add", REACTION_DONE if state is Progress.DONE else REACTION_FAILED
                )
        except Exception as exc:  # cosmetic: never let a reaction fail a turn
            log.info("progress %s not shown in %s: %s", state.value, self.channel, exc)

    async def _react(self, action: str, name: str) -> None:
        if self.message_ts is None:
            return
        try:
            if action == "add":
                await self.client.reactions_add(
                    channel=self.channel, timestamp=self.message_ts, name=name
                )
            else:
                await self.client.reactions_remove(
                    channel=self.channel, timestamp=self.message_ts, name=name
                )
        except SlackApiError as exc:
            if exc.response.get("error") not in ("already_reacted", "no_reaction"):
                raise

    async def is_admin(self, sender: Sender) -> bool:
        return await self.admins.is_admin(sender.id)


class SlashChannel(SlackChannel):
    """Answers a ``/chatbrush`` command privately through its ``response_url``."""

    def __init__(
        self, client: AsyncWebClient, admins: AdminCache, *, channel: str, response_url: str
    ) -> None:
        super().__init__(client, admins, channel=channel, thread_ts=None, message_ts=None)
        self.webhook = AsyncWebhookClient(response_url)

    async def send_text(self, text: str) -> list[str]:
        await self.webhook.send(text=text, response_type="ephemeral")
        return []

    async def progress(self, state: Progress) -> None:
        return None


# ---------------------------------------------------------------------- the adapter
class SlackAdapter:
    """The Slack side of Chatbrush (see the module docstring)."""

    name = PLATFORM

    def __init__(self, settings: Settings, engine: EngineLike) -> None:
        if settings.slack_bot_token is None:
            raise ValueError("SLACK_BOT_TOKEN is not set")
        self.settings = settings
        self.engine = engine
        self._token = settings.slack_bot_token.get_secret_value()
        self.client = AsyncWebClient(
            token=self._token,
            base_url=settings.slack_api_url,
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(max_retry_count=2),
                AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            ],
        )
        secret = settings.slack_signing_secret
        bolt_log = logging.getLogger("chatbrush.slack.bolt")
        bolt_log.addFilter(_quiet_token_notice)
        self.app = AsyncApp(
            name="chatbrush",
            client=self.client,
            signing_secret=secret.get_secret_value() if secret else "",
            request_verification_enabled=secret is not None,
            process_before_response=True,
            logger=bolt_log,
        )
        self.admins = AdminCache(self.client)
        self._allowed = frozenset(settings.slack_allowed_channels)
        self._tasks: set[asyncio.Task[None]] = set()
        #: per conversation (channel, thread key): the newest message not yet answered
        self._chains: dict[tuple[str, str | None], asyncio.Future[None]] = {}
        self.bot_user_id: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self.app.event("app_mention")(self._on_event)
        self.app.event("message")(self._on_event)
        self.app.command(SLASH_COMMAND)(self._on_command)
        self.app.error(self._on_error)

    # -- Adapter protocol
    def mount(self, web_app: web.Application) -> bool:
        if self.settings.slack_signing_secret is None:
            return False
        web_app.router.add_post("/slack/events", self.http_events)
        return True

    async def serve(self, *, webhook: bool) -> None:
        handler = None
        try:
            if not webhook:
                app_token = self.settings.slack_app_token
                if app_token is None:
                    log.warning(
                        "Slack: SLACK_APP_TOKEN is not set, so Socket Mode is off; "
                        "Slack events arrive only through `chatbrush web`."
                    )
                else:
                    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

                    handler = AsyncSocketModeHandler(self.app, app_token.get_secret_value())
                    await handler.connect_async()
                    log.info("Slack: connected over Socket Mode")
            await asyncio.Event().wait()
        finally:
            if handler is not None:
                await handler.close_async()
            await self.aclose()

    # -- HTTP
    async def http_events(self, request: web.Request) -> web.Response:
        """``POST /slack/events``: verified and dispatched by bolt, acknowledged fast."""
        bolt_response = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    # -- background work
    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every request accepted so far has been answered."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self, grace: float = 8.0) -> None:
        """Stop: give edits under way ``grace`` seconds to reach Slack, then cancel."""
        if self._tasks and grace > 0:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _downloads(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=120, sock_connect=15)
            )
        return self._session

    # -- listeners (fast: they run before the acknowledgement)
    async def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        log.error("Slack listener failed: %s: %s", type(error).__name__, error)

    async def _on_event(self, body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
        self.bot_user_id = context.bot_user_id or self.bot_user_id
        try:
            await self._accept(body, event, context.bot_user_id)
        except Exception:
            # Acknowledge anyway: a retry of an event we failed to read would fail again.
            log.exception("Slack: could not accept event %s", body.get("event_id"))

    async def _accept(
        self, body: Mapping[str, Any], event: Mapping[str, Any], bot_user_id: str | None
    ) -> None:
        msg = translate_event(event, bot_user_id)
        if msg is None:
            return
        key = (msg.channel, msg.thread_hint)
        if (
            msg.kind == "thread"
            and key not in self._chains  # a mention starting this thread is still on its way
            and not await self.engine.has_thread(msg.chat, str(msg.thread_ts))
        ):
            return  # a thread the bot takes no part in
        event_id = body.get("event_id")
        if isinstance(event_id, str) and not await self.engine.claim_event(PLATFORM, event_id):
            log.debug("Slack: event %s already handled (retry)", event_id)
            return
        # The same message can arrive as app_mention and as message: handle it once.
        if not await self.engine.claim_event(PLATFORM, f"msg:{msg.channel}:{msg.ts}"):
            return
        channel = SlackChannel(
            self.client,
            self.admins,
            channel=msg.channel,
            thread_ts=msg.reply_thread,
            message_ts=msg.ts,
        )
        if self._allowed and msg.channel not in self._allowed:
            if msg.kind != "thread":
                self._spawn(self._say(channel, "I'm not enabled in this conversation."))
            return
        # Downloads take different times; the chain hands messages of one conversation
        # to the engine in the order Slack sent them.
        before = self._chains.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._chains[key] = mine
        self._spawn(self._process(msg, channel, before, mine))

    async def _on_command(self, ack: Any, command: dict[str, Any], context: Any) -> None:
        await ack()
        self._spawn(self._run_command(command, context.bot_user_id))

    # -- background handlers
    async def _say(self, channel: SlackChannel, text: str) -> None:
        try:
            await channel.send_text(text)
        except Exception as exc:
            log.warning("Slack: could not post to %s: %s", channel.channel, exc)

    async def _process(
        self,
        msg: SlackMessage,
        channel: SlackChannel,
        before: asyncio.Future[None] | None,
        mine: asyncio.Future[None],
    ) -> None:
        """Download, wait for the previous message of this conversation, hand over."""
        try:
            images = await self._fetch_images(msg.files)
            if before is not None and not before.done():
                await channel.progress(Progress.QUEUED)
                await asyncio.wait([before])
            known = msg.thread_hint is not None and await self.engine.has_thread(
                msg.chat, msg.thread_hint
            )
            if msg.kind == "thread" and not known:
                return  # the message that was to start this thread was refused
            first_mention_in_a_thread = msg.kind == "mention" and msg.thread_ts and not known
            if first_mention_in_a_thread and not images and not msg.text.startswith("/"):
                images = await self._fetch_images(await self._earlier_thread_images(msg))
            incoming = Incoming(
                chat=msg.chat,
                message_id=msg.ts,
                sender=Sender(msg.user),
                text=msg.text,
                images=images,
                is_private=msg.is_private,
                addressed=True,
                thread_hint=msg.thread_hint,
                command_prefix=self._command_prefix(msg.is_private),
            )
            await self.engine.handle(incoming, channel)
        except FileRefused as exc:
            await self._say(channel, str(exc))
        except Exception:
            log.exception("Slack: failed on message %s in %s", msg.ts, msg.channel)
            await channel.progress(Progress.FAILED)
            await self._say(channel, "Sorry, something went wrong. Please try again.")
        finally:
            mine.set_result(None)
            key = (msg.channel, msg.thread_hint)
            if self._chains.get(key) is mine:
                del self._chains[key]

    async def _fetch_images(self, files: Sequence[Mapping[str, Any]]) -> tuple[InputImage, ...]:
        """All files of one message, as one turn's images; any bad file refuses them all
        (a fusion with a picture silently missing would not be what was asked for)."""
        if not files:
            return ()
        resolved = [await self._file_info(f) for f in files]
        session = self._downloads()
        results = await asyncio.gather(
            *(
                download_image(
                    session,
                    f,
                    token=self._token,
                    api_url=self.settings.slack_api_url,
                    max_bytes=self.settings.chatbrush_max_upload_bytes,
                )
                for f in resolved
            ),
            return_exceptions=True,
        )
        problems = [str(r) for r in results if isinstance(r, FileRefused)]
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, FileRefused):
                raise r
        if problems:
            raise FileRefused("\n".join(problems))
        return tuple(r for r in results if isinstance(r, InputImage))

    async def _earlier_thread_images(self, msg: SlackMessage) -> tuple[Mapping[str, Any], ...]:
        """A mention in someone else's thread means "edit the picture posted here": the
        newest person-posted images before the mention (the thread's root, usually)."""
        try:
            resp = await self.client.conversations_replies(
                channel=msg.channel, ts=str(msg.thread_ts), limit=200
            )
        except SlackApiError as exc:
            log.info(
                "Slack: could not read thread %s: %s", msg.thread_ts, exc.response.get("error")
            )
            return ()
        earlier = [m for m in resp.get("messages") or [] if _ts(m.get("ts")) < _ts(msg.ts)]
        for message in reversed(earlier):
            if message.get("bot_id") or message.get("user") in (None, self.bot_user_id):
                continue
            images = tuple(f for f in message.get("files") or () if declared_image(f))
            if images:
                return images
        return ()

    async def _file_info(self, file: Mapping[str, Any]) -> Mapping[str, Any]:
        """Slack sends only ``{id, file_access: "check_file_info"}`` for some files
        (Slack Connect, large messages); fetch the full object for those."""
        if file.get("file_access") != "check_file_info" or not file.get("id"):
            return file
        try:
            resp = await self.client.files_info(file=str(file["id"]))
        except SlackApiError as exc:
            raise FileRefused("I couldn't read one of the files from Slack.") from exc
        info = resp.get("file")
        return info if isinstance(info, Mapping) else file

    def _command_prefix(self, private: bool) -> str:
        """Commands are plain words in a DM, and follow a mention in channels."""
        if private:
            return ""
        return f"<@{self.bot_user_id}> " if self.bot_user_id else "@Chatbrush "

    async def _run_command(self, command: Mapping[str, Any], bot_user_id: str | None) -> None:
        channel_id = str(command.get("channel_id") or "")
        is_dm = channel_id.startswith("D") or command.get("channel_name") == "directmessage"
        channel = SlashChannel(
            self.client,
            self.admins,
            channel=channel_id,
            response_url=str(command.get("response_url") or ""),
        )
        words = str(command.get("text") or "").strip() or "help"
        text = bare_command(words)
        try:
            if text is None:
                usage = ", ".join(c.usage.lstrip("/") for c in COMMANDS)
                await channel.send_text(
                    f"Usage: {SLASH_COMMAND} {usage}.\n"
                    "To edit a picture, mention me with the image in a channel, or send it "
                    "to me in a direct message."
                )
                return
            name = text[1:].split()[0]
            bot = f"<@{bot_user_id}>" if bot_user_id else "@Chatbrush"
            if name in THREAD_COMMANDS and not is_dm:
                await channel.send_text(
                    f"Slack doesn't tell me which thread a slash command comes from: type "
                    f"`{bot} {words}` inside the thread you want to change."
                )
                return
            incoming = Incoming(
                chat=ChatKey(PLATFORM, channel_id),
                message_id=f"slash:{command.get('trigger_id', '')}",
                sender=Sender(
                    str(command.get("user_id") or ""), str(command.get("user_name") or "")
                ),
                text=text,
                is_private=is_dm,
                addressed=True,
                command_prefix=f"{SLASH_COMMAND} ",
            )
            await self.engine.handle(incoming, channel)
        except Exception:
            log.exception("Slack: slash command failed in %s", channel_id)


def _quiet_token_notice(record: logging.LogRecord) -> bool:
    """Drop bolt's notice that ``SLACK_BOT_TOKEN`` (which it reads from the environment
    itself) is unused: we hand it a configured client on purpose."""
    return warning_client_prioritized_and_token_skipped() not in str(record.msg)


def _ts(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def create(settings: Settings, engine: EngineLike) -> SlackAdapter | None:
    """The ``chatbrush.adapters`` entry point: an adapter when Slack is configured."""
    if settings.slack_bot_token is None:
        return None
    if settings.slack_app_token is None and settings.slack_signing_secret is None:
        log.warning(
            "Slack: SLACK_BOT_TOKEN is set but neither SLACK_APP_TOKEN nor "
            "SLACK_SIGNING_SECRET; the Slack adapter stays off."
        )
        return None
    return SlackAdapter(settings, engine)
