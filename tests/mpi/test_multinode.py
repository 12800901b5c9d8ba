"""Two "hosts" on this machine, twice: (1) hydra starts one proxy per host entry (-launcher fork)
and MPICH uses its network module between all ranks (MPIR_CVAR_NOLOCAL=1,
MPIR_CVAR_CH4_SHM_ENABLE=0); (2) two real Linux network namespaces joined by a veth pair, each
with its own hostname (jobs/slurm/netns-launcher; needs root), so the items cross a network link
whose kernel byte counters we can read. The sink's result must equal a normal run's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from streampipe.launch import launcher
from streampipe.plan import Plan
from streampipe.report import per_host
from streampipe.runfile import read
from tests.mpiutil import ROOT, run_cmd, streampipe

LAUNCHER = ROOT / "jobs" / "slurm" / "netns-launcher"

JOB = """
[pipeline]
name = "twohosts"
capacity = 4
[[stages]]
name = "numbers"
uses = "tests.stages:Numbers"
[stages.params]
n = 300
[[stages]]
name = "square"
uses = "tests.stages:Square"
replicas = 2
[[stages]]
name = "sink"
uses = "tests.stages:Checksum"
"""

def mpiexec_args(args: list[str]) -> list[str]:
    return [f"--mpiexec-arg={a}" for a in args]


def test_two_host_run_gives_the_same_sink_output(tmp_path, monkeypatch):
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    plain = streampipe("run", str(job), "--out", str(tmp_path / "a.h5"), "--quiet", timeout=40)
    assert plain.returncode == 0, plain.output
    # two host entries for this machine, ranks talking through the network module
    mpi = launcher()
    args, env = mpi.network_only()
    for k, v in env.items():
        monkeypatch.setitem(os.environ, k, v)
    hosts = mpi.hosts({"127.0.0.1": 2, "localhost": 2})
    net = streampipe("run", str(job), "--out", str(tmp_path / "b.h5"), "--quiet",
                     *mpiexec_args(hosts + args), timeout=40)
    assert net.returncode == 0, net.output
    a, b = (read(str(tmp_path / f)) for f in ("a.h5", "b.h5"))
    # oracle: sum of squares 0..299 = 299*300*599/6, n = 300; both runs must give exactly it
    want = {"n": 300, "sum": 299 * 300 * 599 // 6}
    for run in (a, b):
        res = run["meta"]["result"]
        assert (json.loads(res) if isinstance(res, str) else res) == want
    assert b["meta"]["status"] == "ok" and b["meta"]["ranks"] == 4


def test_slurm_scripts_parse_and_ask_for_the_jobs_rank_count():
    import re
    import subprocess

    from streampipe.job import load_job
    from tests.mpiutil import ROOT

    for name, job in (("var", "jobs/var.toml"), ("video", "jobs/video.toml")):
        script = ROOT / "jobs" / "slurm" / f"{name}.sbatch"
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
        text = script.read_text()
        ntasks = int(re.search(r"#SBATCH --ntasks=(\d+)", text).group(1))
        sets = re.findall(r"--set (\S+)", text)
        # oracle: the plan's rank count with the script's own overrides
        assert ntasks == load_job(str(ROOT / job), sets).ranks


# ----------------------------------------------------------------------------- network namespaces
@pytest.fixture
def netns(monkeypatch):
    """Namespaces <p>A/<p>B with a veth pair (10.77.0.1 <-> 10.77.0.2), deleted afterwards even
    when the test fails; the environment makes MPICH's UCX netmod use TCP only (else it finds one
    machine and uses shared memory, and nothing crosses the veth)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    prefix = f"sp{os.getpid() % 100000}"  # unique per test process; veth names stay <= 15 chars
    monkeypatch.setenv("SP_NETNS", prefix)
    try:
        up = subprocess.run([str(LAUNCHER), "up"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"netns-launcher up failed: {e}")
    if up.returncode != 0:
        subprocess.run([str(LAUNCHER), "down"], capture_output=True, timeout=30)
        pytest.skip(f"ip netns / veth not available: {up.stderr.strip()}")
    for k, v in {"UCX_TLS": "tcp", "MPIR_CVAR_CH4_NETMOD": "ucx", "MPIR_CVAR_NOLOCAL": "1",
                 "MPIR_CVAR_CH4_SHM_ENABLE": "0"}.items():
        monkeypatch.setenv(k, v)
    try:
        yield prefix
    finally:
        subprocess.run([str(LAUNCHER), "down"], capture_output=True, timeout=30)


def _tx_bytes() -> int:
    """Bytes node A's veth has sent (kernel counter)."""
    out = subprocess.run([str(LAUNCHER), "bytes"], capture_output=True, text=True, timeout=30,
                         check=True).stdout.split()
    return int(out[1])


def _run_on_two_nodes(prefix: str, job: str, out: str, split: tuple[int, int]) -> dict:
    """``streampipe run`` started as node A; hydra puts split[0] ranks on A, split[1] on B."""
    mpi = launcher()
    args = mpiexec_args(mpi.hosts({"10.77.0.1": split[0], "10.77.0.2": split[1]})
                        + mpi.remote_agent(str(LAUNCHER), f"{prefix}vA", "10.77.0.0/24"))
    done = run_cmd([str(LAUNCHER), "run", sys.executable, "-m", "streampipe", "run", job,
                    "--out", out, "--quiet", *args], timeout=60)
    assert done.returncode == 0, done.output
    return read(out)


@pytest.mark.mpi
def test_two_network_namespaces_give_the_same_result_and_cross_the_veth(tmp_path, netns):
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    t0 = _tx_bytes()
    run = _run_on_two_nodes(netns, str(job), str(tmp_path / "n.h5"), (2, 2))
    grown = _tx_bytes() - t0
    res = run["meta"]["result"]
    # oracle: the closed form sum of squares (the same value the plain run above must give)
    assert (json.loads(res) if isinstance(res, str) else res) == {"n": 300,
                                                                  "sum": 299 * 300 * 599 // 6}
    # ranks in stage order: numbers, square[0] on A; square[1], sink on B (hydra's split)
    assert [d["host"] for d in run["ranks"]] == ["nodeA", "nodeA", "nodeB", "nodeB"]

    ph = per_host(Plan.from_dict(run["meta"]["plan"]), run["ranks"])
    hosts = {h["host"]: h for h in ph["hosts"]}
    # oracle: every item is taken in once per stage: A has numbers (300) + square[0], B has
    # square[1] + the sink (300), and the two replicas together took 300
    assert hosts["nodeA"]["items"] + hosts["nodeB"]["items"] == 900
    assert hosts["nodeA"]["items"] >= 300 and hosts["nodeB"]["items"] >= 300
    hops = {(k["from"], k["to"]): k["items"] for k in ph["links"]}
    # 2 edges x 300 items; A->B = numbers->square[1] + square[0]->sink = 300 exactly, since
    # square[0]'s count + square[1]'s count = 300
    assert sum(hops.values()) == 600 and hops[("nodeA", "nodeB")] == 300
    assert ("nodeB", "nodeA") not in hops
    # 300 items crossed A->B; even pickled small ints take > 10 bytes each on the wire
    assert grown > 300 * 10, grown


@pytest.mark.mpi
def test_8mb_arrays_cross_the_veth_bit_exact(tmp_path, netns):
    from streampipe import Context
    from tests.stages import ArrayDigest, Arrays

    job = tmp_path / "arrays.toml"
    job.write_text('''
[pipeline]
name = "arrays"
capacity = 2
[[stages]]
name = "arrays"
uses = "tests.stages:Arrays"
params = { n = 4, mb = 8 }
[[stages]]
name = "digest"
uses = "tests.stages:ArrayDigest"
''')
    t0 = _tx_bytes()
    run = _run_on_two_nodes(netns, str(job), str(tmp_path / "a.h5"), (1, 1))
    grown = _tx_bytes() - t0
    # oracle: the same digests computed in this process, without MPI
    src, sink = Arrays(), ArrayDigest()
    src.setup(Context(params={"n": 4, "mb": 8}))
    sink.setup(Context())
    payload = 0
    for a in src.generate():
        sink.consume(a)
        payload += a["a"].nbytes if isinstance(a, dict) else a.nbytes
    assert run["meta"]["result"] == sink.out
    assert [d["host"] for d in run["ranks"]] == ["nodeA", "nodeB"]
    # every array went A -> B through the veth: at least its bytes, and not more than the bytes
    # plus TCP/IP headers (< 5% at a 1500-byte MTU) and the control messages (< 1 MiB)
    assert payload <= grown <= 1.05 * payload + 2**20, (payload, grown)
