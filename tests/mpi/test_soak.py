"""Soak: many small items through a 6-rank pipeline with bounded memory.

Every rank samples its resident set size (/proc/self/statm) every EVERY items and the sink
returns the samples. Bounded queues mean no rank's memory may grow with the number of items:
after a warm-up sample (imports, first buffers, allocator pools) the RSS must stay within
GROWTH_KIB. The per-item event log is switched off (STREAMPIPE_EVENT_LIMIT=0): it is bounded by
design (``event_limit`` rows, ~35 MB a rank at the default 200 000) but would grow during a run
shorter than that limit, which is not what this test is about.
"""

from __future__ import annotations

import os

import pytest

from streampipe.runfile import read
from tests.mpiutil import streampipe

# 1.5 MiB: measured growth after warm-up is < 0.1 MiB a rank; a rank that kept every small item
# it saw (an int plus a list slot, ~36 B) would grow ~2.9 MiB over the 80k items after warm-up
GROWTH_KIB = 1536

JOB = """
[pipeline]
name = "soak"
capacity = 16
ordered = {ordered}
[[stages]]
name = "src"
uses = "tests.stages_durable:RssNumbers"
params = {{n = {n}, every = {every}}}
[[stages]]
name = "a"
uses = "tests.stages_durable:RssPass"
params = {{every = {every}}}
[[stages]]
name = "b"
uses = "tests.stages_durable:RssPass"
replicas = 2
params = {{every = {every}}}
[[stages]]
name = "c"
uses = "tests.stages_durable:RssPass"
params = {{every = {every}}}
[[stages]]
name = "sink"
uses = "tests.stages_durable:RssSink"
params = {{every = {every}}}
"""


def soak(tmp_path, n: int, every: int, ordered: bool, timeout: float) -> dict:
    job = tmp_path / "soak.toml"
    job.write_text(JOB.format(n=n, every=every, ordered=str(ordered).lower()))
    os.environ["STREAMPIPE_EVENT_LIMIT"] = "0"
    try:
        done = streampipe("run", str(job), "--out", str(tmp_path / "soak.h5"), "--quiet",
                          timeout=timeout)
    finally:
        del os.environ["STREAMPIPE_EVENT_LIMIT"]
    assert done.returncode == 0, done.output
    res = read(str(tmp_path / "soak.h5"))["meta"]["result"]
    assert res["n"] == n and res["sum"] == n * (n - 1) // 2  # every item, exactly once
    rss = res["rss"]
    assert sorted(rss) == ["a/0", "b/0", "b/1", "c/0", "sink/0", "src/0"]  # all 6 ranks
    report = []
    for name, s in sorted(rss.items()):
        assert len(s) >= 4, (name, s)
        base = s[1]  # after warm-up
        growth = max(s[1:]) - base
        report.append(f"{name}: {s[0]}..{max(s)} KiB (growth after warm-up {growth} KiB)")
        assert growth < GROWTH_KIB, f"{name} RSS grows: {s}"
    print("\n" + "\n".join(report))
    return rss


def test_soak_100k_items_bounded_memory(tmp_path):
    soak(tmp_path, n=100_000, every=10_000, ordered=True, timeout=90)


@pytest.mark.slow
@pytest.mark.parametrize("ordered", [True, False])
def test_soak_1m_items_bounded_memory(tmp_path, ordered):
    soak(tmp_path, n=1_000_000, every=50_000, ordered=ordered, timeout=600)
