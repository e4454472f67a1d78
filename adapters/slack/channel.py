"""Where the core's answers go in Slack: the message's thread, with reactions on it for
progress; a ``/chatbrush`` command's answer privately, through its ``response_url``."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.core.events import Progress, Sender
from bot.kit.image_types import OutputImage

log = logging.getLogger(__name__)

REACTION_WORKING = "hourglass_flowing_sand"
REACTION_DONE = "white_check_mark"
REACTION_FAILED = "x"


class SlackChannel:
    """Answers one Slack message: in its thread, with reactions on it for progress."""

    def __init__(self, client: AsyncWebClient, *, channel: str, thread_ts: str | None,
                 message_ts: str | None) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.message_ts = message_ts
        self._uploads = 0

    async def send_text(self, text: str) -> list[str]:
        resp = await self.client.chat_postMessage(
            channel=self.channel, text=text, thread_ts=self.thread_ts
        )
        return [str(resp["ts"])]

    #: Slack takes files up to 1 GB
    max_file_bytes = 1_000_000_000

    async def send_images(
        self, images: Sequence[OutputImage], caption: str | None = None, *,
        as_files: bool = False,
    ) -> list[str]:
        """Always as files: Slack keeps the bytes (and their Content Credentials)."""
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

    async def send_file(self, data: bytes, filename: str, caption: str | None = None
                        ) -> list[str]:
        resp = await self.client.files_upload_v2(
            file=data, filename=filename, title=filename, channel=self.channel,
            thread_ts=self.thread_ts, initial_comment=caption or None,
        )
        return [str(f["id"]) for f in resp.get("files") or [] if f.get("id")]

    async def progress(self, state: Progress) -> None:
        try:
            if state is Progress.WORKING:
                await self._react("add", REACTION_WORKING)
            elif state in (Progress.DONE, Progress.FAILED):
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
        """Workspace admins and owners, by ``users.info`` (the core caches the answer)."""
        try:
            resp = await self.client.users_info(user=sender.id)
        except SlackApiError as exc:
            log.warning("users.info failed for %s: %s", sender.id, exc.response.get("error"))
            return False
        user = resp.get("user") or {}
        return bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))


class SlashChannel(SlackChannel):
    """Answers a ``/chatbrush`` command privately through its ``response_url``."""

    def __init__(self, client: AsyncWebClient, *, channel: str, response_url: str) -> None:
        super().__init__(client, channel=channel, thread_ts=None, message_ts=None)
        self.webhook = AsyncWebhookClient(response_url)

    async def send_text(self, text: str) -> list[str]:
        await self.webhook.send(text=text, response_type="ephemeral")
        return []

    async def send_images(
        self, images: Sequence[OutputImage], caption: str | None = None, *,
        as_files: bool = False,
    ) -> list[str]:
        """The answer is private text: the caption goes, pictures cannot (``/history``)."""
        return await self.send_text(caption) if caption else []

    async def progress(self, state: Progress) -> None:
        return None
