"""Rate-distortion of the video built-in against ffmpeg's MPEG-2 and x264, at equal luma PSNR.

Three 352x288 clips of the kinds the issue names: a camera pan over a photo (the built-in's
synthetic source), ffmpeg's ``testsrc2`` pattern and ffmpeg's ``mandelbrot`` fractal zoom.
Every codec codes the same ``.y4m`` with the same GOP (IBBP, 12 frames, open GOPs, no scene-cut
I frames).  Our streams are decoded by our decoder, ffmpeg's by ffmpeg, and luma PSNR is the
mean over frames of each frame's PSNR, computed here from the decoded planes for all three.
For each of our quality points the reference codec's size at the same PSNR is interpolated
(log bytes linear in PSNR between its two neighbouring points; no extrapolation), and the
table gives our bytes / theirs, with the geometric mean per clip and over all points.

Usage: ``PYTHONPATH=. python -m benchmarks.video_rd [--quick] [--frames N]`` (needs the
``bench`` extra: ``pip install ".[bench]"`` for imageio-ffmpeg).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipelines.video import decode, encode_serial, open_clip, read_y4m, write_y4m
from pipelines.video.synthetic import pan_frames

W, H, GOP, BFRAMES, FPS = 352, 288, 12, 2, 25
PAN_SHIFT = (1, 4)  # pixels per frame: 12 px between a P frame and its reference
OUR_QUALITIES = (15, 30, 50, 70)
MPEG2_Q = (2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 31)
X264_QP = (14, 18, 22, 26, 30, 34, 38, 42, 46)


def ffmpeg() -> str:
    try:
        import imageio_ffmpeg
    except ModuleNotFoundError:
        sys.exit("video_rd: needs imageio-ffmpeg (pip install '.[bench]')")
    return imageio_ffmpeg.get_ffmpeg_exe()


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)}\n{done.stderr[-2000:]}")


def make_clips(folder: Path, n: int) -> dict[str, Path]:
    """The three test clips as .y4m files."""
    clips = {"pan": folder / "pan.y4m"}
    write_y4m(clips["pan"], pan_frames(n, W, H, PAN_SHIFT), fps=(FPS, 1), color_range="FULL")
    for name in ("testsrc2", "mandelbrot"):
        clips[name] = folder / f"{name}.y4m"
        _run([ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i",
              f"{name}=size={W}x{H}:rate={FPS}", "-frames:v", str(n), "-pix_fmt", "yuv420p",
              str(clips[name])])
    return clips


def luma_psnr(source: np.ndarray, decoded: np.ndarray) -> float:
    """Mean over frames of the per-frame luma PSNR (dB) of ``(n, h, w)`` uint8 stacks."""
    if source.shape != decoded.shape:
        raise ValueError(f"decoded {decoded.shape} != source {source.shape}")
    err = (source.astype(np.float64) - decoded).reshape(len(source), -1)
    mse = np.mean(err * err, axis=1)
    return float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-12))))


def _ffmpeg_luma(path: Path, n: int) -> np.ndarray:
    raw = subprocess.run([ffmpeg(), "-v", "error", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "yuv420p", "-"], capture_output=True, timeout=600,
                         check=True).stdout
    frame = W * H * 3 // 2
    if len(raw) != n * frame:
        raise RuntimeError(f"{path}: decoded {len(raw) / frame:.2f} frames, expected {n}")
    return np.stack([np.frombuffer(raw, np.uint8, W * H, i * frame).reshape(H, W)
                     for i in range(n)])


REFERENCE = {
    "mpeg2": (MPEG2_Q, lambda q: ["-c:v", "mpeg2video", "-q:v", str(q), "-g", str(GOP),
                                  "-bf", str(BFRAMES), "-sc_threshold", "1000000000",
                                  "-f", "mpeg2video"]),
    "x264": (X264_QP, lambda q: ["-c:v", "libx264", "-qp", str(q), "-g", str(GOP),
                                 "-bf", str(BFRAMES), "-x264-params",
                                 f"keyint={GOP}:min-keyint={GOP}:scenecut=0:b-adapt=0:"
                                 "b-pyramid=none", "-f", "h264"]),
}


def raw_input(clip: Path) -> list[str]:
    """ffmpeg input options reading ``clip``'s samples as raw yuv420p with no colour tags: a
    full-range tag would make ffmpeg convert the samples to limited range for MPEG-2 (about
    -9 dB against the source), and every codec must code the very same samples."""
    raw = clip.with_suffix(".yuv")
    if not raw.exists():
        frames = read_y4m(clip)
        with raw.open("wb") as f:
            for d in range(frames.n_frames):
                for plane in frames.frame(d):
                    f.write(plane.tobytes())
    return ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{W}x{H}", "-r", str(FPS),
            "-i", str(raw)]


def reference_curve(codec: str, clip: Path, luma: np.ndarray, folder: Path) -> list[tuple]:
    """``[(bytes, luma PSNR)]`` of ffmpeg's ``codec`` at each of its quantiser settings."""
    points, args = REFERENCE[codec]
    out = []
    source = raw_input(clip)
    for q in points:
        path = folder / f"{clip.stem}.{codec}.{q}"
        _run([ffmpeg(), "-v", "error", "-y", *source, *args(q), str(path)])
        out.append((path.stat().st_size, luma_psnr(luma, _ffmpeg_luma(path, len(luma)))))
    return out


