"""``python -m pipelines.video.bubble``: the dependency bubble of each encode order per number of
motion-estimation replicas, from the schedule model of :mod:`.schedule`."""

from __future__ import annotations

import argparse

from .schedule import Costs, table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.video.bubble",
                                description="Dependency bubble of the encode orders.")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--gop", type=int, default=12)
    p.add_argument("--bframes", type=int, default=2)
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--me", type=float, nargs=3, metavar=("I", "P", "B"),
                   help="ME seconds per I, P, B frame (default: measured shares)")
    p.add_argument("--transform", type=float, nargs=3, metavar=("I", "P", "B"),
                   help="transform seconds per I, P, B frame")
    a = p.parse_args(argv)
    costs = Costs(**({"me": tuple(a.me)} if a.me else {}),
                  **({"transform": tuple(a.transform)} if a.transform else {}))
    print(table(a.frames, a.gop, a.bframes, a.replicas, costs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
