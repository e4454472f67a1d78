"""The Telegram adapter: python-telegram-bot 22 between the Bot API and the core intake.

It only translates. Updates arrive by long polling (``chatbrush run``) or, with
``TELEGRAM_WEBHOOK_URL``, at a webhook on the ``chatbrush web`` server; each message is
turned into an :class:`~bot.core.events.Incoming` (:mod:`adapters.telegram.translate`) and
handed to :meth:`bot.core.receiving.Receiver.receive`, which returns once it is stored. Only then
is Telegram told it arrived: the getUpdates offset moves past stored updates only, and a
webhook answers 200 only after the commit. Answers go out through a
:class:`TelegramChannel` (same chat, same forum topic, as a reply); files are fetched by
``file_id`` when the core asks for them, so a resumed event downloads them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from telegram import BotCommand, Update
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    TelegramError,
    TimedOut,
)
from telegram.ext import BaseRateLimiter, ExtBot
from telegram.warnings import PTBUserWarning

from adapters.telegram.channel import TelegramChannel
from adapters.telegram.http import AiohttpRequest, FloodLimiter, install_redaction, scrub
from adapters.telegram.settings import TelegramSettings
from adapters.telegram.translate import (
    PLATFORM,
    TELEGRAM_DOWNLOAD_LIMIT,
    BotIdentity,
    to_incoming,
)
from bot.core.config import SettingsError
from bot.core.events import Attachment, Incoming, InputImage, InputRefused, Sender
from bot.core.messages import DOWNLOAD_FAILED, too_large
from bot.core.receiving import IntakeClosed
from bot.flow.commands import COMMANDS
from bot.kit.http_guard import BodyTooLarge, Rejections, json_object, read_capped
from bot.kit.i18n import _, speaking
from bot.kit.logs import add_secret

if TYPE_CHECKING:
    from aiohttp import web

    from bot.core.config import Settings
    from bot.core.receiving import Receiver

log = logging.getLogger(__name__)
# getUpdates is read raw on purpose: one malformed update must not block every later one
# (``Bot.get_updates`` parses the whole batch or nothing).
warnings.filterwarnings("ignore", message=r"Please use 'Bot\.getUpdates'",
                        category=PTBUserWarning)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def command_list(language: str) -> list[BotCommand]:
    """The commands as Telegram's menu shows them, described in ``language``."""
    with speaking(language):
        return [BotCommand(c.name, _(c.description)) for c in COMMANDS]


