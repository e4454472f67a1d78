"""The user's pictures made ready for a turn: downloaded concurrently, normalised, and a
bad one refusing the whole message with its reason."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import bot.kit.images as imaging
from bot.core.config import Settings
from bot.core.errors import LazyText, UserFacingError
from bot.core.events import Attachment, InputImage
from bot.core.work import Work
from bot.kit import metrics
from bot.kit.i18n import N_
from bot.policy.input_limits import check_attachments

IMAGE_OF = N_("Image {index} of {count}: {reason}")


async def load_images(work: Work, attachments: Sequence[Attachment],
                      settings: Settings) -> list[imaging.PreparedImage]:
    """Download (concurrently) and normalise; a bad image refuses the whole message."""
    check_attachments(attachments, settings)

    async def fetch(attachment: Attachment) -> Sequence[InputImage]:
        if attachment.data is not None:
            return [InputImage(attachment.data, attachment.mime_type, attachment.filename)]
        return await work.fetch(attachment)

    fetched = await asyncio.gather(*(fetch(a) for a in attachments))
    raw = [image for images in fetched for image in images]
    results = await asyncio.gather(
        *(imaging.prepare_input_async(
            image.data,
            max_side=settings.chatbrush_max_side,
            max_bytes=settings.chatbrush_max_upload_bytes,
            max_pixels=settings.chatbrush_max_pixels,
        ) for image in raw),
        return_exceptions=True,
    )
    prepared: list[imaging.PreparedImage] = []
    for index, result in enumerate(results, start=1):
        if isinstance(result, imaging.ImageRejected):
            metrics.REJECTED_INPUTS.labels(work.event.platform).inc()
            if len(raw) > 1:
                raise UserFacingError(LazyText(IMAGE_OF, index=index, count=len(raw),
                                               reason=result.user_message))
            raise UserFacingError(result.user_message)
        if isinstance(result, BaseException):
            raise result
        prepared.append(result)
    return prepared
