"""The context policy keeps requests bounded while keeping what the edit needs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.core.events import ChatKey
from bot.core.store import NewImage, NewPart
from bot.core.threads import ImageRef, Turn
from bot.models.base import Blob
from bot.models.request_context import (
    OMITTED_IMAGE,
    REMOVED_IMAGE,
    ContextPolicy,
    b64_len,
    build_context,
    without_removed_images,
)
from storage.sqlite import SqliteDatabase as Store

CHAT = ChatKey("console", "local")


def image(n: int, size: int = 100_000) -> NewImage:
    return NewImage(n.to_bytes(4, "big") * (size // 4), "image/png", 64, 64)


def long_thread(store: Store, turns: int, *, size: int = 100_000) -> list[Turn]:
    """A photo, then ``turns`` edits, each answered with a new image and a signature."""
    thread = store.create_thread(CHAT, lane="L")
    path = [store.add_turn(thread.id, parent_id=None, role="user",
                           parts=[NewPart(image=image(0, size)), NewPart(text="edit 0")])]
    for i in range(1, turns + 1):
        model = store.add_turn(thread.id, parent_id=path[-1].id, role="model",
                               parts=[NewPart(text=f"done {i}", thought_signature="s" * 500),
                                      NewPart(image=image(i, size), thought_signature="S" * 800)])
        user = store.add_turn(thread.id, parent_id=model.id, role="user",
                              parts=[NewPart(text=f"edit {i}")])
        path += [model, user]
    return path


def loaded(store: Store) -> Callable[[ImageRef], Blob]:
    """Pictures read at once (the engine passes stored ones, read as the request is sent)."""
    return lambda ref: Blob(ref.mime_type, store.image_bytes(ref.sha256))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "c.db")


def test_short_thread_is_sent_whole_and_verbatim(store: Store) -> None:
    path = long_thread(store, 2)
    built = build_context(path, ContextPolicy(byte_budget=8_000_000, max_images=14),
                          loaded(store))
    assert [c.role for c in built.contents] == ["user", "model", "user", "model", "user"]
    model_parts = built.contents[1].parts
    assert model_parts[1].thought_signature == "S" * 800
    assert model_parts[1].image is not None
    assert built.images_sent == 3


def test_hundred_turn_thread_stays_under_budget_and_cap(store: Store) -> None:
    path = long_thread(store, 100)
    policy = ContextPolicy(byte_budget=1_000_000, max_images=3)
    built = build_context(path, policy, loaded(store))
    assert built.request_bytes <= policy.byte_budget
    assert built.images_sent <= 3
    # the image being edited (newest version) is always there, with its signature
    newest_version = path[-2]
    sent = [p for c in built.contents for p in c.parts if p.image is not None]
    assert any(p.image and p.image.data == store.image_bytes(newest_version.images[0].sha256)
               for p in sent)
    # older images are replaced by a marker, their text kept
    texts = [p.text for c in built.contents for p in c.parts if p.text]
    assert OMITTED_IMAGE in texts
    assert "edit 100" in texts and "done 99" in texts


def test_newest_user_images_always_go_even_with_many_versions(store: Store) -> None:
    path = long_thread(store, 10)
    last = path[-1]
    thread_id = last.thread_id
    fused = store.add_turn(thread_id, parent_id=last.parent_id, role="user",
                           parts=[NewPart(image=image(900)), NewPart(image=image(901)),
                                  NewPart(text="put the hat from the second on the first")])
    built = build_context([*path[:-1], fused], ContextPolicy(2_000_000, 3), loaded(store))
    sent = [p.image.data for c in built.contents for p in c.parts if p.image]
    assert image(900).data in sent and image(901).data in sent
    assert len(sent) == 3  # plus the image being edited


def test_image_cap_leaves_out_extra_album_images_and_says_so(store: Store) -> None:
    thread = store.create_thread(CHAT, lane="L")
    turn = store.add_turn(thread.id, parent_id=None, role="user",
                          parts=[*[NewPart(image=image(i)) for i in range(5)],
                                 NewPart(text="fuse")])
    built = build_context([turn], ContextPolicy(8_000_000, 3), loaded(store))
    assert built.images_sent == 3
    assert built.newest_images_capped == 2


def test_budget_counts_base64_size(store: Store) -> None:
    path = long_thread(store, 3, size=300_000)
    budget = b64_len(300_000) * 2 + 20_000
    built = build_context(path, ContextPolicy(budget, 14), loaded(store))
    assert built.images_sent == 2
    assert built.request_bytes <= budget


def test_conversation_always_opens_with_a_user_turn(store: Store) -> None:
    path = long_thread(store, 40, size=50_000)
    built = build_context(path, ContextPolicy(75_000, 3), loaded(store))
    assert built.contents[0].role == "user"
    assert len(built.contents) < len(path)  # the oldest turns were left out


def test_signatures_of_sent_images_count_against_the_budget(store: Store) -> None:
    thread = store.create_thread(CHAT, lane="L")
    parent = store.add_turn(thread.id, parent_id=None, role="user",
                            parts=[NewPart(image=image(0, 10_000)), NewPart(text="go")])
    path = [parent]
    for i in range(1, 30):
        model = store.add_turn(thread.id, parent_id=path[-1].id, role="model",
                               parts=[NewPart(image=image(i, 10_000),
                                              thought_signature="G" * 200_000)])
        user = store.add_turn(thread.id, parent_id=model.id, role="user",
                              parts=[NewPart(text=f"edit {i}")])
        path += [model, user]
    policy = ContextPolicy(byte_budget=1_000_000, max_images=14)
    built = build_context(path, policy, loaded(store))
    assert built.request_bytes <= policy.byte_budget
    assert built.images_sent < 14


def test_only_the_images_that_are_sent_are_loaded(store: Store) -> None:
    path = long_thread(store, 20)
    policy = ContextPolicy(byte_budget=1_000_000, max_images=3)
    read: list[str] = []

    def load(ref: ImageRef) -> Blob:
        read.append(ref.sha256)
        return Blob(ref.mime_type, store.image_bytes(ref.sha256))

    built = build_context(path, policy, load)
    assert len(read) == len(set(read)) == built.images_sent <= 3  # each sent one, once


def test_pictures_that_are_gone_become_a_marker_and_are_never_loaded(store: Store) -> None:
    thread = store.create_thread(CHAT, lane="L")
    photo = store.add_turn(thread.id, parent_id=None, role="user",
                           parts=[NewPart(image=image(1)), NewPart(text="paint it")])
    answer = store.add_turn(thread.id, parent_id=photo.id, role="model",
                            parts=[NewPart(image=image(2), thought=True),
                                   NewPart(image=image(3), thought_signature="S" * 800)])
    ask = store.add_turn(thread.id, parent_id=answer.id, role="user",
                         parts=[NewPart(image=image(4)), NewPart(text="with this hat")])
    gone = {photo.images[0].sha256, answer.parts[0].image.sha256,  # type: ignore[union-attr]
            answer.images[0].sha256}
    path = without_removed_images([photo, answer, ask], gone)
    assert [p.text for p in path[0].parts] == [REMOVED_IMAGE, "paint it"]
    assert [(p.text, p.thought_signature) for p in path[1].parts] == [(REMOVED_IMAGE, None)]
    assert path[2] == ask

    def load(ref: ImageRef) -> Blob:
        assert ref.sha256 not in gone, "a picture that is gone was asked for"
        return Blob(ref.mime_type, store.image_bytes(ref.sha256))

    built = build_context(path, ContextPolicy(max_images=14), load)
    assert built.images_sent == 1
    assert without_removed_images([photo], set()) == [photo]
