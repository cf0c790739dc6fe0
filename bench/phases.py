"""Where the step time goes, phase by phase, disttrain vs PyTorch (workloads A, B, C).

    python bench/phases.py            # A B C
    python bench/phases.py C

Splits a training step into zero_grad / forward+loss / backward / optimizer
step, times each phase of both frameworks in the same process (alternating
rounds, one thread, same weights and data as step_times.py) and prints the
per-phase medians and ratios: the phase with the worst ratio is where to look.
"""
import common  # noqa: F401
import sys
import time

from common import emit, skip, missing, import_torch, median, STEPS, WARMUP, ROUNDS
import workloads as W

PHASES = ("zero_grad", "forward", "backward", "step")


def phase_stepper(framework, model, data, torch=None):
    """A step function that records the duration of each phase into `rec`."""
    if framework == "disttrain":
        import disttrain as dt
        F = dt.nn.functional
        opt = dt.optim.SGD(model.parameters(), lr=W.LR, momentum=W.MOMENTUM)
        xs = [(dt.tensor(x), y) for x, y in data]
    else:
        F = torch.nn.functional
        opt = torch.optim.SGD(model.parameters(), lr=W.LR, momentum=W.MOMENTUM)
        xs = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]
    rec = {p: [] for p in PHASES}
    state = {"i": 0}
    clock = time.perf_counter

    def step():
        x, y = xs[state["i"] % W.POOL]
        state["i"] += 1
        t0 = clock()
        opt.zero_grad()
        t1 = clock()
        loss = F.cross_entropy(model(x), y)
        t2 = clock()
        loss.backward()
        t3 = clock()
        opt.step()
        t4 = clock()
        for p, d in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            rec[p].append(d)
    return step, rec


def bench(name, torch):
    why = missing(*W.NEEDS[name])
    if why:
        return [skip(f"phases-{name}", why)]
    data = W.batches(name)
    model = W.dt_model(name)
    steppers = {"disttrain": phase_stepper("disttrain", model, data)}
    if torch is not None:
        steppers["torch"] = phase_stepper("torch", W.torch_model(name, torch, W.state_arrays(model)), data, torch)
    for step, rec in steppers.values():
        for _ in range(WARMUP):
            step()
        for v in rec.values():
            v.clear()
    per_round = max(1, -(-STEPS // ROUNDS))
    for r in range(ROUNDS):
        order = list(steppers.values())
        if r % 2:
            order.reverse()
        for step, _ in order:
            for _ in range(per_round):
                step()
    out = []
    for p in PHASES:
        res = dict(workload=f"phases-{name}", phase=p, status="ok", unit="ms",
                   disttrain=median(steppers["disttrain"][1][p]) * 1e3)
        if "torch" in steppers:
            res["torch"] = median(steppers["torch"][1][p]) * 1e3
            res["ratio"] = res["disttrain"] / res["torch"] if res["torch"] > 0 else None
        out.append(emit(res))
    return out


def main(argv):
    wanted = [a.upper() for a in argv] or ["A", "B", "C"]
    torch = import_torch()
    rows = []
    for name in wanted:
        rows += bench(name, torch)
    print(f"{'phase':<22}{'disttrain ms':>13}{'torch ms':>10}{'ratio':>7}")
    for r in rows:
        if r.get("status") != "ok":
            print(f"{r['workload']:<22} skipped: {r.get('reason')}")
            continue
        t = r.get("torch")
        print(f"{r['workload'] + ' ' + r['phase']:<22}{r['disttrain']:>13.3f}"
              f"{'-' if t is None else format(t, '.3f'):>10}"
              f"{'-' if r.get('ratio') is None else format(r['ratio'], '.2f'):>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
