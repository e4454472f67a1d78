"""Request size and input-image count per turn of a long editing thread.

Builds a real 100-turn editing thread in a temporary SQLite store (``storage.sqlite``):
a phone photo prepared as the engine prepares it, then per turn a model answer (short
text + a Gemini-sized PNG blob, each with a ``thoughtSignature``) and the user's next
instruction. For every turn it compares what our context policy
(``bot.models.request_context.build_context`` with the ``Settings`` defaults, per-model
image cap) would send against the naive "send the whole history" baseline that SDK chat
sessions use: inline bytes as counted by the policy (base64 images, text, signatures), input-image
count, and the real JSON body size (``bot.models.gemini.part_to_json`` framing).

Model answer images are random bytes behind a PNG signature, of Gemini-like size
(1.0-1.5 MB, as 1K PNGs are): only their size matters to the policy and to the body.

    python bench/bench_context.py                  # 100 turns, writes bench/results/context.md
    python bench/bench_context.py --turns 5 --quick --out /tmp/context.md
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from bot.core.config import Settings  # noqa: E402
from bot.core.events import ChatKey  # noqa: E402
from bot.core.store import NewImage, NewPart  # noqa: E402
from bot.core.threads import Turn, TurnStatus  # noqa: E402
from bot.models.base import Blob, Content, Part, Role, image_cap_for  # noqa: E402
from bot.models.request_context import ContextPolicy, b64_len, build_context  # noqa: E402
from storage.sqlite import SqliteDatabase  # noqa: E402

#: Gemini's documented ceiling for a request with inline data ("use the File API above 20MB")
GEMINI_INLINE_LIMIT = 20_000_000
MODELS = ("gemini-2.5-flash-image", "gemini-3-pro-image-preview")
SHORT = {"gemini-2.5-flash-image": "2.5 Flash", "gemini-3-pro-image-preview": "3 Pro"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
INSTRUCTIONS = (
    "make the shirt red", "now add a hat", "a bit brighter please", "remove the lamp post",
    "make the sky more dramatic", "add a small dog on the left", "less saturated",
    "turn it into a watercolor", "crop a little tighter on the face", "undo the blur, sharper",
)
ANSWERS = (
    "Here is the edited image.", "Sure, here you go!", "I've made that change.",
    "Here's the updated version with your edit.",
)


# --------------------------------------------------------------------------- inputs


def make_photo(width: int = 2560, height: int = 1920, seed: int = 1) -> bytes:
    """A photo-like JPEG (gradients, shapes, sensor grain) at Telegram's large photo size."""
    rng = random.Random(seed)
    ramp = Image.linear_gradient("L").resize((width, height))
    side = ramp.transpose(Image.Transpose.ROTATE_90).resize((width, height))
    image = Image.merge("RGB", (ramp, side, Image.new("L", (width, height), 90)))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1 = x0 + rng.randrange(100, width // 3)
        y1 = y0 + rng.randrange(100, height // 3)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    grain = Image.effect_noise((width, height), 64).convert("RGB")
    image = Image.blend(image, grain, 0.25).filter(ImageFilter.GaussianBlur(1))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@dataclass(frozen=True)
class Prepared:
    data: bytes
    mime_type: str
    width: int
    height: int
    how: str


def prepare_photo(raw: bytes, max_side: int) -> Prepared:
    """The first photo as the engine stores it (``bot.kit.images.prepare_input`` if present)."""
    try:
        from bot.kit.images import prepare_input
    except ImportError:
        image = Image.open(io.BytesIO(raw))
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        return Prepared(buffer.getvalue(), "image/jpeg", image.width, image.height,
                        "Pillow thumbnail (bot.kit.images not importable)")
    p = prepare_input(raw, max_side=max_side)
    return Prepared(p.data, p.mime_type, p.width, p.height, "bot.kit.images.prepare_input")


def signature(rng: random.Random, size: int) -> str:
    """An opaque base64-looking thoughtSignature of ``size`` characters."""
    return "".join(rng.choices(B64_ALPHABET, k=size))


def result_blob(rng: random.Random, low: int, high: int) -> bytes:
    """Random bytes of a Gemini-like PNG size: only the size matters to the policy."""
    size = rng.randrange(low, high)
    return PNG_MAGIC + rng.randbytes(size - len(PNG_MAGIC))


# --------------------------------------------------------------------------- JSON framing

ContentJson = Callable[[Content], dict[str, Any]]


def _fallback_content_json(content: Content) -> dict[str, Any]:
    """The camelCase wire form, for when ``bot.models.gemini`` is not importable."""
    import base64

    parts: list[dict[str, Any]] = []
    for p in content.parts:
        item: dict[str, Any] = {}
        if p.text is not None:
            item["text"] = p.text
        if p.image is not None:
            item["inlineData"] = {"mimeType": p.image.mime_type,
                                  "data": base64.b64encode(p.image.data).decode("ascii")}
        if p.thought:
            item["thought"] = True
        if p.thought_signature is not None:
            item["thoughtSignature"] = p.thought_signature
        parts.append(item)
    return {"role": content.role, "parts": parts}


def content_serialiser() -> tuple[ContentJson, str]:
    try:
        from bot.models.gemini import part_to_json
    except ImportError:
        return _fallback_content_json, "own camelCase serialiser (bot.models.gemini missing)"

    def to_json(content: Content) -> dict[str, Any]:
        return {"role": content.role, "parts": [part_to_json(p) for p in content.parts]}

    return to_json, "bot.models.gemini.part_to_json"


def dumps(value: Any) -> str:
    """As ``GeminiModel.generate`` serialises the body: compact separators."""
    return json.dumps(value, separators=(",", ":"))


GENERATION_CONFIG = {"responseModalities": ["TEXT", "IMAGE"]}
EMPTY_BODY_LEN = len(dumps({"contents": [], "generationConfig": GENERATION_CONFIG}))


def body_bytes(contents: Sequence[Content], to_json: ContentJson) -> int:
    return len(dumps({"contents": [to_json(c) for c in contents],
                      "generationConfig": GENERATION_CONFIG}).encode())


# --------------------------------------------------------------------------- the naive side


def turn_content(turn: Turn, load: Callable[[str], bytes]) -> Content:
    """A stored turn exactly as received: every part, images inline."""
    parts = tuple(
        Part(p.text, Blob(p.image.mime_type, load(p.image.sha256)) if p.image else None,
             p.thought, p.thought_signature, p.extra)
        for p in turn.parts
    )
    role: Role = "model" if turn.is_model else "user"
    return Content(role, parts)


def inline_cost(turn: Turn) -> int:
    """What the policy counts for a turn sent whole (base64 images, text, signatures)."""
    return sum(len((p.text or "").encode()) + len(p.thought_signature or "")
               + (b64_len(p.image.size) if p.image else 0) for p in turn.parts)


# --------------------------------------------------------------------------- the run


@dataclass
class Row:
    turn: int
    history_images: int
    naive_bytes: int
    naive_json: int
    ours: dict[str, tuple[int, int, int, float]]  # model -> (bytes, images, json, build ms)


@dataclass
class Setup:
    turns: int
    budget: int
    caps: dict[str, int]
    photo_raw: int
    photo: Prepared
    blob_range: tuple[int, int]
    sig_sizes: tuple[int, int]
    serialiser: str


def run(turns: int, *, quick: bool, seed: int, signature_bytes: int, workdir: Path
        ) -> tuple[Setup, list[Row]]:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    budget = settings.chatbrush_context_bytes
    caps = {m: min(image_cap_for(m), settings.chatbrush_max_input_images or 14) for m in MODELS}
    policies = {m: ContextPolicy(byte_budget=budget, max_images=caps[m]) for m in MODELS}
    to_json, serialiser = content_serialiser()
    rng = random.Random(seed)

    raw = make_photo(1600, 1200) if quick else make_photo()
    photo = prepare_photo(raw, settings.chatbrush_max_side)
    blob_range = (1_000_000, 1_500_000)
    sig_sizes = (512, signature_bytes)
    setup = Setup(turns, budget, caps, len(raw), photo, blob_range, sig_sizes, serialiser)

    store = SqliteDatabase(workdir / "context.db")
    chat = ChatKey("telegram", "42")
    thread = store.create_thread(chat, lane=str(chat))
    user = store.add_turn(thread.id, parent_id=None, role="user", parts=[
        NewPart(image=NewImage(photo.data, photo.mime_type, photo.width, photo.height)),
        NewPart(text=INSTRUCTIONS[0]),
    ])
    # The naive body grows by one content per turn: serialise each turn once and add up
    # (checked against a whole-body dump on the first turns).
    naive_bytes = 0
    naive_json_contents = 0
    naive_images = 0
    naive_contents: list[Content] = []
    rows: list[Row] = []
    try:
        for n in range(1, turns + 1):
            content = turn_content(user, store.image_bytes)
            naive_bytes += inline_cost(user)
            naive_json_contents += len(dumps(to_json(content)).encode())
            naive_images += len(user.images)
            count = 2 * n - 1
            naive_json = EMPTY_BODY_LEN + naive_json_contents + (count - 1)
            if n <= 3:
                naive_contents.append(content)
                assert naive_json == body_bytes(naive_contents, to_json), "framing drifted"
            ours: dict[str, tuple[int, int, int, float]] = {}
            for model, policy in policies.items():
                started = time.perf_counter()
                path = [t for t in store.path(user.id) if t.status is TurnStatus.OK]
                built = build_context(
                    path, policy, lambda ref: Blob(ref.mime_type, store.image_bytes(ref.sha256)))
                elapsed = (time.perf_counter() - started) * 1000
                ours[model] = (built.request_bytes, built.images_sent,
                               body_bytes(built.contents, to_json), elapsed)
            rows.append(Row(n, naive_images, naive_bytes, naive_json, ours))
            if n % 10 == 0 or n == turns:
                flash = ours[MODELS[0]]
                print(f"  turn {n:>3}/{turns}: naive {mb(naive_json)} MB / {naive_images} images,"
                      f" 2.5 Flash {mb(flash[2])} MB / {flash[1]} images", file=sys.stderr,
                      flush=True)

            answer = store.add_turn(thread.id, parent_id=user.id, role="model", parts=[
                NewPart(text=rng.choice(ANSWERS), thought_signature=signature(rng, sig_sizes[0])),
                NewPart(image=NewImage(result_blob(rng, *blob_range), "image/png", 1024, 1024),
                        thought_signature=signature(rng, sig_sizes[1])),
            ], author_id="bot", author_name=MODELS[0])
            naive_bytes += inline_cost(answer)
            answer_content = turn_content(answer, store.image_bytes)
            naive_json_contents += len(dumps(to_json(answer_content)).encode())
            naive_images += len(answer.images)
            if n <= 2:
                naive_contents.append(answer_content)
            user = store.add_turn(thread.id, parent_id=answer.id, role="user", parts=[
                NewPart(text=INSTRUCTIONS[n % len(INSTRUCTIONS)]),
            ], author_id="7", author_name="Ann")
    finally:
        store.close()
    return setup, rows


# --------------------------------------------------------------------------- report


def mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def machine_facts() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=5).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "bot", "storage"],
                                 cwd=ROOT, capture_output=True, text=True, timeout=5).stdout
        if commit and changed.strip():
            commit += " + uncommitted changes in bot/ or storage/"
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "os": f"{platform.system()} {platform.release()}",
        "load avg (1/5 min) at the end": " / ".join(f"{v:.2f}" for v in os.getloadavg()[:2]),
        "commit": commit or "unknown",
    }


