"""Run every benchmark of this directory and print their tables (``--quick`` for a short run).

Usage: ``PYTHONPATH=. python -m benchmarks.run_all [--quick]`` from the repo root.
"""

from __future__ import annotations

import importlib
import sys
import time

from benchmarks.common import parser

SCRIPTS = ["tiny", "waits", "bound", "alternatives", "oversubscribe", "hop", "barrier", "capacity"]


def main(argv: list[str] | None = None) -> int:
    a = parser(__doc__).parse_args(argv)
    t0 = time.perf_counter()
    failed = []
    for name in SCRIPTS:
        t = time.perf_counter()
        try:
            importlib.import_module(f"benchmarks.{name}").main(["--quick"] if a.quick else [])
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the rest
            failed.append(name)
            print(f"\n{name}: FAILED: {exc}", file=sys.stderr)
        print(f"\n({name}: {time.perf_counter() - t:.0f} s)\n", flush=True)
    print(f"all benchmarks: {time.perf_counter() - t0:.0f} s; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
