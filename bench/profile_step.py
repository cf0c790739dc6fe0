"""Where does a disttrain training step spend its time?

    python bench/profile_step.py A                 # cProfile, flat table by self time
    python bench/profile_step.py D --tool pyinstrument
    python bench/profile_step.py B --steps 300 --top 30
    python bench/profile_step.py A --tool py-spy       # sampling, native frames: BLAS vs Numba vs Python
    mpiexec -n 2 python -m mpi4py bench/profile_step.py A --ddp   # rank 0's DDP step

Warms the workload up (kernels compiled, buffers allocated), then profiles
`--steps` steps and prints the hot functions as file:function with their share
of the profiled time and microseconds per step. cProfile adds a fixed cost to
every Python call, so it overstates small-function overhead; pyinstrument
(sampling, `pip install pyinstrument`) does not, and is the better guide for
the split between Python overhead and numpy/BLAS/Numba work.
"""
import common  # noqa: F401
import argparse
import os
import sys
import time

from common import REPO_DIR, missing
import workloads as W


def make_step(name, ddp=False):
    if name == "D":
        loop = W.dt_op_loop()
        return loop, W.D_INNER
    why = missing(*W.NEEDS[name])
    if why:
        raise SystemExit(f"workload {name} cannot run yet: {why}")
    wrap = None
    if ddp:
        import disttrain as dt
        import disttrain.distributed as dist
        dist.init()
        wrap = dt.DistributedDataParallel
    rank = 0
    if ddp:
        rank = dist.get_rank()
    step, _, _ = W.dt_step(W.dt_model(name), W.batches(name, rank=rank), wrap=wrap, name=name)
    return step, 1


def short(path):
    if path.startswith(REPO_DIR):
        return os.path.relpath(path, REPO_DIR)
    for marker in ("site-packages/", "lib/python"):
        i = path.find(marker)
        if i >= 0:
            return path[i + len(marker):]
    return path


def profile_cprofile(step, steps, per, top):
    import cProfile
    import pstats
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    for _ in range(steps):
        step()
    pr.disable()
    wall = time.perf_counter() - t0
    st = pstats.Stats(pr)
    total = sum(v[2] for v in st.stats.values())     # sum of self times
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    print(f"cProfile: {steps} steps, {wall / steps * 1e3:.3f} ms/step under the profiler "
          f"({wall / steps / per * 1e6:.2f} us per inner iteration)")
    n = steps * per                   # per training step (per iteration for D)
    print(f"{'self%':>6} {'cum%':>6} {'us/step':>9} {'calls/step':>10}  function")
    for (path, line, fn), (cc, nc, tt, ct, _callers) in rows:
        where = f"{short(path)}:{line}:{fn}" if path != "~" else fn
        print(f"{tt / total * 100:6.1f} {ct / total * 100:6.1f} {tt / n * 1e6:9.1f} {nc / n:10.1f}  {where}")


def profile_pyinstrument(step, steps, per, top):
    from pyinstrument import Profiler
    from pyinstrument.renderers import ConsoleRenderer
    prof = Profiler(interval=0.001)
    t0 = time.perf_counter()
    prof.start()
    for _ in range(steps):
        step()
    prof.stop()
    wall = time.perf_counter() - t0
    print(f"pyinstrument: {steps} steps, {wall / steps * 1e3:.3f} ms/step under the profiler")
    print(prof.output(ConsoleRenderer(unicode=False, color=False, flat=True, show_all=False))
          [: 120 * top])
    print(prof.output(ConsoleRenderer(unicode=False, color=False, show_all=False, short_mode=False)))


def timed_loop(step, steps):
    """The profiled region; samplers (py-spy) keep only the stacks that pass through here."""
    for _ in range(steps):
        step()


SELF_GROUPS = (          # (label, substring of a leaf frame), first match wins
    ("BLAS (OpenBLAS sgemm...)", "openblas"),
    ("numpy C internals", "_multiarray_umath"),
    ("libc (memcpy/memset/malloc/free)", "libc.so"),
    ("Python interpreter / GC", "libpython"),
    ("Python interpreter / GC", "python3"),
    ("kernel / page faults", "[kernel"),
)


def profile_pyspy(name, steps, top):
    """Run this script under `py-spy record --native` and summarise the stacks."""
    import collections
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "stacks.txt")
        cmd = ["py-spy", "record", "--native", "--format", "raw", "-r", "1000", "-o", raw, "--",
               sys.executable, os.path.abspath(__file__), name, "--tool", "none", "--steps", str(steps)]
        subprocess.run(cmd, check=True, capture_output=True)
        with open(raw) as f:
            lines = f.read().splitlines()
    total = 0
    leaf_group = collections.Counter()
    leaf = collections.Counter()
    under = collections.Counter()       # innermost disttrain Python frame of each sample
    for line in lines:
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not any(fr.startswith("timed_loop ") for fr in frames):
            continue                    # warm-up, imports, compilation
        n = int(count)
        total += n
        last = frames[-1]
        leaf[last] += n
        for label, key in SELF_GROUPS:
            if key in last:
                leaf_group[label] += n
                break
        else:
            # JIT-compiled Numba code has no library name: an address or a mangled symbol
            leaf_group["Numba kernels (JIT code)" if ("0x" in last or "disttrain" in last and "(" not in last)
                       or "kernels" in last else "Python frames (self)"] += n
        owner = next((fr for fr in reversed(frames) if "disttrain/" in fr), "(outside disttrain)")
        under[owner] += n
    if not total:
        print("py-spy captured no samples in the timed loop")
        return
    print(f"py-spy --native: {total} samples in the timed loop ({steps} steps of {name})")
    print("\nself time by kind of code:")
    for label, n in leaf_group.most_common():
        print(f"{n / total * 100:6.1f}%  {label}")
    print("\ntime under each innermost disttrain function (its own Python + the native code it calls):")
    for fr, n in under.most_common(top):
        print(f"{n / total * 100:6.1f}%  {fr}")
    print("\nhottest leaf frames:")
    for fr, n in leaf.most_common(top):
        print(f"{n / total * 100:6.1f}%  {fr[:150]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=list("ABCDLK") + list("abcdlk"))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--tool", choices=("cprofile", "pyinstrument", "py-spy", "none"), default="cprofile")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--ddp", action="store_true",
                    help="wrap in DistributedDataParallel (run under mpiexec -n 2; rank 0 prints)")
    o = ap.parse_args()
    name = o.workload.upper()
    if o.tool == "py-spy":
        profile_pyspy(name, o.steps or {"A": 150, "B": 3000, "C": 300, "D": 100}[name], o.top)
        return 0
    step, per = make_step(name, o.ddp)
    if o.ddp:
        import disttrain.distributed as dist
        if dist.get_rank() != 0:            # the other ranks just keep step with rank 0
            for _ in range(5 + (o.steps or {"A": 30, "B": 300, "C": 60, "D": 20}[name])):
                step()
            return 0
    for _ in range(5):
        step()
    steps = o.steps or {"A": 30, "B": 300, "C": 60, "D": 20}[name]
    if o.tool == "none":                    # the child of --tool py-spy
        timed_loop(step, steps)
        return 0
    (profile_cprofile if o.tool == "cprofile" else profile_pyinstrument)(step, steps, per, o.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
