"""Region edits: the spot a person drew on a copy of a picture, and keeping the rest.

Gemini image models take no mask, so "change only the hat" repaints a little of
everything. People already say "here" by drawing on a picture with their phone's pen; this
package turns such a marked copy into a region (:func:`find_marks`), shows the model where
it is (:func:`outlined_copy`), and puts the model's answer back into the original inside
the region only (:func:`composite`), with a small mask to keep with the turn
(:func:`mask_png`). Pure functions on Pillow images; nothing here knows about chats.
"""

from bot.kit.marks.align import Alignment
from bot.kit.marks.blend import align_answer, composite, outlined_copy
from bot.kit.marks.region import FEATHER_PX, MARGIN_PX, Region, mask_png, region_from_png
from bot.kit.marks.strokes import MarkResult, NoRegion, NotMarked, find_marks

__all__ = [
    "FEATHER_PX",
    "MARGIN_PX",
    "Alignment",
    "MarkResult",
    "NoRegion",
    "NotMarked",
    "Region",
    "align_answer",
    "composite",
    "find_marks",
    "mask_png",
    "outlined_copy",
    "region_from_png",
]
