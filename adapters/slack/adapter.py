"""Slack: mentions, threads and DMs in; edited pictures back into the same thread.

Built on slack-bolt's :class:`AsyncApp` with slack_sdk's async client pointed at
``SLACK_API_URL``. Events arrive over Socket Mode (``chatbrush run`` with
``SLACK_APP_TOKEN``) or HTTP at ``/slack/events`` (``chatbrush web`` with
``SLACK_SIGNING_SECRET``; bolt checks the v0 signature and answers ``url_verification``).

Translate, then hand over: a listener turns the event into the core's
:class:`~bot.core.events.Incoming` (:mod:`adapters.slack.translate`) and awaits
:meth:`bot.core.receiving.Receiver.receive`. The app runs with ``process_before_response``, so bolt
acknowledges only after the listener returned — after the event is committed to the
inbox, milliseconds later and well inside Slack's 3 seconds. A retry of an event that was
interrupted finds it stored and resumes it; one that was handled is a no-op.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.channel import (
    SlackChannel,
    SlashChannel,
)
from adapters.slack.files import FileRefused, declared_image, download_image
from adapters.slack.settings import SlackSettings
from adapters.slack.translate import (
    PLATFORM,
    SLASH_COMMAND,
    slash_to_incoming,
    to_incoming,
    translate_event,
)
from bot.core.events import (
    Attachment,
    AttachmentKind,
    Channel,
    Incoming,
    InputImage,
    Sender,
)
from bot.kit.http_guard import BodyTooLarge, Rejections, read_capped
from bot.kit.i18n import N_, _

if TYPE_CHECKING:
    from bot.core.config import Settings
    from bot.core.receiving import Receiver

log = logging.getLogger(__name__)

#: how long a user's locale is remembered, and for how many users at most
LOCALE_TTL_SECONDS = 3600.0
LOCALE_CACHE_SIZE = 4096
#: how long a failed lookup (a user the workspace cannot find) is remembered: not asked
#: again on every message, yet a passing error does not last the hour
FAILED_LOOKUP_TTL_SECONDS = 600.0
#: Slack's own rule: a request signed longer ago than this may be a replay
SIGNATURE_MAX_AGE_SECONDS = 300
UNREADABLE_FILE = N_("I couldn't read one of the files from Slack.")


# ---------------------------------------------------------------------- the adapter
class SlackAdapter:
    """The Slack side of Chatbrush (see the module docstring)."""

    name = PLATFORM

    def __init__(self, settings: Settings, intake: Receiver) -> None:
        group = SlackSettings.of(settings)
        if group.slack_bot_token is None:
            raise ValueError("SLACK_BOT_TOKEN is not set")
        self.settings = settings
        self.group = group
        self.intake = intake
        self._token = group.slack_bot_token.get_secret_value()
        self.client = AsyncWebClient(
            token=self._token,
            base_url=group.slack_api_url,
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(max_retry_count=2),
                AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            ],
        )
        secret = group.slack_signing_secret
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
        self._verifier = SignatureVerifier(secret.get_secret_value()) if secret else None
        self._rejections = Rejections(log)
        self.bot_user_id: str | None = None
        self._locales: dict[str, tuple[float, str | None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._socket: Any = None
        self._receiving = False
        self.app.event("app_mention")(self._on_event)
        self.app.event("message")(self._on_event)
        self.app.command(SLASH_COMMAND)(self._on_command)
        self.app.error(self._on_error)

    # ------------------------------------------------------------------ Platform port
    def channel(self, event: Incoming) -> Channel:
        response_url = event.platform_data.get("response_url")
        if response_url:
            return SlashChannel(self.client, channel=event.chat.chat_id,
                                response_url=response_url)
        return SlackChannel(self.client, channel=event.chat.chat_id,
                            thread_ts=event.platform_data.get("reply_thread") or None,
                            message_ts=event.platform_data.get("ts") or event.message_id)

    async def fetch(self, attachment: Attachment) -> Sequence[InputImage]:
        """One attached file, or the pictures posted earlier in a thread."""
        if attachment.kind is AttachmentKind.THREAD_IMAGES:
            files = await self._earlier_thread_images(attachment)
        else:
            files = (await self._file_info(attachment),)
        # FileRefused is an InputRefused: the core tells the user why
        return [await download_image(self._downloads(), f, token=self._token,
                                     api_url=self.group.slack_api_url,
                                     max_bytes=self.settings.chatbrush_max_upload_bytes)
                for f in files]

    async def language_of(self, sender: Sender) -> str | None:
        """The user's Slack locale (``zh-CN``) from ``users.info`` with
        ``include_locale``, remembered for an hour: Slack events do not carry it. A failed
        lookup is remembered too (for less time)."""
        now = time.monotonic()
        known = self._locales.get(sender.id)
        if known is not None and known[0] > now:
            return known[1]
        try:
            resp = await self.client.users_info(user=sender.id, include_locale=True)
        except SlackApiError as exc:
            log.info("Slack: no locale for %s: %s", sender.id, exc.response.get("error"))
            locale, lifetime = None, FAILED_LOOKUP_TTL_SECONDS
        else:
            user = resp.get("user") or {}
            locale = user.get("locale") if isinstance(user.get("locale"), str) else None
            lifetime = LOCALE_TTL_SECONDS
        if len(self._locales) >= LOCALE_CACHE_SIZE:
            self._locales = {k: v for k, v in self._locales.items() if v[0] > now}
        self._locales[sender.id] = (now + lifetime, locale)
        return locale

    async def _file_info(self, attachment: Attachment) -> Mapping[str, Any]:
        """The file's metadata; Slack sends only an id for some files (Slack Connect, large
        messages, files that changed), so ask ``files.info`` when the link is missing."""
        if attachment.url:
            return {"id": attachment.ref, "name": attachment.filename, "size": attachment.size,
                    "mimetype": attachment.mime_type or "image/unknown",
                    "url_private_download": attachment.url}
        try:
            resp = await self.client.files_info(file=attachment.ref)
        except SlackApiError as exc:
            raise FileRefused(_(UNREADABLE_FILE)) from exc
        info = resp.get("file")
        if not isinstance(info, Mapping):
            raise FileRefused(_(UNREADABLE_FILE))
        return info

    async def _earlier_thread_images(self, attachment: Attachment
                                     ) -> tuple[Mapping[str, Any], ...]:
        """A mention in someone else's thread means "edit the picture posted here": the
        newest person-posted images before the mention (the thread's root, usually)."""
        channel, thread_ts, before = ([*attachment.ref.split("|"), "", "", ""])[:3]
        try:
            resp = await self.client.conversations_replies(channel=channel, ts=thread_ts,
                                                           limit=200)
        except SlackApiError as exc:
            log.info("Slack: could not read thread %s: %s", thread_ts,
                     exc.response.get("error"))
            return ()
        earlier = [m for m in resp.get("messages") or [] if _ts(m.get("ts")) < _ts(before)]
        for message in reversed(earlier):
            if message.get("bot_id") or message.get("user") in (None, self.bot_user_id):
                continue
            images = tuple(f for f in message.get("files") or () if declared_image(f))
            if images:
                return images
        return ()

    # ------------------------------------------------------------------ lifecycle
    def mount(self, web_app: web.Application) -> bool:
        if self.group.slack_signing_secret is None:
            return False
        web_app.router.add_post("/slack/events", self.http_events)
        return True

    async def start(self, *, webhook: bool) -> None:
        # One pool of keep-alive connections for every Web API call (slack_sdk otherwise
        # opens a new session, and a new TLS connection, for each call).
        self.client.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.group.slack_connections,
                                           keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=60),
        )
        self._receiving = True
        if webhook:
            return
        app_token = self.group.slack_app_token
        if app_token is None:
            log.warning("Slack: SLACK_APP_TOKEN is not set, so Socket Mode is off; "
                        "Slack events arrive only through `chatbrush web`.")
            return
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        self._socket = AsyncSocketModeHandler(self.app, app_token.get_secret_value())
        await self._socket.connect_async()
        log.info("Slack: connected over Socket Mode")

    async def connection_problem(self) -> str | None:
        """For /readyz: Socket Mode's connection, when this process uses it."""
        if self._socket is None or await self._socket.client.is_connected():
            return None
        return "the Socket Mode connection is down"

    async def stop_receiving(self) -> None:
        self._receiving = False
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close_async()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.client.session is not None:
            await self.client.session.close()
            self.client.session = None

    def _downloads(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=120, sock_connect=15)
            )
        return self._session

    # ------------------------------------------------------------------ receiving
    async def http_events(self, request: web.Request) -> web.Response:
        """``POST /slack/events``: size and signature checked on the raw bytes before
        anything parses them (a forged body costs at most the body limit and one line of
        log), then dispatched by bolt; acknowledged once the event is stored (503 while
        shutting down, so Slack delivers it again later)."""
        if not self._receiving:
            return web.json_response({"ok": False, "error": "shutting down"}, status=503)
        try:
            body = await read_capped(request, self.settings.chatbrush_max_request_bytes)
        except BodyTooLarge:
            return self._reject(request, 413, "body too large")
        refusal = self._unverified(body, request.headers)
        if refusal is not None:
            return self._reject(request, 401, refusal)
        try:  # signed by Slack, yet parsed with care: a bad body is a 400, not a traceback
            bolt_request = AsyncBoltRequest(body=body.decode("utf-8", errors="replace"),
                                            query=request.query_string,
                                            headers=request.headers)  # type: ignore[arg-type]
        except (ValueError, RecursionError):
            return self._reject(request, 400, "malformed body")
        bolt_response: BoltResponse = await self.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    def _unverified(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """Why the request is not provably from Slack (``None`` when it is): the v0
        signature over the raw body, within five minutes of its numeric timestamp."""
        if self._verifier is None:
            return "no signing secret configured"
        timestamp = headers.get("X-Slack-Request-Timestamp", "")
        signature = headers.get("X-Slack-Signature")
        if not timestamp.isascii() or not timestamp.isdigit():
            return "missing or non-numeric timestamp"
        if signature is None:
            return "no signature"
        if abs(time.time() - int(timestamp)) > SIGNATURE_MAX_AGE_SECONDS:
            return "stale timestamp"
        if not self._verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
            return "bad signature"
        return None

    def _reject(self, request: web.Request, status: int, reason: str) -> web.Response:
        return self._rejections.reply(request, endpoint="Slack events", status=status,
                                      reason=reason)

    async def _on_error(self, error: Exception, body: dict[str, Any]) -> BoltResponse | None:
        if isinstance(error, ConnectionError):  # the database is down: the store logs it
            return BoltResponse(status=503, body="database unavailable")  # Slack retries
        log.error("Slack listener failed: %s: %s", type(error).__name__, error)
        return None

    async def _on_event(self, body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
        """Runs before the acknowledgement: translate and store, nothing else. A failure
        to store raises, so Slack is not told it arrived and delivers it again."""
        self.bot_user_id = context.bot_user_id or self.bot_user_id
        msg = translate_event(event, context.bot_user_id)
        if msg is None:
            return
        await self.intake.receive(to_incoming(msg, self.bot_user_id))

    async def _on_command(self, ack: Any, command: dict[str, Any]) -> None:
        await self.intake.receive(slash_to_incoming(command))
        await ack()


def _ts(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _quiet_token_notice(record: logging.LogRecord) -> bool:
    """Drop bolt's notice that ``SLACK_BOT_TOKEN`` (which it reads from the environment
    itself) is unused: we hand it a configured client on purpose."""
    return warning_client_prioritized_and_token_skipped() not in str(record.msg)
