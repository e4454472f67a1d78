"""How long it takes to get a phone photo ready for the model.

Builds a 12 MP (4000x3000) photo-like JPEG with camera EXIF, then times
``bot.kit.images.prepare_input`` (DCT-scaled decode with libjpeg-turbo, re-encode) against the
plain way (``Image.open`` + ``load`` + a bicubic resize + JPEG encode, the reference of
issue 12's target; and the same with Lanczos) at the sending size, all in one run, and reports the
ratios. A decode at 1/8 scale, which is little more than libjpeg's entropy decoding,
shows the floor no JPEG path can go below. Each method runs in its own child process so
its peak memory (max RSS) is its own. Quality: each output against the ideal (full
decode + Lanczos, not re-encoded), as PSNR and largest channel difference.

    python bench/bench_preprocess.py                      # 30 runs each, max side 1536
    python bench/bench_preprocess.py --repeat 60 --markdown bench/results/preprocess.md
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageStat  # noqa: E402

METHODS = (
    "prepare_input",
    "prepare_input_rotated",
    "full_decode_bicubic",
    "full_decode_lanczos",
    "decode_floor",
)
REFERENCE = "full_decode_bicubic"
RESAMPLE = {
    "full_decode_bicubic": Image.Resampling.BICUBIC,
    "full_decode_lanczos": Image.Resampling.LANCZOS,
}


def build_photo(width: int = 4000, height: int = 3000, orientation: int = 1) -> bytes:
    """A camera-like JPEG: soft gradients, shapes, texture and sensor noise, plus EXIF/GPS."""
    sky = Image.linear_gradient("L").resize((width, height))
    side = sky.transpose(Image.Transpose.ROTATE_90).resize((width, height))
    base = Image.merge("RGB", (side, sky, Image.new("L", (width, height), 140)))
    draw = ImageDraw.Draw(base)
    step = max(width, height) // 40
    for k in range(60):
        x, y = (k * 7919) % width, (k * 104729) % height
        r = step * (1 + k % 5)
        colour = ((k * 53) % 256, (k * 97) % 256, (k * 191) % 256)
        (draw.ellipse if k % 2 else draw.rectangle)((x - r, y - r, x + r, y + r), fill=colour)
    base = base.filter(ImageFilter.GaussianBlur(3))
    # colour sensor grain: entropy decoding dominates JPEG decode time, so a realistic
    # file size (~3 MB for 12 MP at quality 92) matters more than the picture itself
    grain = Image.merge("RGB", [Image.effect_noise((width, height), 30) for _ in range(3)])
    photo = Image.blend(base, grain, 0.22)
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "BenchCam"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 29.0)
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=92, exif=exif)
    return buf.getvalue()


def full_decode_resize(
    data: bytes, max_side: int, resample: Image.Resampling, *, encode: bool = True
) -> bytes | Image.Image:
    """The straightforward way: decode every pixel, then shrink (and encode)."""
    im = Image.open(io.BytesIO(data))
    im.load()
    scale = max_side / max(im.size)
    size = (round(im.width * scale), round(im.height * scale))
    small = im.resize(size, resample)
    if not encode:
        return small
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def decode_floor(data: bytes) -> Image.Image:
    """A 1/8-scale decode: all of the entropy decoding, almost nothing else."""
    im = Image.open(io.BytesIO(data))
    im.draft("RGB", (im.width // 8, im.height // 8))
    im.load()
    return im


def quality(data: bytes, max_side: int) -> list[str]:
    """PSNR and largest difference of each way's output against the ideal one: a full
    decode resized with Lanczos to the very size prepare_input sends."""
    from bot.kit.images import _dct_scaled, prepare_input

    prepared = prepare_input(data, max_side=max_side)
    size = (prepared.width, prepared.height)
    full = Image.open(io.BytesIO(data))
    full.load()
    ideal = full.convert("RGB").resize(size, Image.Resampling.LANCZOS)

    def encoded(im: Image.Image) -> Image.Image:
        out = io.BytesIO()
        im.save(out, "JPEG", quality=90)
        return Image.open(io.BytesIO(out.getvalue())).convert("RGB")

    header = Image.open(io.BytesIO(data))
    scaled = _dct_scaled(data, header, max_side)
    candidates = {
        "prepare_input output (JPEG q90)": Image.open(io.BytesIO(prepared.data)).convert("RGB"),
        "full decode + bicubic output (JPEG q90)": encoded(
            full.convert("RGB").resize(size, Image.Resampling.BICUBIC)
        ),
        "full decode + bicubic, before encoding": full.convert("RGB").resize(
            size, Image.Resampling.BICUBIC
        ),
    }
    if scaled is not None and scaled.size == size:
        candidates["DCT-scaled decode, before encoding"] = scaled.convert("RGB")
    lines = [f"| output ({size[0]}x{size[1]}) | PSNR dB | max diff |", "| --- | ---: | ---: |"]
    for name, im in candidates.items():
        diff = ImageChops.difference(ideal, im)
        mse = sum(rms**2 for rms in ImageStat.Stat(diff).rms) / 3
        worst = max(high for _, high in diff.getextrema())  # type: ignore[misc]
        lines.append(f"| {name} | {10 * math.log10(255**2 / mse):.1f} | {worst} |")
    return lines


def _max_rss_mb() -> float:
    """This process's peak RSS (VmHWM, reset by exec, unlike ru_maxrss on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(method: str, path: str, repeat: int, max_side: int, *, with_stages: bool) -> None:
    """Run one method ``repeat`` times and print one JSON line of results."""
    from bot.kit.images import prepare_input

    data = Path(path).read_bytes()
    fn: Callable[[bytes], object]
    if method.startswith("prepare_input"):
        fn = lambda d: prepare_input(d, max_side=max_side)  # noqa: E731
    elif method == "decode_floor":
        fn = decode_floor
    else:
        fn = lambda d: full_decode_resize(d, max_side, RESAMPLE[method])  # noqa: E731
    rss_before = _max_rss_mb()
    fn(data)  # warm-up: first-call imports and plugin initialisation
    times, cpu = [], []
    for i in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn(data)
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
        if (i + 1) % 10 == 0 or i + 1 == repeat:
            print(f"    {method}: {i + 1}/{repeat}", file=sys.stderr, flush=True)
    peak, growth = _max_rss_mb(), _max_rss_mb() - rss_before
    result = fn(data)
    if isinstance(result, Image.Image):  # the decode floor: nothing encoded
        out, encoded = result, b""
    else:
        encoded = result if isinstance(result, bytes) else getattr(result, "data", b"")
        out = Image.open(io.BytesIO(encoded))
    stages = _stages(data, max_side, repeat) if with_stages and method == "prepare_input" else None
    print(
        json.dumps(
            {
                "method": method,
                "times": times,
                "cpu": cpu,
                "peak_rss_mb": peak,
                "rss_growth_mb": growth,
                "out_size": [out.width, out.height],
                "out_kb": len(encoded) // 1000,
                "stages": stages,
            }
        )
    )


