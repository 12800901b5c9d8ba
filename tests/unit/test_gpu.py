"""streampipe.gpu without a GPU: device resolution, the host staging path, GPU timing and the
memory budget, on the strict CuPy stand-in (``streampipe.cupy_standin``).

The stand-in counts what gpu.py asks of CuPy (stream synchronisations, pinned allocations,
pool sizes, the current device), so these tests check the decisions gpu.py takes; and because
it refuses what CuPy refuses, a host/device mix-up in gpu.py fails here.  What CuPy itself does
on a device is tests/mpi/test_gpu_device.py (stand-in or GPU, see tests/gpu_harness.py).
"""

from __future__ import annotations

import ast
import collections
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streampipe import cupy_standin as standin
from streampipe import gpu
from streampipe.stage import Context


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("STREAMPIPE_GPU", "STREAMPIPE_NO_GPU", "STREAMPIPE_CUDA_AWARE",
                 "STREAMPIPE_PINNED_LIMIT", "CUDA_VISIBLE_DEVICES", "STREAMPIPE_CUPY_STANDIN"):
        monkeypatch.delenv(name, raising=False)
    standin.configure()


def fake_node(monkeypatch, n_devices: int = 1, memory: int = 10**9):
    """A node with ``n_devices`` stand-in GPUs of ``memory`` bytes each; ``cp.used`` records
    every ``Device(i).use()``."""
    standin.configure(devices=n_devices, memory=memory)
    monkeypatch.setattr(gpu, "_cupy", lambda: standin)
    used: list[int] = []
    real_use = standin.cuda.Device.use

    def use(self):
        real_use(self)
        used.append(self.id)

    monkeypatch.setattr(standin.cuda.Device, "use", use)
    monkeypatch.setattr(standin, "used", used, raising=False)
    return standin


def no_gpu(monkeypatch) -> None:
    monkeypatch.setattr(gpu, "_cupy", lambda: None)


# ----------------------------------------------------------------------------- device selection


def test_cpu_never_probes_for_a_gpu(monkeypatch, capsys):
    def boom():
        raise AssertionError("device = 'cpu' must not look for CuPy")

    monkeypatch.setattr(gpu, "_cupy", boom)
    assert gpu.resolve_device("cpu", stage="s") == ("cpu", np)
    assert capsys.readouterr().err == ""


def test_auto_without_gpu_falls_back_with_exactly_one_log_line(monkeypatch, capsys):
    no_gpu(monkeypatch)
    assert gpu.resolve_device("auto", stage="value") == ("cpu", np)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "'value'" in lines[0] and "NumPy" in lines[0]
    # other replicas pass log=False: silent
    assert gpu.resolve_device("auto", stage="value", log=False) == ("cpu", np)
    assert capsys.readouterr().err == ""


def test_gpu_without_gpu_is_a_clear_error(monkeypatch):
    no_gpu(monkeypatch)
    with pytest.raises(gpu.DeviceError, match=r"stage 'value' has device = \"gpu\" but no GPU"):
        gpu.resolve_device("gpu", stage="value")


def test_no_gpu_env_hides_a_present_gpu(monkeypatch, capsys):
    cp = fake_node(monkeypatch, 4)
    monkeypatch.setenv("STREAMPIPE_NO_GPU", "1")
    assert not gpu.gpu_available()
    assert gpu.resolve_device("auto", stage="s") == ("cpu", np)
    assert "STREAMPIPE_NO_GPU" in capsys.readouterr().err
    with pytest.raises(gpu.DeviceError, match="STREAMPIPE_NO_GPU is set"):
        gpu.resolve_device("gpu", stage="s")
    assert cp.used == []
    monkeypatch.setenv("STREAMPIPE_NO_GPU", "0")  # "0" means no
    assert gpu.resolve_device("gpu", stage="s") == ("gpu", cp)


def test_unknown_device_names_the_field(monkeypatch):
    with pytest.raises(ValueError, match=r"stage 'x': device must be one of cpu, gpu, auto, "
                                         r"got 'cuda'"):
        gpu.resolve_device("cuda", stage="x")


