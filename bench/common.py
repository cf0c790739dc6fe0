"""Shared pieces of the bench scripts: thread limits, timing, JSON output, peers.

Import this module FIRST in every bench script: BLAS, OpenMP and Numba read
their thread counts when they are loaded, so the limits must be in the
environment before numpy/torch/numba are imported. One thread per process is
the fair setting (both frameworks, every rank) unless BENCH_THREADS says
otherwise.
"""
import json
import os
import platform
import statistics
import sys
import time

THREADS = os.environ.get("BENCH_THREADS", "1")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = THREADS

# Some machines' environments pin OpenBLAS to an older kernel family (here OPENBLAS_CORETYPE=Haswell, AVX2, with
# OPENBLAS_L2_SIZE), a guard for old OpenBLAS builds that a current numpy does not need. It halves numpy's sgemm
# next to PyTorch's own AVX-512 kernels, so a benchmark against PyTorch unsets both together, for the bench
# processes alone (the tests and CI keep the environment as it is); BENCH_OPENBLAS_ENV=keep keeps them. The
# kernel OpenBLAS then really runs is recorded in the results (machine_info: threadpools).
PINNED_OPENBLAS = {v: os.environ[v] for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ}
if os.environ.get("BENCH_OPENBLAS_ENV", "") != "keep":
    for _var in PINNED_OPENBLAS:
        del os.environ[_var]

# A persistent cache, so only the start-up bench (G) ever pays a cold compile.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(
    os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "disttrain", "numba"))

import numpy as np  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
if REPO_DIR not in sys.path:          # run from a checkout without an install
    sys.path.insert(0, REPO_DIR)

SEED = 1234
# Timed samples per framework and warm-up steps; BENCH_QUICK shrinks them for smoke runs.
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
STEPS = int(os.environ.get("BENCH_STEPS", "10" if QUICK else "60"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "2" if QUICK else "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2" if QUICK else "6"))


# -- output ----------------------------------------------------------------
def emit(record):
    """Print one result as a JSON line (prefixed so runners can pick it out)."""
    record.setdefault("threads", int(THREADS))
    print("BENCH " + json.dumps(record, sort_keys=True), flush=True)
    return record


def skip(workload, reason, **extra):
    return emit(dict(workload=workload, status="skipped", reason=reason, **extra))


def parse_lines(text):
    """The records printed by `emit` in a subprocess's output."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and "] " in line[:8]:      # dtrun's "[rank] " prefix
            line = line.split("] ", 1)[1]
        if line.startswith("BENCH {"):
            try:
                out.append(json.loads(line[6:]))
            except ValueError:
                pass
        elif line.startswith("{") and line.endswith("}"):   # plain JSON lines (bench/ddp_sync.py)
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


def machine_info():
    info = dict(python=platform.python_version(), platform=platform.platform(),
                cpu=_cpu_name(), cores=os.cpu_count(), numpy=np.__version__, threads=int(THREADS))
    for mod in ("numba", "mpi4py", "torch"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:               # noqa: BLE001 -- absent peer is a normal case
            info[mod] = None
    try:
        from mpi4py import MPI
        info["mpi"] = " ".join(MPI.Get_library_version().split()[:3])
    except Exception:                   # noqa: BLE001
        info["mpi"] = None
    # OpenBLAS's kernel family when the environment pins it ("auto": OpenBLAS's own pick), and what the
    # machine's environment had pinned before bench unset it (see PINNED_OPENBLAS above).
    info["openblas_coretype"] = os.environ.get("OPENBLAS_CORETYPE", "auto")
    if PINNED_OPENBLAS and not any(v in os.environ for v in PINNED_OPENBLAS):
        info["openblas_env_unset"] = " ".join(f"{k}={v}" for k, v in sorted(PINNED_OPENBLAS.items()))
    try:                                # which BLAS, which kernel, how many threads really
        import threadpoolctl
        info["threadpools"] = [f"{d.get('internal_api')} {d.get('version') or ''} {d.get('architecture') or ''} "
                               f"threads={d.get('num_threads')}".replace("  ", " ")
                               for d in threadpoolctl.threadpool_info()]
    except Exception:                   # noqa: BLE001 -- optional
        pass
    try:
        import disttrain
        info["disttrain"] = disttrain.__version__
    except Exception:                   # noqa: BLE001
        info["disttrain"] = None
    return info


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# -- the peer ----------------------------------------------------------------
def import_torch():
    """torch with one intra-op thread, or None when it is not installed."""
    if os.environ.get("BENCH_NO_TORCH"):
        return None
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(int(THREADS))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:                # already set in this process
        pass
    return torch


def missing(*names):
    """The first of the dotted disttrain names that does not exist yet, else None.

    Each workload runs as soon as its pieces exist; until then it is skipped
    with this name as the reason.
    """
    try:
        import disttrain as dt
    except Exception as e:              # noqa: BLE001
        return f"import disttrain failed: {e!r}"
    for name in names:
        obj = dt
        for part in name.split(".")[1:]:
            try:
                obj = getattr(obj, part)
            except Exception as e:      # noqa: BLE001  (lazy subpackage import errors included)
                return f"{name} missing ({type(e).__name__}: {e})"
    return None


# -- timing ------------------------------------------------------------------
def median(xs):
    return statistics.median(xs) if xs else float("nan")


CPU_TIMES = {}       # name -> CPU seconds per call, filled by time_alternating


def time_alternating(steps, n_steps=None, rounds=None, warmup=None):
    """Time several step functions side by side.

    ``steps`` maps a name to a zero-argument callable doing one step. After
    ``warmup`` calls of each, the functions take turns in ``rounds`` rounds of
    ``n_steps/rounds`` timed calls each, so drifts of a shared, noisy machine
    hit every framework alike. Returns {name: [wall seconds per call, ...]};
    the process CPU seconds per call go to ``CPU_TIMES`` (a figure the other
    programs on a shared machine barely move).
    """
    n_steps = STEPS if n_steps is None else n_steps
    rounds = ROUNDS if rounds is None else rounds
    warmup = WARMUP if warmup is None else warmup
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    per_round = max(1, -(-n_steps // rounds))
    clock, cpu_clock = time.perf_counter, time.process_time
    for r in range(rounds):
        order = list(steps.items())
        if r % 2:                       # alternate who goes first, too
            order.reverse()
        for name, fn in order:
            ts, cs = times[name], cpu[name]
            for _ in range(per_round):
                c0 = cpu_clock()
                t0 = clock()
                fn()
                ts.append(clock() - t0)
                cs.append(cpu_clock() - c0)
    CPU_TIMES.clear()
    CPU_TIMES.update(cpu)
    return times


def pair_record(workload, unit, times, scale=1.0, **extra):
    """A result line: disttrain and torch medians (x scale) and their ratio."""
    dt_med = median(times["disttrain"]) * scale
    rec = dict(workload=workload, status="ok", unit=unit, disttrain=dt_med,
               disttrain_samples=len(times["disttrain"]))
    if "torch" in times:
        tm = median(times["torch"]) * scale
        rec.update(torch=tm, torch_samples=len(times["torch"]), ratio=dt_med / tm)
        if CPU_TIMES.get("torch") and CPU_TIMES.get("disttrain"):
            rec["cpu_ratio"] = median(CPU_TIMES["disttrain"]) / median(CPU_TIMES["torch"])
    else:
        rec.update(torch=None, ratio=None, note="torch not installed: disttrain only")
    rec.update(extra)
    return rec


def peak_rss_mb():
    import resource
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux
    return kb / 1024.0
