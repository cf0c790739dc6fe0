"""Workload G: start-up cost and memory of workload A.

    python bench/startup.py

Each measurement runs in a fresh subprocess:
  cold  NUMBA_CACHE_DIR is a new empty folder, so every kernel compiles;
  warm  the same folder again, so kernels load from the on-disk cache.
The headline is what a user waits for: `import disttrain` + building model A
+ the first training step (the first step is where lazy kernels compile), with
the breakdown alongside. Peak RSS (ru_maxrss) is taken after 20 steps of A,
for disttrain and, when installed, for torch in its own process.
"""
import common  # noqa: F401
import json
import os
import subprocess
import sys
import tempfile
import time

from common import emit, skip, missing

HERE = os.path.abspath(__file__)


def child(mode, name="A"):
    t0 = time.perf_counter()
    import workloads as W
    out = {}
    if mode in ("first", "rss-dt"):
        import disttrain.nn  # noqa: F401  (lazy subpackages: count them in the import time)
        import disttrain.optim  # noqa: F401
        t1 = time.perf_counter()
        model = W.dt_model(name)
        step, _, _ = W.dt_step(model, W.batches(name))
        t2 = time.perf_counter()
        step()
        t3 = time.perf_counter()
        step()
        t4 = time.perf_counter()
        out.update(import_s=t1 - t0, build_s=t2 - t1, first_step_s=t3 - t2, second_step_s=t4 - t3,
                   total_s=t3 - t0)
    else:
        from common import import_torch
        torch = import_torch()
        model = W.torch_model("A", torch)
        step, _, _ = W.torch_step(model, W.batches("A"), torch)
        step()
    if mode.startswith("rss"):
        for _ in range(20):
            step()
        out["peak_rss_mb"] = common.peak_rss_mb()
    print("CHILD " + json.dumps(out), flush=True)


def run_child(mode, env_extra=None, timeout=300, name="A"):
    env = dict(os.environ)
    env.update(env_extra or {})
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, HERE, "--child", mode, name], env=env, capture_output=True,
                       text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    for line in p.stdout.splitlines():
        if line.startswith("CHILD "):
            rec = json.loads(line[6:])
            rec["process_wall_s"] = wall
            return rec
    raise RuntimeError(f"child {mode} failed (rc {p.returncode}):\n{p.stderr[-2000:]}")


def main():
    why = missing(*__import__("workloads").NEEDS["A"])
    if why:
        skip("G", why)
        return 0
    for name in ("A", "C"):
        if name == "C" and missing(*__import__("workloads").NEEDS["C"]):
            continue
        with tempfile.TemporaryDirectory(prefix="dt-bench-numba-") as cache:
            env = {"NUMBA_CACHE_DIR": cache}
            cold = run_child("first", env, name=name)
            warm = run_child("first", env, name=name)
        startup_record(name, cold, warm)
    rss = dict(workload="G-rss", status="ok", unit="MiB", model="A", disttrain=run_child("rss-dt")["peak_rss_mb"])
    if common.import_torch() is not None:
        rss["torch"] = run_child("rss-torch")["peak_rss_mb"]
        rss["ratio"] = rss["disttrain"] / rss["torch"]
    emit(rss)
    return 0


def startup_record(name, cold, warm):
    emit(dict(workload="G-startup" if name == "A" else f"G-startup-{name}", model=name, status="ok", unit="s",
              cold=cold["total_s"], warm=warm["total_s"],
              cold_first_step=cold["first_step_s"], warm_first_step=warm["first_step_s"],
              cold_import=cold["import_s"], warm_import=warm["import_s"],
              cold_process_wall=cold["process_wall_s"], warm_process_wall=warm["process_wall_s"],
              steady_step=warm["second_step_s"],
              target_cold=10.0, target_warm=2.0))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        child(*sys.argv[2:4])
    else:
        sys.exit(main())
