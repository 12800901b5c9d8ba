"""Starting ``mpiexec`` when ``streampipe run`` was not launched under MPI.

Under ``mpirun``/``mpiexec``/``srun`` the launcher's environment variables are set and the job
runs directly; otherwise streampipe starts ``mpiexec -n N`` on itself, where N is the number of
ranks the job needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# Set by MPICH/Hydra, Open MPI, PMIx (Open MPI 5, srun --mpi=pmix), PMI-2 (srun), MVAPICH,
# Intel MPI.
MPI_ENV = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
           "MPI_LOCALNRANKS", "HYDI_CONTROL_FD", "I_MPI_HYDRA_HOST_FILE_UNUSED")


def under_mpi() -> bool:
    """True when this process was started by an MPI launcher."""
    return any(v in os.environ for v in MPI_ENV)


def find_mpiexec() -> str:
    """``$STREAMPIPE_MPIEXEC``, else the ``mpiexec`` next to this Python (the mpich wheel's),
    else the first ``mpiexec``/``mpirun`` on PATH."""
    env = os.environ.get("STREAMPIPE_MPIEXEC")
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


def mpiexec_command(n: int, argv: list[str], extra: list[str] | None = None) -> list[str]:
    """The command that runs ``python -m streampipe ARGV`` on ``n`` ranks."""
    exe = find_mpiexec()
    cmd = [exe, "-n", str(n)]
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    if "Open MPI" in version or "OpenRTE" in version:
        cmd.append("--oversubscribe")  # more ranks than cores is normal for us
    cmd += extra or []
    # -m mpi4py aborts the whole job on an uncaught exception instead of hanging in Finalize
    return cmd + [sys.executable, "-m", "mpi4py", "-m", "streampipe", *argv]


def launch(n: int, argv: list[str], extra: list[str] | None = None) -> int:
    """Run ``argv`` under ``mpiexec -n n`` and return its exit code."""
    cmd = mpiexec_command(n, argv, extra)
    proc = subprocess.Popen(cmd)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
