"""The HDF5 run file every run leaves behind: job, versions, per-rank events, per-stage summary.

Layout (attributes in brackets)::

    /                 [format, status, error, job_name, job_text, plan_json, streampipe,
                       mpi4py, mpi, ranks, hosts_json, start_time, wall_time, result_json]
    /ranks/{r}        events (n x 5: seq, t_recv, t_start, t_end, t_sent; seconds from the rank's
                      start) [stage, stage_index, replica, group_rank, host, wall0, elapsed,
                      time_<state>, items_in, items_out, held_area, held_peak, edges_json, ...]
    /summary/{stage}  [items, throughput, busy, starved, blocked, transfer, io, other, L, lam, W,
                       little_residual, ...]   (a streampipe.summary.StageRow)
    /live/{series}    per-second series of the live view (time, per stage items and time split)
    /keys/{stage}     bucket, count (int64 arrays: the items sent to a route = "key" stage per
                      bucket key_hash % modulus, summed over its senders; only non-zero
                      buckets) [modulus = 2520]; absent in files written before it existed

A rank may instead write its own record to ``RUN.h5.ranks/rank-NNNNN.h5`` (same layout at the
shard's root); ``/ranks/{r}`` is then an external link to it, relative to the run file's
folder. Copy the run file together with its ``.ranks`` folder.

A failed run writes the ranks it could collect; missing ranks have no group. Storage only: this
module knows the layout, not what the numbers mean (``streampipe.report``) nor when a run file is
written (``streampipe.finish``). Values HDF5 cannot hold as attributes (tables, lists, integers
beyond 64 bits) are stored as JSON in ``<key>_json``; strings lose NUL bytes (Open MPI's library
version ends in one, and HDF5 strings cannot hold them).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .events import as_events
from .version import __version__

FORMAT = 1
INT64 = (-2**63, 2**63 - 1)


def _jsonable(obj: Any) -> Any:
    try:
        return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist")
                                     else repr(o)))
    except (TypeError, ValueError):
        return repr(obj)


def default_path(job_name: str) -> str:
    """``runs/<job>-<timestamp>.h5`` under the current directory."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / f"{job_name}-{stamp}.h5")


def _put(attrs: Any, key: str, value: Any) -> None:
    """One attribute: scalars natively, anything else as JSON under ``<key>_json``."""
    if isinstance(value, str):
        attrs[key] = value.replace("\x00", "")
    elif isinstance(value, (bool, float, np.generic)) or (
            isinstance(value, int) and INT64[0] <= value <= INT64[1]):
        attrs[key] = value
    else:
        attrs[f"{key}_json"] = json.dumps(_jsonable(value))


def shard_dir(path: str) -> Path:
    """Where the ranks of run file ``path`` write their shards: ``RUN.h5.ranks/`` beside it."""
    p = Path(path)
    return p.with_name(p.name + ".ranks")


def clear_shards(path: str) -> None:
    """Remove the shards of an earlier run with the same run file (called before any rank
    writes: a stale shard of a rank that fails to write its own would be linked instead)."""
    d = shard_dir(path)
    if d.is_dir():
        for f in d.glob("rank-*.h5*"):
            f.unlink(missing_ok=True)


def shard_path(path: str, rank: int) -> Path:
    return shard_dir(path) / f"rank-{rank:05d}.h5"


def _write_rank(g: Any, d: dict[str, Any]) -> None:
    g.create_dataset("events", data=as_events(d.get("events", ())))
    for k, v in d.items():
        if k == "events":
            continue
        if k == "time":
            for state, secs in v.items():
                g.attrs[f"time_{state}"] = secs
        else:
            _put(g.attrs, k, v)


def _read_rank(g: Any) -> dict[str, Any]:
    d = _attrs(g)
    d["time"] = {k[5:]: d.pop(k) for k in list(d) if k.startswith("time_")}
    d["events"] = g["events"][()]
    return d


