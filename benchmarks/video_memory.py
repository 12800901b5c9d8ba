"""Memory and speed of the video job on 1080p clips of growing length.

``jobs/video.toml`` encodes 1920x1080 ``.y4m`` clips of 3, 12 and 24 frames (a pan over the
photo, upscaled 4x); each rank's peak resident memory (``VmHWM`` of ``/proc/PID/status``,
sampled every 50 ms while the job runs; the ranks are the job's descendant processes with
MPICH's ``PMI_RANK``) is printed per stage with the job's frames/s; then the decode command
decodes the longest stream (its peak RSS from ``getrusage``).  Bounded memory means the rows
do not grow with the clip's length.

Usage: ``PYTHONPATH=. python -m benchmarks.video_memory [--frames 3 6 12] [--quality 30]``
(Linux, MPICH: needs ``/proc`` and ``PMI_RANK``).
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipelines.video import YUV, write_y4m
from pipelines.video.synthetic import PanClip
from streampipe.runfile import read

ROOT = Path(__file__).resolve().parent.parent


def hd_clip(n: int) -> YUV:
    """``n`` 1920x1080 frames: a 480x270 pan over the photo, every sample repeated 4x4."""
    pan = PanClip(n, 480, 270, (1, 1))
    pics = [pan.frame(t) for t in range(n)]
    return YUV(*(np.stack([np.repeat(np.repeat(p[i], 4, 0), 4, 1) for p in pics])
                 for i in range(3)))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _descendants(root: int) -> set[int]:
    parent: dict[int, int] = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                parent[int(pid)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - found
        found |= frontier
    return found


def _peaks(root: int, peaks: dict[int, int]) -> None:
    """Fold the VmHWM (kB) of every rank (a process under ``root`` with a PMI_RANK; hydra
    gives each its own session) into ``peaks``."""
    for pid in _descendants(root):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            rank = next((int(e[9:]) for e in env if e.startswith(b"PMI_RANK=")), None)
            if rank is None:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[rank] = max(peaks.get(rank, 0), int(line.split()[1]))
        except (OSError, ValueError):
            continue


def run_job(clip: Path, out: Path, quality: int, folder: Path) -> dict:
    runfile = folder / f"{clip.stem}.h5"
    cmd = [sys.executable, "-m", "streampipe", "run", str(ROOT / "jobs" / "video.toml"),
           "--out", str(runfile), "--quiet",
           "--set", f'stages.source.params.source="{clip}"', "--set",
           "stages.source.params.n_frames=0", "--set", f"stages.source.params.quality={quality}",
           "--set", 'stages.me.device="cpu"', "--set", 'stages.transform.device="cpu"',
           "--set", f'stages.sink.params.out="{out}"']
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=folder, env=_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peaks: dict[int, int] = {}
    try:
        while proc.poll() is None:
            _peaks(proc.pid, peaks)
            time.sleep(0.05)
            if time.perf_counter() - t0 > 1800:
                raise RuntimeError(f"timed out: {' '.join(cmd)}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    wall = time.perf_counter() - t0
    output = proc.stdout.read().decode() if proc.stdout else ""
    if proc.returncode:
        raise RuntimeError(f"job failed ({proc.returncode}):\n{output[-3000:]}")
    run = read(str(runfile))
    stages = {r["rank"]: r["stage"] for r in run["ranks"]}
    cpu = sum(r["cpus"][-1] if isinstance(r.get("cpus"), list) else 0 for r in run["ranks"])
    return {"wall": wall, "job_wall": float(run["meta"]["wall_time"]), "peaks": peaks,
            "stages": stages, "cpu": cpu}


def decode_peak(stream: Path, out: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (kB) of the decode command."""
    code = ("import resource, runpy, sys; sys.argv = ['decode', sys.argv[1], '-o', sys.argv[2]];"
            "\ntry:\n runpy.run_module('pipelines.video.decode', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, str(stream), str(out)], env=_env(),
                          capture_output=True, text=True, timeout=1800, check=True)
    return time.perf_counter() - t0, int(done.stdout.split()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, nargs="+", default=[3, 12, 24])
    p.add_argument("--quality", type=int, default=30)
    a = p.parse_args(argv)
    print(f"video job, 1920x1080, quality {a.quality}; load {os.getloadavg()[0]:.1f} at start; "
          f"{os.cpu_count()} cores (shared machine: wall times are noisy)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="video-mem-") as tmp:
        folder = Path(tmp)
        for n in a.frames:
            clip = folder / f"hd{n}.y4m"
            write_y4m(clip, hd_clip(n), fps=(25, 1), color_range="FULL")
            r = run_job(clip, folder / f"hd{n}.spv", a.quality, folder)
            by_stage: dict[str, int] = {}
            for rank, kb in r["peaks"].items():
                stage = r["stages"].get(rank, str(rank))
                by_stage[stage] = max(by_stage.get(stage, 0), kb)
            rows.append((n, clip.stat().st_size, (folder / f"hd{n}.spv").stat().st_size, r,
                         by_stage))
        stages = list(rows[0][4])
        print("\n| frames | .y4m MB | stream kB | job s | frames/s | " +
              " | ".join(f"{s} peak MB" for s in stages) + " |")
        print("|---|---|---|---|---|" + "---|" * len(stages))
        for n, size, spv, r, by_stage in rows:
            print(f"| {n} | {size / 1e6:.1f} | {spv / 1e3:.0f} | {r['job_wall']:.1f} | "
                  f"{n / r['job_wall']:.2f} | " +
                  " | ".join(f"{by_stage.get(s, 0) / 1024:.0f}" for s in stages) + " |")
        n = rows[-1][0]
        wall, kb = decode_peak(folder / f"hd{n}.spv", folder / "back.y4m")
        print(f"\ndecode command, {n} frames 1080p: {wall:.1f} s, peak RSS {kb / 1024:.0f} MB "
              f"(getrusage; the decoded .y4m is {(folder / 'back.y4m').stat().st_size / 1e6:.0f}"
              f" MB); this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
              " MB (it wrote the clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
