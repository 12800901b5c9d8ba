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
from typing import Any

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


def plane_psnr(source: np.ndarray, decoded: np.ndarray) -> float:
    """Mean over frames of the per-frame PSNR (dB) of ``(n, h, w)`` uint8 stacks of a plane."""
    if source.shape != decoded.shape:
        raise ValueError(f"decoded {decoded.shape} != source {source.shape}")
    err = (source.astype(np.float64) - decoded).reshape(len(source), -1)
    mse = np.mean(err * err, axis=1)
    return float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-12))))


def _ffmpeg_planes(path: Path, n: int) -> list[np.ndarray]:
    raw = subprocess.run([ffmpeg(), "-v", "error", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "yuv420p", "-"], capture_output=True, timeout=600,
                         check=True).stdout
    frame = W * H * 3 // 2
    if len(raw) != n * frame:
        raise RuntimeError(f"{path}: decoded {len(raw) / frame:.2f} frames, expected {n}")
    c = W * H // 4
    return [np.stack([np.frombuffer(raw, np.uint8, size, i * frame + off).reshape(shape)
                      for i in range(n)])
            for size, off, shape in ((W * H, 0, (H, W)), (c, W * H, (H // 2, W // 2)),
                                     (c, W * H + c, (H // 2, W // 2)))]


def psnrs(source: Any, decoded: list[np.ndarray]) -> tuple[float, float, float]:
    """Mean per-frame PSNR of Y, U and V."""
    return tuple(plane_psnr(s, d) for s, d in zip(source, decoded, strict=True))


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


def reference_curve(codec: str, clip: Path, source: Any, folder: Path) -> list[tuple]:
    """``[(bytes, Y PSNR, U PSNR, V PSNR)]`` of ffmpeg's ``codec`` at each quantiser setting."""
    points, args = REFERENCE[codec]
    out = []
    raw = raw_input(clip)
    for q in points:
        path = folder / f"{clip.stem}.{codec}.{q}"
        _run([ffmpeg(), "-v", "error", "-y", *raw, *args(q), str(path)])
        out.append((path.stat().st_size,
                    *psnrs(source, _ffmpeg_planes(path, source.n_frames))))
    return out


def ours(clip: Path, source: Any, quality: int, params: dict) -> tuple:
    """``(bytes, Y, U, V PSNR, encode CPU s/frame)`` of our encoder; PSNR of our decoder's
    output."""
    t0 = time.process_time()
    stream, _, _ = encode_serial(open_clip(clip), {"gop": GOP, "bframes": BFRAMES,
                                                  "quality": quality, **params})
    cpu = (time.process_time() - t0) / source.n_frames
    decoded = decode(stream)
    planes = [np.stack([f[i] for f in decoded]) for i in range(3)]
    return (len(stream), *psnrs(source, planes), cpu)


def at_psnr(curve: list[tuple], db: float) -> tuple[float, float, float]:
    """The reference's ``(bytes, U PSNR, V PSNR)`` at luma PSNR ``db`` (bytes log-linear, chroma
    PSNR linear between the two neighbouring points; nan outside its range)."""
    pts = sorted(curve, key=lambda p: p[1])
    for (b0, p0, u0, v0), (b1, p1, u1, v1) in zip(pts, pts[1:], strict=False):
        if p0 <= db <= p1 and p1 > p0:
            t = (db - p0) / (p1 - p0)
            return (math.exp((1 - t) * math.log(b0) + t * math.log(b1)), (1 - t) * u0 + t * u1,
                    (1 - t) * v0 + t * v1)
    return math.nan, math.nan, math.nan


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
            source = read_y4m(clip)
            refs = {c: reference_curve(c, clip, source, folder) for c in REFERENCE}
            rows[name] = []
            for q in qualities:
                size, db, u, v, cpu = ours(clip, source, q, params)
                row = {"quality": q, "bytes": size, "psnr": db, "u": u, "v": v, "cpu": cpu}
                for c, curve in refs.items():
                    b, ru, rv = at_psnr(curve, db)
                    row[c], row[c + "_uv"] = size / b, (ru, rv)
                rows[name].append(row)
                log(f"{name:<10} q{q:<3} {size:>9,} B Y {db:6.2f} U {u:5.2f} V {v:5.2f} dB  "
                    f"vs MPEG-2 {row['mpeg2']:5.2f}x (its U {row['mpeg2_uv'][0]:5.2f} V "
                    f"{row['mpeg2_uv'][1]:5.2f})  vs x264 {row['x264']:5.2f}x  "
                    f"({cpu * 1e3:.0f} ms/f)")
            for c, curve in refs.items():
                log(f"{name:<10} {c}: " + ", ".join(f"{b:,} B {p:.2f}/{u:.1f}/{v:.1f} dB"
                                                    for b, p, u, v in curve))
    return rows


def print_summary(rows: dict[str, list[dict]]) -> None:
    print("\n| clip | quality | bytes | PSNR Y dB | U/V dB | MPEG-2's U/V at that Y | "
          "bytes / MPEG-2 | bytes / x264 | encode ms/frame |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, rs in rows.items():
        for r in rs:
            mu, mv = r["mpeg2_uv"]
            print(f"| {name} | {r['quality']} | {r['bytes']:,} | {r['psnr']:.2f} | "
                  f"{r['u']:.1f}/{r['v']:.1f} | {mu:.1f}/{mv:.1f} | {r['mpeg2']:.2f} | "
                  f"{r['x264']:.2f} | {r['cpu'] * 1e3:.0f} |")
        print(f"| **{name}** | geo. mean | | | | | **{gmean([r['mpeg2'] for r in rs]):.2f}** | "
              f"**{gmean([r['x264'] for r in rs]):.2f}** | |")
    every = [r for rs in rows.values() for r in rs]
    print(f"| **all** | geo. mean | | | | | **{gmean([r['mpeg2'] for r in every]):.2f}** | "
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
