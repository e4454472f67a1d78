"""The Store port on every backend: the turn tree, images by hash, links, usage, and the
inbox with its per-lane order, leases and resumable progress."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.events import Attachment, AttachmentKind, ChatKey, Incoming, Sender
from bot.core.failures import FailureKind
from bot.core.ports.inbox import InboxStatus, LinkedTurn
from bot.core.ports.privacy import AuthoredSummary, PurgeReport
from bot.core.ports.stats import StoreStats
from bot.core.ports.threads import NewImage, NewPart
from bot.core.ports.usage import SpendLimit, SpendScope
from bot.core.store import Store
from bot.core.threads import REMOVED_BY_AUTHOR, Role, TurnStatus
from tests.backends import BACKENDS, execute, open_backend

CHAT = ChatKey("telegram", "-100", None)
TOPIC = ChatKey("telegram", "-100", "7")
PNG = NewImage(b"\x89PNG fake bytes", "image/png", 10, 20)
PLATFORMS = ("telegram", "slack", "console")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with open_backend(request.param, tmp_path) as opened:
        yield opened


def event(message_id: str, *, chat: ChatKey = CHAT, text: str = "hi",
          group_id: str | None = None) -> Incoming:
    return Incoming(chat=chat, message_id=message_id, sender=Sender("1", "Ann", "ann"),
                    text=text, group_id=group_id,
                    attachments=(Attachment(AttachmentKind.IMAGE, ref="f1", size=3,
                                            data=b"\x00\xff\x10"),))


# ---------------------------------------------------------------------- the turn tree
async def test_turn_tree_and_path(store: Store) -> None:
    thread = await store.create_thread(CHAT, lane="L", created_by="1")
    u1 = await store.add_turn(thread.id, parent_id=None, role=Role.USER,
                              parts=[NewPart(image=PNG), NewPart(text="watercolor")])
    m1 = await store.add_turn(thread.id, parent_id=u1.id, role=Role.MODEL,
                              parts=[NewPart(text="ok")])
    u2 = await store.add_turn(thread.id, parent_id=m1.id, role=Role.USER,
                              parts=[NewPart(text="hat")])
    m2 = await store.add_turn(thread.id, parent_id=u2.id, role=Role.MODEL,
                              parts=[NewPart(text="hat!")])
    branch = await store.add_turn(thread.id, parent_id=m1.id, role=Role.USER,
                                  parts=[NewPart(text="scarf")])
    assert [t.id for t in await store.path(m2.id)] == [u1.id, m1.id, u2.id, m2.id]
    assert [t.id for t in await store.path(branch.id)] == [u1.id, m1.id, branch.id]
    assert (m1.version, m2.version) == (1, 2)
    current = await store.get_thread(thread.id)
    assert current is not None and current.head_id == branch.id and current.lane == "L"


async def test_images_are_stored_once_by_content(store: Store) -> None:
    thread = await store.create_thread(CHAT, lane="L")
    a = await store.add_turn(thread.id, parent_id=None, role=Role.USER, parts=[NewPart(image=PNG)])
    b = await store.add_turn(thread.id, parent_id=a.id, role=Role.USER, parts=[NewPart(image=PNG)])
    assert a.images[0].sha256 == b.images[0].sha256
    assert await store.image_bytes(a.images[0].sha256) == PNG.data
    assert (await store.stats()).stored_images == 1


async def test_signature_and_unknown_fields_round_trip_verbatim(store: Store) -> None:
    signature = "A" * 300_000
    thread = await store.create_thread(CHAT, lane="L")
    turn = await store.add_turn(
        thread.id, parent_id=None, role=Role.MODEL,
        parts=[NewPart(image=PNG, thought_signature=signature, extra={"videoMetadata": {}}),
               NewPart(text="draft", thought=True)],
    )
    loaded = await store.get_turn(turn.id)
    assert loaded is not None
    assert loaded.parts[0].thought_signature == signature
    assert loaded.parts[0].extra == {"videoMetadata": {}}
    assert loaded.parts[1].thought is True


async def test_failed_turns_are_kept_and_found_for_retry(store: Store) -> None:
    thread = await store.create_thread(CHAT, lane="L")
    turn = await store.add_turn(thread.id, parent_id=None, role=Role.USER,
                                parts=[NewPart(image=PNG), NewPart(text="x")], move_head=False)
    await store.mark_failed(turn.id, "unavailable")
    failed = await store.failed_children(None, thread.id)
    assert [t.id for t in failed] == [turn.id]
    assert failed[0].status is TurnStatus.FAILED
    current = await store.get_thread(thread.id)
    assert current is not None and current.head_id is None


async def test_an_undelivered_answer_becomes_current_only_when_delivered(store: Store) -> None:
    thread = await store.create_thread(CHAT, lane="L")
    user = await store.add_turn(thread.id, parent_id=None, role=Role.USER,
                                parts=[NewPart(text="draw")], move_head=False)
    answer = await store.add_turn(thread.id, parent_id=user.id, role=Role.MODEL,
                                  parts=[NewPart(image=PNG)], status=TurnStatus.UNDELIVERED,
                                  move_head=False)
    assert [t.id for t in await store.undelivered(thread.id)] == [answer.id]
    before = await store.get_thread(thread.id)
    assert before is not None and before.head_id is None
    await store.mark_delivered(answer, chat=CHAT, message_ids=["501", "502"], move_head=True)
    after = await store.get_thread(thread.id)
    assert after is not None and after.head_id == answer.id
    assert await store.undelivered(thread.id) == []
    linked = await store.linked_turn(CHAT, "502")
    assert linked is not None and linked.id == answer.id and linked.status is TurnStatus.OK


async def test_message_links_find_turns_per_chat(store: Store) -> None:
    thread = await store.create_thread(CHAT, lane="L")
    turn = await store.add_turn(thread.id, parent_id=None, role=Role.MODEL,
                                parts=[NewPart(text="a")])
    await store.link_message(CHAT, "55", turn)
    assert await store.linked_turn(CHAT, "55") == turn
    assert await store.linked_turn(ChatKey("telegram", "-200"), "55") is None


async def test_topics_and_external_keys_are_separate_scopes(store: Store) -> None:
    a = await store.create_thread(CHAT, lane="a", external_key="1.0")
    b = await store.create_thread(TOPIC, lane="b", external_key="1.0")
    assert await store.thread_by_key(CHAT, "1.0") == a
    assert await store.thread_by_key(TOPIC, "1.0") == b
    await store.set_current_thread(TOPIC, b.id)
    assert await store.current_thread(CHAT) is None
    assert await store.current_thread(TOPIC) == b


async def test_delete_thread_forgets_turns_links_and_unshared_images(store: Store) -> None:
    keep = await store.create_thread(CHAT, lane="k")
    await store.add_turn(keep.id, parent_id=None, role=Role.USER, parts=[NewPart(image=PNG)])
    gone = await store.create_thread(CHAT, lane="g")
    other = NewImage(b"other image", "image/png", 1, 1)
    t = await store.add_turn(gone.id, parent_id=None, role=Role.USER,
                             parts=[NewPart(image=PNG), NewPart(image=other)])
    await store.link_message(CHAT, "9", t)
    await store.set_current_thread(CHAT, gone.id)
    await store.delete_thread(gone.id)
    assert await store.get_thread(gone.id) is None
    assert await store.linked_turn(CHAT, "9") is None
    assert await store.current_thread(CHAT) is None
    assert (await store.stats()).stored_images == 1  # the shared one stays
    with pytest.raises(KeyError):
        await store.image_bytes(t.images[1].sha256)


async def test_usage_sums_per_user_and_chat(store: Store) -> None:
    for user, ok in (("1", True), ("1", False), ("2", True)):
        await store.record_usage(chat=CHAT, user_id=user, thread_id=None, model="m", ok=ok,
                                 images=1 if ok else 0, prompt_tokens=10, output_tokens=100)
    mine = await store.usage(platform="telegram", chat_id="-100", user_id="1")
    assert (mine.calls, mine.failed, mine.images, mine.prompt_tokens) == (2, 1, 1, 20)
    assert (await store.usage(platform="telegram", chat_id="-100")).calls == 3
    assert (await store.stats()).model_calls == 3


# ---------------------------------------------------------------------- the inbox
async def test_usage_counts_money_and_a_period(store: Store) -> None:
    other = ChatKey("telegram", "-200")
    await store.record_usage(chat=CHAT, user_id="1", thread_id=None, model="m", ok=True,
                             cost_micros=40_000, at=1_000.0)
    await store.record_usage(chat=CHAT, user_id="1", thread_id=None, model="m", ok=True,
                             cost_micros=130_000, at=2_000.0)
    await store.record_usage(chat=other, user_id="1", thread_id=None, model="m", ok=False,
                             failure=FailureKind.REFUSED, cost_micros=5, at=2_500.0)
    assert (await store.usage(platform="telegram", user_id="1")).cost_micros == 170_005
    recent = await store.usage(platform="telegram", chat_id="-100", since=1_500.0)
    assert (recent.calls, recent.cost_micros) == (1, 130_000)
    assert (await store.usage(platform="slack")).cost_micros == 0


async def test_call_report_has_failures_latency_percentiles_and_busiest_chats(
    store: Store,
) -> None:
    busy, quiet = ChatKey("slack", "C1"), ChatKey("telegram", "-5")
    for latency in range(1, 21):  # 20 calls: 1..20 s
        await store.record_usage(chat=busy, user_id="U", thread_id=None, model="m", ok=True,
                                 cost_micros=1_000, latency_ms=latency * 1000, at=100.0)
    await store.record_usage(chat=quiet, user_id="7", thread_id=None, model="m", ok=False,
                             failure=FailureKind.RATE_LIMITED, latency_ms=None, at=100.0)
    await store.record_usage(chat=quiet, user_id="7", thread_id=None, model="m", ok=False,
                             failure=FailureKind.REFUSED, cost_micros=900, at=100.0)
    await store.record_usage(chat=quiet, user_id="7", thread_id=None, model="m", ok=False,
                             failure=FailureKind.REFUSED, at=100.0)
    await store.record_usage(chat=quiet, user_id="7", thread_id=None, model="m", ok=True,
                             cost_micros=10**6, at=10.0)  # before the period
    report = await store.call_report(since=50.0, top=1)
    assert report.calls == 23
    assert list(report.failures.items()) == [(FailureKind.REFUSED, 2),
                                             (FailureKind.RATE_LIMITED, 1)]
    assert report.cost_micros == 20_900
    assert (report.latency_p50_ms, report.latency_p95_ms) == (10_000, 19_000)
    assert [(c.platform, c.chat_id, c.calls) for c in report.busiest] == [("slack", "C1", 20)]
    empty = await store.call_report(since=10_000.0)
    assert (empty.calls, empty.latency_p50_ms, empty.busiest) == (0, None, ())


async def test_reservations_stop_the_next_caller_at_the_limit(store: Store) -> None:
    day = SpendLimit("user_daily", SpendScope.USER, since=1_000.0, limit_micros=100)
    chat_limit = SpendLimit("chat_daily", SpendScope.CHAT, since=1_000.0, limit_micros=150)
    await store.record_usage(chat=CHAT, user_id="1", thread_id=None, model="m", ok=True,
                             cost_micros=50, at=1_100.0)
    await store.record_usage(chat=CHAT, user_id="1", thread_id=None, model="m", ok=True,
                             cost_micros=500, at=900.0)  # yesterday: not counted

    async def reserve(user: str, amount: int, *, calls: int = 1, event: int = 1,
                      now: float = 1_200.0) -> SpendLimit | None:
        return await store.reserve_spend(
            chat=CHAT, user_id=user, event_id=event, amount_micros=amount, calls=calls,
            limits=[day, chat_limit], now=now, expires_at=now + 600,
        )

    assert await reserve("1", 30) is None  # 50 spent + 30 held
    assert await reserve("1", 30) == day  # would be 110
    assert await reserve("2", 30, calls=2) is None  # another person: the chat holds 140
    # the reservations expire: a crashed call does not hold the money for ever
    assert await reserve("1", 30, now=1_900.0) is None
    # the chat's limit counts everyone's reservations in it
    assert await reserve("3", 80, now=1_900.0) == chat_limit


async def test_recording_a_call_replaces_one_reservation_and_release_frees_the_rest(
    store: Store,
) -> None:
    limit = SpendLimit("chat_monthly", SpendScope.CHAT, since=0.0, limit_micros=100)
    args = {"chat": CHAT, "user_id": "1", "amount_micros": 40, "limits": [limit],
            "now": 10.0, "expires_at": 1e12}
    assert await store.reserve_spend(event_id=7, calls=2, **args) is None  # 80 held
    assert await store.reserve_spend(event_id=8, calls=1, **args) == limit
    await store.record_usage(chat=CHAT, user_id="1", thread_id=None, model="m", ok=True,
                             cost_micros=5, at=10.0, event_id=7)  # 5 spent + 40 held
    assert await store.reserve_spend(event_id=8, calls=1, **args) is None  # 85
    await store.release_spend(7)  # 5 spent + 40 held by event 8
    assert await store.reserve_spend(event_id=9, calls=1, **args) is None


async def test_chat_settings_are_kept_per_chat_and_removable(store: Store) -> None:
    assert await store.chat_settings(CHAT) == {}
    await store.set_chat_setting(CHAT, "aspect", "16:9", changed_by="1")
    await store.set_chat_setting(TOPIC, "language", "zh_Hans", changed_by="1")  # whole chat
    await store.set_chat_setting(CHAT, "aspect", "auto", changed_by="2")
    await store.set_chat_setting(ChatKey("slack", "-100"), "aspect", "1:1", changed_by="U")
    assert await store.chat_settings(CHAT) == {"aspect": "auto", "language": "zh_Hans"}
    await store.set_chat_setting(CHAT, "aspect", None, changed_by="1")
    assert await store.chat_settings(TOPIC) == {"language": "zh_Hans"}


async def test_a_message_is_stored_once_however_often_it_arrives(store: Store) -> None:
    first, new = await store.inbox_add(event("10"), lane="L")
    again, new_again = await store.inbox_add(event("10", text="changed"), lane="L")
    assert new and not new_again
    assert again.id == first.id and again.event.text == "hi"
    assert again.event.attachments[0].data == b"\x00\xff\x10"  # bytes round-trip
    assert again.event.sender.username == "ann"


async def test_a_lane_runs_one_event_at_a_time_in_arrival_order(store: Store) -> None:
    a1, _ = await store.inbox_add(event("1"), lane="A")
    a2, _ = await store.inbox_add(event("2"), lane="A")
    b1, _ = await store.inbox_add(event("3"), lane="B")
    claimed = await store.inbox_claim("p1", limit=10, lease_seconds=60, platforms=PLATFORMS)
    assert [e.id for e in claimed] == [a1.id, b1.id]
    assert all(e.status is InboxStatus.PROCESSING and e.attempts == 1 for e in claimed)
    # a2 waits for a1, even for another process
    assert await store.inbox_claim("p2", limit=10, lease_seconds=60, platforms=PLATFORMS) == []
    assert await store.inbox_waiting_before("A", a2.id) == 1
    await store.inbox_finish([a1.id], status=InboxStatus.DONE)
    [next_one] = await store.inbox_claim("p2", limit=10, lease_seconds=60,
                                         platforms=PLATFORMS)
    assert next_one.id == a2.id
    assert await store.inbox_waiting_before("A", a2.id) == 0


async def test_events_of_platforms_nobody_serves_stay_stored(store: Store) -> None:
    slack = ChatKey("slack", "C1")
    await store.inbox_add(event("1", chat=slack), lane="S")
    assert await store.inbox_claim("p", limit=5, lease_seconds=60,
                                   platforms=["telegram"]) == []
    assert len(await store.inbox_claim("p", limit=5, lease_seconds=60,
                                       platforms=["slack"])) == 1


async def test_an_expired_or_released_lease_can_be_claimed_again(store: Store) -> None:
    entry, _ = await store.inbox_add(event("1"), lane="A")
    [first] = await store.inbox_claim("dead", limit=1, lease_seconds=-1, platforms=PLATFORMS)
    [again] = await store.inbox_claim("alive", limit=1, lease_seconds=60, platforms=PLATFORMS)
    assert first.id == again.id == entry.id and again.attempts == 2
    assert await store.inbox_claim("third", limit=1, lease_seconds=60,
                                   platforms=PLATFORMS) == []
    await store.inbox_release("alive")
    [third] = await store.inbox_claim("third", limit=1, lease_seconds=60,
                                      platforms=PLATFORMS)
    assert third.id == entry.id


async def test_renewing_keeps_a_lease_alive(store: Store) -> None:
    await store.inbox_add(event("1"), lane="A")
    await store.inbox_claim("p1", limit=1, lease_seconds=-1, platforms=PLATFORMS)
    await store.inbox_renew("p1", lease_seconds=60)
    assert await store.inbox_claim("p2", limit=1, lease_seconds=60, platforms=PLATFORMS) == []


async def test_a_process_whose_lease_was_taken_over_may_not_start_a_call(
        store: Store) -> None:
    """The fence against two model calls for one message: a process that stalled past its
    lease learns, as it is about to call, that another process holds the message now."""
    entry, _ = await store.inbox_add(event("1"), lane="A")
    thread = await store.create_thread(CHAT, lane="A")
    await store.inbox_claim("stalled", limit=1, lease_seconds=-1, platforms=PLATFORMS)
    [turn] = await store.add_linked_turns(
        thread.id, parent_id=None, turns=[[NewPart(image=PNG), NewPart(text="white")]],
        author_id="1", author_name="Ann", event_id=entry.id)
    [taken] = await store.inbox_claim("other", limit=1, lease_seconds=60, platforms=PLATFORMS)
    assert taken.id == entry.id

    assert not await store.inbox_mark_call_started(entry.id, owner="stalled")
    assert not await store.inbox_mark_linked_call_started(entry.id, turn.id, owner="stalled")
    stored = await store.inbox_get(entry.id)
    assert stored is not None and not stored.call_started
    assert not (await store.inbox_linked_turns(entry.id))[0].call_started

    assert await store.inbox_mark_call_started(entry.id, owner="other")
    await store.inbox_finish([entry.id], status=InboxStatus.DONE)
    assert not await store.inbox_mark_call_started(entry.id, owner="other")  # finished


async def test_progress_is_recorded_with_the_turns(store: Store) -> None:
    entry, _ = await store.inbox_add(event("1"), lane="A")
    thread = await store.create_thread(CHAT, lane="A")
    user = await store.add_turn(thread.id, parent_id=None, role=Role.USER,
                                parts=[NewPart(text="x")], move_head=False, event_id=entry.id)
    await store.inbox_claim("p1", limit=1, lease_seconds=60, platforms=PLATFORMS)
    assert await store.inbox_mark_call_started(entry.id, owner="p1")
    answer = await store.add_turn(thread.id, parent_id=user.id, role=Role.MODEL,
                                  parts=[NewPart(image=PNG)], status=TurnStatus.UNDELIVERED,
                                  move_head=False, event_id=entry.id)
    stored = await store.inbox_get(entry.id)
    assert stored is not None
    assert (stored.turn_id, stored.answer_turn_id, stored.call_started) == (
        user.id, answer.id, True)
    await store.mark_delivered(answer, chat=CHAT, message_ids=["7"], move_head=True,
                               done_event=entry.id)
    done = await store.inbox_get(entry.id)
    assert done is not None and done.status is InboxStatus.DONE


async def test_undo_moves_the_head_and_finishes_its_event_together(store: Store) -> None:
    entry, _ = await store.inbox_add(event("1"), lane="A")
    thread = await store.create_thread(CHAT, lane="A")
    turn = await store.add_turn(thread.id, parent_id=None, role=Role.USER,
                                parts=[NewPart(text="x")])
    await store.set_head(thread.id, None, done_event=entry.id)
    done = await store.inbox_get(entry.id)
    assert done is not None and done.status is InboxStatus.DONE
    current = await store.get_thread(thread.id)
    assert current is not None and current.head_id is None and turn.id


async def test_album_items_are_taken_together(store: Store) -> None:
    first, _ = await store.inbox_add(event("1", group_id="g"), lane="album")
    second, _ = await store.inbox_add(event("2", group_id="g"), lane="album")
    later, _ = await store.inbox_add(event("3"), lane="album")
    assert await store.inbox_group_latest("album", "g") >= first.received_at
    [claimed] = await store.inbox_claim("p", limit=5, lease_seconds=60, platforms=PLATFORMS)
    members = await store.inbox_join_group(claimed, "p", lease_seconds=60)
    assert [m.id for m in members] == [first.id, second.id]
    await store.inbox_finish([m.id for m in members], status=InboxStatus.DONE)
    [after] = await store.inbox_claim("p", limit=5, lease_seconds=60, platforms=PLATFORMS)
    assert after.id == later.id


async def test_finished_events_are_pruned_and_open_ones_kept(store: Store) -> None:
    done, _ = await store.inbox_add(event("1"), lane="A")
    waiting, _ = await store.inbox_add(event("2"), lane="B")
    await store.inbox_finish([done.id], status=InboxStatus.DONE)
    assert await store.inbox_prune(older_than=done.received_at + 3600) == 1
    assert await store.inbox_get(done.id) is None
    assert await store.inbox_get(waiting.id) is not None
    assert await store.inbox_lane_active("B") and not await store.inbox_lane_active("A")


async def test_the_recent_path_is_read_without_the_whole_thread(store: Store) -> None:
    thread = await store.create_thread(CHAT, lane="L")
    parent = None
    ids = []
    for n in range(30):
        turn = await store.add_turn(thread.id, parent_id=parent, role=Role.USER,
                                    parts=[NewPart(text=f"turn {n}")])
        ids.append(turn.id)
        parent = turn.id
    assert [t.id for t in await store.path(parent, limit=5)] == ids[-5:]
    assert [t.id for t in await store.path(parent)] == ids
    assert [t.id for t in await store.path(ids[2], limit=10)] == ids[:3]


async def test_a_broken_off_event_can_be_given_back_alone(store: Store) -> None:
    a, _ = await store.inbox_add(event("1"), lane="A")
    await store.inbox_add(event("2"), lane="B")
    await store.inbox_claim("p", limit=5, lease_seconds=60, platforms=PLATFORMS)
    await store.inbox_release("p", [a.id])
    [again] = await store.inbox_claim("q", limit=5, lease_seconds=60, platforms=PLATFORMS)
    assert again.id == a.id  # b stays with its owner


async def test_linked_turns_are_recorded_with_the_event_in_order(store: Store) -> None:
    entry, _ = await store.inbox_add(event("1"), lane="A")
    thread = await store.create_thread(CHAT, lane="A")
    start = await store.add_turn(thread.id, parent_id=None, role=Role.USER,
                                 parts=[NewPart(text="start")])
    other = NewImage(b"\x89PNG other bytes", "image/png", 30, 40)
    turns = await store.add_linked_turns(
        thread.id, parent_id=start.id,
        turns=[[NewPart(image=PNG), NewPart(text="white")],
               [NewPart(image=other), NewPart(text="white")],
               [NewPart(image=PNG), NewPart(text="white")]],
        author_id="1", author_name="Ann", event_id=entry.id,
    )
    assert [t.parent_id for t in turns] == [start.id] * 3
    assert all(t.role is Role.USER for t in turns)
    assert [t.images[0].width for t in turns] == [10, 30, 10]
    assert all(t.status is TurnStatus.OK and t.author_name == "Ann" for t in turns)
    current = await store.get_thread(thread.id)
    assert current is not None and current.head_id == start.id  # the head stays
    stored = await store.inbox_get(entry.id)
    assert stored is not None and stored.turn_id is None  # not a single-turn event
    assert await store.inbox_linked_turns(entry.id) == [
        LinkedTurn(t.id, call_started=False) for t in turns]

    await store.inbox_claim("p1", limit=1, lease_seconds=60, platforms=PLATFORMS)
    assert await store.inbox_mark_linked_call_started(entry.id, turns[1].id, owner="p1")
    assert [s.call_started for s in await store.inbox_linked_turns(entry.id)] == [
        False, True, False]
    loaded = await store.get_turn(turns[1].id)
    assert loaded is not None and loaded.images[0].sha256 == turns[1].images[0].sha256


async def test_an_event_without_linked_turns_has_none_and_pruning_forgets_them(
        store: Store) -> None:
    plain, _ = await store.inbox_add(event("1"), lane="A")
    assert await store.inbox_linked_turns(plain.id) == []
    linked, _ = await store.inbox_add(event("2"), lane="B")
    thread = await store.create_thread(CHAT, lane="B")
    await store.add_linked_turns(thread.id, parent_id=None,
                                 turns=[[NewPart(text="a")], [NewPart(text="b")]],
                                 author_id="1", author_name="Ann", event_id=linked.id)
    await store.inbox_finish([linked.id], status=InboxStatus.DONE)
    assert await store.inbox_prune(older_than=linked.received_at + 3600) == 1
    assert await store.inbox_linked_turns(linked.id) == []
    assert len(await store.turns_of(thread.id)) == 2  # the turns themselves stay


async def test_the_backlog_counts_the_unfinished_events_of_every_lane(store: Store) -> None:
    assert await store.inbox_backlog() == 0
    entries = [(await store.inbox_add(event(str(n)), lane=f"L{n % 3}"))[0] for n in range(6)]
    await store.inbox_claim("p", limit=2, lease_seconds=60, platforms=PLATFORMS)  # processing
    await store.inbox_finish([entries[4].id], status=InboxStatus.DONE)
    await store.inbox_finish([entries[5].id], status=InboxStatus.FAILED, error="x")
    assert await store.inbox_backlog() == 4  # received or processing, whoever holds them
    assert (await store.stats()).inbox_backlog == 4


async def test_an_unreadable_inbox_record_fails_alone_instead_of_blocking(store: Store) -> None:
    bad, _ = await store.inbox_add(event("1"), lane="A")
    good, _ = await store.inbox_add(event("2"), lane="B")
    broken = '{"chat": 1'  # cut off: not JSON any more
    await execute(store, "UPDATE inbox SET event = ? WHERE id = ?", [broken, bad.id])
    claimed = await store.inbox_claim("p", limit=5, lease_seconds=60, platforms=PLATFORMS)
    assert [e.id for e in claimed] == [good.id]
    [(status, error)] = await execute(store, "SELECT status, error FROM inbox WHERE id = ?",
                                      [bad.id])
    assert status == "failed" and "unreadable" in error
    assert await store.inbox_backlog() == 1  # the good one, now processing


# ---------------------------------------------------------------------- privacy, retention
OTHER_CHAT = ChatKey("telegram", "-300")
ANNS = NewImage(b"ann's own photo", "image/png", 4, 4)
SHARED = NewImage(b"a photo Bob sent too", "image/png", 4, 4)


async def test_missing_images_names_only_what_is_gone(store: Store) -> None:
    thread = await store.create_thread(CHAT, lane="L")
    turn = await store.add_turn(thread.id, parent_id=None, role=Role.USER,
                                parts=[NewPart(image=PNG)])
    stored = turn.images[0].sha256
    assert await store.missing_images([stored, "0" * 64]) == {"0" * 64}
    assert await store.missing_images([]) == set()


async def test_forget_author_replaces_their_words_and_pictures_and_keeps_the_tree(
    store: Store,
) -> None:
    thread = await store.create_thread(CHAT, lane="L", created_by="1")
    ann = await store.add_turn(thread.id, parent_id=None, role=Role.USER, author_id="1",
                               author_name="Ann",
                               parts=[NewPart(image=ANNS), NewPart(image=SHARED),
                                      NewPart(text="paint my cat")])
    answer = await store.add_turn(thread.id, parent_id=ann.id, role=Role.MODEL,
                                  author_id="bot", author_name="m",
                                  parts=[NewPart(text="v1", thought_signature="sig"),
                                         NewPart(image=PNG)])
    bob = await store.add_turn(thread.id, parent_id=answer.id, role=Role.USER, author_id="2",
                               author_name="Bob",
                               parts=[NewPart(image=SHARED), NewPart(text="add a hat")])
    await store.link_message(CHAT, "100", ann)
    elsewhere = await store.create_thread(OTHER_CHAT, lane="O")
    kept = await store.add_turn(elsewhere.id, parent_id=None, role=Role.USER, author_id="1",
                                author_name="Ann", parts=[NewPart(text="a dog")])

    summary = await store.authored_summary("telegram", "1", chat_id="-100")
    assert (summary.prompts, summary.images, summary.conversations) == (1, 2, 1)
    report = await store.forget_author("telegram", "1", chat_id="-100")
    assert (report.turns, report.images_erased) == (1, 1)  # SHARED is still Bob's

    forgotten = await store.get_turn(ann.id)
    assert forgotten is not None
    assert forgotten.text == REMOVED_BY_AUTHOR and forgotten.images == []
    assert forgotten.author_name == "" and forgotten.parent_id is None
    with pytest.raises(KeyError):
        await store.image_bytes(ann.images[0].sha256)
    assert await store.image_bytes(ann.images[1].sha256) == SHARED.data
    # navigation: the answer still follows the turn, the link still finds it
    assert [t.id for t in await store.path(bob.id)] == [ann.id, answer.id, bob.id]
    linked = await store.linked_turn(CHAT, "100")
    assert linked is not None and linked.id == ann.id
    # the bot's answer and Bob's turn are untouched; so is Ann's turn in another chat
    assert await store.get_turn(answer.id) == answer
    assert await store.get_turn(bob.id) == bob
    assert await store.get_turn(kept.id) == kept
    # done: a second time finds nothing left
    assert await store.authored_summary("telegram", "1", chat_id="-100") == AuthoredSummary()
    assert (await store.forget_author("telegram", "1", chat_id="-100")).turns == 0


async def test_forget_author_everywhere_stays_on_its_platform(store: Store) -> None:
    slack = ChatKey("slack", "-100")
    turns = []
    for chat in (CHAT, OTHER_CHAT, slack):
        thread = await store.create_thread(chat, lane=str(chat))
        turns.append(await store.add_turn(thread.id, parent_id=None, role=Role.USER,
                                          author_id="1", author_name="Ann",
                                          parts=[NewPart(text=f"in {chat}")]))
    report = await store.forget_author("telegram", "1", chat_id=None)
    assert report.turns == 2
    texts = [(await store.get_turn(t.id)).text for t in turns]  # type: ignore[union-attr]
    assert texts == [REMOVED_BY_AUTHOR, REMOVED_BY_AUTHOR, "in slack:-100"]


async def test_forget_author_empties_their_finished_inbox_records_only(store: Store) -> None:
    theirs, _ = await store.inbox_add(event("1", text="paint my cat"), lane="A")
    waiting, _ = await store.inbox_add(event("2", text="still to do"), lane="A")
    other = Incoming(chat=CHAT, message_id="3", sender=Sender("2", "Bob"), text="mine")
    bobs, _ = await store.inbox_add(other, lane="B")
    await store.inbox_finish([theirs.id, bobs.id], status=InboxStatus.DONE)

    report = await store.forget_author("telegram", "1", chat_id="-100")
    assert report.events_scrubbed == 1
    scrubbed = await store.inbox_get(theirs.id)
    assert scrubbed is not None
    assert (scrubbed.event.text, scrubbed.event.attachments) == ("", ())
    assert scrubbed.event.sender == Sender("1")
    assert scrubbed.status is InboxStatus.DONE and scrubbed.event.message_id == "1"
    untouched = await store.inbox_get(waiting.id)
    assert untouched is not None and untouched.event.text == "still to do"
    assert (await store.inbox_get(bobs.id)).event.text == "mine"  # type: ignore[union-attr]


async def test_purge_lets_go_of_idle_threads_pictures_only(store: Store) -> None:
    idle = await store.create_thread(CHAT, lane="idle")
    old = await store.add_turn(idle.id, parent_id=None, role=Role.USER,
                               parts=[NewPart(image=ANNS), NewPart(image=SHARED),
                                      NewPart(text="x")])
    stale = await store.add_turn(idle.id, parent_id=old.id, role=Role.MODEL,
                                 parts=[NewPart(image=PNG)], status=TurnStatus.UNDELIVERED,
                                 move_head=False)
    active = await store.create_thread(CHAT, lane="active")
    recent = await store.add_turn(active.id, parent_id=None, role=Role.USER,
                                  parts=[NewPart(image=SHARED)])
    # idle: no turn since before the active thread's newest one
    cutoff = recent.created_at
    assert stale.created_at < cutoff
    report = await store.purge_idle_images(idle_before=cutoff)
    assert (report.threads, report.images_erased, report.answers_expired) == (1, 2, 1)
    assert report.bytes_erased == len(ANNS.data) + len(PNG.data)
    gone = {old.images[0].sha256, stale.images[0].sha256}
    assert await store.missing_images([*gone, old.images[1].sha256]) == gone
    # the turns still say what was there
    again = await store.get_turn(old.id)
    assert again is not None and again.images == old.images and again.text == "x"
    expired = await store.get_turn(stale.id)
    assert expired is not None and expired.status is TurnStatus.FAILED
    assert await store.undelivered(idle.id) == []
    assert await store.purge_idle_images(idle_before=cutoff) == PurgeReport()


async def test_turn_costs_sum_the_calls_that_made_each_model_turn(store: Store) -> None:
    thread = await store.create_thread(CHAT, lane="L")
    user = await store.add_turn(thread.id, parent_id=None, role=Role.USER,
                                parts=[NewPart(text="x")])
    answer = await store.add_turn(thread.id, parent_id=user.id, role=Role.MODEL,
                                  parts=[NewPart(text="ok")])
    await store.record_usage(chat=CHAT, user_id="1", thread_id=thread.id, model="m",
                             ok=False, cost_micros=1_000)  # a failed call: no turn
    await store.record_usage(chat=CHAT, user_id="1", thread_id=thread.id, model="m",
                             ok=True, cost_micros=39_000, turn_id=answer.id)
    assert await store.turn_costs(thread.id) == {answer.id: 39_000}
    assert await store.turn_costs(thread.id + 1) == {}


# ---------------------------------------------------------------------- typed results
async def test_stats_count_the_whole_store_as_typed_figures(store: Store) -> None:
    assert await store.stats() == StoreStats()
    other = ChatKey("slack", "C1")
    thread = await store.create_thread(CHAT, lane="A")
    ask = await store.add_turn(thread.id, parent_id=None, role=Role.USER,
                               parts=[NewPart(image=PNG), NewPart(text="red")])
    await store.add_turn(thread.id, parent_id=ask.id, role=Role.MODEL,
                         parts=[NewPart(image=PNG)])  # the same picture: stored once
    await store.add_turn(thread.id, parent_id=ask.id, role=Role.MODEL,
                         parts=[NewPart(image=NewImage(b"v2", "image/png", 1, 1))],
                         status=TurnStatus.UNDELIVERED, move_head=False)
    failed = await store.add_turn(thread.id, parent_id=None, role=Role.USER,
                                  parts=[NewPart(text="blue")])
    await store.mark_failed(failed.id, "refused")
    await store.create_thread(other, lane="B")
    for chat, user, ok in ((CHAT, "1", True), (other, "1", False), (CHAT, "2", True)):
        await store.record_usage(chat=chat, user_id=user, thread_id=None, model="m", ok=ok)
    for n in range(3):
        await store.inbox_add(event(str(n)), lane="A")
    assert await store.stats() == StoreStats(
        threads=2, turns=4, versions=2, failed_turns=1, undelivered_answers=1,
        stored_images=2, image_bytes=len(PNG.data) + 2, users=3, model_calls=3,
        failed_calls=1, inbox_backlog=3)


async def test_roles_and_failure_kinds_come_back_as_enums(store: Store) -> None:
    thread = await store.create_thread(CHAT, lane="A")
    ask = await store.add_turn(thread.id, parent_id=None, role=Role.USER,
                               parts=[NewPart(text="hat")])
    answer = await store.add_turn(thread.id, parent_id=ask.id, role=Role.MODEL,
                                  parts=[NewPart(text="ok")])
    assert [t.role for t in await store.path(answer.id)] == [Role.USER, Role.MODEL]
    assert all(isinstance(t.role, Role) for t in await store.turns_of(thread.id))
    for failure in (FailureKind.NO_IMAGE, None, FailureKind.NO_IMAGE):
        await store.record_usage(chat=CHAT, user_id="1", thread_id=None, model="m",
                                 ok=False, failure=failure, at=10.0)
    await store.record_usage(chat=CHAT, user_id="1", thread_id=None, model="m", ok=False,
                             failure=FailureKind.AUTH, at=10.0)
    # a class an older release recorded and this one no longer knows
    await execute(store, "UPDATE usage SET failure = ? WHERE failure = ?",
                  ["retired_kind", FailureKind.AUTH.value])
    report = await store.call_report(since=0.0)
    assert report.failures == {FailureKind.NO_IMAGE: 2, None: 2}
