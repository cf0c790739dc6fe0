"""Finding `mpiexec` and speaking its flag dialect (MPICH/Hydra or Open MPI).

Everything here builds argument lists; nothing is ever passed through a shell.
"""
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

MPICH = "mpich"
OPENMPI = "openmpi"

# Thread pools a rank may start; one rank per core is the fast setting when ranks
# share a machine (measured: 2 ranks x 2 BLAS threads on 2 cores, 4.3x slower).
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS",
)


class LaunchError(Exception):
    """A launcher problem the user can fix (no traceback is shown for it)."""


def find_mpiexec(explicit=None):
    """The `mpiexec` that belongs to the MPI mpi4py uses.

    Order: an explicit path; the one next to this Python (the `mpich` wheel installs it
    there, and a venv's MPI is the one its mpi4py was built against); the one next to
    the `mpicc` mpi4py was built with; `mpiexec`/`mpirun` on PATH.
    """
    if explicit:
        path = shutil.which(explicit) if os.sep not in explicit else explicit
        if not path or not os.access(path, os.X_OK):
            raise LaunchError(f"--mpiexec {explicit}: no such executable")
        return path
    candidates = [os.path.join(os.path.dirname(sys.executable), "mpiexec")]
    try:
        import mpi4py
        mpicc = (mpi4py.get_config() or {}).get("mpicc")
        if mpicc:
            candidates.append(os.path.join(os.path.dirname(mpicc), "mpiexec"))
    except Exception:  # mpi4py absent or unreadable config: fall through to PATH
        pass
    for name in ("mpiexec", "mpirun"):
        found = shutil.which(name)
        if found:
            candidates.append(found)
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise LaunchError(
        "no mpiexec found: install the MPI runtime (`pip install mpich`, a dependency of "
        "disttrain) or pass --mpiexec PATH; `-n 1` runs without MPI")


def detect_dialect(mpiexec):
    """'mpich' (Hydra) or 'openmpi', from `mpiexec --version`."""
    try:
        out = subprocess.run([mpiexec, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, timeout=20, text=True, errors="replace").stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LaunchError(f"cannot run {mpiexec} --version: {exc}") from None
    low = out.lower()
    if "open mpi" in low or "openrte" in low or "prrte" in low or "open-mpi" in low:
        return OPENMPI
    if "hydra" in low or "mpich" in low or "intel(r) mpi" in low:
        return MPICH
    raise LaunchError(f"{mpiexec}: cannot tell which MPI this is from its --version output; "
                      "supported: MPICH (Hydra) and Open MPI")


def cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_env(nprocs, nhosts, user_env):
    """Per-rank thread limits: cores / ranks on this machine, unless the user set them."""
    local_ranks = max(1, math.ceil(nprocs / max(1, nhosts)))
    threads = max(1, cpu_count() // local_ranks)
    return {k: str(threads) for k in THREAD_ENV_VARS if k not in user_env and not os.environ.get(k)}


@dataclass
class LaunchSpec:
    """What to run: the rank command (after `python`) and how to place it."""
    nprocs: int
    rank_argv: list                  # e.g. ["-m", "mpi4py", "-m", "launch.rank", ...]
    env: dict = field(default_factory=dict)   # set on every rank
    hostfile: str = None
    hosts: str = None
    timeout: float = None
    io_dir: str = None               # per-rank stdout/stderr files land here


def is_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


def build_command(spec, mpiexec, dialect, python=None):
    """(argv, extra environment for mpiexec itself) for this launch."""
    python = python or sys.executable
    argv = [mpiexec, "-n", str(spec.nprocs)]
    launcher_env = {}
    if dialect == MPICH:
        if spec.hostfile:
            argv += ["-f", spec.hostfile]
        if spec.hosts:
            argv += ["-hosts", spec.hosts]
        for key, val in spec.env.items():
            argv += ["-genv", key, val]
        if spec.io_dir:
            # Hydra writes each rank's output to its own file on this machine; the
            # launcher reads them and prefixes whole lines (-prepend-rank prefixes each
            # write(), which garbles unbuffered Python output).
            argv += ["-outfile-pattern", os.path.join(spec.io_dir, "rank%r.out"),
                     "-errfile-pattern", os.path.join(spec.io_dir, "rank%r.err")]
        if spec.timeout:
            # Hydra has no timeout flag; MPIEXEC_TIMEOUT (whole seconds) in its own
            # environment is its limit. It backs up the launcher's watchdog.
            launcher_env["MPIEXEC_TIMEOUT"] = str(int(math.ceil(spec.timeout)) + 5)
    else:
        if is_root():
            argv += ["--allow-run-as-root"]
        if spec.hostfile:
            argv += ["--hostfile", spec.hostfile]
        if spec.hosts:
            argv += ["--host", spec.hosts]
        if not spec.hostfile and not spec.hosts and spec.nprocs > cpu_count():
            argv += ["--oversubscribe"]
        for key, val in spec.env.items():
            argv += ["-x", f"{key}={val}"]
        if spec.io_dir:
            argv += ["--output-filename", spec.io_dir]
        if spec.timeout:
            argv += ["--timeout", str(int(math.ceil(spec.timeout)) + 5)]
    argv += [python] + list(spec.rank_argv)
    return argv, launcher_env


def rank_output_paths(io_dir, dialect, rank):
    """Where mpiexec puts rank `rank`'s (stdout, stderr) files (None until they exist)."""
    if dialect == MPICH:
        return (os.path.join(io_dir, f"rank{rank}.out"), os.path.join(io_dir, f"rank{rank}.err"))
    # Open MPI >= 4: DIR/<job>/rank.<N, maybe zero-padded>/stdout
    import glob
    for base in glob.glob(os.path.join(io_dir, "*", "rank.*")):
        suffix = base.rsplit(".", 1)[-1]
        if suffix.isdigit() and int(suffix) == rank:
            return os.path.join(base, "stdout"), os.path.join(base, "stderr")
    return None, None
