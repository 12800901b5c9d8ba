"""Quality and size statistics of a coded clip."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["psnr", "summarize", "VideoStats", "format_stats"]


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of 8-bit pictures (``inf`` when they are equal)."""
    err = np.asarray(reference, np.float64) - np.asarray(decoded, np.float64)
    mse = float(np.mean(err * err))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


class VideoStats(dict):
    """The stats dict of :func:`summarize` (JSON-friendly); ``str()`` is :func:`format_stats`, so
    ``streampipe run`` prints a table instead of the per-frame lists."""

    def __str__(self) -> str:
        return format_stats(self)


def format_stats(stats: dict) -> str:
    """Bits per frame and PSNR by frame type, and the totals, as a small table."""
    n = stats["frames"]
    size = f" {stats['width']}x{stats['height']}" if "width" in stats else ""
    quality = f", quality {stats['quality']}" if "quality" in stats else ""
    out = f" -> {stats['out']}" if stats.get("out") else ""
    lines = [f"video: {n} frames{size}{quality}, {stats['bytes']:,} bytes "
             f"({8 * stats['bytes'] / max(n, 1):,.0f} bits/frame){out}"]
    head = f"{'type':<5} {'frames':>6} {'bits/frame':>11} {'PSNR dB':>8}"
    lines += [head, "-" * len(head)]
    rows = [(t, [i for i, ft in enumerate(stats["types"]) if ft == t]) for t in "IPB"]
    rows.append(("all", list(range(n))))
    for name, idx in rows:
        if not idx:
            continue
        bits = np.mean([stats["bits_per_frame"][i] for i in idx])
        quality_db = np.mean([stats["psnr"][i] for i in idx])
        lines.append(f"{name:<5} {len(idx):>6} {bits:>11,.0f} {quality_db:>8.2f}")
    return "\n".join(lines)


def summarize(frames: list[dict], stream_bytes: int) -> VideoStats:
    """Stats of coded frames (dicts with ``display``, ``type``, ``bits``, ``psnr``).

    Per-frame lists are in display order; ``bits_by_type`` maps I/P/B to the bits of each such
    frame (display order).
    """
    by_display = sorted(frames, key=lambda f: f["display"])
    bits_by_type: dict[str, list[int]] = {"I": [], "P": [], "B": []}
    for f in by_display:
        bits_by_type[f["type"]].append(f["bits"])
    psnrs = [f["psnr"] for f in by_display]
    return VideoStats({
        "frames": len(by_display),
        "bytes": stream_bytes,
        "types": [f["type"] for f in by_display],
        "bits_per_frame": [f["bits"] for f in by_display],
        "bits_by_type": bits_by_type,
        "mean_bits_by_type": {t: float(np.mean(v)) for t, v in bits_by_type.items() if v},
        "psnr": psnrs,
        "mean_psnr": float(np.mean(psnrs)) if psnrs else math.nan,
    })
