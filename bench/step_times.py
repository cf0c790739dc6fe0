"""Workloads A-D, L, K: single-process step time, disttrain vs PyTorch, side by side.

    python bench/step_times.py            # A B C D L K
    python bench/step_times.py A D        # a subset

One JSON line per workload (prefixed "BENCH "), then a table. Both frameworks
run in this one process with one thread each, alternating in rounds, from the
same initial weights on the same synthetic batches; the figure is the median
over >= 30 timed steps after warm-up, and ratio = disttrain / torch.
"""
import common  # noqa: F401  (thread limits before numpy/torch load)
import sys
import traceback

from common import emit, skip, missing, import_torch, time_alternating, pair_record, STEPS
import workloads as W


def bench_model(name, torch):
    why = missing(*W.NEEDS[name])
    if why:
        return skip(name, why)
    data = W.batches(name)
    model = W.dt_model(name)
    weights = W.state_arrays(model)
    dstep, dstate, _ = W.dt_step(model, data, name=name)
    steps = {"disttrain": dstep}
    extra = {"desc": W.SPECS[name][2]}
    if torch is not None:
        tmodel = W.torch_model(name, torch, weights)
        tstep, tstate, _ = W.torch_step(tmodel, data, torch, name=name)
        steps["torch"] = tstep
        # Same weights, same batch -> same first loss: evidence the pair is fair.
        dstep()
        tstep()
        l_dt, l_t = W.loss_value(dstate["loss"]), W.loss_value(tstate["loss"])
        extra.update(first_loss_disttrain=l_dt, first_loss_torch=l_t,
                     first_loss_rel_diff=abs(l_dt - l_t) / max(abs(l_t), 1e-12))
    times = time_alternating(steps)
    rec = pair_record(name, "ms/step", times, scale=1e3, **extra)
    rec["final_loss_disttrain"] = W.loss_value(dstate["loss"])
    if torch is not None:
        rec["final_loss_torch"] = W.loss_value(tstate["loss"])
    return emit(rec)


def bench_ops(torch):
    why = missing("dt.tensor")
    if why:
        return skip("D", why)
    steps = {"disttrain": W.dt_op_loop()}
    if torch is not None:
        steps["torch"] = W.torch_op_loop(torch)
    times = time_alternating(steps, n_steps=max(STEPS, 30))
    return emit(pair_record("D", "us/iter", times, scale=1e6 / W.D_INNER,
                            desc="(a*b+a).sum().backward(), shape (16,)"))


def table(records):
    lines = [f"{'workload':<9}{'unit':<9}{'disttrain':>11}{'torch':>11}{'ratio':>8}{'cpu':>6}  note"]
    for r in records:
        if r.get("status") != "ok":
            lines.append(f"{r['workload']:<9}{'':<9}{'skipped':>11}{'':>11}{'':>8}  {r.get('reason', '')[:70]}")
            continue
        tm = "-" if r.get("torch") is None else f"{r['torch']:.3f}"
        ra = "-" if r.get("ratio") is None else f"{r['ratio']:.2f}"
        cr = "-" if r.get("cpu_ratio") is None else f"{r['cpu_ratio']:.2f}"
        lines.append(f"{r['workload']:<9}{r['unit']:<9}{r['disttrain']:>11.3f}{tm:>11}{ra:>8}{cr:>6}  {r.get('desc', '')}")
    lines.append("ratio = disttrain/torch wall-time medians; cpu = the same for process CPU time")
    return "\n".join(lines)


def main(argv):
    wanted = [a.upper() for a in argv] or ["A", "B", "C", "D", "L", "K", "K-small"]
    torch = import_torch()
    records = []
    for name in wanted:
        try:
            if name == "D":
                records.append(bench_ops(torch))
            else:
                records.append(bench_model(name, torch))
        except Exception as e:          # noqa: BLE001 -- one broken workload must not hide the others
            traceback.print_exc()
            records.append(emit(dict(workload=name, status="error", reason=f"{type(e).__name__}: {e}")))
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
