"""GPU vs CPU speed of the built-in stage kernels; prints a table of times and ratios.

    python benchmarks/gpu_kernels.py [--scale 1.0] [--repeat 5] [--json out.json] [--only NAME]
                                     [--standin]

Kernels: Black–Scholes valuation of a book (VaR: ``pipelines.var.revalue``), SAD full search
and 8x8 DCT (video, through ``pipelines.video``'s public functions), Linear forward+backward
(split learning).  For each: CPU (NumPy) time, GPU time with inputs already on the device
("kernel"), and GPU time as a stage sees it when items arrive and leave on the host ("stage":
host-to-device copy + kernel + device-to-host copy).  Every GPU result is checked against the
NumPy one (integers exactly, floats as a relative difference).  Run NumPy on one core
(``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1``, as ``gpu_check.py`` does) for the speed-ups the
project quotes.  ``--standin`` runs the equality checks on the strict CuPy stand-in, without
times.  Without CuPy or a device (and no ``--standin``) it prints why and exits with status 2;
a kernel that fails is reported in its row and makes the exit status 1, the others still run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from streampipe import gpu  # noqa: E402


@dataclass
class Case:
    name: str
    size: str
    inputs: Callable[[], tuple]  # host (NumPy) inputs
    run: Callable[..., Any]  # run(xp, *inputs) -> result (xp or NumPy arrays)
    exact: bool  # integer results: must be equal; else report the relative difference


def _bs_case(scale: float) -> Case:
    from pipelines.var import load_portfolio, revalue

    pf = load_portfolio("pipelines/var/data/book.toml")  # 100,000 positions, 4,972 options
    rows = max(1, int(2_000 * scale))

    def inputs() -> tuple:
        return (np.random.default_rng(0).standard_normal((rows, pf.n_factors)) * 0.01,)

    return Case("black-scholes", f"{rows:,} x {len(pf.opt_factor):,} options", inputs,
                lambda xp, shocks: revalue(pf, shocks, xp), exact=False)


def _video_function(*names: str) -> Callable[..., Any]:
    """The first of ``names`` that ``pipelines.video`` exports (its public API)."""
    import pipelines.video as video

    for name in names:
        fn = getattr(video, name, None)
        if fn is not None:
            return fn
    raise LookupError(f"pipelines.video exports none of {', '.join(names)} (the video helper "
                      "owns that API)")


def _sad_case(scale: float) -> Case:
    from pipelines.video.synthetic import pan_frames

    w = max(64, int(640 * math.sqrt(scale)) // 16 * 16)
    h = max(64, int(368 * math.sqrt(scale)) // 16 * 16)

    def inputs() -> tuple:
        f = pan_frames(2, w, h, shift=(3, -2))
        return f.y[1], f.y[0]  # luma planes (the clip is 4:2:0 YUV)

    def run(xp: Any, cur: Any, ref: Any) -> Any:
        return _video_function("full_search")(cur, ref, 8, xp)[0]

    return Case("sad-full-search", f"{w}x{h}, range 8", inputs, run, exact=True)


def _dct_case(scale: float) -> Case:
    n = max(1, int(200_000 * scale))

    def inputs() -> tuple:
        rng = np.random.default_rng(1)
        return (rng.integers(-255, 256, size=(n, 8, 8)).astype(np.float64),)

    def run(xp: Any, blocks: Any) -> Any:
        return _video_function("dct_blocks")(blocks, xp=xp)

    return Case("dct-8x8", f"{n:,} blocks", inputs, run, exact=False)


def _linear_case(scale: float) -> Case:
    from pipelines.split_learning.layers import Linear

    batch = max(1, int(4096 * scale))
    k = m = 1024

    def inputs() -> tuple:
        rng = np.random.default_rng(2)
        return (rng.standard_normal((batch, k)).astype(np.float32),
                rng.standard_normal((batch, m)).astype(np.float32))

    layers: dict[str, Any] = {}

    def run(xp: Any, x: Any, g: Any) -> Any:
        key = xp.__name__
        if key not in layers:  # weights are set up once, like a stage's setup()
            layers[key] = Linear(k, m, seed=0, xp=xp, dtype=np.float32)
        layer = layers[key]
        layer.zero_grad()
        y = layer.forward(x)
        dx = layer.backward(g)
        return y, dx, layer.grads[0]

    return Case("linear-fwd-bwd", f"{batch}x{k} @ {k}x{m} f32", inputs, run, exact=False)


CASES = [_bs_case, _sad_case, _dct_case, _linear_case]


def _median_time(fn: Callable[[], Any], repeat: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up: kernel compilation, memory pool growth, BLAS threads
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _flat(x: Any) -> list[np.ndarray]:
    if isinstance(x, (tuple, list)):
        return [a for v in x for a in _flat(v)]
    return [np.asarray(gpu.to_host(x))]


def _difference(cpu: Any, dev: Any, exact: bool) -> str:
    a, b = _flat(cpu), _flat(dev)
    if exact:
        return "exact" if all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)) else "DIFFER"
    rel = max(float(np.max(np.abs(x - y))) / max(float(np.max(np.abs(x))), 1e-300)
              for x, y in zip(a, b, strict=True))
    return f"{rel:.1e}"


def check(case: Case, cp: Any) -> dict[str, Any]:
    """Only the GPU-vs-NumPy comparison (the stand-in: its times mean nothing)."""
    host = case.inputs()
    diff = _difference(case.run(np, *host), case.run(cp, *(cp.asarray(a) for a in host)),
                       case.exact)
    return {"kernel": case.name, "size": case.size, "gpu_vs_numpy": diff}


def bench(case: Case, cp: Any, repeat: int) -> dict[str, Any]:
    host = case.inputs()
    cpu_result = case.run(np, *host)
    t_cpu = _median_time(lambda: case.run(np, *host), repeat, lambda: None)
    dev = tuple(cp.asarray(a) for a in host)
    sync = cp.cuda.Device().synchronize
    t_kernel = _median_time(lambda: case.run(cp, *dev), repeat, sync)

    def stage() -> Any:
        return _flat(case.run(cp, *(cp.asarray(a) for a in host)))  # in on, out off the device

    t_stage = _median_time(stage, repeat, sync)
    diff = _difference(cpu_result, case.run(cp, *dev), case.exact)
    return {"kernel": case.name, "size": case.size, "cpu_s": t_cpu, "gpu_kernel_s": t_kernel,
            "gpu_stage_s": t_stage, "speedup_kernel": t_cpu / t_kernel,
            "speedup_stage": t_cpu / t_stage, "gpu_vs_numpy": diff}


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'kernel':<16} {'size':<26} {'cpu ms':>9} {'gpu ms':>9} {'stage ms':>9} "
            f"{'x kernel':>9} {'x stage':>8}  gpu vs numpy")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['kernel']:<16} {r['size']:<26} error: {r['error']}")
            continue
        if "cpu_s" not in r:
            lines.append(f"{r['kernel']:<16} {r['size']:<26} {'-':>9} {'-':>9} {'-':>9} "
                         f"{'-':>9} {'-':>8}  {r['gpu_vs_numpy']}")
            continue
        lines.append(f"{r['kernel']:<16} {r['size']:<26} {1e3 * r['cpu_s']:9.2f} "
                     f"{1e3 * r['gpu_kernel_s']:9.2f} {1e3 * r['gpu_stage_s']:9.2f} "
                     f"{r['speedup_kernel']:9.1f} {r['speedup_stage']:8.1f}  {r['gpu_vs_numpy']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="problem size factor (default 1)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (median)")
    ap.add_argument("--json", metavar="OUT", help="also write the rows as JSON")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only this kernel (repeatable)")
    ap.add_argument("--standin", action="store_true",
                    help="check GPU-vs-NumPy equality on the strict CuPy stand-in, no times")
    args = ap.parse_args(argv)
    if not args.scale > 0 or args.repeat < 1:
        ap.error("--scale must be > 0 and --repeat >= 1")
    if args.standin:
        os.environ["STREAMPIPE_CUPY_STANDIN"] = "strict"
        gpu._probe.cache_clear()
    if not gpu.gpu_available():
        _, why = gpu._usable_cupy()
        print(f"gpu_kernels: no GPU, nothing to compare ({why}). Install the gpu extra "
              "(pip install 'streampipe[gpu]') and run on a node with a CUDA device.",
              file=sys.stderr)
        return 2
    _, cp = gpu.resolve_device("gpu", stage="benchmark")
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    if args.standin:
        print(f"device: {name}: equality checks only, no times (scale {args.scale:g})")
    else:
        print(f"device: {name}; CuPy {cp.__version__}; NumPy {np.__version__}; "
              f"scale {args.scale:g}; median of {args.repeat}")
    rows, failed = [], False
    for make in CASES:
        case = make(args.scale)
        if args.only and case.name not in args.only:
            continue
        try:
            row = check(case, cp) if args.standin else bench(case, cp, args.repeat)
        except Exception as exc:  # noqa: BLE001 - one broken kernel must not hide the others
            traceback.print_exc(file=sys.stderr)
            row, failed = {"kernel": case.name, "size": case.size,
                           "error": f"{type(exc).__name__}: {exc}"}, True
        if row.get("gpu_vs_numpy") == "DIFFER":
            failed = True
        rows.append(row)
        cp.get_default_memory_pool().free_all_blocks()
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "rows": rows}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
