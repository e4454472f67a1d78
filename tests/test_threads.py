"""Walking the turn tree: undo targets and the history listing."""

from __future__ import annotations

from bot.core.threads import StoredPart, Turn, TurnStatus, format_history, undo_target


def turn(id: int, parent: int | None, role: str, text: str = "", version: int | None = None,
         status: TurnStatus = TurnStatus.OK) -> Turn:
    return Turn(id, 1, parent, role, status, "u", "Ann" if role == "user" else "",
                (StoredPart(text=text),), 0.0, version)


PATH = [turn(1, None, "user", "photo"), turn(2, 1, "model", "", 1),
        turn(3, 2, "user", "hat"), turn(4, 3, "model", "", 2),
        turn(5, 4, "user", "scarf"), turn(6, 5, "model", "", 3)]


def test_undo_one_goes_to_the_previous_version() -> None:
    target, steps = undo_target(PATH, 1)
    assert (target.id if target else None, steps) == (4, 1)


def test_undo_past_the_first_version_lands_on_the_original() -> None:
    target, steps = undo_target(PATH, 10)
    assert (target.id if target else None, steps) == (1, 3)


def test_undo_with_no_versions_does_nothing() -> None:
    assert undo_target(PATH[:1], 1) == (None, 0)


def test_history_marks_current_and_other_branches() -> None:
    branch = [turn(7, 2, "user", "a red scarf instead"), turn(8, 7, "model", "", 4)]
    text = format_history(PATH + branch, head_id=8)
    lines = text.splitlines()
    assert lines[1].startswith("v1: photo — Ann")
    assert "v2 (from v1): hat — Ann  [other branch]" in text
    assert "v4 (from v1): a red scarf instead — Ann  ← current" in text


def test_a_long_history_lists_the_newest_versions_and_the_current_one() -> None:
    turns = [turn(1, None, "user", "photo")]
    for number in range(1, 101):
        turns += [turn(2 * number, 2 * number - 1, "model", "", number),
                  turn(2 * number + 1, 2 * number, "user", f"step {number}")]
    lines = format_history(turns, head_id=10).splitlines()  # v5 is current
    assert lines[1] == "(40 older versions not listed.)"
    listed = [line.split(" ", 1)[0].rstrip(":") for line in lines[2:]]
    assert listed == ["v5"] + [f"v{n}" for n in range(42, 101)]
    assert lines[2].endswith("← current")
