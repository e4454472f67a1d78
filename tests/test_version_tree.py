"""The version tree: which versions a thread has, where each came from, where it is drawn."""

from __future__ import annotations

import random

from bot.core.threads import Turn, TurnStatus
from bot.history.version_tree import VersionTree, build_version_tree
from tests.version_fixtures import (
    BOB,
    MODEL,
    ORIGINAL_COLOUR,
    ThreadBuilder,
    branched_thread,
    picture,
)


def test_versions_are_delivered_answers_with_their_parent_version_and_prompt() -> None:
    b, t = branched_thread()
    tree = build_version_tree(b.turns, t["v5"].id)
    assert [v.label for v in tree.versions] == ["v1", "v2", "v3", "v4", "v5"]
    assert {v.version: v.parent_version for v in tree.versions} == {
        1: None, 2: 1, 3: 2, 4: 1, 5: 2}
    v4 = tree.version(4)
    assert (v4.prompt, v4.asked_by_name, v4.asked_by_id) == ("blue sky instead", BOB[1], BOB[0])
    assert v4.prompt_turn_id == t["sky"].id and v4.asked_at == t["sky"].created_at
    assert (v4.model, v4.created_at) == (MODEL, t["v4"].created_at)
    assert [i.sha256 for i in v4.images] == [i.sha256 for i in t["v4"].images]
    assert tree.version(1).prompt == "make it black and white"


def test_the_original_photo_is_the_root_and_first_versions_take_it_as_input() -> None:
    b, t = branched_thread()
    tree = build_version_tree(b.turns, t["v5"].id)
    assert tree.origin is not None
    assert [i.sha256 for i in tree.origin.images] == [i.sha256 for i in t["photo"].images]
    assert tree.origin.author_names == ("Ann",)
    assert tree.version(1).inputs == tree.origin.images
    assert tree.version(2).inputs == ()


def test_branches_get_their_own_lanes_and_the_current_version_is_marked() -> None:
    b, t = branched_thread()
    tree = build_version_tree(b.turns, t["v5"].id)
    placed = {v.label: (v.lane, v.depth) for v in tree.versions}
    # the main line continues the original's lane; v5 forks from v2, v4 from v1 below it
    assert placed == {"v1": (0, 1), "v2": (0, 2), "v3": (0, 3), "v5": (1, 3), "v4": (2, 2)}
    assert (tree.lane_count, tree.max_depth) == (3, 3)
    assert tree.current is not None and tree.current.label == "v5"
    assert [v.label for v in tree.versions if v.parent_version == 1] == ["v2", "v4"]


def test_a_head_on_a_failed_attempt_marks_the_version_it_continues() -> None:
    b, t = branched_thread()
    tree = build_version_tree(b.turns, t["boom_answer"].id)
    assert tree.current is not None and tree.current.label == "v3"
    assert len(tree.versions) == 5  # the failed answer is no version


def test_undoing_every_version_makes_the_original_current() -> None:
    b, t = branched_thread()
    tree = build_version_tree(b.turns, t["photo"].id)
    assert tree.current is None
    assert tree.origin is not None and tree.origin.is_current


def test_a_new_prompt_on_the_original_opens_a_lane_from_the_root() -> None:
    b, t = branched_thread()
    again = b.user(t["photo"], "watercolour instead", author=BOB)
    v6 = b.model(again, images=[picture((90, 90, 90))])
    tree = build_version_tree(b.turns, v6.id)
    node = tree.version(6)
    assert (node.parent_version, node.depth, node.lane) == (None, 1, 3)
    assert node.prompt == "watercolour instead" and node.asked_by_name == "Bob"
    assert tree.origin is not None and node.inputs == tree.origin.images
    assert [v.label for v in tree.versions if v.parent_version is None] == ["v1", "v6"]


