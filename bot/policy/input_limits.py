"""What can never become a turn, refused before anything is downloaded, in one wording
for every platform: prompts too long, too many files, and files that are not pictures."""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.config import Settings
from bot.core.errors import UserFacingError
from bot.core.events import Attachment, AttachmentKind, Incoming
from bot.core.messages import SUPPORTED_FORMATS, file_named, too_large
from bot.kit.i18n import N_, _

UNSUPPORTED = N_("I can only work with text and images. Send {formats}.")
NO_VIDEO = N_("I can't edit videos or GIFs. Send {formats}.")
TOO_MANY_FILES = N_("That's more files than I can take at once ({count}); please send at "
                    "most {limit}.")
#: attachments one message may carry (an album holds ten; a fusion wants a few)
MAX_ATTACHMENTS = 16


def check_input(event: Incoming, settings: Settings) -> None:
    """Refuse what can never become a turn before anything is downloaded."""
    text = event.text.strip()
    limit = settings.chatbrush_max_prompt_chars
    if len(text) > limit:
        raise UserFacingError(
            _("That message is too long ({count} characters); please keep it under "
              "{limit}.").format(count=f"{len(text):,}", limit=f"{limit:,}")
        )
    files = [a for a in event.attachments if a.kind is not AttachmentKind.THREAD_IMAGES]
    if len(files) > MAX_ATTACHMENTS:
        raise UserFacingError(_(TOO_MANY_FILES).format(count=len(files), limit=MAX_ATTACHMENTS))
    check_attachments(files, settings)


def check_attachments(attachments: Sequence[Attachment],
                      settings: Settings) -> None:
    """Refuse the first attachment that cannot be a picture we take (own or replied-to)."""
    for attachment in attachments:
        problem = attachment_problem(attachment, settings.chatbrush_max_upload_bytes)
        if problem:
            raise UserFacingError(problem)


def attachment_problem(attachment: Attachment, max_bytes: int) -> str | None:
    """Why this attachment cannot be used, judged from what the platform says of it."""
    if attachment.kind is AttachmentKind.VIDEO:
        return _(NO_VIDEO).format(formats=_(SUPPORTED_FORMATS))
    if attachment.kind is AttachmentKind.OTHER:
        return _(UNSUPPORTED).format(formats=_(SUPPORTED_FORMATS))
    name = attachment.filename
    if attachment.kind is AttachmentKind.FILE:
        ext = name.rsplit(".", 1)[-1].upper() if name and "." in name else ""
        label = ext or (attachment.mime_type or "")
        if label:
            return _("{file} ({kind}) isn't an image I can edit. Send {formats}.").format(
                file=file_named(name), kind=label, formats=_(SUPPORTED_FORMATS))
        return _("{file} isn't an image I can edit. Send {formats}.").format(
            file=file_named(name), formats=_(SUPPORTED_FORMATS))
    if attachment.size is not None and attachment.size > max_bytes:
        return too_large(attachment.size, max_bytes, name)
    return None