def test_local_ranks_are_dealt_round_robin_over_visible_gpus(monkeypatch):
    cp = fake_node(monkeypatch, 4)
    for local in range(8):
        assert gpu.resolve_device("auto", local_rank=local) == ("gpu", cp)
    assert cp.used == [0, 1, 2, 3, 0, 1, 2, 3]


def test_streampipe_gpu_overrides(monkeypatch):
    cp = fake_node(monkeypatch, 4)
    monkeypatch.setenv("STREAMPIPE_GPU", "2")
    for local in range(3):
        gpu.resolve_device("gpu", local_rank=local)
    monkeypatch.setenv("STREAMPIPE_GPU", "1,3")
    for local in range(4):
        gpu.resolve_device("gpu", local_rank=local)
    assert cp.used == [2, 2, 2, 1, 3, 1, 3]


@pytest.mark.parametrize("value, message", [
    ("7", r"STREAMPIPE_GPU='7': GPU 7 does not exist; this process sees 2 GPU\(s\), indices 0..1 "
          r"of CUDA_VISIBLE_DEVICES='4,5'"),
    ("one", r"STREAMPIPE_GPU='one': expected a GPU index"),
])
def test_bad_streampipe_gpu_is_a_clear_error(monkeypatch, value, message):
    # CuPy counts only what CUDA_VISIBLE_DEVICES leaves visible (2 here): indices are relative
    cp = fake_node(monkeypatch, 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    monkeypatch.setenv("STREAMPIPE_GPU", value)
    with pytest.raises(gpu.DeviceError, match=message):
        gpu.resolve_device("auto")
    assert cp.used == []


def test_node_local_rank_splits_by_shared_memory_and_frees():
    from mpi4py import MPI

    calls = []

    class Sub:
        def allgather(self, rank):
            return [8, 9, 10, rank]  # world ranks on this node; this one is 4th

        def Free(self):
            calls.append("free")

    class Comm:
        def Get_rank(self):
            return 11

        def Split_type(self, kind, key):
            calls.append((kind, key))
            return Sub()

    assert gpu.node_local_rank(Comm()) == 3
    assert calls == [(MPI.COMM_TYPE_SHARED, 11), "free"]
    assert gpu.node_layout(Comm()) == (3, 4)


@pytest.mark.mpi
def test_node_local_rank_under_mpi_matches_the_launcher():
    from tests.mpiutil import mpiexec

    # one line from rank 0: output of several ranks printing at once can interleave
    code = ("import os; from mpi4py import MPI; from streampipe.gpu import node_local_rank; "
            "c = MPI.COMM_WORLD; rows = c.gather((c.Get_rank(), node_local_rank(c), "
            "os.environ.get('MPI_LOCALRANKID')), root=0); "
            "c.Get_rank() or print('LR', repr(rows), flush=True)")
    done = mpiexec(3, "-c", code, timeout=30)
    assert done.returncode == 0, done.output
    line = next(x for x in done.stdout.splitlines() if x.startswith("LR "))
    rows = ast.literal_eval(line[3:])
    # one node: the node-local rank is the world rank, and Hydra's own count agrees
    assert [r[:2] for r in rows] == [(0, 0), (1, 1), (2, 2)]
    assert all(r[2] in (None, str(r[1])) for r in rows)


@pytest.mark.parametrize("env, expect", [("1", True), ("0", False), ("", False)])
def test_cuda_aware_env_override(monkeypatch, env, expect):
    monkeypatch.setenv("STREAMPIPE_CUDA_AWARE", env)
    # "" falls through to mpi4py, whose MPICH wheel here has no Query_cuda_support
    assert gpu.cuda_aware_mpi() is expect


# ----------------------------------------------------------------------------- the wire path

Point = collections.namedtuple("Point", "x y")
BIG = 100_000  # float64 elements: 800 kB, above the pinned threshold
SMALL = 10  # 80 B: below it, plain get()


def codec(cp, **kw):
    kw.setdefault("pinned_limit", 1 << 24)
    return gpu.WireCodec(cp, **kw)


def stat(name: str) -> int:
    return standin.stats()[name]


def test_to_wire_brings_nested_device_arrays_home_once_synced(monkeypatch):
    cp = fake_node(monkeypatch)
    big = np.arange(BIG, dtype=np.float64) / 7
    small = np.arange(SMALL, dtype=np.int32).reshape(2, 5)
    host = np.ones(3)
    item = {"a": cp.asarray(big), "b": (cp.asarray(small), 3, "txt"),
            "c": [Point(cp.asarray(big[:BIG // 2]), host), {"d": None}], "e": host}
    c = codec(cp)
    c.start()  # the stage's work on the item began (the runtime, or from_wire, says so)
    standin.reset_stats()
    out = c.to_wire(item)
    assert stat("stream_syncs") == 2  # once per item (end event, then the stream)
    assert stat("d2h_copies") == 3 and stat("implicit_syncs") == 0
    assert type(out["a"]) is np.ndarray and np.array_equal(out["a"], big)
    b = out["b"]
    assert type(b) is tuple and b[1:] == (3, "txt")
    assert b[0].dtype == np.int32 and np.array_equal(b[0], small)
    p = out["c"][0]
    assert type(p) is Point and np.array_equal(p.x, big[:BIG // 2]) and p.y is host
    assert out["c"][1] is item["c"][1] and out["e"] is host  # untouched parts are not copied
    # the two big arrays went through pinned buffers (4 kB..power of two), the small one did not
    assert stat("pinned_allocations") == 2 and stat("pinned_bytes") == (1 << 19) + (1 << 20)


def test_item_without_device_arrays_is_returned_as_is(monkeypatch):
    cp = fake_node(monkeypatch)
    item = {"n": 3, "v": [1, 2, (np.zeros(4), "s")]}
    standin.reset_stats()
    assert codec(cp).to_wire(item) is item
    assert stat("syncs") == 0  # nothing was started, nothing to wait for


def test_pinned_buffers_are_reused_only_after_the_item_is_gone(monkeypatch):
    cp = fake_node(monkeypatch)
    c = codec(cp)
    first = np.full(BIG, 1.5)
    kept = c.to_wire(cp.asarray(first))  # still "in flight": its buffer must not be reused
    second = c.to_wire(cp.asarray(np.full(BIG, 2.5)))
    assert c.pool.allocations == 2
    assert np.array_equal(kept, first)  # not overwritten by the second item
    del second  # the transport finished with it
    third = c.to_wire(cp.asarray(np.arange(BIG, dtype=np.float64)))
    assert c.pool.allocations == 2  # reused the freed buffer
    assert np.array_equal(third, np.arange(BIG)) and np.array_equal(kept, first)
    # a view that outlives the array it came from still pins the buffer
    view = third[10:20]
    del third
    fourth = c.to_wire(cp.asarray(np.zeros(BIG)))
    assert c.pool.allocations == 3 and np.array_equal(view, np.arange(10, 20))
    assert not np.shares_memory(fourth, view)


def test_pinned_limit_falls_back_to_pageable_copies(monkeypatch):
    cp = fake_node(monkeypatch)
    c = codec(cp, pinned_limit=BIG * 8)  # room for nothing: buffers are powers of two >= 1 MiB
    a = np.linspace(0, 1, BIG)
    standin.reset_stats()
    out = c.to_wire([cp.asarray(a)])
    assert stat("pinned_allocations") == 0 and np.array_equal(out[0], a)


def test_pinned_limit_from_env(monkeypatch):
    monkeypatch.setenv("STREAMPIPE_PINNED_LIMIT", "2e6")
    assert gpu.pinned_limit() == 2_000_000
    monkeypatch.setenv("STREAMPIPE_PINNED_LIMIT", "lots")
    with pytest.raises(ValueError, match="STREAMPIPE_PINNED_LIMIT='lots'"):
        gpu.pinned_limit()


def test_non_contiguous_device_array_arrives_contiguous(monkeypatch):
    cp = fake_node(monkeypatch)
    a = np.arange(BIG, dtype=np.float64).reshape(1000, 100)
    dev = cp.asarray(a)[:, ::2]
    assert not dev.flags.c_contiguous
    out = codec(cp).to_wire(dev)
    assert out.flags.c_contiguous and np.array_equal(out, a[:, ::2])


def test_from_wire_moves_numeric_arrays_to_the_device(monkeypatch):
    cp = fake_node(monkeypatch)
    nums = np.arange(6, dtype=np.uint16).reshape(2, 3)
    words = np.array(["a", "bc"])
    item = {"x": nums, "w": words, "p": Point(np.array([True, False]), 4.0), "k": [1, "s"]}
    out = codec(cp).from_wire(item)
    assert isinstance(out["x"], cp.ndarray) and np.array_equal(out["x"].get(), nums)
    assert out["x"].dtype == np.uint16
    assert out["w"] is words  # CuPy cannot hold strings: left on the host
    assert type(out["p"]) is Point and np.array_equal(out["p"].x.get(), [True, False])
    assert out["p"].y == 4.0 and out["k"] is item["k"]


def test_round_trip_is_exact(monkeypatch):
    cp = fake_node(monkeypatch)
    c = codec(cp, pinned_min=0)  # every array through pinned memory
    rng = np.random.default_rng(5)
    item = {"f": rng.standard_normal((33, 7)), "i": rng.integers(-9, 9, 1000, dtype=np.int64),
            "z": np.zeros((0, 3)), "c": rng.standard_normal(5) + 1j}
    back = c.to_wire(c.from_wire(item))
    for k, v in item.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        assert np.array_equal(back[k], v)


def test_wire_hooks_need_cupy():
    with pytest.raises(ValueError, match="CuPy-like"):
        gpu.wire_hooks(Context(xp=np))


def ranked_context(cp):
    rt = types.SimpleNamespace(m=types.SimpleNamespace(extra={}))
    return Context(xp=cp, device="gpu", _runtime=rt), rt.m.extra


def test_wire_hooks_keep_peak_gpu_memory_in_the_rank_metrics(monkeypatch):
    cp = fake_node(monkeypatch)
    ctx, extra = ranked_context(cp)
    to_wire, from_wire = gpu.wire_hooks(ctx)  # the codec still unpacks as the old pair
    assert extra["gpu_cuda_aware_mpi"] == 0
    item = from_wire(np.zeros(BIG))  # 800 kB on the device
    peak = extra["gpu_peak_bytes"]
    assert peak >= 8 * BIG
    del item
    cp.get_default_memory_pool().free_all_blocks()
    from_wire(1)
    to_wire(np.full(BIG, 1.0))  # a host array from a GPU stage passes through
    assert cp.get_default_memory_pool().total_bytes() < peak
    assert extra["gpu_peak_bytes"] == peak  # the high-water, not the last sample
    assert gpu.record_gpu_memory(extra, cp) == peak
    assert extra["gpu_pinned_bytes"] == 0


def busy_work(cp, x, n=30):
    for _ in range(n):
        x = cp.sqrt(x * x + 1.0)
    return x


def test_kernel_time_is_measured_with_events_between_start_and_sync(monkeypatch):
    import time

    cp = fake_node(monkeypatch)
    ctx, extra = ranked_context(cp)
    codec_ = gpu.wire_hooks(ctx)
    t0 = time.perf_counter()
    x = codec_.from_wire(np.ones(BIG))  # starts the timing (a runtime may call start() itself)
    y = busy_work(cp, x)
    out = codec_.to_wire(y)  # syncs first: the kernel time is folded in
    wall = time.perf_counter() - t0
    assert extra["gpu_items_timed"] == 1
    assert 0 < extra["gpu_kernel_s"] <= wall
    assert np.allclose(out, np.sqrt(np.ones(BIG) * 31))
    # the explicit parts: start() before the work, sync() after it (busy), to_wire (transfer)
    codec_.start()
    y = busy_work(cp, cp.asarray(np.ones(BIG)))
    waited = codec_.sync()
    assert waited >= 0 and extra["gpu_items_timed"] == 2
    standin.reset_stats()
    codec_.to_wire(y)
    assert stat("stream_syncs") == 0  # already synchronised: to_wire only copies
    # an item leaving without having started (a source) is synchronised but not timed
    codec_.to_wire(cp.zeros(3))
    assert extra["gpu_items_timed"] == 2


def test_work_on_a_stage_stream_must_be_synchronised_by_the_stage(monkeypatch):
    """to_wire synchronises the current stream only (docs/gpu.md): an array made on a
    non-blocking stream of the stage's own, emitted outside it, is a race, which the stand-in
    refuses where a GPU would copy whatever is in memory."""
    cp = fake_node(monkeypatch)
    c = codec(cp)
    side = cp.cuda.Stream(non_blocking=True)
    c.start()
    with side:
        y = busy_work(cp, cp.asarray(np.ones(BIG)), 3)
    with pytest.raises(standin.RaceError, match="non-blocking stream"):
        c.to_wire(y)
    side.synchronize()
    assert np.array_equal(c.to_wire(y), np.sqrt(np.ones(BIG) * 4))


def test_gpus_are_dealt_over_gpu_ranks_only():
    # a node holding world ranks 4..9 of which 5 and 7 run GPU stages, on 2 GPUs: counting
    # every rank of the node gave both node index 1 and 3, i.e. GPU 1 twice and GPU 0 idle
    peers, gpu_ranks = [4, 5, 6, 7, 8, 9], {5, 7, 12}
    assert [gpu.select_gpu(peers.index(r), 2) for r in (5, 7)] == [1, 1]
    assert [gpu.select_gpu(gpu.gpu_local_rank(peers, r, gpu_ranks), 2) for r in (5, 7)] == [0, 1]
    assert gpu.gpu_local_rank(peers, 6, gpu_ranks) == 2  # a CPU rank: its node index, unused


def test_to_host():
    a = np.ones(3)
    assert gpu.to_host(a) is a and gpu.to_host(5) == 5
    d = standin.asarray(a)
    assert gpu.is_device_array(d) and not gpu.is_device_array(a)
    assert type(gpu.to_host(d)) is np.ndarray and np.array_equal(gpu.to_host(d), a)


# ----------------------------------------------------------------------------- memory budget


def test_budget_rows_are_the_floor():
    assert gpu.batch_rows_for_budget(100, 1050) == 10
    assert gpu.batch_rows_for_budget(100, 100) == 1


@given(st.integers(1, 10**6), st.integers(1, 10**12))
def test_budget_rows_fit_and_one_more_would_not(bpr, budget):
    if budget < bpr:
        with pytest.raises(ValueError, match="below one row"):
            gpu.batch_rows_for_budget(bpr, budget)
        return
    rows = gpu.batch_rows_for_budget(bpr, budget)
    assert rows * bpr <= budget < (rows + 1) * bpr


@pytest.mark.parametrize("bpr, budget, message", [
    (0, 100, "bytes_per_row: must be > 0, got 0"),
    (8, -1, "budget_bytes: must be > 0, got -1"),
    (800, 799, r"budget_bytes: 799 bytes is below one row \(800 bytes\)"),
])
def test_bad_budget_arguments_name_the_field(bpr, budget, message):
    with pytest.raises(ValueError, match=message):
        gpu.batch_rows_for_budget(bpr, budget)


def test_budget_from_free_device_memory(monkeypatch):
    cp = fake_node(monkeypatch, memory=12_288)
    x = cp.zeros(2048 // 8)  # 2 kB held by the pool ...
    y = cp.zeros(4096 // 8)
    del y  # ... and 4 kB freed into its cache: free device memory is 12288 - 6144 = 6144
    assert cp.cuda.runtime.memGetInfo() == (6144, 12288)
    assert cp.get_default_memory_pool().free_bytes() == 4096
    # half of (free device memory + the pool's unused cache) = 5120 bytes -> 51 rows of 100
    assert gpu.batch_rows_for_budget(100, None, cp) == 51
    assert gpu.batch_rows_for_budget(100, None, cp, fraction=1.0) == 102
    with pytest.raises(ValueError, match="fraction: must be in"):
        gpu.batch_rows_for_budget(100, None, cp, fraction=0)
    del x


def test_budget_from_host_memory(monkeypatch):
    pages = {"SC_AVPHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(gpu.os, "sysconf", pages.__getitem__)
    assert gpu.batch_rows_for_budget(4096, None, np, fraction=0.25) == 250
