"""Signalling the ``streampipe run`` launcher alone (its PID, not its process group, the way a
batch system or ``kill PID`` does) ends the whole MPI job: SIGTERM is passed on to mpiexec, and a
launcher killed with SIGKILL takes mpiexec down through PR_SET_PDEATHSIG (Linux).

The oracle is /proc: every process whose command line names this test's run file (mpiexec and
the ranks) must be gone within seconds, where before the fix they ran on to the end
of a job that would take ~17 minutes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streampipe import runfile
from tests.mpiutil import ROOT, _env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="finds the job's processes in /proc")

GONE_LIMIT = 10.0  # seconds from the signal until no process of the job is left
JOB = ('[pipeline]\nname = "sig"\ncapacity = 4\n[[stages]]\nname = "src"\n'
       'uses = "tests.stages:Numbers"\nparams = {n = 100000, sleep = 0.01}\n[[stages]]\n'
       'name = "sq"\nuses = "tests.stages:Square"\n[[stages]]\nname = "sink"\n'
       'uses = "tests.stages:Collect"\n')


def job_pids(marker: str, launcher: int) -> list[int]:
    """Live processes (not zombies: their cmdline is empty) naming ``marker``, but the
    launcher."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == launcher:
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmd:
            found.append(int(d))
    return found


def until(cond, limit: float, step: float = 0.05) -> bool:
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(step)
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_signalling_only_the_launcher_ends_every_rank(tmp_path, sig):
    jobf = tmp_path / "sig.toml"
    jobf.write_text(JOB)
    out = tmp_path / f"sigjob-{os.getpid()}-{sig.name}.h5"  # the marker in every rank's argv
    log = open(tmp_path / "log.txt", "w+")  # noqa: SIM115 - read back below
    proc = subprocess.Popen([sys.executable, "-m", "streampipe", "run", str(jobf), "--quiet",
                             "--out", str(out)], stdout=log, stderr=subprocess.STDOUT,
                            env=_env(), cwd=ROOT, start_new_session=True)
    started = []
    try:
        # mid-run: mpiexec and the 3 ranks up, and the live view has a record
        assert until(lambda: len(job_pids(out.name, proc.pid)) >= 4 and
                     runfile_live_records(out) > 0, 40), "the job did not start"
        started = job_pids(out.name, proc.pid)
        t0 = time.monotonic()
        os.kill(proc.pid, sig)
        rc = proc.wait(timeout=GONE_LIMIT + 5)
        exited = time.monotonic() - t0
        gone = until(lambda: not job_pids(out.name, proc.pid), GONE_LIMIT)
        dt = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in job_pids(out.name, proc.pid):  # only this test's own job
            os.kill(pid, signal.SIGKILL)
    log.seek(0)
    text = log.read()
    print(f"{sig.name}: launcher exited after {exited:.2f} s, every rank gone after {dt:.2f} s")
    assert gone, f"still alive {GONE_LIMIT} s after {sig.name}: {started}\n{text[-2000:]}"
    if sig == signal.SIGKILL:
        assert rc == -signal.SIGKILL
        return
    # SIGTERM: prompt, says so in the exit code, and stops the ranks the way Ctrl-C does
    # (passed on as SIGINT), so rank 0 still writes the partial run file
    assert rc == 128 + signal.SIGTERM and exited < GONE_LIMIT, (rc, exited, text[-2000:])
    assert "streampipe run: got SIGTERM: stopping the ranks" in text, text[-2000:]
    assert run_status(out) == "failed", (exited, text[-2000:])


def run_status(out: Path) -> str:
    try:
        return runfile.status(str(out))
    except ValueError as exc:  # no run file: say so with the log, not a bare traceback
        return f"no run file ({exc})"


def runfile_live_records(out: Path) -> int:
    try:
        return sum(1 for line in open(str(out) + ".live.jsonl") if '"stages"' in line)
    except OSError:
        return 0


def test_ctrl_c_on_a_terminal_stops_the_ranks_once_without_mpiexecs_banner(tmp_path):
    """Ctrl-C reaches the launcher, mpiexec and the ranks together: the launcher must not add a
    signal of its own (a SIGTERM made mpiexec kill the ranks before rank 0 wrote the partial run
    file, and print its BAD TERMINATION banner; a second SIGINT means "force abort" to Hydra)."""
    import pty
    import select

    jobf = tmp_path / "sig.toml"
    jobf.write_text(JOB)
    out = tmp_path / f"sigjob-{os.getpid()}-tty.h5"
    env = _env()
    pid, fd = pty.fork()  # the child's controlling terminal, and it is in the foreground
    if pid == 0:
        try:
            os.chdir(ROOT)
            os.execve(sys.executable, [sys.executable, "-m", "streampipe", "run", str(jobf),
                                       "--out", str(out)], env)
        finally:
            os._exit(127)  # never back into pytest in the child
    text = b""

    def drain(seconds: float) -> None:
        nonlocal text
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    text += os.read(fd, 1 << 16)
                except OSError:  # the child has closed the terminal
                    return

    status = None
    try:
        end = time.monotonic() + 40
        while runfile_live_records(out) == 0 and time.monotonic() < end:
            drain(0.1)
        assert runfile_live_records(out) > 0, "the job did not start"
        t0 = time.monotonic()
        os.write(fd, b"\x03")
        while status is None and time.monotonic() - t0 < GONE_LIMIT + 5:
            drain(0.1)
            done, st = os.waitpid(pid, os.WNOHANG)
            status = st if done else None
        dt = time.monotonic() - t0
    finally:
        if status is None:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for p in job_pids(out.name, pid):
            os.kill(p, signal.SIGKILL)
        os.close(fd)
    shown = text.decode(errors="replace")
    print(f"Ctrl-C: launcher exited after {dt:.2f} s")
    assert status is not None, f"the launcher did not end:\n{shown[-2000:]}"
    assert os.waitstatus_to_exitcode(status) == 128 + signal.SIGINT
    assert "streampipe: interrupted (Ctrl-C)" in shown and "BAD TERMINATION" not in shown
    assert run_status(out) == "failed", shown[-2000:]
