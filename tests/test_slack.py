"""Slack end to end: signed HTTP events → real AsyncApp → real engine → fake Slack/Gemini.

Everything here is real except the two remote services: bolt verifies the v0 signatures
and dispatches, the engine stores turns in a real SQLite file and calls the fake Gemini
server over HTTP, and slack_sdk uploads results to the fake Slack with the three-step
external upload. Assertions are on what people in the workspace would see.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import time
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from adapters.slack.adapter import SlackAdapter
from adapters.slack.channel import REACTION_DONE, REACTION_FAILED, REACTION_WORKING
from adapters.slack.platform import create
from bot.app.runtime import open_runtime
from bot.core.config import Settings, load_settings
from bot.core.events import ChatKey
from bot.core.messages import QUEUED_NOTICE as QUEUED_NOTE
from bot.flow.intake import Intake
from tests.fakes.gemini import FakeGemini
from tests.fakes.slack_api import (
    FakeSlack,
    event_callback,
    message_event,
    new_ts,
    sign,
    slash_command,
)
from tests.harness import ingredients_of, manifest_of, pixels

FIXTURES = Path(__file__).parent / "fixtures"
CHANNEL = "C111"
DM = "D777"
ALICE, BOB, ADMIN, OWNER = "U111", "U222", "U333", "U444"


def png(color: str = "red", size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        return im.size


def model_image(answer: dict[str, Any]) -> bytes:
    """The (non-thought) picture in a Gemini answer the fake sent."""
    [data] = [
        base64.b64decode(p["inlineData"]["data"])
        for p in answer["candidates"][0]["content"]["parts"]
        if "inlineData" in p and not p.get("thought")
    ]
    return data


@dataclass
class Rig:
    slack: FakeSlack
    gemini: FakeGemini
    adapter: SlackAdapter
    intake: Intake
    url: str
    http: aiohttp.ClientSession

    async def post(
        self,
        body: bytes,
        *,
        content_type: str = "application/json",
        secret: str | None = None,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        signed = sign(body, secret or self.slack.signing_secret, timestamp)
        all_headers = {"Content-Type": content_type, **signed, **(headers or {})}
        async with self.http.post(self.url, data=body, headers=all_headers) as resp:
            return resp.status, await resp.text()

    async def deliver(
        self, payload: dict[str, Any], *, retry: int | None = None, wait: bool = True
    ) -> int:
        """POST an event as Slack does, then let the bot finish answering it."""
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        status, _ = await self.post(
            json.dumps(payload).encode(), headers=headers if retry else None
        )
        if wait:
            await self.intake.drain()
        return status

    async def mention(self, text: str, **kwargs: Any) -> str:
        """A user @-mentions the bot in the channel; returns the message ts."""
        event = message_event(f"<@{self.slack.bot_user_id}> {text}", kind="app_mention", **kwargs)
        self.slack.remember(event)
        assert await self.deliver(event_callback(event)) == 200
        return str(event["ts"])

    async def say(self, text: str, **kwargs: Any) -> str:
        """A plain ``message`` event (thread reply, DM…); returns its ts."""
        event = message_event(text, **kwargs)
        self.slack.remember(event)
        assert await self.deliver(event_callback(event)) == 200
        return str(event["ts"])

    async def command(self, text: str, **kwargs: Any) -> int:
        form = slash_command(text, response_url=self.slack.response_url(), **kwargs)
        status, _ = await self.post(
            urlencode(form).encode(), content_type="application/x-www-form-urlencoded"
        )
        await self.intake.drain()
        return status


def settings_for(slack: FakeSlack, gemini: FakeGemini, tmp: Path, **extra: Any) -> Settings:
    return load_settings(
        slack_bot_token=slack.bot_token,
        slack_signing_secret=slack.signing_secret,
        slack_api_url=slack.api_url,
        gemini_api_key=gemini.api_key,
        gemini_base_url=gemini.base_url,
        gemini_max_attempts=1,
        chatbrush_db=str(tmp / "chatbrush.db"),
        **extra,
    )


@pytest.fixture
async def servers() -> AsyncIterator[tuple[FakeSlack, FakeGemini]]:
    async with FakeSlack() as slack, FakeGemini() as gemini:
        slack.add_user(ALICE, name="alice")
        slack.add_user(BOB, name="bob")
        slack.add_user(ADMIN, name="ada", is_admin=True)
        slack.add_user(OWNER, name="olive", is_owner=True)
        yield slack, gemini


async def start_rig(
    slack: FakeSlack, gemini: FakeGemini, tmp: Path, **extra: Any
) -> AsyncIterator[Rig]:
    """``chatbrush web`` with Slack: HTTP events on a real aiohttp server, stored by the
    intake before bolt acknowledges them, processed by the real engine."""
    settings = settings_for(slack, gemini, tmp, **extra)
    async with open_runtime(settings) as runtime, aiohttp.ClientSession() as http:
        adapter = create(settings, runtime.intake)
        assert isinstance(adapter, SlackAdapter)
        runtime.intake.register(adapter)
        runtime.intake.queued_notice_delay = 0
        web_app = web.Application()
        assert adapter.mount(web_app)
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        await adapter.start(webhook=True)
        await runtime.intake.start()
        try:
            yield Rig(slack, gemini, adapter, runtime.intake,
                      f"http://127.0.0.1:{port}/slack/events", http)
        finally:
            await adapter.stop_receiving()
            await runtime.intake.stop(grace=5)
            await adapter.close()
            await runner.cleanup()


@pytest.fixture
async def rig(servers: tuple[FakeSlack, FakeGemini], tmp_path: Path) -> AsyncIterator[Rig]:
    async for r in start_rig(*servers, tmp_path):
        yield r


# ---------------------------------------------------------------------- conversations
async def test_channel_mention_with_image_is_answered_in_thread_with_an_upload(rig: Rig) -> None:
    photo = png("red")
    file = rig.slack.host_file(photo, "shirt.png", user=ALICE)
    ts = await rig.mention("make the shirt blue", files=[file])

    uploads = rig.slack.shared_uploads(CHANNEL, thread_ts=ts)
    assert len(uploads) == 1
    result = uploads[0]
    assert result.data is not None and result.data.startswith(b"\x89PNG")
    # the model's picture, with Content Credentials naming what it was made from
    assert pixels(result.data) == pixels(model_image(rig.gemini.answers[-1]))
    request = rig.gemini.last
    [sent_input] = request.images("user")
    manifest = manifest_of(result.data)
    assert manifest["validation_state"] == "Valid"
    assert ingredients_of(manifest) == [("parentOf", hashlib.sha256(sent_input).hexdigest())]
    # the model got the user's picture and words; its text is the upload's comment
    assert "make the shirt blue" in request.prompt
    assert result.initial_comment and "make the shirt blue" in result.initial_comment
    # nothing was posted outside the thread, and the token went only where it belongs
    assert all(m.thread_ts == ts for m in rig.slack.messages)
    assert rig.slack.files[file["id"]].downloads == [f"Bearer {rig.slack.bot_token}"]
    # progress: hourglass while working, replaced by a check mark
    added = [r.name for r in rig.slack.reactions if r.action == "add" and r.timestamp == ts]
    assert added == [REACTION_WORKING, REACTION_DONE]
    assert rig.slack.reactions_on(CHANNEL, ts) == {REACTION_DONE}


async def test_export_in_a_thread_uploads_the_zip_there(rig: Rig) -> None:
    file = rig.slack.host_file(png("red"), "cat.png", user=ALICE)
    root = await rig.mention("make it a watercolor", files=[file])
    await rig.say("export", thread_ts=root, user=BOB)

    [_, archive] = rig.slack.shared_uploads(CHANNEL, root)
    assert archive.filename.endswith(".zip") and archive.data is not None
    assert archive.initial_comment and "index.html" in archive.initial_comment
    with zipfile.ZipFile(io.BytesIO(archive.data)) as opened:
        assert any(n.endswith("/index.html") for n in opened.namelist())


async def test_follow_up_in_the_thread_without_a_mention_continues_the_edit(rig: Rig) -> None:
    file = rig.slack.host_file(png("red"), "cat.png", user=ALICE)
    root = await rig.mention("make it a watercolor", files=[file])
    first = rig.slack.shared_uploads(CHANNEL, root)[0]

    reply = await rig.say("now add a hat", thread_ts=root, user=BOB)

    uploads = rig.slack.shared_uploads(CHANNEL, root)
    assert len(uploads) == 2
    request = rig.gemini.last
    assert request.prompt == "now add a hat"
    # the previous model turn (the first result) is in the context being edited
    assert first.data is not None
    assert request.parts("model"), "the follow-up must continue the thread"
    assert rig.slack.reactions_on(CHANNEL, reply) == {REACTION_DONE}


async def test_mention_in_a_thread_edits_the_picture_posted_there(rig: Rig) -> None:
    photo = png("orange", (48, 32))
    root = await rig.say("team photo", user=ALICE, files=[rig.slack.host_file(photo, "team.png")])
    await rig.say("nice!", thread_ts=root, user=BOB)
    assert rig.gemini.requests == []  # nobody asked the bot yet

    await rig.mention("remove the background", thread_ts=root, user=BOB)
    assert len(rig.gemini.last.images("user")) == 1
    assert image_size(rig.gemini.last.images("user")[0]) == (48, 32)
    assert len(rig.slack.shared_uploads(CHANNEL, root)) == 1

    await rig.say("now black and white", thread_ts=root, user=ALICE)  # no mention needed now
    assert len(rig.slack.shared_uploads(CHANNEL, root)) == 2
    assert len(rig.slack.calls_to("conversations.replies")) == 1


async def test_chatter_in_threads_the_bot_is_not_part_of_is_ignored(rig: Rig) -> None:
    root = new_ts()
    await rig.say("lunch?", ts=root, user=ALICE)
    await rig.say("pizza", thread_ts=root, user=BOB)
    assert rig.gemini.requests == []
    assert rig.slack.messages == []
    assert rig.slack.calls_to("reactions.add") == []


async def test_direct_messages_are_a_private_conversation_at_top_level(rig: Rig) -> None:
    file = rig.slack.host_file(png("green"), "dog.png", user=ALICE)
    first = await rig.say("make it sepia", channel=DM, channel_type="im", user=ALICE, files=[file])
    second = await rig.say("now brighter", channel=DM, channel_type="im", user=ALICE)

    uploads = rig.slack.shared_uploads(DM)
    assert len(uploads) == 2
    assert all(u.thread_ts is None for u in uploads)  # answered at top level, like a chat
    assert rig.gemini.last.prompt == "now brighter"
    assert rig.gemini.last.parts("model"), "the second DM continues the first"
    assert rig.slack.reactions_on(DM, first) == {REACTION_DONE}
    assert rig.slack.reactions_on(DM, second) == {REACTION_DONE}

    # a text command in the DM: undo goes back to the first version
    await rig.say("undo", channel=DM, channel_type="im", user=ALICE)
    assert "Undid 1 version" in (rig.slack.messages[-1].text)
    assert len(rig.gemini.requests) == 2
    # the slash command in a DM knows the conversation: it is the DM's own
    await rig.command("history", channel=DM, channel_name="directmessage", user=ALICE)
    assert "v1" in rig.slack.responses[-1]["text"] and "v2" in rig.slack.responses[-1]["text"]


async def test_two_files_in_one_message_are_fused_into_one_turn(rig: Rig) -> None:
    a = rig.slack.host_file(png("red", (40, 30)), "person.png", user=ALICE)
    b = rig.slack.host_file(png("blue", (20, 20)), "hat.jpg", user=ALICE)
    ts = await rig.mention("put the hat from the second photo on the person", files=[a, b])

    assert len(rig.gemini.requests) == 1
    assert len(rig.gemini.last.images("user")) == 2
    assert len(rig.slack.shared_uploads(CHANNEL, ts)) == 1


async def test_each_on_three_files_is_three_edits_in_one_message(rig: Rig) -> None:
    sizes = [(41, 30), (42, 30), (43, 30)]
    files = [rig.slack.host_file(png(colour, size), f"shot-{n}.png", user=ALICE)
             for n, (colour, size) in enumerate(zip(("red", "green", "blue"), sizes,
                                                     strict=True))]
    ts = await rig.mention("each make the background white", files=files)

    assert len(rig.gemini.requests) == 3
    assert sorted(image_size(r.images("user")[0]) for r in rig.gemini.requests) == sizes
    assert all(len(r.images()) == 1 for r in rig.gemini.requests)
    assert {r.prompt for r in rig.gemini.requests} == {"make the background white"}
    assert len(rig.slack.calls_to("files.completeUploadExternal")) == 1
    uploads = rig.slack.shared_uploads(CHANNEL, ts)
    assert [image_size(u.data or b"") for u in uploads] == sizes  # the pictures' order
    [message] = rig.slack.thread_messages(CHANNEL, ts)
    assert message.files == [u.id for u in uploads] and "v1" in message.text
    for upload, size in zip(uploads, sizes, strict=True):  # file i leads to picture i
        answer = await rig.intake.store.linked_turn(ChatKey("slack", CHANNEL), upload.id)
        assert answer is not None and answer.is_model
        request = await rig.intake.store.get_turn(answer.parent_id or 0)
        assert request is not None and (request.images[0].width, request.images[0].height) \
            == size

    # a Slack thread has no replies to single messages: it goes on from the last picture
    await rig.say("now add a hat", thread_ts=ts, user=ALICE)
    assert [image_size(i) for i in rig.gemini.last.images("user")] == [sizes[2]]


async def test_a_non_image_file_is_refused_with_a_clear_reply(rig: Rig) -> None:
    pdf = rig.slack.host_file(b"%PDF-1.7 quarterly numbers", "q3-report.pdf", "application/pdf")
    ts = await rig.mention("make this prettier", files=[pdf])

    assert rig.gemini.requests == []
    [reply] = rig.slack.thread_messages(CHANNEL, ts)
    assert "q3-report.pdf" in reply.text and "isn't an image" in reply.text
    assert rig.slack.files[pdf["id"]].downloads == []  # refused before downloading


async def test_an_image_that_is_not_one_inside_is_refused(rig: Rig) -> None:
    fake = rig.slack.host_file(b"<html>not a png</html>", "photo.png", "image/png")
    ts = await rig.mention("sharpen", files=[fake])
    assert rig.gemini.requests == []
    [reply] = rig.slack.thread_messages(CHANNEL, ts)
    assert "photo.png" in reply.text and "doesn't look like a picture" in reply.text


async def test_a_file_over_the_size_limit_is_refused(rig: Rig) -> None:
    big = rig.slack.host_file(png(), "huge.png", size=25_000_000)
    ts = await rig.mention("upscale", files=[big])
    assert rig.gemini.requests == []
    [reply] = rig.slack.thread_messages(CHANNEL, ts)
    assert "huge.png" in reply.text and "too large" in reply.text and "20.0 MB" in reply.text


async def test_a_file_url_on_a_foreign_host_never_receives_the_token(rig: Rig) -> None:
    async with FakeSlack() as elsewhere:
        file = elsewhere.host_file(png(), "cat.png", host=elsewhere.base_url)
        ts = await rig.mention("make it blue", files=[file])
        assert elsewhere.files[file["id"]].downloads == []
        assert elsewhere.calls == []
    assert rig.gemini.requests == []
    [reply] = rig.slack.thread_messages(CHANNEL, ts)
    assert "cat.png" in reply.text


async def test_the_bots_own_messages_are_ignored(rig: Rig) -> None:
    file = rig.slack.host_file(png(), "cat.png")
    root = await rig.mention("invert", files=[file])
    posted = rig.slack.messages[-1]
    # Slack echoes the bot's upload back as a file_share message in the thread
    echo = message_event(
        posted.text, user=rig.slack.bot_user_id, ts=posted.ts, thread_ts=root, subtype="file_share"
    )
    echo["bot_id"] = rig.slack.bot_id
    await rig.deliver(event_callback(echo))
    assert len(rig.gemini.requests) == 1


async def test_edits_and_joins_in_a_bot_thread_are_ignored(rig: Rig) -> None:
    root = await rig.mention("a red square on white")
    await rig.say("<@U111> has joined the channel", thread_ts=root, subtype="channel_join")
    edited = message_event("now make it green", thread_ts=root, subtype="message_changed")
    await rig.deliver(event_callback(edited))
    assert len(rig.gemini.requests) == 1


# ---------------------------------------------------------------------- delivery
async def test_bad_signature_and_stale_timestamp_are_rejected(rig: Rig) -> None:
    file = rig.slack.host_file(png(), "cat.png")
    body = json.dumps(event_callback(message_event("<@UBOT> hi", kind="app_mention", files=[file])))
    status, _ = await rig.post(body.encode(), secret="not-the-secret")
    assert status == 401
    status, _ = await rig.post(body.encode(), timestamp=int(time.time()) - 6 * 60)
    assert status == 401
    await rig.intake.drain()
    assert rig.gemini.requests == [] and rig.slack.messages == []
    assert rig.slack.files[file["id"]].downloads == []


async def test_url_verification_is_answered(rig: Rig) -> None:
    body = (FIXTURES / "slack_url_verification.json").read_bytes()
    challenge = json.loads(body)["challenge"]
    status, text = await rig.post(body)
    assert status == 200
    assert challenge in text


async def test_a_retried_event_is_processed_once(rig: Rig) -> None:
    file = rig.slack.host_file(png(), "cat.png")
    payload = event_callback(message_event("<@UBOT> invert", kind="app_mention", files=[file]))
    assert await rig.deliver(payload) == 200
    assert await rig.deliver(payload, retry=1) == 200
    assert await rig.deliver(payload, retry=2) == 200
    assert len(rig.gemini.requests) == 1
    assert len(rig.slack.shared_uploads(CHANNEL)) == 1


async def test_a_mention_delivered_also_as_a_message_is_handled_once(rig: Rig) -> None:
    file = rig.slack.host_file(png(), "cat.png")
    mention = message_event("<@UBOT> invert", kind="app_mention", files=[file])
    as_message = dict(mention, type="message", channel_type="channel", subtype="file_share")
    await rig.deliver(event_callback(as_message))
    await rig.deliver(event_callback(mention))
    assert len(rig.gemini.requests) == 1
    assert len(rig.slack.shared_uploads(CHANNEL)) == 1


async def test_the_acknowledgement_does_not_wait_for_the_model(rig: Rig) -> None:
    rig.gemini.pause()
    try:
        file = rig.slack.host_file(png(), "cat.png")
        event = message_event("<@UBOT> invert", kind="app_mention", files=[file])
        assert await rig.deliver(event_callback(event), wait=False) == 200
        await rig.gemini.wait_for_requests(1)
        assert rig.slack.shared_uploads(CHANNEL) == []  # acknowledged while still working
        assert rig.slack.reactions_on(CHANNEL, event["ts"]) == {REACTION_WORKING}
    finally:
        rig.gemini.resume()
    await rig.intake.drain()
    assert len(rig.slack.shared_uploads(CHANNEL)) == 1


async def test_a_request_waiting_behind_another_gets_a_note(rig: Rig) -> None:
    rig.gemini.pause()
    try:
        root_event = message_event("<@UBOT> a blue circle", kind="app_mention")
        root = str(root_event["ts"])
        await rig.deliver(event_callback(root_event), wait=False)
        await rig.gemini.wait_for_requests(1)
        await rig.deliver(event_callback(message_event("make it red", thread_ts=root)), wait=False)
        await rig.slack.wait_for(
            lambda: any(m.text == QUEUED_NOTE for m in rig.slack.thread_messages(CHANNEL, root))
        )
    finally:
        rig.gemini.resume()
    await rig.intake.drain()
    assert len(rig.slack.shared_uploads(CHANNEL, root)) == 2
    assert rig.gemini.last.prompt == "make it red"


async def test_slack_rate_limits_are_waited_out(rig: Rig) -> None:
    rig.slack.fail_next("files.completeUploadExternal", 429, retry_after=0)
    ts = await rig.mention("a green triangle")
    assert len(rig.slack.calls_to("files.completeUploadExternal")) == 2
    assert len(rig.slack.shared_uploads(CHANNEL, ts)) == 1


async def test_a_failed_event_does_not_stop_the_bot(rig: Rig) -> None:
    rig.gemini.enqueue_error(400, "Request contains an invalid argument.")
    first = await rig.mention("a purple cube")
    assert rig.slack.reactions_on(CHANNEL, first) == {REACTION_FAILED}
    assert rig.slack.thread_messages(CHANNEL, first), "the failure is explained"
    rig.slack.fail_next("reactions.add", 500)  # a cosmetic failure on the next one, too
    second = await rig.mention("a yellow cube")
    assert len(rig.slack.shared_uploads(CHANNEL, second)) == 1


async def test_a_model_refusal_is_shown_clearly(rig: Rig) -> None:
    rig.gemini.enqueue_block("PROHIBITED_CONTENT")
    file = rig.slack.host_file(png(), "cat.png")
    ts = await rig.mention("do something forbidden", files=[file])
    assert rig.slack.shared_uploads(CHANNEL) == []
    [reply] = rig.slack.thread_messages(CHANNEL, ts)
    assert reply.text and "Traceback" not in reply.text
    assert any(w in reply.text.lower() for w in ("block", "refus", "safety", "policy", "can't"))
    assert rig.slack.reactions_on(CHANNEL, ts) == {REACTION_FAILED}


# ---------------------------------------------------------------------- commands
async def test_reset_in_a_channel_needs_a_workspace_admin(rig: Rig) -> None:
    root = await rig.mention("a red square")

    await rig.say(f"<@{rig.slack.bot_user_id}> reset", thread_ts=root, user=BOB)
    refusal = rig.slack.thread_messages(CHANNEL, root)[-1].text
    assert "only" in refusal and "admin" in refusal

    await rig.say(f"<@{rig.slack.bot_user_id}> reset", thread_ts=root, user=ADMIN)
    assert "forgot" in rig.slack.thread_messages(CHANNEL, root)[-1].text
    calls = rig.slack.calls_to("users.info")
    asked = [c.args["user"] for c in calls if "include_locale" not in c.args]
    assert asked == [BOB, ADMIN]  # admin checks; locales are asked once per person
    locales = [c.args["user"] for c in calls if "include_locale" in c.args]
    assert sorted(locales) == sorted(set(locales))

    # the thread is gone: plain replies there no longer reach the bot
    await rig.say("make it green", thread_ts=root, user=ALICE)
    assert len(rig.gemini.requests) == 1


async def test_owners_and_configured_admins_may_reset(
    servers: tuple[FakeSlack, FakeGemini], tmp_path: Path
) -> None:
    async for r in start_rig(*servers, tmp_path, chatbrush_admins=f"slack:{BOB}"):
        for user in (OWNER, BOB):
            root = await r.mention("a red square")
            await r.say("<@UBOT> reset", thread_ts=root, user=user)
            assert "forgot" in r.slack.thread_messages(CHANNEL, root)[-1].text
        assert [c.args["user"] for c in r.slack.calls_to("users.info")
                if "include_locale" not in c.args] == [OWNER]


async def test_undo_and_history_in_a_thread(rig: Rig) -> None:
    root = await rig.mention("a red square")
    await rig.say("add a blue border", thread_ts=root)
    await rig.say("history", thread_ts=root)
    history = rig.slack.thread_messages(CHANNEL, root)[-1].text
    assert "v1" in history and "v2" in history
    await rig.say("<@UBOT> undo", thread_ts=root)
    # v1, v2, the contact sheet of /history, and v1 re-posted after undo
    assert len(rig.slack.shared_uploads(CHANNEL, root)) == 4
    assert len(rig.gemini.requests) == 2


async def test_slash_command_is_acknowledged_and_answered_privately(rig: Rig) -> None:
    assert await rig.command("help") == 200
    [answer] = rig.slack.responses
    assert answer["response_type"] == "ephemeral"
    assert "/chatbrush undo" in answer["text"]  # commands as typed here

    assert await rig.command("undo") == 200  # a thread command from a channel
    assert "inside the thread" in rig.slack.responses[-1]["text"]

    assert await rig.command("settings", user=BOB) == 200  # anyone may look
    assert "Aspect ratio (aspect): the model's default" in rig.slack.responses[-1]["text"]
    assert await rig.command("settings aspect 16:9", user=BOB) == 200
    assert "Only this chat's admins" in rig.slack.responses[-1]["text"]
    assert await rig.command("settings aspect 16:9", user=ADMIN) == 200
    assert "Done: aspect is now 16:9." in rig.slack.responses[-1]["text"]
    assert await rig.command("stats", user=ADMIN) == 200  # bot-wide: operators only
    assert "operators" in rig.slack.responses[-1]["text"]

    assert await rig.command("make it blue") == 200  # no picture can come back privately
    assert "/chatbrush help" in rig.slack.responses[-1]["text"]
    assert rig.gemini.requests == [] and rig.slack.messages == []


async def test_slash_command_is_stored_before_it_is_acknowledged(rig: Rig) -> None:
    rig.slack.hold("users.info")  # the admin check hangs…
    try:
        form = slash_command("settings aspect 16:9", response_url=rig.slack.response_url(),
                             user=ADMIN)
        status, _ = await rig.post(
            urlencode(form).encode(), content_type="application/x-www-form-urlencoded"
        )
        assert status == 200  # …yet Slack already has its acknowledgement
        assert await rig.intake.store.inbox_backlog() == 1
        await rig.slack.wait_for(lambda: bool(rig.slack.calls_to("users.info")))
        assert rig.slack.responses == []
    finally:
        rig.slack.release("users.info")
    await rig.intake.drain()
    assert "Done: aspect is now 16:9" in rig.slack.responses[-1]["text"]


async def test_allowed_channels_limit_where_the_bot_answers(
    servers: tuple[FakeSlack, FakeGemini], tmp_path: Path
) -> None:
    async for r in start_rig(*servers, tmp_path, slack_allowed_channels="C999"):
        ts = await r.mention("a red square")
        assert r.gemini.requests == []
        assert "isn't available here" in r.slack.thread_messages(CHANNEL, ts)[0].text
        await r.mention("a red square", channel="C999")
        assert len(r.gemini.requests) == 1


# ---------------------------------------------------------------------- wiring
def test_create_needs_a_bot_token_and_a_way_to_receive_events(tmp_path: Path) -> None:
    engine: Any = object()
    assert create(load_settings(), engine) is None
    assert create(load_settings(slack_bot_token="xoxb-1"), engine) is None
    assert create(load_settings(slack_bot_token="xoxb-1", slack_app_token="xapp-1"), engine)
    assert create(load_settings(slack_bot_token="xoxb-1", slack_signing_secret="s"), engine)


def test_socket_mode_only_adapter_mounts_no_http_route(tmp_path: Path) -> None:
    engine: Any = object()
    adapter = create(load_settings(slack_bot_token="xoxb-1", slack_app_token="xapp-1"), engine)
    assert adapter is not None
    assert adapter.mount(web.Application()) is False


async def test_socket_mode_end_to_end(
    servers: tuple[FakeSlack, FakeGemini], tmp_path: Path
) -> None:
    slack, gemini = servers
    settings = load_settings(
        slack_bot_token=slack.bot_token,
        slack_app_token=slack.app_token,
        slack_api_url=slack.api_url,
        gemini_api_key=gemini.api_key,
        gemini_base_url=gemini.base_url,
        chatbrush_db=str(tmp_path / "chatbrush.db"),
    )
    async with open_runtime(settings) as runtime:
        adapter = create(settings, runtime.intake)
        assert adapter is not None
        runtime.intake.register(adapter)
        await adapter.start(webhook=False)
        await runtime.intake.start()
        try:
            file = slack.host_file(png(), "cat.png")
            event = message_event("<@UBOT> invert it", kind="app_mention", files=[file])
            payload = event_callback(event)
            ack = await slack.socket_send(payload)
            await runtime.intake.drain()
            again = await slack.socket_send(payload, retry_attempt=1)
            await runtime.intake.drain()
        finally:
            await adapter.stop_receiving()
            await adapter.close()
    assert ack["envelope_id"] and again["envelope_id"]
    assert [u.thread_ts for u in slack.uploads.values()] == [event["ts"]]
    assert len(gemini.requests) == 1
    assert slack.calls_to("apps.connections.open")[0].token == slack.app_token


async def test_secrets_never_reach_the_logs(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    file = rig.slack.host_file(png(), "cat.png")
    root = await rig.mention("invert", files=[file])
    await rig.say("<@UBOT> reset", thread_ts=root, user=BOB)
    status, _ = await rig.post(b'{"type": "event_callback"}', secret="wrong")
    assert status == 401
    assert caplog.records, "debug logging was on"
    for secret in (rig.slack.bot_token, rig.slack.signing_secret):
        assert secret not in caplog.text


async def test_a_quick_follow_up_waits_for_the_mention_that_starts_the_thread(rig: Rig) -> None:
    rig.slack.hold("files.download")  # the first message's picture is slow to download
    try:
        file = rig.slack.host_file(png("red"), "cat.png")
        first = message_event("<@UBOT> make it a watercolor", kind="app_mention", files=[file])
        root = str(first["ts"])
        await rig.deliver(event_callback(first), wait=False)
        await rig.slack.wait_for(lambda: bool(rig.slack.files[file["id"]].downloads))
        follow_up = message_event("and add a hat", thread_ts=root)
        await rig.deliver(event_callback(follow_up), wait=False)
        await rig.slack.wait_for(
            lambda: any(m.text == QUEUED_NOTE for m in rig.slack.thread_messages(CHANNEL, root))
        )
        assert rig.gemini.requests == []
    finally:
        rig.slack.release("files.download")
    await rig.intake.drain()
    first_request, second_request = rig.gemini.requests
    assert "watercolor" in first_request.prompt and first_request.images("user")
    assert second_request.prompt == "and add a hat" and second_request.parts("model")
    assert len(rig.slack.shared_uploads(CHANNEL, root)) == 2


async def test_a_follow_up_to_a_refused_mention_is_dropped(rig: Rig) -> None:
    rig.slack.hold("files.download")
    try:
        file = rig.slack.host_file(b"%PDF-1.4", "notes.png", "image/png")
        first = message_event("<@UBOT> fix this", kind="app_mention", files=[file])
        root = str(first["ts"])
        await rig.deliver(event_callback(first), wait=False)
        await rig.slack.wait_for(lambda: bool(rig.slack.files[file["id"]].downloads))
        await rig.deliver(event_callback(message_event("thanks", thread_ts=root)), wait=False)
    finally:
        rig.slack.release("files.download")
    await rig.intake.drain()
    assert rig.gemini.requests == []
    texts = [m.text for m in rig.slack.thread_messages(CHANNEL, root)]
    assert any("notes.png" in t for t in texts)


# ---------------------------------------------------------------------- durability
async def test_an_event_is_stored_before_slack_gets_its_acknowledgement(rig: Rig) -> None:
    rig.gemini.pause()
    try:
        event = message_event("<@UBOT> a teal hexagon", kind="app_mention")
        assert await rig.deliver(event_callback(event), wait=False) == 200
        # the acknowledgement came back: the event is already committed to the inbox
        assert await rig.intake.store.inbox_backlog() == 1
    finally:
        rig.gemini.resume()
    await rig.intake.drain()
    assert len(rig.slack.shared_uploads(CHANNEL, str(event["ts"]))) == 1


async def test_a_retry_of_an_event_cut_short_by_a_restart_is_finished_once(
    servers: tuple[FakeSlack, FakeGemini], tmp_path: Path
) -> None:
    slack, gemini = servers
    file = slack.host_file(png("red"), "cat.png")
    event = message_event("<@UBOT> invert it", kind="app_mention", files=[file])
    payload = event_callback(event)
    slack.hold("files.download")  # the first process never gets past the download
    async for first in start_rig(slack, gemini, tmp_path):
        await first.deliver(payload, wait=False)
        await slack.wait_for(lambda: bool(slack.files[file["id"]].downloads))
        await first.intake.stop(grace=0)  # the deploy: the event stays in the inbox
    slack.release("files.download")
    assert gemini.requests == [] and slack.shared_uploads(CHANNEL) == []
    async for second in start_rig(slack, gemini, tmp_path):
        assert await second.deliver(payload, retry=1) == 200  # Slack's retry
        await second.intake.drain()
    assert len(gemini.requests) == 1
    assert len(slack.shared_uploads(CHANNEL, str(event["ts"]))) == 1


async def test_web_api_calls_reuse_kept_alive_connections(rig: Rig) -> None:
    for colour in ("red", "green", "blue"):
        await rig.mention(f"a {colour} square")
    peers = {c.peer for c in rig.slack.calls if c.method != "files.upload" and c.peer}
    calls = [c for c in rig.slack.calls if c.method != "files.upload"]
    assert len(calls) > 10 and len(peers) <= 3  # not a new connection per call


# ---------------------------------------------------------------------- languages
async def test_a_slack_user_with_a_chinese_locale_is_answered_in_chinese(rig: Rig) -> None:
    rig.slack.add_user("U555", name="li", locale="zh-CN")
    root = await rig.mention("help", user="U555")
    [answer] = rig.slack.thread_messages(CHANNEL, root)
    assert "我用 Google 的 Gemini 图像模型来编辑图片" in answer.text
    assert "我会在话题串里回复" in answer.text  # Slack's way: the thread
    pdf = rig.slack.host_file(b"%PDF-1.7\n", "brief.pdf", "application/pdf")
    asked = await rig.mention("改成水彩", files=[pdf], user="U555")
    assert rig.slack.thread_messages(CHANNEL, asked)[-1].text == (
        "“brief.pdf”（PDF）不是我能编辑的图片。请发送照片，或 PNG、JPEG、WebP、HEIC 格式的文件。")
    # the locale is asked once, then remembered
    asked_locale = [c for c in rig.slack.calls_to("users.info") if "include_locale" in c.args]
    assert [c.args["user"] for c in asked_locale] == ["U555"]
    english = await rig.mention("help", user=ALICE)
    assert rig.slack.thread_messages(CHANNEL, english)[-1].text.startswith("I edit pictures")


async def test_a_sender_the_workspace_cannot_find_is_looked_up_once(rig: Rig) -> None:
    """users.info answers user_not_found (a Slack Connect guest, a deleted account): the
    failure is remembered like a found locale, not asked again on every message."""
    for _ in range(2):
        asked = await rig.mention("help", user="U404")
        assert rig.slack.thread_messages(CHANNEL, asked)[-1].text.startswith("I edit pictures")
    lookups = [c for c in rig.slack.calls_to("users.info") if c.args.get("user") == "U404"]
    assert len(lookups) == 1