def webhook_secret(token: str) -> str:
    """The ``secret_token`` derived from the bot token when none is configured: stable
    across restarts and processes, and useless to anyone who does not hold the token."""
    return hmac.new(token.encode(), b"chatbrush telegram webhook", hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------- the adapter
class TelegramAdapter:
    """Receives updates (polling or webhook), stores them through the intake, answers."""

    name = PLATFORM

    def __init__(
        self,
        settings: Settings,
        intake: Receiver,
        *,
        rate_limiter: BaseRateLimiter[Any] | None = None,
        chat_action_interval: float = 4.0,
        poll_timeout: float = 10.0,
    ) -> None:
        group = TelegramSettings.of(settings)
        if group.telegram_bot_token is None:
            raise ValueError("TELEGRAM_BOT_TOKEN is not set")
        self.settings = settings
        self.group = group
        self.intake = intake
        self._token = group.telegram_bot_token.get_secret_value()
        install_redaction(self._token)
        base = group.telegram_base_url.rstrip("/")
        self.bot: ExtBot[Any] = ExtBot(
            self._token,
            base_url=f"{base}/bot",
            base_file_url=f"{base}/file/bot",
            request=AiohttpRequest(connections=group.telegram_connections),
            get_updates_request=AiohttpRequest(connections=1),
            rate_limiter=rate_limiter or FloodLimiter(),
        )
        secret = group.telegram_webhook_secret
        self.webhook_secret = (secret.get_secret_value() if secret is not None
                               else webhook_secret(self._token))
        add_secret(self.webhook_secret)  # derived: no setting names it, PTB logs it at DEBUG
        url = group.telegram_webhook_url
        self.webhook_path = (urlsplit(url).path or "/") if url else None
        if self.webhook_path == "/":
            self.webhook_path = "/telegram"
        self._chat_action_interval = chat_action_interval
        self._poll_timeout = poll_timeout
        self._poller: asyncio.Task[None] | None = None
        self._offset: int | None = None
        #: why polling gets no updates (/readyz), while it does not
        self._polling_trouble: str | None = None
        self._receiving = False
        self._initialized = False
        self._me: BotIdentity | None = None
        self._rejections = Rejections(log)

    @property
    def me(self) -> BotIdentity:
        if self._me is None:
            raise RuntimeError("the Telegram adapter is not started")
        return self._me

    # ------------------------------------------------------------------ Platform port
    def channel(self, event: Incoming) -> TelegramChannel:
        return TelegramChannel(self.bot, event, chat_action_interval=self._chat_action_interval)

    async def fetch(self, attachment: Attachment) -> Sequence[InputImage]:
        """Download a file by ``file_id``, within Telegram's and our own size limits."""
        limit = min(self.settings.chatbrush_max_upload_bytes, TELEGRAM_DOWNLOAD_LIMIT)
        try:
            file = await self.bot.get_file(attachment.ref)
            if file.file_size is not None and file.file_size > limit:
                raise InputRefused(too_large(file.file_size, limit))
            data = bytes(await file.download_as_bytearray())
        except BadRequest as exc:
            if "too big" in exc.message.lower():
                raise InputRefused(too_large(attachment.size, limit)) from None
            log.warning("Telegram: download failed: %s", exc.message)
            raise InputRefused(_(DOWNLOAD_FAILED)) from None
        except TelegramError as exc:
            log.warning("Telegram: download failed: %s", scrub(str(exc)))
            raise InputRefused(_(DOWNLOAD_FAILED)) from None
        if len(data) > limit:
            raise InputRefused(too_large(len(data), limit))
        return [InputImage(data, attachment.mime_type, attachment.filename)]

    async def language_of(self, sender: Sender) -> str | None:
        return None  # Telegram sends each user's language_code with every message

    # ------------------------------------------------------------------ lifecycle
    def mount(self, web_app: web.Application) -> bool:
        if self.webhook_path is None:
            return False
        web_app.router.add_post(self.webhook_path, self.webhook)
        return True

    async def start(self, *, webhook: bool) -> None:
        """Connect (``getMe``), register the commands, then receive: by webhook in
        ``chatbrush web`` with TELEGRAM_WEBHOOK_URL, by long polling otherwise.

        A rejected token or an unreachable Bot API server is a configuration problem: it
        becomes one :class:`SettingsError` line naming the variable, never a traceback.
        """
        try:
            await self.bot.initialize()
        except InvalidToken:
            raise SettingsError(
                "Telegram rejected TELEGRAM_BOT_TOKEN (Unauthorized): copy the token again "
                "from @BotFather"
            ) from None
        except (NetworkError, TimedOut) as exc:
            base = self.group.telegram_base_url
            raise SettingsError(
                f"cannot reach the Telegram Bot API at {base} ({scrub(str(exc))}): "
                "check TELEGRAM_BASE_URL and the network"
            ) from None
        self._initialized = True
        self._me = BotIdentity(self.bot.id, self.bot.username)
        try:
            await self.bot.set_my_commands(command_list("en"))
            # Telegram shows this list to users whose app is set to Chinese
            await self.bot.set_my_commands(command_list("zh_Hans"), language_code="zh")
        except TelegramError as exc:
            log.warning("could not register the command list: %s", exc)
        self._receiving = True
        url = self.group.telegram_webhook_url
        if url and webhook:
            await self.bot.set_webhook(url, allowed_updates=["message"],
                                       secret_token=self.webhook_secret)
            log.info("Telegram: webhook set for @%s at %s", self._me.username, self.webhook_path)
        elif url:
            log.info("Telegram: TELEGRAM_WEBHOOK_URL is set, so `chatbrush web` receives "
                     "updates; this process answers what is stored")
        else:
            await self.bot.delete_webhook(drop_pending_updates=False)
            self._poller = asyncio.create_task(self._poll(), name="telegram-poll")
            log.info("Telegram: polling as @%s", self._me.username)

    async def stop_receiving(self) -> None:
        """Stop taking updates; confirm to Telegram what was stored, nothing more."""
        self._receiving = False
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            if self._offset is not None:
                with contextlib.suppress(TelegramError):
                    await self.bot.get_updates(offset=self._offset, timeout=0, limit=1)

    async def close(self) -> None:
        if self._initialized:
            with contextlib.suppress(Exception):
                await self.bot.shutdown()

    async def connection_problem(self) -> str | None:
        """For /readyz: why long polling is not getting updates, while it is not."""
        return self._polling_trouble

    # ------------------------------------------------------------------ receiving
    async def _poll(self) -> None:
        """Long polling where the offset only ever moves past updates already stored."""
        failures = 0
        while True:
            try:
                raw = await self.bot.do_api_request(
                    "getUpdates",
                    api_kwargs={"offset": self._offset, "timeout": int(self._poll_timeout),
                                "allowed_updates": ["message"]},
                    read_timeout=self._poll_timeout + 10,
                )
                await self._store(raw if isinstance(raw, list) else [])
                failures, self._polling_trouble = 0, None
            except IntakeClosed:
                return
            except (InvalidToken, Forbidden, Conflict) as exc:
                failures += 1
                self._polling_trouble = f"polling refused: {scrub(str(exc))}"
                log.error("Telegram: polling refused (%s); retrying in 30s", scrub(str(exc)))
                await asyncio.sleep(30)
            except Exception as exc:
                failures += 1
                if failures > 1:  # one blip is not an outage
                    self._polling_trouble = (f"polling failed {failures} times in a row "
                                             f"({type(exc).__name__})")
                wait = min(30.0, 2.0 ** min(failures, 5))
                log.warning("Telegram: polling failed (%s: %s); retrying in %.0fs",
                            type(exc).__name__, scrub(str(exc)), wait)
                await asyncio.sleep(wait)

    async def _store(self, updates: Sequence[Any]) -> None:
        for raw in updates:
            update_id = raw.get("update_id") if isinstance(raw, dict) else None
            if not isinstance(update_id, int):
                log.warning("Telegram: skipped an update without an update_id")
                continue
            await self._receive(raw)
            self._offset = update_id + 1  # confirmed by the next getUpdates: stored first

    async def _receive(self, raw: dict[str, Any]) -> bool:
        """Translate and store one update; ``False`` when it is malformed (nothing to keep)."""
        try:
            update = Update.de_json(raw, self.bot)
        except Exception as exc:
            log.warning("Telegram: could not read update %s: %s", raw.get("update_id"), exc)
            return False
        message = update.message
        if message is None or self._me is None:
            return True  # edits, member changes…: nothing to draw
        event = to_incoming(message, self._me)
        if event is not None:
            await self.intake.receive(event)
        return True

    async def webhook(self, request: web.Request) -> web.Response:
        """``POST`` from Telegram: the secret is checked before a byte of the body is read,
        the body is read with a cap and parsed defensively; 200 only once stored. Every
        rejection is logged (rate-limited, never the header), so a wrong secret shows."""
        from aiohttp import web

        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.webhook_secret.encode()):
            return self._reject(request, 403, "forbidden" if given else "no secret token")
        if not self._receiving:
            return web.json_response({"ok": False, "error": "shutting down"}, status=503)
        try:
            body = await read_capped(request, self.settings.chatbrush_max_request_bytes)
        except BodyTooLarge:
            return self._reject(request, 413, "body too large")
        raw = json_object(body)
        if raw is None:
            return self._reject(request, 400, "not a JSON object")
        try:
            stored = await self._receive(raw)
        except IntakeClosed:
            return web.json_response({"ok": False, "error": "shutting down"}, status=503)
        if not stored:
            return self._reject(request, 400, "malformed update")
        return web.json_response({"ok": True})

    def _reject(self, request: web.Request, status: int, reason: str) -> web.Response:
        return self._rejections.reply(request, endpoint="Telegram webhook", status=status,
                                      reason=reason)

__all__ = ["TelegramAdapter", "TelegramChannel", "webhook_secret"]
