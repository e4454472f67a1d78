"""What checking one model answer costs: structure walk against a full decode.

Every answer a model sends goes through ``bot.kit.images.inspect_output`` before the chat
sees it. This times it on real-sized answers (a photographic 1024² PNG of about 1.3 MB,
as Gemini sends, and JPEGs) against the way it used to work: open the bytes with Pillow
and decode every pixel (kept below as ``full_decode_inspect``). Resending a stored answer
uses ``inspect_stored_output``, timed too.

Figures are also given as ratios to a fixed reference workload timed in the same
process: parse the JSON body of one Gemini answer carrying the PNG (base64) and a 4 kB
thought signature, base64-decode the image and SHA-256 it. That is work every answer
costs anyway, so the ratios compare across machines.

    python bench/bench_answers.py                              # prints the table
    python bench/bench_answers.py --out bench/results/answers.md
    python bench/bench_answers.py --quick                      # smoke run, few repeats
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from bench.realistic import (  # noqa: E402
    build_picture,
    gemini_body,
    median_ms,
    reference_workload,
)
from bot.kit.images import (  # noqa: E402
    _PIL_FORMATS,
    ImageRejected,
    inspect_output,
    inspect_stored_output,
    sniff_image_type,
)


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def full_decode_inspect(data: bytes, mime_type: str | None = None) -> tuple[str, int, int]:
    """The answer check before structure walking: sniff, then decode every pixel."""
    kind = sniff_image_type(data)
    if kind is None:
        raise ImageRejected("The model sent something that is not an image.")
    im = Image.open(io.BytesIO(data), formats=_PIL_FORMATS[kind])
    im.load()
    return kind, im.width, im.height


@dataclass
class Row:
    answer: str
    size: str
    method: str
    ms: float
    cpu_ms: float

    def cells(self, reference_ms: float, before_ms: float) -> str:
        return (f"| {self.answer} | {self.size} | {self.method} | {self.ms:.3f} "
                f"| {self.cpu_ms:.3f} | {self.ms / reference_ms:.3f} "
                f"| {before_ms / self.ms:.0f}× |")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200, help="calls per timing")
    parser.add_argument("--signature-bytes", type=int, default=4096)
    parser.add_argument("--out", type=Path, help="also write the results as markdown here")
    parser.add_argument("--quick", action="store_true", help="small pictures, few repeats")
    args = parser.parse_args()
    repeat = 5 if args.quick else args.repeat
    side = 256 if args.quick else 1024

    print("building the answers…", file=sys.stderr, flush=True)
    answers = {
        f"PNG {side}²": encode(build_picture(side, 0.05), "PNG"),
        f"JPEG {side}² q95": encode(build_picture(side, 0.3), "JPEG", quality=95),
        f"PNG {side * 2}²": encode(build_picture(side * 2, 0.05), "PNG"),
        f"JPEG {side * 2}² q95": encode(build_picture(side * 2, 0.3), "JPEG", quality=95),
    }
    body = gemini_body(answers[f"PNG {side}²"], args.signature_bytes)
    reference_ms, reference_cpu = median_ms(lambda: reference_workload(body), repeat)

    rows: list[tuple[Row, float]] = []
    for name, data in answers.items():
        print(f"  timing {name}…", file=sys.stderr, flush=True)
        out = inspect_output(data, "image/png")
        assert full_decode_inspect(data) == (out.mime_type, out.width, out.height)
        size = f"{len(data) / 1e6:.2f} MB"
        before = Row(name, size, "full decode (before)",
                     *median_ms(lambda d=data: full_decode_inspect(d), max(5, repeat // 10)))
        after = Row(name, size, "inspect_output (after)",
                    *median_ms(lambda d=data: inspect_output(d, "image/png"), repeat))
        stored = Row(name, size, "inspect_stored_output",
                     *median_ms(lambda d=data: inspect_stored_output(d, "image/png"), repeat))
        rows += [(before, before.ms), (after, before.ms), (stored, before.ms)]  # fmt: skip

    import PIL

    facts = (f"nproc {os.cpu_count()}, {platform.machine()}, Python "
             f"{platform.python_version()}, Pillow {PIL.__version__}, {platform.system()} "
             f"{platform.release()}, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    lines = [
        f"Reference workload (parse a {len(body) / 1e6:.2f} MB Gemini answer body with a "
        f"{args.signature_bytes}-byte signature, base64-decode the PNG, SHA-256 it): "
        f"{reference_ms:.2f} ms wall, {reference_cpu:.2f} ms CPU, median of {repeat}.",
        "",
        "| answer | bytes | check | p50 ms | CPU ms | × reference | faster than before |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
        *(row.cells(reference_ms, before_ms) for row, before_ms in rows),
    ]
    table = "\n".join(lines)
    print(f"\n{facts}\n{table}")
    if args.out:
        command = "python bench/bench_answers.py " + " ".join(sys.argv[1:])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            "# Model answer check benchmark\n\n"
            f"Command (from the repository root, venv active):\n\n    {command.strip()}\n\n"
            f"Machine: {facts}.\n\n{table}\n\n"
            "\"full decode (before)\" is the check as it was: Pillow opens the answer and "
            "decodes every pixel. \"inspect_output (after)\" walks the structure (every PNG "
            "chunk CRC, every JPEG marker up to EOI) and reads the size from the headers; "
            "\"inspect_stored_output\" reads only the header of an answer that was checked "
            "when it arrived. One thread, one process, timings are medians; the full decode "
            "runs a tenth as many times.\n"
        )
        print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