def ours(clip: Path, luma: np.ndarray, quality: int, params: dict) -> tuple[int, float, float]:
    """``(bytes, luma PSNR, encode CPU s/frame)`` of our encoder; PSNR of our decoder's output."""
    t0 = time.process_time()
    stream, _, _ = encode_serial(open_clip(clip), {"gop": GOP, "bframes": BFRAMES,
                                                  "quality": quality, **params})
    cpu = (time.process_time() - t0) / len(luma)
    decoded = np.stack([f.y for f in decode(stream)])
    return len(stream), luma_psnr(luma, decoded), cpu


def bytes_at(curve: list[tuple], db: float) -> float:
    """The reference's bytes at ``db`` (log-linear between neighbours; nan outside its range)."""
    pts = sorted(curve, key=lambda p: p[1])
    for (b0, p0), (b1, p1) in zip(pts, pts[1:], strict=False):
        if p0 <= db <= p1 and p1 > p0:
            t = (db - p0) / (p1 - p0)
            return math.exp((1 - t) * math.log(b0) + t * math.log(b1))
    return math.nan


def gmean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return math.exp(sum(map(math.log, vals)) / len(vals)) if vals else math.nan


def rd_table(n: int, qualities: tuple[int, ...], params: dict,
             log: Callable[[str], None] = print) -> dict[str, list[dict]]:
    """Measure every clip; print and return the rows."""
    rows: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="video-rd-") as tmp:
        folder = Path(tmp)
        for name, clip in make_clips(folder, n).items():
            luma = read_y4m(clip).y
            refs = {c: reference_curve(c, clip, luma, folder) for c in REFERENCE}
            rows[name] = []
            for q in qualities:
                size, db, cpu = ours(clip, luma, q, params)
                row = {"quality": q, "bytes": size, "psnr": db, "cpu": cpu}
                for c, curve in refs.items():
                    row[c] = size / bytes_at(curve, db)
                rows[name].append(row)
                log(f"{name:<10} q{q:<3} {size:>9,} B {db:6.2f} dB  vs MPEG-2 "
                    f"{row['mpeg2']:5.2f}x  vs x264 {row['x264']:5.2f}x  ({cpu * 1e3:.0f} ms/f)")
            for c, curve in refs.items():
                log(f"{name:<10} {c}: " + ", ".join(f"{b:,} B {p:.2f} dB" for b, p in curve))
    return rows


def print_summary(rows: dict[str, list[dict]]) -> None:
    print("\n| clip | quality | bytes | PSNR-Y dB | / MPEG-2 | / x264 | encode ms/frame |")
    print("|---|---|---|---|---|---|---|")
    for name, rs in rows.items():
        for r in rs:
            print(f"| {name} | {r['quality']} | {r['bytes']:,} | {r['psnr']:.2f} | "
                  f"{r['mpeg2']:.2f} | {r['x264']:.2f} | {r['cpu'] * 1e3:.0f} |")
        print(f"| **{name}** | geo. mean | | | **{gmean([r['mpeg2'] for r in rs]):.2f}** | "
              f"**{gmean([r['x264'] for r in rs]):.2f}** | |")
    every = [r for rs in rows.values() for r in rs]
    print(f"| **all** | geo. mean | | | **{gmean([r['mpeg2'] for r in every]):.2f}** | "
          f"**{gmean([r['x264'] for r in every]):.2f}** | |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="12 frames, two quality points")
    p.add_argument("--frames", type=int, default=36)
    p.add_argument("--quality", type=int, nargs="*", help="our quality points")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra encoder params (me/transform), e.g. search=full range=16")
    a = p.parse_args(argv)
    n = 12 if a.quick else a.frames
    qualities = tuple(a.quality) if a.quality else ((20, 50) if a.quick else OUR_QUALITIES)
    params = {}
    for kv in a.set:
        k, _, v = kv.partition("=")
        params[k] = int(v) if v.lstrip("-").isdigit() else v
    print(f"video RD: {n} frames {W}x{H}, GOP {GOP} (IBBP), params {params or 'defaults'}")
    print_summary(rd_table(n, qualities, params))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
