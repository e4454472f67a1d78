"""The version tree of a thread: what ``/history``'s contact sheet and ``/export`` draw.

A thread's turns form a tree in which user turns and model turns alternate, with detours:
failed attempts, an undo back to the original photo followed by a new prompt, several
messages before an answer. People think in *versions* instead — the pictures the bot
made — and in where each one came from. :func:`build_version_tree` reduces the turn tree
to that: every delivered model answer is a version, its parent is the nearest earlier
version on its path (user turns skipped), and the pictures users sent before any version
form the *origin* the first versions grow from.

Both renderers need the same placement so a branched tree reads the same in the chat and
in the export, so placement lives here too: a *lane* is a row of versions that continue
one another, a version's *depth* is its distance from the origin. The oldest child of a
version stays in its parent's lane; every other child opens a new lane below. Lanes are
ordered so that a connector from a parent down to a child lane never crosses another
lane's tiles: lanes forking from later versions come first, each followed by its own
sub-lanes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.core.threads import ImageRef, Turn, TurnStatus


@dataclass(frozen=True)
class Origin:
    """The pictures users sent before any version existed: the root of the tree."""

    images: tuple[ImageRef, ...]
    author_names: tuple[str, ...]  # who sent them, each name once, in order
    created_at: float  # when the first of them arrived
    is_current: bool  # the head sits before the first version (e.g. after undoing all)

    lane: int = 0
    depth: int = 0
    label: str = "original"


@dataclass(frozen=True)
class VersionNode:
    """One version: a delivered model answer, with the request that led to it."""

    version: int
    turn_id: int
    parent_version: int | None  # None: grown from the origin (or from a prompt alone)
    prompt: str  # the text of the user turn that asked for it; "" when there was none
    prompt_turn_id: int | None
    asked_by_id: str
    asked_by_name: str
    asked_at: float | None  # when the prompt arrived
    created_at: float  # when the answer arrived
    model: str
    images: tuple[ImageRef, ...]  # what the model made
    inputs: tuple[ImageRef, ...]  # pictures users added since the parent version
    lane: int
    depth: int
    is_current: bool

    @property
    def label(self) -> str:
        return f"v{self.version}"


@dataclass(frozen=True)
class VersionTree:
    """The versions of one thread, placed in lanes, with the current one known."""

    origin: Origin | None
    versions: tuple[VersionNode, ...]  # in version order
    lane_count: int
    max_depth: int

    @property
    def current(self) -> VersionNode | None:
        return next((v for v in self.versions if v.is_current), None)

    def version(self, number: int) -> VersionNode:
        """The node of version ``number``; KeyError when the thread has no such version."""
        for node in self.versions:
            if node.version == number:
                return node
        raise KeyError(number)



def is_version(turn: Turn) -> bool:
    """Only delivered model answers are versions; failed or pending ones are not shown."""
    return turn.is_model and turn.status is TurnStatus.OK and turn.version is not None


def build_version_tree(turns: Iterable[Turn], head_id: int | None) -> VersionTree:
    """Reduce a thread's turns to its version tree; ``head_id`` decides the current version.

    The current version is the newest version on the path from the root to the head, so
    a head on a failed attempt or a pending prompt still marks the picture it continues.
    """
    by_id = {t.id: t for t in turns}
    model_turns = sorted((t for t in by_id.values() if is_version(t)),
                         key=lambda t: (t.version or 0, t.id))
    head_path = _ancestors(by_id, head_id)
    current_turn = next((t for t in reversed(head_path) if is_version(t)), None)

    parents: dict[int, Turn | None] = {}
    between: dict[int, list[Turn]] = {}  # user turns from the parent version down to it
    for turn in model_turns:
        users: list[Turn] = []
        parent: Turn | None = None
        for ancestor in reversed(_ancestors(by_id, turn.parent_id)):
            if is_version(ancestor):
                parent = ancestor
                break
            if ancestor.role == "user":
                users.append(ancestor)
        users.reverse()
        parents[turn.id] = parent
        between[turn.id] = users
    _break_cycles(parents)

    first_generation = [t for t in model_turns if parents[t.id] is None]
    origin = _origin(first_generation, between, head_path, current_turn)
    lanes, depths, lane_count = _place(model_turns, parents, has_origin=origin is not None)

    nodes = []
    for turn in model_turns:
        users = between[turn.id]
        asker = next((u for u in reversed(users) if u.id == turn.parent_id), None)
        inputs = _unique(img for u in users for img in u.images)
        nodes.append(VersionNode(
            version=turn.version or 0,
            turn_id=turn.id,
            parent_version=parent.version if (parent := parents[turn.id]) else None,
            prompt=asker.text if asker else "",
            prompt_turn_id=asker.id if asker else None,
            asked_by_id=asker.author_id if asker else "",
            asked_by_name=asker.author_name if asker else "",
            asked_at=asker.created_at if asker else None,
            created_at=turn.created_at,
            model=turn.author_name,
            images=tuple(turn.images),
            inputs=inputs,
            lane=lanes[turn.id],
            depth=depths[turn.id],
            is_current=current_turn is not None and turn.id == current_turn.id,
        ))
    max_depth = max((n.depth for n in nodes), default=0)
    return VersionTree(origin, tuple(nodes), lane_count if nodes or origin else 0, max_depth)


def _ancestors(by_id: dict[int, Turn], turn_id: int | None) -> list[Turn]:
    """Root → ``turn_id`` inclusive; stops at a missing parent or a loop instead of failing."""
    path: list[Turn] = []
    seen: set[int] = set()
    while turn_id is not None and turn_id in by_id and turn_id not in seen:
        seen.add(turn_id)
        path.append(by_id[turn_id])
        turn_id = by_id[turn_id].parent_id
    path.reverse()
    return path


def _break_cycles(parents: dict[int, Turn | None]) -> None:
    """Make a version that is its own ancestor (a damaged tree) a root, so all get placed."""
    for turn_id in parents:
        seen = {turn_id}
        parent = parents[turn_id]
        while parent is not None and parent.id not in seen:
            seen.add(parent.id)
            parent = parents.get(parent.id)
        if parent is not None and parent.id == turn_id:
            parents[turn_id] = None


def _unique(images: Iterable[ImageRef]) -> tuple[ImageRef, ...]:
    seen: set[str] = set()
    kept = []
    for image in images:
        if image.sha256 not in seen:
            seen.add(image.sha256)
            kept.append(image)
    return tuple(kept)


def _origin(first_generation: list[Turn], between: dict[int, list[Turn]],
            head_path: list[Turn], current_turn: Turn | None) -> Origin | None:
    """Pictures sent on the way to a first-generation version (or to the head, if none)."""
    senders: dict[int, Turn] = {}
    for turn in first_generation:
        senders.update((u.id, u) for u in between[turn.id])
    if current_turn is None:
        senders.update((t.id, t) for t in head_path if t.role == "user")
    with_images = [senders[i] for i in sorted(senders) if senders[i].images]
    if not with_images:
        return None
    names = tuple(dict.fromkeys(t.author_name for t in with_images if t.author_name))
    return Origin(
        images=_unique(img for t in with_images for img in t.images),
        author_names=names,
        created_at=min(t.created_at for t in with_images),
        is_current=current_turn is None and bool(head_path),
    )


def _place(model_turns: list[Turn], parents: dict[int, Turn | None], *, has_origin: bool
           ) -> tuple[dict[int, int], dict[int, int], int]:
    """Lane and depth per model turn id, and how many lanes there are.

    Depth-first over lanes: a lane follows oldest children as far as it goes; its other
    children open lanes of their own, those forking furthest along first, so connectors
    from a parent to its child lanes run past only tiles further right.
    """
    children: dict[int | None, list[int]] = {}
    for turn in model_turns:  # already in version order, so children come oldest first
        parent = parents[turn.id]
        children.setdefault(parent.id if parent else None, []).append(turn.id)

    lanes: dict[int, int] = {}
    depths: dict[int, int] = {}
    lane_count = 1 if has_origin else 0
    first_depth = 1 if has_origin else 0
    # Lanes still to place: (first turn id, its depth, whether it continues the origin's lane)
    stack = [(turn_id, first_depth, has_origin and index == 0)
             for index, turn_id in enumerate(children.get(None, []))]
    stack.reverse()
    while stack:
        turn_id, depth, continues_origin = stack.pop()
        if continues_origin:
            lane = 0
        else:
            lane, lane_count = lane_count, lane_count + 1
        chain = [turn_id]
        while children.get(chain[-1]):
            chain.append(children[chain[-1]][0])
        forks: list[tuple[int, int, bool]] = []
        for offset, member in enumerate(chain):
            lanes[member] = lane
            depths[member] = depth + offset
        for offset, member in reversed(list(enumerate(chain))):
            forks.extend((kid, depth + offset + 1, False) for kid in children.get(member, [])[1:])
        stack.extend(reversed(forks))
    return lanes, depths, lane_count
