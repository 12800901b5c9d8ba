"""What routing by key costs per item: tiny int items through a key-routed replicated stage.

source (the item's number) -> ``k`` (2 replicas, no work) -> sink, with ``route = "key"`` on
``k`` (a hot key: 7 items in 10 have key 0, the others 1,000 keys) against the same job
balanced by credit. The source is the rank that routes: it calls the key function, hashes the
key and, since the key distribution is recorded, counts one bucket per item. Reported: CPU per
item of the source rank and summed over all ranks (getrusage in the stages), min and median over
the repeats, the two jobs alternating within each repeat; and the key-routed run's ``/keys``
total, which must equal the items.

    PYTHONPATH=. python -m benchmarks.keys [--reps 3] [--n 60000] [--json]
"""

from __future__ import annotations

import json

from benchmarks.common import machine, med, parser, run_job, stage, table
from benchmarks.stages import Gen


class Count(Gen):
    """``n`` items: the numbers 0 .. n-1 (so that keys differ)."""

    def generate(self):
        for seq in range(self.n):
            self._spend(seq)
            yield seq


def hot_key(item: int) -> int:
    """7 items in 10 have key 0; the others one of 1,000 keys."""
    return 0 if item % 10 < 7 else item % 1000


def one(route: str, n: int) -> dict:
    fields = {"route": "key", "key": "benchmarks.keys:hot_key"} if route == "key" else {}
    jr = run_job([stage("src", "benchmarks.keys:Count", n=n),
                  stage("k", replicas=2, fields=fields), stage("snk", "Tally")], cpu=True)
    assert jr.result["n"] == n, jr.result
    src = next(c["cpu"] for c in jr.cpu if c["stage"] == "src")
    keys = jr.run.get("keys", {}).get("k")
    return {"route": route, "n": n, "src_us": 1e6 * src / n,
            "all_us": 1e6 * sum(c["cpu"] for c in jr.cpu) / n,
            "keyed": None if keys is None else sum(keys.values())}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n", type=int, default=60_000)
    ap.add_argument("--json", action="store_true", help="one JSON line per run, no table")
    args = ap.parse_args()
    got: dict[str, list[dict]] = {"key": [], "balance": []}
    for _ in range(args.reps):
        for route in got:
            r = one(route, args.n)
            got[route].append(r)
            if args.json:
                print(json.dumps(r), flush=True)
    if args.json:
        return
    print(machine())
    rows = []
    for route, rs in got.items():
        src, tot = [r["src_us"] for r in rs], [r["all_us"] for r in rs]
        rows.append([route, f"{min(src):.2f}", f"{med(src):.2f}", f"{min(tot):.2f}",
                     f"{med(tot):.2f}", str(rs[-1]["keyed"])])
    print(table(["route", "source CPU us/item min", "median", "all ranks min", "median",
                 "items in /keys"], rows))


if __name__ == "__main__":
    main()
