"""Where the core's answers go in Telegram: same chat, same forum topic, as a reply."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Sequence
from typing import Any

from telegram import InputMediaPhoto, ReplyParameters
from telegram.constants import ChatAction, ChatMemberStatus
from telegram.error import BadRequest, TelegramError
from telegram.ext import ExtBot

from adapters.telegram.translate import CAPTION_LIMIT, fits_photo, split_text
from bot.core.events import Incoming, Progress, Sender
from bot.kit.image_types import OutputImage

log = logging.getLogger(__name__)

#: a chat action shows for about five seconds; this is how long we keep renewing it at most
_MAX_ACTION_SECONDS = 600.0


class TelegramChannel:
    """Answers one incoming message: same chat, same forum topic, as a reply to it."""

    def __init__(self, bot: ExtBot[Any], event: Incoming, *, chat_action_interval: float
                 ) -> None:
        self._bot = bot
        self._chat_id = int(event.chat.chat_id)
        topic = event.chat.topic_id
        self._thread_id = int(topic) if topic is not None else None
        self._reply_to = int(event.message_id) if event.message_id.isdigit() else None
        self._private = event.is_private
        self._speaks_for_chat = event.platform_data.get("speaks_for_chat") == "1"
        self._interval = chat_action_interval
        self._action_task: asyncio.Task[None] | None = None

    def _where(self) -> dict[str, Any]:
        where: dict[str, Any] = {"chat_id": self._chat_id}
        if self._reply_to is not None:
            where["reply_parameters"] = ReplyParameters(
                message_id=self._reply_to, allow_sending_without_reply=True
            )
        if self._thread_id is not None:
            where["message_thread_id"] = self._thread_id
        return where

    async def send_text(self, text: str) -> list[str]:
        ids = []
        for chunk in split_text(text) or ["…"]:
            sent = await self._bot.send_message(text=chunk, **self._where())
            ids.append(str(sent.message_id))
        return ids

    #: what the Bot API lets a bot upload (sendDocument)
    max_file_bytes = 50_000_000

    async def send_images(
        self, images: Sequence[OutputImage], caption: str | None = None, *,
        as_files: bool = False,
    ) -> list[str]:
        """Photos when Telegram takes them as photos, documents otherwise (always, with
        ``as_files``: a photo is recompressed and loses its Content Credentials); a
        caption that does not fit under a photo follows as its own message. The ids are
        in the order of ``images`` (documents go after the photos, but keep their place in
        the list), then the caption's own message."""
        caption = (caption or "").strip() or None
        fits_caption = caption is not None and len(caption) <= CAPTION_LIMIT
        photos: list[int] = []
        documents: list[int] = []
        for index, image in enumerate(images):
            width, height = _dimensions(image)
            as_photo = not as_files and fits_photo(len(image.data), width, height)
            (photos if as_photo else documents).append(index)
        by_image: dict[int, str] = {}
        pending_caption = caption if fits_caption else None
        for start in range(0, len(photos), 10):
            batch = photos[start : start + 10]
            if len(batch) == 1:
                [by_image[batch[0]]] = await self._send_one(images[batch[0]], pending_caption)
            else:
                media = [
                    InputMediaPhoto(
                        images[index].data,
                        caption=pending_caption if n == 0 else None,
                        filename=f"chatbrush-{start + n + 1}.{images[index].extension}",
                    )
                    for n, index in enumerate(batch)
                ]
                sent = await self._bot.send_media_group(media=media, **self._where())
                by_image.update(zip(batch, (str(m.message_id) for m in sent), strict=False))
            pending_caption = None
        for index in documents:
            [by_image[index]] = await self._send_document(images[index], pending_caption)
            pending_caption = None
        ids = [by_image[index] for index in sorted(by_image)]
        if caption is not None and not fits_caption:
            ids += await self.send_text(caption)
        return ids

    async def _send_one(self, image: OutputImage, caption: str | None) -> list[str]:
        try:
            sent = await self._bot.send_photo(
                photo=image.data, caption=caption, filename=f"chatbrush.{image.extension}",
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
            document=image.data, caption=caption, filename=f"chatbrush.{image.extension}",
            **self._where(),
        )
        return [str(sent.message_id)]

    async def send_file(self, data: bytes, filename: str, caption: str | None = None
                        ) -> list[str]:
        caption = (caption or "").strip() or None
        fits = caption is None or len(caption) <= CAPTION_LIMIT
        sent = await self._bot.send_document(document=data, filename=filename,
                                             caption=caption if fits else None,
                                             **self._where())
        ids = [str(sent.message_id)]
        if caption is not None and not fits:
            ids += await self.send_text(caption)
        return ids

    async def progress(self, state: Progress) -> None:
        if state is Progress.WORKING:
            if self._action_task is None or self._action_task.done():
                self._action_task = asyncio.create_task(self._keep_uploading())
        elif state in (Progress.DONE, Progress.FAILED):
            task, self._action_task = self._action_task, None
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _keep_uploading(self) -> None:
        """"sending photo…" under the chat title, renewed while the model works."""
        loop = asyncio.get_running_loop()
        until = loop.time() + _MAX_ACTION_SECONDS
        while loop.time() < until:
            try:
                await self._bot.send_chat_action(
                    chat_id=self._chat_id, action=ChatAction.UPLOAD_PHOTO,
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
        try:
            member = await self._bot.get_chat_member(self._chat_id, int(sender.id))
        except (TelegramError, ValueError) as exc:
            log.warning("Telegram: admin check failed in %s: %s", self._chat_id, exc)
            return False
        return member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)


def _dimensions(image: OutputImage) -> tuple[int, int]:
    if image.width and image.height:
        return image.width, image.height
    from PIL import Image

    try:
        with Image.open(io.BytesIO(image.data)) as img:
            return img.size
    except Exception:
        return 0, 0
