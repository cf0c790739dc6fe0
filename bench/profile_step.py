"""Where does a disttrain training step spend its time?

    python bench/profile_step.py A                 # cProfile, flat table by self time
    python bench/profile_step.py D --tool pyinstrument
    python bench/profile_step.py B --steps 300 --top 30
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
    step, _, _ = W.dt_step(W.dt_model(name), W.batches(name, rank=rank), wrap=wrap)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=list("ABCD") + list("abcd"))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--tool", choices=("cprofile", "pyinstrument"), default="cprofile")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--ddp", action="store_true",
                    help="wrap in DistributedDataParallel (run under mpiexec -n 2; rank 0 prints)")
    o = ap.parse_args()
    name = o.workload.upper()
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
    (profile_cprofile if o.tool == "cprofile" else profile_pyinstrument)(step, steps, per, o.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
