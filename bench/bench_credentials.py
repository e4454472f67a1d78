"""How long Content Credentials take: signing a 1024x1024 PNG the way the bot will.

Builds a photo-like 1024x1024 PNG (what Gemini sends back) and 1024x1024 JPEG inputs,
then times ``ContentCredentials.sign`` for a text-only picture, an edit (one input) and a
fusion (three inputs), ``read_credentials`` on the result, and the start-up cost (first
start makes the self-signed pair; later starts load it). One extra row signs with the
library's thumbnails switched on, the setting the bot does not ship, to show why.

    .venv/bin/python bench/bench_credentials.py
    .venv/bin/python bench/bench_credentials.py --repeat 100 --out bench/results/credentials.md
    .venv/bin/python bench/bench_credentials.py --quick          # smoke run, no results file
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from bench.stand_ins import pct  # noqa: E402
from bot.provenance import credentials  # noqa: E402
from bot.provenance.credentials import ContentCredentials, Ingredient, read_credentials  # noqa: E402

MODEL = "gemini-2.5-flash-image"

READING = """\
Reading it: signing hashes the whole output file and makes one ES256 signature, so its
cost follows the output's size; each input adds little, as inputs are only parsed for
credentials they may already carry. The bot signs in a worker thread
(`ContentCredentials.sign_async`), so the event loop never waits on it. Start-up cost
includes a probe signature that turns a key the library refuses into a start-up error.
The last row is the library's default, claim and ingredient thumbnails (a re-encoded copy
of the output and of every input inside the manifest): far slower, much larger, and it
would put copies of users' inputs into every picture sent, so the bot switches it off.
"""


def model_picture(side: int, fmt: str, seed: int = 0) -> bytes:
    """Soft gradients, shapes and light grain: compresses like a generated picture."""
    sky = Image.linear_gradient("L").resize((side, side))
    base = Image.merge("RGB", (sky.transpose(Image.Transpose.ROTATE_90), sky,
                               Image.new("L", (side, side), 90 + seed * 20)))
    draw = ImageDraw.Draw(base)
    for k in range(24):
        x, y, r = (k * 7919 + seed) % side, (k * 104729) % side, side // 30 * (1 + k % 4)
        colour = ((k * 53 + seed) % 256, (k * 97) % 256, (k * 191) % 256)
        (draw.ellipse if k % 2 else draw.rectangle)((x - r, y - r, x + r, y + r), fill=colour)
    grain = Image.merge("RGB", [Image.effect_noise((side, side), 12) for _ in range(3)])
    picture = Image.blend(base.filter(ImageFilter.GaussianBlur(2)), grain, 0.08)
    out = io.BytesIO()
    picture.save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def timed(action: Callable[[], Any], repeat: int) -> list[float]:
    action()  # warm-up: first-call imports, the library's format table
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--out", type=Path, help="write the markdown results here")
    parser.add_argument("--quick", action="store_true", help="5 runs at 256 px, no file")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.side = 5, 256

    output = model_picture(args.side, "PNG")
    inputs = [Ingredient(model_picture(args.side, "JPEG", seed=n), "image/jpeg",
                         title=f"photo-{n}.jpg") for n in range(1, 4)]  # fmt: skip
    load_before = os.getloadavg()[0]
    rows: list[tuple[str, list[float], str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh = iter(range(10_000))
        rows.append(("first start: make the self-signed pair",
                     timed(lambda: ContentCredentials(Path(tmp, str(next(fresh)))), args.repeat),
                     "CA + signing cert, ES256, probe signature"))  # fmt: skip
        signer = ContentCredentials(Path(tmp, "keys"))
        rows.append(("later start: load the pair",
                     timed(lambda: ContentCredentials(Path(tmp, "keys")), args.repeat),
                     "read, check, probe signature"))  # fmt: skip
        cases = {
            "sign: text only (c2pa.created)": (),
            "sign: edit, 1 JPEG input": inputs[:1],
            "sign: fusion, 3 JPEG inputs": inputs,
        }
        for name, given in cases.items():
            signed = signer.sign(output, "image/png", model=MODEL, inputs=given,
                                 prompt="make it watercolor", include_prompt=True)  # fmt: skip
            assert read_credentials(signed, "image/png") is not None, name
            times = timed(lambda given=given: signer.sign(  # type: ignore[misc]
                output, "image/png", model=MODEL, inputs=given, prompt="make it watercolor",
                include_prompt=True), args.repeat)  # fmt: skip
            rows.append((name, times, f"+{len(signed) - len(output):,} bytes"))
        signed = signer.sign(output, "image/png", model=MODEL, inputs=inputs[:1])
        rows.append(("read_credentials on the edit",
                     timed(lambda: read_credentials(signed, "image/png"), args.repeat),
                     "parse + validate"))  # fmt: skip
        shipped = credentials._library_settings
        try:  # the road not taken: the library's default claim and ingredient thumbnails
            def with_thumbnails() -> dict[str, Any]:
                settings = shipped()
                settings["builder"]["thumbnail"] = {"enabled": True}
                return settings

            credentials._library_settings = with_thumbnails  # type: ignore[assignment]
            thumbed = signer.sign(output, "image/png", model=MODEL, inputs=inputs[:1])
            times = timed(lambda: signer.sign(output, "image/png", model=MODEL,
                                              inputs=inputs[:1]), args.repeat)  # fmt: skip
            rows.append(("(not shipped) edit with thumbnails on", times,
                         f"+{len(thumbed) - len(output):,} bytes"))  # fmt: skip
        finally:
            credentials._library_settings = shipped  # type: ignore[assignment]

    facts = (
        f"nproc {os.cpu_count()}, {platform.machine()}, Python {platform.python_version()}, "
        f"c2pa-python {version('c2pa-python')}, cryptography {version('cryptography')}, "
        f"{platform.system()} {platform.release()}, load average {load_before:.2f} before / "
        f"{os.getloadavg()[0]:.2f} after"
    )
    lines = [
        f"Output: {args.side}x{args.side} PNG ({len(output):,} bytes); inputs "
        f"{args.side}x{args.side} JPEG q90 (about {len(inputs[0].data):,} bytes each). "
        f"{args.repeat} runs per row after one warm-up run, one thread.",
        "",
        "| what | p50 ms | p95 ms | min ms | note |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, times, note in rows:
        lines.append(f"| {name} | {statistics.median(times):.1f} | {pct(times, 95):.1f} "
                     f"| {min(times):.1f} | {note} |")  # fmt: skip
    table = "\n".join(lines)
    print(facts)
    print(table)
    if args.out:
        command = "python bench/bench_credentials.py " + " ".join(sys.argv[1:])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            "# Content Credentials benchmark\n\n"
            f"Command (from the repository root, venv active):\n\n    {command.strip()}\n\n"
            f"Machine: {facts}.\n\n{table}\n\n{READING}"
        )
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