def selected(rows: Sequence[Row]) -> list[Row]:
    return [r for r in rows if r.turn == 1 or r.turn % 10 == 0 or r.turn == rows[-1].turn]


def table(rows: Sequence[Row]) -> list[str]:
    head = ["turn", "images in history", "naive inline MB", "naive JSON MB"]
    for m in MODELS:
        head += [f"{SHORT[m]} MB", f"{SHORT[m]} JSON MB", f"{SHORT[m]} images",
                 f"{SHORT[m]} build ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]

    def line(label: str, cells: Sequence[str]) -> str:
        return "| " + " | ".join([label, *cells]) + " |"

    for r in selected(rows):
        cells = [str(r.history_images), mb(r.naive_bytes), mb(r.naive_json)]
        for m in MODELS:
            b, imgs, js, ms = r.ours[m]
            cells += [mb(b), mb(js), str(imgs), f"{ms:.1f}"]
        lines.append(line(str(r.turn), cells))
    cells = [str(max(r.history_images for r in rows)), mb(max(r.naive_bytes for r in rows)),
             mb(max(r.naive_json for r in rows))]
    for m in MODELS:
        cells += [mb(max(r.ours[m][0] for r in rows)), mb(max(r.ours[m][2] for r in rows)),
                  str(max(r.ours[m][1] for r in rows)),
                  f"{max(r.ours[m][3] for r in rows):.1f}"]
    lines.append(line("**max**", cells))
    return lines


def crossing(rows: Sequence[Row], limit: int) -> int | None:
    return next((r.turn for r in rows if r.naive_json > limit), None)


def summary(setup: Setup, rows: Sequence[Row]) -> list[str]:
    last = rows[-1]
    out = []
    for limit, label in ((GEMINI_INLINE_LIMIT, "20 MB"), (20 * 1024 * 1024, "20 MiB")):
        turn = crossing(rows, limit)
        out.append(f"- Naive baseline crosses Gemini's {label} inline request limit at "
                   + (f"**turn {turn}**" if turn else f"no turn up to {last.turn}")
                   + (" — from there on every request is over the limit and would be"
                      " refused, unless its images move to the Files API." if turn else "."))
    out.append(f"- Turn {last.turn}: naive sends {last.history_images} images in a "
               f"{mb(last.naive_json)} MB body.")
    for m in MODELS:
        b, imgs, js, _ = last.ours[m]
        peak = max(r.ours[m][2] for r in rows)
        out.append(f"- Turn {last.turn}, `{m}` (cap {setup.caps[m]}): our policy sends "
                   f"{imgs} images, {mb(b)} MB counted inline, {mb(js)} MB JSON body "
                   f"(max over all turns {mb(peak)} MB, budget {mb(setup.budget)} MB).")
    for m in MODELS:
        over = [r.ours[m][0] - setup.budget for r in rows if r.ours[m][0] > setup.budget]
        if over:
            out.append(f"- `{m}`: our request exceeded the byte budget on {len(over)} of "
                       f"{len(rows)} turns, by up to {max(over):,} bytes: the signatures of "
                       "sent image parts are not charged against the budget.")
    ratio = last.naive_json / max(1, last.ours[MODELS[0]][2])
    out.append(f"- At turn {last.turn} the naive body is {ratio:.1f}x ours (2.5 Flash).")
    return out


def write_markdown(path: Path, setup: Setup, rows: Sequence[Row], command: str,
                   seconds: float) -> None:
    facts = machine_facts()
    lo, hi = setup.blob_range
    text = [
        "# Context size per turn: our policy vs sending the whole history",
        "",
        f"A {setup.turns}-turn editing thread in a real SQLite store. Per turn N the table "
        "shows the request for the user's N-th instruction. *Naive* = every part of every "
        "turn, images base64-inline (what an SDK chat session does). *Ours* = "
        "`bot.models.request_context.build_context` with the `Settings` defaults "
        f"(`CHATBRUSH_CONTEXT_BYTES` = {setup.budget:,} bytes) and the per-model image cap "
        f"({', '.join(f'{SHORT[m]} {c}' for m, c in setup.caps.items())}). *MB* columns "
        "count inline bytes as the policy does (base64 images + text + signatures); "
        "*JSON MB* is the real `generateContent` body, serialised with "
        f"{setup.serialiser} and compact separators. *build ms* = reading the path from "
        "SQLite and building the context (image bytes included).",
        "",
        *table(rows),
        "",
        "## Findings",
        "",
        *summary(setup, rows),
        "",
        "## Inputs",
        "",
        f"- First photo: a synthetic {setup.photo_raw / 1e3:.0f} KB photo-like JPEG "
        f"(2560x1920, gradients + shapes + grain), prepared by {setup.photo.how} to "
        f"{setup.photo.width}x{setup.photo.height} {setup.photo.mime_type}, "
        f"{len(setup.photo.data) / 1e3:.0f} KB.",
        f"- Each model answer: a short text part with a {setup.sig_sizes[0]}-character "
        f"`thoughtSignature` and an image part with a {setup.sig_sizes[1]:,}-character one; "
        f"the image is **random bytes behind a PNG header**, {lo / 1e6:.1f}-{hi / 1e6:.1f} MB "
        "(Gemini returns ~1-1.5 MB PNGs at 1K). Only sizes matter to the policy and the body, "
        "so the bytes need not decode.",
        "- Not modelled: Gemini 3's interim `thought: true` images and its much larger "
        "signatures (can be hundreds of KB; try `--signature-bytes 200000`). Both make the "
        "naive baseline grow faster still; ours stays bounded by the budget plus the "
        "signatures of the image parts it sends (see Findings).",
        "",
        "## Reproduce",
        "",
        f"    {command}",
        "",
        f"Run took {seconds:.1f} s. Machine: "
        + ", ".join(f"{k} {v}" for k, v in facts.items()) + ".",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--turns", type=int, default=100, help="instructions in the thread")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: smaller source photo, no results file unless --out")
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown results (default bench/results/context.md)")
    parser.add_argument("--signature-bytes", type=int, default=4096,
                        help="thoughtSignature length on each answer image")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.turns < 1:
        parser.error("--turns must be at least 1")
    out: Path | None = args.out
    if out is None and not args.quick:
        out = ROOT / "bench" / "results" / "context.md"

    print(f"bench_context: {args.turns} turns, models {', '.join(MODELS)}", file=sys.stderr)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="chatbrush-bench-") as tmp:
        setup, rows = run(args.turns, quick=args.quick, seed=args.seed,
                          signature_bytes=args.signature_bytes, workdir=Path(tmp))
    seconds = time.perf_counter() - started

    print("\n".join(table(rows)))
    print()
    print("\n".join(summary(setup, rows)))
    if out is not None:
        command = "python bench/bench_context.py" + (
            f" --turns {args.turns}" if args.turns != 100 else "") + (
            " --quick" if args.quick else "") + (
            f" --signature-bytes {args.signature_bytes}"
            if args.signature_bytes != 4096 else "")
        write_markdown(out, setup, rows, command, seconds)
        print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
