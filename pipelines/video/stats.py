"""Quality and size statistics of a coded clip."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["psnr", "summarize"]


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of 8-bit pictures (``inf`` when they are equal)."""
    err = np.asarray(reference, np.float64) - np.asarray(decoded, np.float64)
    mse = float(np.mean(err * err))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def summarize(frames: list[dict], stream_bytes: int) -> dict:
    """Stats of coded frames (dicts with ``display``, ``type``, ``bits``, ``psnr``).

    Per-frame lists are in display order; ``bits_by_type`` maps I/P/B to the bits of each such
    frame (display order).
    """
    by_display = sorted(frames, key=lambda f: f["display"])
    bits_by_type: dict[str, list[int]] = {"I": [], "P": [], "B": []}
    for f in by_display:
        bits_by_type[f["type"]].append(f["bits"])
    psnrs = [f["psnr"] for f in by_display]
    return {
        "frames": len(by_display),
        "bytes": stream_bytes,
        "types": [f["type"] for f in by_display],
        "bits_per_frame": [f["bits"] for f in by_display],
        "bits_by_type": bits_by_type,
        "mean_bits_by_type": {t: float(np.mean(v)) for t, v in bits_by_type.items() if v},
        "psnr": psnrs,
        "mean_psnr": float(np.mean(psnrs)) if psnrs else math.nan,
    }
