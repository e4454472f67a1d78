"""Does a caption on several pictures ask for the same edit on each, or for one fusion?

Several pictures in one message are fused into one result by default. A caption that
*plainly* asks for each picture ("make the background white on all of these", "give
every photo the same film look", "每张都加上胶片滤镜") runs one edit per picture instead —
N model calls, N results, N times the cost. A wrong "each" costs money and surprises
people, a wrong "fusion" costs one retry with ``/each``, so the reading is conservative:

* a phrase must name the pictures ("each photo", "all of them", "every one", "每张"),
  not just any group ("give each person a hat" is one edit on people, not pictures);
* anything that talks about the pictures *together* wins over every "each": combining
  verbs, "into one picture", "side by side", "each other", ordinal references ("put the
  dog from the second on the first"), "合成", "放在一起", "第二张".

The caption itself is passed on unchanged: the keyword is part of the instruction the
model should read ("make all of them black and white" still says "black and white").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class CaptionIntent:
    """How to run a caption sent with several pictures."""

    wants_each: bool  # one edit per picture; False: fuse them into one result
    instruction: str  # the caption as the model should see it, keyword phrase included
    each_phrase: str | None  # what asked for each picture (lower-cased), if anything
    fusion_phrase: str | None  # what asked for a fusion; when set, it won over each_phrase


_PICTURE: Final = (r"(?:photo(?:graph)?|picture|pic|image|shot|snap(?:shot)?|frame|file|img"
                   r"|selfie|scan)s?")
_PICTURES: Final = (r"(?:photo(?:graph)?s|pictures|pics|images|shots|snap(?:shot)?s|frames"
                    r"|files|imgs|selfies|scans)")
_COUNT: Final = r"(?:two|three|four|five|six|seven|eight|nine|ten|\d+)"
_GROUP: Final = r"(?:them|these|those)"
_DETERMINER: Final = r"(?:the|my|our|these|those|your)"

_EACH_ENGLISH: Final = (
    # "each", "each one", "each photo", "each of them / of the pictures", "each, …"
    rf"\beach(?:\s+(?:single\s+)?(?:one|{_PICTURE})\b"
    rf"|\s+of\s+(?:{_GROUP}|{_DETERMINER}\s+(?:\w+\s+)?{_PICTURES}|(?:{_COUNT}\s+)?{_PICTURES})\b"
    r"|\s*(?=$|[.,;:!?)]))",
    rf"\bevery\s+(?:single\s+)?(?:one|{_PICTURE})\b",
    rf"\ball\s+(?:of\s+)?{_GROUP}\b",
    rf"\ball\s+(?:{_DETERMINER}\s+)?(?:{_COUNT}\s+)?(?:\w+\s+)?{_PICTURES}\b",
    rf"\ball\s+{_COUNT}\b",
    rf"\b{_GROUP}\s+all\b",
    r"\b(?:to|on|for)\s+(?:them\s+)?all\s*(?=$|[.,;:!?)])",
    rf"\bboth\s+(?:of\s+)?{_GROUP}\b",
    rf"\bboth\s+(?:{_DETERMINER}\s+)?(?:\w+\s+)?{_PICTURES}\b",
    rf"\b{_GROUP}\s+both\b",
    r"\b(?:individually|separately|one\s+by\s+one|one\s+at\s+a\s+time)\b",
)

_ORDINAL: Final = r"(?:first|second|third|fourth|fifth|last|other|1st|2nd|3rd|4th|5th)"
_FUSION_ENGLISH: Final = (
    r"\b(?:combin(?:e[sd]?|ing|ation)|merg(?:e[sd]?|ing)|fus(?:e[sd]?|ing|ion)"
    r"|composit(?:e[sd]?|ing)|collage|montage|stitch(?:es|ed|ing)?|splic(?:e[sd]?|ing)"
    r"|mash\s*-?\s*up)\b",
    r"\btogether\b",
    r"\binto\s+one\b",
    r"\b(?:one|a\s+single|single)\s+(?:new\s+|big\s+|group\s+)?"
    r"(?:photo|picture|pic|image|shot|frame|scene|composition|poster)\b",
    r"\bsame\s+(?:photo|picture|pic|image|shot|frame|scene)\b",
    r"\bside\s+by\s+side\b",
    r"\beach\s+other\b",
    r"\bswap\b",
    rf"\b{_ORDINAL}\s+(?:one|{_PICTURE})\b",
    rf"\b(?:from|on|onto|into|in|to|with|of|and)\s+the\s+{_ORDINAL}\b",
    r"\b(?:left|right|top|bottom)\s+(?:one|photo|picture|pic|image)\b",
)

_MEASURE: Final = "[张張幅]"
_PICTURE_ZH: Final = "(?:图片|圖片|照片|相片|图|圖|画|畫)"
_EACH_CHINESE: Final = (
    rf"每一?{_MEASURE}",
    rf"每一?[个個]{_PICTURE_ZH}",
    rf"所有(?:的)?{_PICTURE_ZH}",
    r"全部",
    r"分别|分別|各自|逐张|逐張|逐一|挨个|挨個",
    rf"一{_MEASURE}一?{_MEASURE}",
    # 都 as "all/each", not inside place names and words (首都, 成都, 都市, 都灵, 大都 …)
    r"(?<![首成京古国國帝魔旧舊迁遷定建大])都(?![市会會城灵靈柏江])",
)
_FUSION_CHINESE: Final = (
    r"合成|合并|合併|融合|拼接|拼成|拼贴|拼貼|拼图|拼圖|拼在|拼到|组合|組合|混合",
    r"(?:合|放|拼|摆|擺|凑|湊)(?:在|到)?一起",
    rf"同一{_MEASURE}|同一[个個]?(?:画面|畫面|场景|場景)",
    # 一张 / 一幅 as "one picture": not 每一张 (each), 第一张 (ordinal), 一张张 (one by one)
    rf"(?<![每第张張幅])一{_MEASURE}(?![张張幅一])",
    rf"第[一二三四五六七八九十两兩\d]+{_MEASURE}",
    r"第[一二三四五六七八九十两兩\d]+[个個](?:图|圖|照片|图片|圖片)",
)


_EACH: Final = re.compile("|".join(f"(?:{p})" for p in (*_EACH_ENGLISH, *_EACH_CHINESE)))
_FUSION: Final = re.compile("|".join(f"(?:{p})" for p in (*_FUSION_ENGLISH, *_FUSION_CHINESE)))


def classify_caption(caption: str) -> CaptionIntent:
    """Read a caption sent with several pictures: one edit per picture, or one fusion?"""
    text = unicodedata.normalize("NFKC", caption).casefold()
    fusion = _FUSION.search(text)
    each = _EACH.search(text)
    return CaptionIntent(
        wants_each=each is not None and fusion is None,
        instruction=caption.strip(),
        each_phrase=each.group(0).strip() if each else None,
        fusion_phrase=fusion.group(0).strip() if fusion else None,
    )


def caption_asks_for_each(text: str) -> bool:
    """Whether a message's words plainly ask for the same edit on each picture."""
    return bool(text.strip()) and classify_caption(text).wants_each
