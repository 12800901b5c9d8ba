"""Quality and size statistics of a coded clip."""

from __future__ import annotations

import math

import numpy as np

from .yuv import YUV

__all__ = ["psnr", "psnr_planes", "summarize", "VideoStats", "format_stats"]

PSNR_KEYS = ("Y", "U", "V", "YUV")


def _sq_err(reference: np.ndarray, decoded: np.ndarray) -> tuple[float, int]:
    err = np.asarray(reference, np.float64) - np.asarray(decoded, np.float64)
    return float(np.sum(err * err)), err.size


def _db(sq: float, n: int) -> float:
    return math.inf if sq == 0 else 10.0 * math.log10(255.0**2 * n / sq)


def psnr(reference: np.ndarray | YUV, decoded: np.ndarray | YUV) -> float:
    """Peak signal-to-noise ratio in dB of 8-bit planes (``inf`` when they are equal).

    For :class:`YUV` pictures it is the combined PSNR: the mean squared error pooled over every
    sample of the three planes (in 4:2:0 that weighs the MSEs of Y, U, V as 4:1:1).
    """
    if isinstance(reference, YUV):
        parts = [_sq_err(r, d) for r, d in zip(reference, decoded, strict=True)]
        return _db(sum(p[0] for p in parts), sum(p[1] for p in parts))
    return _db(*_sq_err(reference, decoded))


def psnr_planes(reference: YUV, decoded: YUV) -> dict[str, float]:
    """PSNR (dB) of each plane, ``{"Y", "U", "V"}``, and the combined ``"YUV"``."""
    out = {k: psnr(r, d) for k, r, d in zip("YUV", reference, decoded, strict=True)}
    out["YUV"] = psnr(reference, decoded)
    return out


class VideoStats(dict):
    """The stats dict of :func:`summarize` (JSON-friendly); ``str()`` is :func:`format_stats`, so
    ``streampipe run`` prints a table instead of the per-frame lists."""

    def __str__(self) -> str:
        return format_stats(self)


def format_stats(stats: dict) -> str:
    """Bits per frame and PSNR by frame type, and the totals, as a small table."""
    n = stats["frames"]
    size = f" {stats['width']}x{stats['height']}" if "width" in stats else ""
    scales = stats.get("scale_by_type") or {}
    quality = (", quantiser scale " + " ".join(f"{t}{scales[t]}" for t in "IPB" if t in scales)
               if scales else "")
    out = f" -> {stats['out']}" if stats.get("out") else ""
    lines = [f"video: {n} frames{size}{quality}, {stats['bytes']:,} bytes "
             f"({8 * stats['bytes'] / max(n, 1):,.0f} bits/frame){out}"]
    head = f"{'type':<5} {'frames':>6} {'bits/frame':>11}" + "".join(
        f" {'PSNR ' + k:>8}" for k in PSNR_KEYS)
    lines += [head, "-" * len(head)]
    rows = [(t, [i for i, ft in enumerate(stats["types"]) if ft == t]) for t in "IPB"]
    rows.append(("all", list(range(n))))
    for name, idx in rows:
        if not idx:
            continue
        bits = np.mean([stats["bits_per_frame"][i] for i in idx])
        dbs = "".join(f" {np.mean([stats['psnr_by_plane'][k][i] for i in idx]):>8.2f}"
                      for k in PSNR_KEYS)
        lines.append(f"{name:<5} {len(idx):>6} {bits:>11,.0f}{dbs}")
    return "\n".join(lines)


def summarize(frames: list[dict], stream_bytes: int) -> VideoStats:
    """Stats of coded frames (dicts with ``display``, ``type``, ``bits``, ``psnr``, the last a
    :func:`psnr_planes` dict).

    Per-frame lists are in display order; ``bits_by_type`` maps I/P/B to the bits of each such
    frame (display order).  ``psnr`` is the combined (YUV) PSNR per frame, ``psnr_by_plane``
    maps Y, U, V and YUV to per-frame lists, ``mean_psnr_by_plane`` to their means.
    """
    by_display = sorted(frames, key=lambda f: f["display"])
    bits_by_type: dict[str, list[int]] = {"I": [], "P": [], "B": []}
    for f in by_display:
        bits_by_type[f["type"]].append(f["bits"])
    by_plane = {k: [f["psnr"][k] for f in by_display] for k in PSNR_KEYS}
    psnrs = by_plane["YUV"]
    return VideoStats({
        "frames": len(by_display),
        "bytes": stream_bytes,
        "types": [f["type"] for f in by_display],
        "bits_per_frame": [f["bits"] for f in by_display],
        "bits_by_type": bits_by_type,
        "mean_bits_by_type": {t: float(np.mean(v)) for t, v in bits_by_type.items() if v},
        "psnr": psnrs,
        "mean_psnr": float(np.mean(psnrs)) if psnrs else math.nan,
        "psnr_by_plane": by_plane,
        "mean_psnr_by_plane": {k: float(np.mean(v)) if v else math.nan
                               for k, v in by_plane.items()},
    })
