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


def thread_env(local_ranks, user_env):
    """Per-rank thread limits: cores / ranks per host, unless the user set them."""
    threads = max(1, cpu_count() // local_ranks)
    return {k: str(threads) for k in THREAD_ENV_VARS if k not in user_env and not os.environ.get(k)}


def parse_hosts(text, where="--hosts"):
    """`h0:2,h1:2` or `h0,h1` -> [(host, slots or None), ...]."""
    hosts = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        hosts.append(_host_entry(item, where))
    if not hosts:
        raise LaunchError(f"{where} {text!r}: no host given (expected e.g. h0:2,h1:2)")
    return hosts


def _host_entry(item, where):
    name, sep, slots = item.partition(":")
    if not name or any(c.isspace() for c in name) or (sep and not slots.isdigit()) or (sep and int(slots) < 1):
        raise LaunchError(f"{where}: {item!r} is not HOST or HOST:SLOTS (SLOTS a positive whole number)")
    return name, int(slots) if sep else None


def read_hostfile(path):
    """dtrun's host file: one host per line, `HOST`, `HOST:SLOTS` or `HOST slots=SLOTS` (Open MPI's
    spelling), `#` comments. The same file serves both MPIs: dtrun passes the hosts as a list."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise LaunchError(f"--hostfile {path}: {exc.strerror}") from None
    hosts = []
    for num, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"--hostfile {path}, line {num}"
        entry = words[0]
        for word in words[1:]:
            key, _, val = word.partition("=")
            if key == "slots" and ":" not in entry:
                entry = f"{entry}:{val}"
            elif key != "max_slots":
                raise LaunchError(f"{where}: {line.strip()!r}: expected HOST, HOST:SLOTS or HOST slots=SLOTS")
        hosts.append(_host_entry(entry, where))
    if not hosts:
        raise LaunchError(f"--hostfile {path}: no hosts in the file")
    return hosts


def place(hosts, nprocs):
    """How many ranks each host gets, in order (rank r goes to the host its block falls in): hosts
    with SLOTS take up to that many; the rest of the ranks are spread evenly over hosts without.
    Returns [(host, count)] with count > 0, summing to nprocs."""
    fixed = sum(s for _, s in hosts if s is not None)
    free = [h for h, s in hosts if s is None]
    rest = max(0, nprocs - fixed)
    if not free and fixed < nprocs:
        listed = ",".join(f"{h}:{s}" for h, s in hosts)
        raise LaunchError(f"-n {nprocs} needs {nprocs} slots, but the hosts give {fixed} ({listed}); "
                          "raise the SLOTS of a host (HOST:SLOTS) or list one without SLOTS")
    share = {h: rest // len(free) + (1 if i < rest % len(free) else 0) for i, h in enumerate(free)} if free else {}
    out, left = [], nprocs
    for host, slots in hosts:
        take = min(left, slots if slots is not None else share[host])
        if take > 0:
            out.append((host, take))
            left -= take
    return out


@dataclass
class LaunchSpec:
    """What to run: the rank command (after `python`) and how to place it."""
    nprocs: int
    rank_argv: list                  # e.g. ["-m", "mpi4py", "-m", "launch.rank", ...]
    env: dict = field(default_factory=dict)   # set on every rank
    hosts: list = None               # [(host, ranks)] from place(); None: this machine only
    timeout: float = None
    launcher: str = None             # how mpiexec starts remote processes (ssh, rsh, slurm, ...)
    launcher_exec: str = None        # the program it runs for that (an ssh wrapper)
    iface: str = None                # network interface for MPI traffic
    force_tcp: bool = False
    mpiexec_args: list = field(default_factory=list)   # passed as they are, before the program


def is_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


# Variables Open MPI must be told to pass to remote ranks (-x NAME); Hydra passes the whole
# environment. The interpreter's own paths first, then disttrain's settings.
FORWARD_VARS = ("PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
FORWARD_PREFIXES = ("DISTTRAIN_", "NUMBA_", "MASTER_")


def forwarded(env_set, environ=None):
    """Names of this environment's variables Open MPI forwards (those not set explicitly)."""
    environ = os.environ if environ is None else environ
    return [k for k in sorted(environ) if k not in env_set and (k in FORWARD_VARS or k.startswith(FORWARD_PREFIXES))]


def has_iface(name):
    return os.path.exists(os.path.join("/sys/class/net", name))


def transport_env(spec):
    """Variables that pick the interface and transport (both MPIs read their own; harmless to others)."""
    env = {}
    if spec.iface:
        env.update(FI_TCP_IFACE=spec.iface, FI_SOCKETS_IFACE=spec.iface, UCX_NET_DEVICES=spec.iface)
    if spec.force_tcp:
        env.update(MPIR_CVAR_CH4_NETMOD="ofi", FI_PROVIDER="tcp")
    return env


def build_command(spec, mpiexec, dialect, python=None):
    """(argv, extra environment for mpiexec itself) for this launch."""
    python = python or sys.executable
    argv = [mpiexec, "-n", str(spec.nprocs)]
    launcher_env = {}
    env = dict(transport_env(spec), **spec.env)
    hostlist = ",".join(f"{h}:{n}" for h, n in spec.hosts) if spec.hosts else None
    if dialect == MPICH:
        if hostlist:
            argv += ["-hosts", hostlist]
        if spec.launcher:
            argv += ["-launcher", spec.launcher]
        if spec.launcher_exec:
            argv += ["-launcher-exec", spec.launcher_exec]
        if spec.iface and has_iface(spec.iface):
            # Hydra's own control connections, from the hosts back to this machine (which may
            # reach them over another interface: then only the ranks' traffic is pinned)
            argv += ["-iface", spec.iface]
        for key, val in env.items():
            argv += ["-genv", key, val]
        if spec.timeout:
            # Hydra has no timeout flag; MPIEXEC_TIMEOUT (whole seconds) in its own
            # environment is its limit. It backs up the launcher's watchdog.
            launcher_env["MPIEXEC_TIMEOUT"] = str(int(math.ceil(spec.timeout)) + 5)
    else:
        if is_root():
            argv += ["--allow-run-as-root"]
        if hostlist:
            # HOST:SLOTS says how many ranks go where; binding each to a core would refuse more
            # ranks than cores (what a host has is not known here)
            argv += ["--host", hostlist, "--bind-to", "none"]
        elif spec.nprocs > cpu_count():
            argv += ["--oversubscribe"]
        if spec.launcher:
            argv += ["--prtemca", "plm", "ssh" if spec.launcher == "rsh" else spec.launcher]
        if spec.launcher_exec:
            argv += ["--prtemca", "plm_ssh_agent", spec.launcher_exec]
        if spec.iface:
            argv += ["--mca", "btl_tcp_if_include", spec.iface, "--prtemca", "oob_tcp_if_include", spec.iface]
        if spec.force_tcp:
            argv += ["--mca", "pml", "ob1", "--mca", "btl", "tcp,self"]
        for key, val in env.items():
            argv += ["-x", f"{key}={val}"]
        for key in forwarded(env):
            argv += ["-x", key]
        if spec.timeout:
            argv += ["--timeout", str(int(math.ceil(spec.timeout)) + 5)]
    argv += list(spec.mpiexec_args)
    argv += [python] + list(spec.rank_argv)
    return argv, launcher_env


def rank_output_paths(io_dir, rank):
    """Where rank `rank` writes its (stdout, stderr): each rank redirects its own output there
    (launch.rank), so the layout is the same under every MPI."""
    return os.path.join(io_dir, f"rank{rank}.out"), os.path.join(io_dir, f"rank{rank}.err")