def _atomic(path: Path) -> tuple[Path, Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, path.with_name(path.name + f".tmp{os.getpid()}")


def write_shard(path: str, rank: int, d: dict[str, Any]) -> Path:
    """One rank's whole record (its events and attributes) in its own file beside the run file
    ``path``; written by that rank, so no rank ever holds another rank's events."""
    import h5py

    p, tmp = _atomic(shard_path(path, rank))
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        _write_rank(f, d)
    os.replace(tmp, p)
    return p


def write(path: str, meta: dict[str, Any], ranks: list[dict | None],
          summary: dict[str, dict], series: dict[str, Any] | None = None,
          keys: dict[str, dict[int, int]] | None = None, modulus: int | None = None) -> None:
    """Write a run file atomically (a reader never sees half a file).

    A rank whose shard exists (:func:`write_shard`) is linked (an HDF5 external link, relative to
    the run file's folder), else its record in ``ranks`` is stored in the file itself; a rank
    with neither is missing. ``series`` (name -> equal-length arrays) goes to ``/live``,
    ``keys`` (stage -> {bucket: items}, buckets ``hash % modulus``) to ``/keys``.
    """
    import h5py

    p, tmp = _atomic(Path(path))
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        for k, v in meta.items():
            _put(f.attrs, k, v)
        g = f.create_group("ranks")
        for r in range(max(len(ranks), int(meta.get("ranks", 0)))):
            shard = shard_path(path, r)
            if shard.exists():
                g[str(r)] = h5py.ExternalLink(str(shard.relative_to(p.parent)), "/")
            elif r < len(ranks) and ranks[r] is not None:
                _write_rank(g.create_group(str(r)), ranks[r])
        sg = f.create_group("summary", track_order=True)  # stage order, not alphabetical
        for stage, row in summary.items():
            st = sg.create_group(stage)
            for k, v in row.items():
                _put(st.attrs, k, v)
        if series:
            lg = f.create_group("live", track_order=True)
            for k, v in series.items():
                lg.create_dataset(k, data=np.asarray(v))
        if keys:
            kg = f.create_group("keys", track_order=True)
            for stage, counts in keys.items():
                st = kg.create_group(stage)
                st.attrs["modulus"] = modulus
                st.create_dataset("bucket", data=np.array(list(counts), dtype=np.int64))
                st.create_dataset("count", data=np.array(list(counts.values()), dtype=np.int64))
    os.replace(tmp, p)


def _attrs(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.generic):
            v = v.item()
        if k.endswith("_json"):
            out[k[:-5]] = json.loads(v)
        else:
            out[k] = v
    return out


def read(path: str) -> dict[str, Any]:
    """Read a run file (and its rank shards) back into plain data: ``{"meta", "ranks",
    "summary", "live", "keys"}`` (``keys``: stage -> {bucket: items}, {} when the file has
    none). Shards are looked up beside the run file, wherever it was copied to."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"run file {path!r}: cannot open as HDF5 ({exc})") from None
    with f:
        if "format" not in f.attrs or "ranks" not in f:
            raise ValueError(f"run file {path!r}: not a streampipe run file")
        meta = _attrs(f)
        n = int(meta.get("ranks", 0))
        ranks: list[dict | None] = [None] * n
        for key in f["ranks"]:
            link = f["ranks"].get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                # opened by hand, relative to this file: HDF5 would try the working directory
                shard = Path(path).parent / link.filename
                if not shard.exists():
                    continue  # a copy without its shards: that rank is missing
                with h5py.File(shard, "r") as sf:
                    d = _read_rank(sf[link.path])
            else:
                d = _read_rank(f["ranks"][key])
            r = int(key)
            ranks.extend([None] * (r + 1 - len(ranks)))
            ranks[r] = d
        summary = {k: _attrs(v) for k, v in f["summary"].items()}
        live = {k: v[()] for k, v in f["live"].items()} if "live" in f else {}
        keys = {k: dict(zip(v["bucket"][()].tolist(), v["count"][()].tolist(), strict=True))
                for k, v in f["keys"].items()} if "keys" in f else {}
    # stage order (files before track_order list their groups alphabetically)
    order = {s["name"]: i for i, s in enumerate(meta.get("plan", {}).get("stages", []))}
    summary = dict(sorted(summary.items(), key=lambda kv: order.get(kv[0], len(order))))
    return {"meta": meta, "ranks": ranks, "summary": summary, "live": live, "keys": keys}


def versions() -> dict[str, str]:
    """streampipe, Python, mpi4py and MPI library versions (for the run file's root)."""
    out = {"streampipe": __version__, "python": sys.version.split()[0]}
    try:
        import mpi4py
        from mpi4py import MPI

        out["mpi4py"] = mpi4py.__version__
        out["mpi"] = mpi_library(MPI.Get_library_version())
    except Exception:  # noqa: BLE001
        pass
    return out


def mpi_library(text: str) -> str:
    """The first line of ``MPI_Get_library_version``, without the trailing NUL Open MPI adds."""
    lines = text.replace("\x00", "").strip().splitlines()
    return lines[0].strip() if lines else ""


def status(path: str) -> str:
    """The ``status`` a run file records ("ok", "failed"; "" when it has none)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            v = f.attrs.get("status", "")
    except OSError as exc:
        raise ValueError(f"run file {path!r}: cannot open as HDF5 ({exc})") from None
    return v.decode() if isinstance(v, bytes) else str(v)