def test_a_thread_started_from_text_alone_has_no_root() -> None:
    b = ThreadBuilder()
    ask = b.user(None, "a cat on the moon")
    v1 = b.model(ask, images=[picture((10, 10, 10))])
    tree = build_version_tree(b.turns, v1.id)
    assert tree.origin is None
    assert [(v.label, v.lane, v.depth, v.is_current) for v in tree.versions] == [
        ("v1", 0, 0, True)]


def test_an_empty_thread_and_a_photo_without_answers() -> None:
    assert build_version_tree([], None) == VersionTree(None, (), 0, 0)
    b = ThreadBuilder()
    photo = b.user(None, "", images=[picture(ORIGINAL_COLOUR)])
    b.user(photo, "brighter", status=TurnStatus.FAILED)
    tree = build_version_tree(b.turns, photo.id)
    assert tree.versions == ()
    assert tree.origin is not None and tree.origin.is_current and tree.lane_count == 1


def test_a_missing_parent_or_a_loop_does_not_hang_or_crash() -> None:
    b = ThreadBuilder()
    ask = b.user(None, "hello")
    b.model(ask, images=[picture((1, 2, 3))])
    orphan = Turn(50, b.thread_id, 49, "user", TurnStatus.OK, "1", "Ann", (), 0.0)
    loop_a = Turn(60, b.thread_id, 61, "user", TurnStatus.OK, "1", "Ann", (), 0.0)
    loop_b = Turn(61, b.thread_id, 60, "model", TurnStatus.OK, "m", MODEL, (), 0.0, 9)
    # two versions that are each other's ancestor
    ring = [Turn(70, b.thread_id, 73, "user", TurnStatus.OK, "1", "Ann", (), 0.0),
            Turn(71, b.thread_id, 70, "model", TurnStatus.OK, "m", MODEL, (), 0.0, 10),
            Turn(72, b.thread_id, 71, "user", TurnStatus.OK, "1", "Ann", (), 0.0),
            Turn(73, b.thread_id, 72, "model", TurnStatus.OK, "m", MODEL, (), 0.0, 11)]
    tree = build_version_tree([*b.turns, orphan, loop_a, loop_b, *ring], 61)
    assert [v.label for v in tree.versions] == ["v1", "v9", "v10", "v11"]
    assert tree.current is not None and tree.current.label == "v9"
    assert {v.label: v.parent_version for v in tree.versions}["v11"] == 10


def test_random_trees_never_stack_two_versions_or_cross_fork_connectors() -> None:
    rng = random.Random(13)
    for _ in range(200):
        b = ThreadBuilder()
        root = b.user(None, "start", images=[picture((5, 5, 5))] if rng.random() < 0.7 else [])
        answers = [b.model(root)]
        for _ in range(rng.randrange(0, 40)):
            parent = rng.choice(answers) if rng.random() < 0.8 else root
            answers.append(b.model(b.user(parent, "again")))
        tree = build_version_tree(b.turns, rng.choice(answers).id)
        cells = [(v.lane, v.depth) for v in tree.versions]
        assert len(set(cells)) == len(cells)
        assert len(tree.versions) == len(answers)
        by_number = {v.version: v for v in tree.versions}
        gutters: dict[int, list[tuple[int, int, int]]] = {}  # depth → (top, bottom, parent)
        for v in tree.versions:
            parent_lane = parent_depth = None
            if v.parent_version is not None:
                parent = by_number[v.parent_version]
                parent_lane, parent_depth = parent.lane, parent.depth
            elif tree.origin is not None:
                parent_lane, parent_depth = tree.origin.lane, tree.origin.depth
            if parent_lane is None or parent_depth is None:
                continue
            assert v.depth == parent_depth + 1
            assert v.lane >= parent_lane
            if v.lane != parent_lane:
                gutters.setdefault(parent_depth, []).append(
                    (parent_lane, v.lane, v.parent_version or 0))
        for spans in gutters.values():
            for top, bottom, parent in spans:
                for other_top, other_bottom, other_parent in spans:
                    if parent != other_parent:
                        assert bottom < other_top or other_bottom < top
