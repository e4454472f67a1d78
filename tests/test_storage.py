"""Storage on real SQLite files: the tree, images by hash, links, usage, restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.events import ChatKey
from bot.threads import TurnStatus
from storage.migrations import MIGRATIONS
from storage.sqlite import PRUNE_EVERY, NewImage, NewPart, Store

CHAT = ChatKey("telegram", "-100", None)
TOPIC = ChatKey("telegram", "-100", "7")
PNG = NewImage(b"\x89PNG fake bytes", "image/png", 10, 20)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "bot.db")


def test_schema_is_migrated_and_wal_is_on(store: Store) -> None:
    assert store.schema_version == len(MIGRATIONS)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert int(store.db.execute("PRAGMA busy_timeout").fetchone()[0]) >= 1000


def test_reopening_does_not_rerun_migrations(tmp_path: Path) -> None:
    Store(tmp_path / "a.db").close()
    again = Store(tmp_path / "a.db")  # would fail with "table threads already exists"
    assert again.schema_version == len(MIGRATIONS)


def test_turn_tree_and_path(store: Store) -> None:
    thread = store.create_thread(CHAT, created_by="1")
    u1 = store.add_turn(thread.id, parent_id=None, role="user",
                        parts=[NewPart(image=PNG), NewPart(text="watercolor")])
    m1 = store.add_turn(thread.id, parent_id=u1.id, role="model", parts=[NewPart(text="ok")])
    u2 = store.add_turn(thread.id, parent_id=m1.id, role="user", parts=[NewPart(text="hat")])
    m2 = store.add_turn(thread.id, parent_id=u2.id, role="model", parts=[NewPart(text="hat!")])
    branch = store.add_turn(thread.id, parent_id=m1.id, role="user",
                            parts=[NewPart(text="scarf")])
    assert [t.id for t in store.path(m2.id)] == [u1.id, m1.id, u2.id, m2.id]
    assert [t.id for t in store.path(branch.id)] == [u1.id, m1.id, branch.id]
    assert (m1.version, m2.version) == (1, 2)
    assert store.get_thread(thread.id).head_id == branch.id  # type: ignore[union-attr]


def test_images_are_stored_once_by_content(store: Store) -> None:
    thread = store.create_thread(CHAT)
    a = store.add_turn(thread.id, parent_id=None, role="user", parts=[NewPart(image=PNG)])
    store.add_turn(thread.id, parent_id=a.id, role="user", parts=[NewPart(image=PNG)])
    assert store.image_count() == 1
    assert store.image_bytes(a.images[0].sha256) == PNG.data


def test_signature_and_unknown_fields_round_trip_verbatim(store: Store) -> None:
    signature = "A" * 300_000
    thread = store.create_thread(CHAT)
    turn = store.add_turn(
        thread.id, parent_id=None, role="model",
        parts=[NewPart(image=PNG, thought_signature=signature, extra={"videoMetadata": {}}),
               NewPart(text="draft", thought=True)],
    )
    loaded = store.get_turn(turn.id)
    assert loaded is not None
    assert loaded.parts[0].thought_signature == signature
    assert loaded.parts[0].extra == {"videoMetadata": {}}
    assert loaded.parts[1].thought is True


def test_failed_turns_are_kept_and_found_for_retry(store: Store) -> None:
    thread = store.create_thread(CHAT)
    turn = store.add_turn(thread.id, parent_id=None, role="user",
                          parts=[NewPart(image=PNG), NewPart(text="x")], move_head=False)
    store.mark_failed(turn.id, "unavailable")
    failed = store.failed_children(None, thread.id)
    assert [t.id for t in failed] == [turn.id]
    assert failed[0].status is TurnStatus.FAILED
    assert store.get_thread(thread.id).head_id is None  # type: ignore[union-attr]


def test_message_links_find_turns_per_chat(store: Store) -> None:
    thread = store.create_thread(CHAT)
    turn = store.add_turn(thread.id, parent_id=None, role="model", parts=[NewPart(text="a")])
    store.link_message(CHAT, "55", turn)
    assert store.linked_turn(CHAT, "55") == turn
    assert store.linked_turn(ChatKey("telegram", "-200"), "55") is None


def test_topics_and_external_keys_are_separate_scopes(store: Store) -> None:
    a = store.create_thread(CHAT, external_key="1.0")
    b = store.create_thread(TOPIC, external_key="1.0")
    assert store.thread_by_key(CHAT, "1.0") == a
    assert store.thread_by_key(TOPIC, "1.0") == b
    store.set_current_thread(TOPIC, b.id)
    assert store.current_thread(CHAT) is None
    assert store.current_thread(TOPIC) == b


def test_delete_thread_forgets_turns_links_and_unshared_images(store: Store) -> None:
    keep = store.create_thread(CHAT)
    store.add_turn(keep.id, parent_id=None, role="user", parts=[NewPart(image=PNG)])
    gone = store.create_thread(CHAT)
    other = NewImage(b"other image", "image/png", 1, 1)
    t = store.add_turn(gone.id, parent_id=None, role="user",
                       parts=[NewPart(image=PNG), NewPart(image=other)])
    store.link_message(CHAT, "9", t)
    store.set_current_thread(CHAT, gone.id)
    store.delete_thread(gone.id)
    assert store.get_thread(gone.id) is None
    assert store.linked_turn(CHAT, "9") is None
    assert store.current_thread(CHAT) is None
    assert store.image_count() == 1  # the shared one stays


def test_usage_sums_per_user_and_chat(store: Store) -> None:
    for user, ok in (("1", True), ("1", False), ("2", True)):
        store.record_usage(chat=CHAT, user_id=user, thread_id=None, model="m", ok=ok,
                           images=1 if ok else 0, prompt_tokens=10, output_tokens=100)
    mine = store.usage(platform="telegram", chat_id="-100", user_id="1")
    assert (mine.calls, mine.failed, mine.images, mine.prompt_tokens) == (2, 1, 1, 20)
    assert store.usage(platform="telegram", chat_id="-100").calls == 3
    assert store.stats()["model calls"] == 3


def test_claim_event_once_even_across_restart(tmp_path: Path) -> None:
    first = Store(tmp_path / "e.db")
    assert first.claim_event("telegram", "1:42") is True
    assert first.claim_event("telegram", "1:42") is False
    first.close()
    assert Store(tmp_path / "e.db").claim_event("telegram", "1:42") is False


def test_everything_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    s = Store(path)
    thread = s.create_thread(CHAT)
    turn = s.add_turn(thread.id, parent_id=None, role="user", parts=[NewPart(image=PNG)])
    s.set_current_thread(CHAT, thread.id)
    s.close()
    again = Store(path)
    assert again.current_thread(CHAT) == again.get_thread(thread.id)
    assert again.get_turn(turn.id) == turn


def test_a_second_connection_sees_committed_turns(tmp_path: Path, store: Store) -> None:
    thread = store.create_thread(CHAT)
    store.add_turn(thread.id, parent_id=None, role="user", parts=[NewPart(text="hi")])
    other = sqlite3.connect(store.filename)
    assert other.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 1


def test_old_delivery_keys_are_swept_as_new_ones_arrive(store: Store) -> None:
    store.claim_event("slack", "ancient")
    store.db.execute("UPDATE seen_events SET seen_at = seen_at - 30 * 86400")
    store.db.conn.commit()
    for i in range(PRUNE_EVERY):
        store.claim_event("slack", f"new-{i}")
    keys = {r[0] for r in store.db.execute("SELECT event_key FROM seen_events").fetchall()}
    assert "ancient" not in keys and f"new-{PRUNE_EVERY - 1}" in keys
