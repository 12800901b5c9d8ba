"""Launching real MPI ranks from tests: always with a timeout, always killing what was started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from streampipe.launch import launcher

ROOT = Path(__file__).resolve().parent.parent
CURRENT_TEST = None  # the running pytest item (set by tests/conftest.py)


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_cmd(cmd: list[str], timeout: float = 60.0, cwd: str | Path | None = None) -> Done:
    """Run ``cmd`` in its own process group; on timeout kill the whole group and fail."""
    item = CURRENT_TEST
    if item is not None and item.get_closest_marker("mpi") is None:
        raise AssertionError(f"{item.nodeid} launches processes through tests/mpiutil.py but is "
                             "not marked mpi (import the launcher at module level or add "
                             "pytestmark = pytest.mark.mpi)")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), cwd=cwd or ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"timed out after {timeout} s (killed): {' '.join(cmd)}\n"
                             f"stdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return Done(proc.returncode, out, err, time.perf_counter() - t0)


def streampipe(*args: str, timeout: float = 60.0, cwd: str | Path | None = None) -> Done:
    """``python -m streampipe ARGS`` (which starts mpiexec itself for ``run``)."""
    return run_cmd([sys.executable, "-m", "streampipe", *args], timeout=timeout, cwd=cwd)


def mpiexec(n: int, *args: str, timeout: float = 60.0) -> Done:
    """``mpiexec -n N python -m mpi4py ARGS`` with the launcher and the per-implementation
    options streampipe itself would use (streampipe.launch)."""
    return run_cmd([*launcher().base(n), sys.executable, "-m", "mpi4py", *args],
                   timeout=timeout)