def _stages(data: bytes, max_side: int, repeat: int) -> dict[str, float]:
    """Median ms of prepare_input's costly steps, timed one by one."""
    from bot.kit.images import _dct_scaled, _resize

    header = Image.open(io.BytesIO(data))

    def decode() -> Image.Image:
        scaled = _dct_scaled(data, header, max_side)
        assert scaled is not None, "this photo takes the DCT-scaled path"
        return scaled

    decoded = decode()
    steps: dict[str, Callable[[], object]] = {"DCT-scaled decode": decode}
    small = decoded
    if max(decoded.size) > max_side:
        scale = max_side / max(decoded.size)
        target = (round(decoded.width * scale), round(decoded.height * scale))
        small = _resize(decoded, target)
        steps["resize"] = lambda: _resize(decoded, target)
    steps["encode"] = lambda: small.save(io.BytesIO(), format="JPEG", quality=90)
    out = {}
    for name, step in steps.items():
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            step()
            times.append((time.perf_counter() - start) * 1000)
        out[name] = statistics.median(times)
    out["decoded_width"], out["decoded_height"] = decoded.size
    return out


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One method's rounds as one result: all timings, the highest memory figures."""
    merged = dict(parts[0])
    merged["times"] = [t for p in parts for t in p["times"]]
    merged["cpu"] = [c for p in parts for c in p["cpu"]]
    merged["peak_rss_mb"] = max(p["peak_rss_mb"] for p in parts)
    merged["rss_growth_mb"] = max(p["rss_growth_mb"] for p in parts)
    merged["stages"] = next((p["stages"] for p in parts if p["stages"]), None)
    return merged


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="runs per method in all")
    parser.add_argument("--rounds", type=int, default=3, help="turns the methods take")
    parser.add_argument("--max-side", type=int, default=1536)
    parser.add_argument("--markdown", type=Path, help="also write the results table here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--stages", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.input, args.repeat, args.max_side, with_stages=args.stages)
        return 0

    import PIL

    load_before = os.getloadavg()[0]
    print("building a 4000x3000 photo-like JPEG (twice: upright and EXIF-rotated)…", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        upright = Path(tmp, "photo.jpg")
        rotated = Path(tmp, "photo_rot6.jpg")
        upright.write_bytes(build_photo())
        rotated.write_bytes(build_photo(orientation=6))
        size_mb = upright.stat().st_size / 1e6
        print(f"  {size_mb:.1f} MB each; {args.repeat} runs per method", flush=True)
        upright_data = upright.read_bytes()
        # Methods take turns, round after round, so a change in the machine's load
        # falls on all of them alike (the ratios are what the target is about).
        per_round = max(1, args.repeat // args.rounds)
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
        for turn in range(args.rounds):
            for method in METHODS:
                print(f"  round {turn + 1}/{args.rounds}: {method}…", flush=True)
                source = rotated if method.endswith("rotated") else upright
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", method, "--input", str(source),
                     "--repeat", str(per_round), "--max-side", str(args.max_side),
                     *(["--stages"] if turn == 0 else [])],
                    check=True, stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                runs[method].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        results = [_merge(parts) for parts in runs.values()]
        print("  comparing outputs with the ideal…", flush=True)
        quality_lines = quality(upright_data, args.max_side)

    facts = (
        f"nproc {os.cpu_count()}, {platform.machine()}, Python {platform.python_version()}, "
        f"Pillow {PIL.__version__}, {platform.system()} {platform.release()}, "
        f"load average {load_before:.2f} before / {os.getloadavg()[0]:.2f} after"
    )
    lines = [
        f"12 MP JPEG ({size_mb:.1f} MB, 4000x3000) to max side {args.max_side}, "
        f"{per_round * args.rounds} runs each in {args.rounds} rounds taking turns (each "
        "after one warm-up run), one process per method and round.",
        "",
        "| method | p50 ms | p95 ms | min ms | CPU ms p50 | × full decode + bicubic "
        "| CPU × full decode + bicubic | × full decode + Lanczos | peak RSS MB (growth) "
        "| output |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    p50 = {r["method"]: statistics.median(r["times"]) for r in results}
    cpu50 = {r["method"]: statistics.median(r["cpu"]) for r in results}
    for r in results:
        t = r["times"]
        size = "x".join(map(str, r["out_size"]))
        output = f"{size} JPEG, {r['out_kb']} kB" if r["out_kb"] else f"{size} decoded only"
        lines.append(
            f"| {r['method']} | {statistics.median(t):.1f} | {percentile(t, 0.95):.1f} "
            f"| {min(t):.1f} | {statistics.median(r['cpu']):.1f} "
            f"| {p50[r['method']] / p50[REFERENCE]:.2f} "
            f"| {cpu50[r['method']] / cpu50[REFERENCE]:.2f} "
            f"| {p50[r['method']] / p50['full_decode_lanczos']:.2f} "
            f"| {r['peak_rss_mb']:.0f} (+{r['rss_growth_mb']:.0f}) | {output} |"
        )
    for r in results:
        if r["stages"]:
            st = r["stages"]
            lines += [
                "",
                f"prepare_input steps, p50: DCT-scaled decode straight to "
                f"{st['decoded_width']:.0f}x{st['decoded_height']:.0f} "
                f"{st['DCT-scaled decode']:.1f} ms"
                + (f", resize {st['resize']:.1f} ms" if "resize" in st else ", no resize")
                + f", JPEG q90 encode {st['encode']:.1f} ms.",
            ]
    lines += [
        "",
        "Quality against the ideal output (full decode + Lanczos to the size prepare_input "
        "sends, not encoded), on the same photo:",
        "",
        *quality_lines,
    ]
    table = "\n".join(lines)
    print()
    print(facts)
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        command = "python bench/bench_preprocess.py " + " ".join(sys.argv[1:])
        args.markdown.write_text(
            "# Image preprocessing benchmark\n\n"
            f"Command (from the repository root, venv active):\n\n    {command.strip()}\n\n"
            f"Machine: {facts}.\n\n{table}\n\n"
            "Wall time is what a user waits; CPU ms is the work done (both bands of the "
            "resize count), so when another process holds the second core wall time rises "
            "towards CPU time. The × columns divide p50s of the same run; the CPU column is "
            "the one to trust when the load average is above the core count. Peak RSS is "
            "the child process's VmHWM; growth is over the process after imports and "
            "reading the file.\n"
        )
        print(f"\nwrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
