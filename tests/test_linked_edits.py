"""Reading a caption on several pictures: the same edit on each, or one fusion."""

from __future__ import annotations

import pytest

from bot.flow.each_wording import CaptionIntent, classify_caption

ASKS_FOR_EACH = [
    ("make the background white on all of these product shots", "all of these"),
    ("Give every photo the same film look", "every photo"),
    ("black and white, each of them", "each of them"),
    ("add a watermark to each", "each"),
    ("Each one needs a sunset sky.", "each one"),
    ("crop each picture to a square", "each picture"),
    ("make them all black and white", "them all"),
    ("remove the background from all the pictures", "all the pictures"),
    ("sharpen all 3 photos", "all 3 photos"),
    ("apply a vintage filter to all.", "to all"),
    ("upscale both of them", "both of them"),
    ("edit them individually: brighter and warmer", "individually"),
    ("ALL OF THEM in sepia please", "all of them"),
    ("ｅａｃｈ ｐｈｏｔｏ brighter", "each photo"),  # full-width letters from a CJK keyboard
    ("每张都加上胶片滤镜", "每张"),
    ("把每一张的背景换成白色", "每一张"),
    ("全部变成黑白", "全部"),
    ("都变成黑白的", "都"),
    ("给所有照片加个边框", "所有照片"),
    ("分别调亮一点", "分别"),
    ("一张一张地加滤镜", "一张一张"),
    ("每張都換成藍天", "每張"),
]

ASKS_FOR_FUSION = [
    ("make them all one picture", "one picture"),
    ("combine these into a poster", "combine"),
    ("put the dog from the second on the first", "from the second"),
    ("put the cat from each photo into one picture", "into one"),
    ("place them side by side", "side by side"),
    ("make the people in all of them hug each other", "each other"),
    ("merge all these photos", "merge"),
    ("put them together on a beach", "together"),
    ("swap their faces", "swap"),
    ("use the other image's sky for every photo", "other image"),
    ("把它们都放到一张图里", "一张"),
    ("把这几张合成一张全家福", "合成"),
    ("把第二张的猫放到第一张上", "第二张"),
    ("全部拼在一起", "拼在"),
    ("让每张图里的人都出现在同一个画面", "同一个画面"),
]

NEITHER = [
    "make it brighter",
    "give each person a hat",
    "remove all the people in the background",
    "a tall ball on the wall, small and overall nice",
    "All right, make the sky bluer",
    "add a peach on the beach",
    "everyone should be smiling",
    "把背景换成成都的街景",
    "换成首都的夜景",
    "大都市的感觉",
    "",
]


@pytest.mark.parametrize(("caption", "phrase"), ASKS_FOR_EACH)
def test_a_caption_that_plainly_asks_for_each_picture(caption: str, phrase: str) -> None:
    intent = classify_caption(caption)
    assert intent.wants_each, intent
    assert intent.each_phrase == phrase
    assert intent.fusion_phrase is None


@pytest.mark.parametrize(("caption", "phrase"), ASKS_FOR_FUSION)
def test_talking_about_the_pictures_together_means_fusion(caption: str, phrase: str) -> None:
    intent = classify_caption(caption)
    assert not intent.wants_each, intent
    assert intent.fusion_phrase == phrase


@pytest.mark.parametrize("caption", NEITHER)
def test_anything_else_stays_a_fusion_with_no_keyword_found(caption: str) -> None:
    intent = classify_caption(caption)
    assert not intent.wants_each, intent
    assert intent.each_phrase is None


def test_the_model_still_reads_the_whole_sentence_keyword_included() -> None:
    assert classify_caption("  make all of them black and white\n") == CaptionIntent(
        wants_each=True, instruction="make all of them black and white",
        each_phrase="all of them", fusion_phrase=None)
    intent = classify_caption("每张都加上胶片滤镜")
    assert intent.instruction == "每张都加上胶片滤镜"


def test_fusion_wins_when_a_caption_says_both() -> None:
    intent = classify_caption("make them all one picture")
    assert intent.each_phrase == "them all" and intent.fusion_phrase == "one picture"
    assert not intent.wants_each
