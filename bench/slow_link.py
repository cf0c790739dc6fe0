"""Workload I, "two hosts, one link": data parallelism over a shaped TCP link (issue 10).

    python bench/slow_link.py [A C] [--rates 1gbit,10gbit]       (root: network namespaces)

Two network-namespace hosts (tests/netns.py's harness, namespaces named dtns-i10bench-<pid>-...)
joined by a veth pair shaped on both ends with ``tc qdisc ... tbf rate R burst 256kb latency 20ms``;
one rank per host, MPI forced onto TCP (dtrun --force-tcp --iface veth0), traffic proven by the veth
byte counters. For each workload (A: MLP-A b128; C: LeNet b64) and link rate, in ONE launch whose
phases take turns in rounds:

  1rank        rank 0 trains the plain model alone (the other rank sleep-waits): the baseline;
  nocomm       both ranks train the plain model at once, no communication (the machine's ceiling);
  fp32 / bf16 / powersgd-r1,r2,r4   disttrain DDP with that comm hook (PowerSGD from step 2);
  raw-mpi      backward, one blocking mpi4py Allreduce of all gradients, step (no overlap);
  allreduce    just that one Allreduce of the gradient bytes over the link;
  torch-*      PyTorch DDP over gloo on the same link (GLOO_SOCKET_IFNAME=veth0): fp32, its
               fp16_compress_hook and powerSGD_hook ranks 1/2/4 (default buckets; rank 4 also with
               one bucket), if torch imports. Each PowerSGD rank runs in a launch of its own (with its
               own 1rank/nocomm baseline): gloo's failures abort the process, reported as "crashed".

Efficiency = median 1rank step / median 2-rank step (the slowest rank's time per step). Also the
loss after the timed steps of every variant (same start, same batches) against fp32's. Results:
BENCH lines, and bench/results/slow_link.json. Leaves no namespace or process behind (killed by
PID, namespaces deleted, also on failure or Ctrl-C).
"""
import common  # noqa: F401  (thread limits before numpy/torch load)
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

from common import emit, skip, median, STEPS, WARMUP, ROUNDS, BENCH_DIR, REPO_DIR

TBF = ("burst", "256kb", "latency", "20ms")
VARIANTS = [("fp32", None, {}), ("bf16", "bf16", {}),
            *[(f"powersgd-r{r}", "powersgd", {"matrix_approximation_rank": r, "start_powerSGD_iter": 2})
              for r in (1, 2, 4)]]
# PyTorch's variants, by launch: a gloo failure aborts the process (C++ terminate), so each PowerSGD
# rank gets a launch of its own; "-1bucket" is DDP with bucket_cap_mb=100 (one bucket for MLP-A).
TORCH_LAUNCHES = [["fp32", "fp16"], ["powersgd-r1"], ["powersgd-r2"], ["powersgd-r4"], ["powersgd-r4-1bucket"]]


# -- the driver (root, outside MPI) ----------------------------------------------------------------
def _netns():
    spec = importlib.util.spec_from_file_location("bench_netns", os.path.join(REPO_DIR, "tests", "netns.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.PREFIX = "dtns-i10bench-"       # this bench's namespaces: dtns-i10bench-<pid>-<k>-h0/h1
    return mod


def _shape(hosts, rate):
    for ns in hosts.namespaces:
        subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", "veth0", "root", "tbf",
                        "rate", rate, *TBF], check=True, capture_output=True, timeout=30)


def driver(names, rates):
    netns = _netns()
    why = netns.unavailable()
    if why:
        skip("I", f"needs network-namespace hosts: {why}")
        return 0
    hosts = netns.NetnsHosts(2)
    old = signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))     # clean up on a kill too
    records = []
    try:
        for rate in rates:
            _shape(hosts, rate)
            rx0, tx0 = hosts.veth_bytes("h0")
            env = hosts.env()
            env.update(PYTHONPATH=REPO_DIR + os.pathsep + env.get("PYTHONPATH", ""), GLOO_SOCKET_IFNAME="veth0",
                       BENCH_LINK_RATE=rate)
            launches = [["--dt", "--torch", ",".join(TORCH_LAUNCHES[0])]]
            if not os.environ.get("BENCH_NO_TORCH"):
                launches += [["--torch", ",".join(v)] for v in TORCH_LAUNCHES[1:]]
            for what in launches:
                argv = [sys.executable, "-m", "launch", "-n", "2", "--hosts", "h0:1,h1:1", "--launcher", "ssh",
                        "--launcher-exec", netns.NSEXEC, "--iface", "veth0", "--force-tcp", "--timeout", "900",
                        "--env", "GLOO_SOCKET_IFNAME=veth0", "--env", f"BENCH_LINK_RATE={rate}",
                        os.path.join(BENCH_DIR, "slow_link.py"), "--worker", *what, *names]
                t0 = time.monotonic()
                p = hosts.run("h0", argv, env=env, cwd=REPO_DIR, capture_output=True, text=True, timeout=1000)
                rx1, tx1 = hosts.veth_bytes("h0")
                got = common.parse_lines(p.stdout)
                for r in got:
                    r.update(link=rate, veth_rx_MB=(rx1 - rx0) / 1e6, veth_tx_MB=(tx1 - tx0) / 1e6)
                    emit(r)
                if p.returncode:      # e.g. gloo's abort in PyTorch's powerSGD_hook: reported as it is
                    lines = [ln for ln in (p.stderr or "").splitlines() if "what()" in ln or "Error" in ln]
                    got.append(emit(dict(workload="I", link=rate, launch=" ".join(what), status="crashed",
                                         rc=p.returncode, reason=(lines[-1] if lines else p.stderr[-400:])[-400:])))
                print(f"# link {rate} {' '.join(what)}: {time.monotonic() - t0:.0f} s, veth h0 rx "
                      f"{(rx1 - rx0) / 1e6:.0f} MB tx {(tx1 - tx0) / 1e6:.0f} MB", flush=True)
                rx0, tx0 = rx1, tx1
                records += got
    finally:
        hosts.kill_all()
        hosts.close()
        signal.signal(signal.SIGTERM, old)
    os.makedirs(os.path.join(BENCH_DIR, "results"), exist_ok=True)
    with open(os.path.join(BENCH_DIR, "results", "slow_link.json"), "w") as f:
        json.dump(records, f, indent=1, sort_keys=True)
    with open(os.path.join(BENCH_DIR, "results", "slow_link.md"), "w") as f:
        f.write(table(records))
    return 0


def table(records):
    """The records as a Markdown table (every phase; 1rank is each row's baseline)."""
    lines = ["| workload | link | variant | step ms | 1 rank alone ms (same launch) | efficiency | loss (fp32's) |",
             "|---|---|---|---|---|---|---|"]
    for r in records:
        if r.get("status") != "ok":
            lines.append(f"| {r.get('workload')} | {r.get('link')} | {r.get('launch', r.get('variant', ''))} | "
                         f"**{r.get('status')}** | | | {str(r.get('reason'))[:160]} |")
            continue
        if r["variant"] == "1rank":
            continue
        eff = f"{r['efficiency']:.2f}" if "efficiency" in r else "-"
        loss = "-" if r.get("loss") is None else f"{r['loss']:.4f}" + (
            f" ({r['loss_fp32']:.4f})" if r.get("loss_fp32") is not None else "")
        lines.append(f"| {r['workload']} | {r['link']} | {r['variant']} | {r['step_ms']:.1f} | "
                     f"{r['t_1rank_ms']:.1f} | {eff} | {loss} |")
    return "\n".join(lines) + "\n"


# -- the ranks -------------------------------------------------------------------------------------
def _baseline(name, S, W):
    data = W.batches(name, rank=S.RANK)
    step, st, _ = W.dt_step(W.dt_model(name), data)
    # nocomm: every rank computing at once without communication: the ceiling the shared machine leaves
    return {"1rank": (step, "one"), "nocomm": (W.dt_step(W.dt_model(name), data)[0], "all")}, {"1rank": st}


def _dt_phases(name, S, W, dt, dist):
    data = W.batches(name, rank=S.RANK)
    phases, states = {}, {}
    for label, hook, args in VARIANTS:
        def wrap(module, hook=hook, args=args):
            ddp = dt.DistributedDataParallel(module)
            if hook:
                ddp.register_comm_hook(*dist.create_comm_hook(hook, **args))
            return ddp
        step, st, _ = W.dt_step(W.dt_model(name), data, wrap=wrap)
        phases[label], states[label] = (step, "all"), st
    phases["raw-mpi"] = (S.raw_mpi_step(name, data), "all")
    n = sum(p.data.size for p in W.dt_model(name).parameters())
    grads = __import__("numpy").ones(n, "float32")

    def allreduce():
        S.RAW.Allreduce(S.MPI.IN_PLACE, grads, op=S.MPI.SUM)
    phases["allreduce"] = (allreduce, "all")
    return phases, states, n


def _torch_phases(name, S, W, torch, master, variants):
    import datetime
    import torch.distributed as tdist
    from torch.nn.parallel import DistributedDataParallel as TDDP
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook as psgd
    if not tdist.is_initialized():
        tdist.init_process_group("gloo", init_method=f"tcp://{master}", rank=S.RANK, world_size=S.SIZE,
                                 timeout=datetime.timedelta(seconds=60))
    weights = W.state_arrays(W.dt_model(name))
    data = W.batches(name, rank=S.RANK)
    phases, states = {}, {}
    for label in variants:
        def wrap(module, label=label):
            ddp = TDDP(module, bucket_cap_mb=100 if label.endswith("-1bucket") else 25)
            if label == "fp16":
                ddp.register_comm_hook(None, default_hooks.fp16_compress_hook)
            elif label.startswith("powersgd"):
                state = psgd.PowerSGDState(process_group=None, matrix_approximation_rank=int(label.split("-r")[1][0]),
                                           start_powerSGD_iter=2, min_compression_rate=2)
                ddp.register_comm_hook(state, psgd.powerSGD_hook)
            return ddp
        step, st, _ = W.torch_step(W.torch_model(name, torch, weights), data, torch, wrap=wrap)
        phases[f"torch-{label}"], states[f"torch-{label}"] = (step, "all"), st
    return phases, states


def netns_master():
    return "10.77.0.1"      # h0's veth address (tests/netns.py's SUBNET .1)


def _loss(st):
    loss = st.get("loss")
    if loss is None:
        return None
    v = loss.item() if hasattr(loss, "item") else float(getattr(loss, "data", loss))
    return float(v)


def worker(names, run_dt, torch_variants):
    import numpy as np
    import scaling as S           # its MPI control communicators and phase runner
    import workloads as W
    import disttrain as dt
    import disttrain.distributed as dist
    from common import import_torch
    dist.init()
    torch = import_torch() if torch_variants else None
    rate = os.environ.get("BENCH_LINK_RATE", "?")
    for name in names:
        phases, states = _baseline(name, S, W)
        n = sum(p.data.size for p in W.dt_model(name).parameters())
        if run_dt:
            ph, st, n = _dt_phases(name, S, W, dt, dist)
            phases.update(ph)
            states.update(st)
        torch_err = None
        if torch is not None:
            try:
                tph, tst = _torch_phases(name, S, W, torch, f"{netns_master()}:29517", torch_variants)
                phases.update(tph)
                states.update(tst)
            except Exception as e:      # noqa: BLE001 -- the peer failing must not cost our figures
                torch_err = f"{type(e).__name__}: {e}"
        ok = np.array([0 if torch_err else 1], np.int32)
        S.CTL.Allreduce(S.MPI.IN_PLACE, ok, op=S.MPI.MIN)
        if not ok[0]:
            phases = {k: v for k, v in phases.items() if not k.startswith("torch-")}
        errors = {}
        for key, (step, ranks) in list(phases.items()):      # warm-up; a torch variant may crash here
            try:
                for _ in range(WARMUP):
                    S.run_phase(step, 1, ranks)
            except Exception as e:      # noqa: BLE001
                if not key.startswith("torch-"):
                    raise
                errors[key] = f"{type(e).__name__}: {str(e)[:300]}"
                break                   # gloo's state after a failed collective: no more torch phases
        if errors:
            phases = {k: v for k, v in phases.items() if not k.startswith("torch-")}
        times = {k: [] for k in phases}
        per_round = max(1, -(-STEPS // ROUNDS))
        for r in range(ROUNDS):
            order = list(phases.items())
            if r % 2:
                order.reverse()
            for key, (step, ranks) in order:
                times[key] += S.run_phase(step, per_round, ranks)
        if S.RANK != 0:
            continue
        t1 = median(times["1rank"])
        base_loss = _loss(states["fp32"]) if "fp32" in states else None
        for key, ts in times.items():
            rec = dict(workload=f"I-{name}", variant=key, status="ok", ranks=S.SIZE, link=rate,
                       step_ms=median(ts) * 1e3, t_1rank_ms=t1 * 1e3, samples=len(ts), grad_MB=n * 4 / 1e6)
            if key not in ("1rank", "allreduce", "nocomm"):
                rec["efficiency"] = t1 / median(ts)
            if key in states:
                rec["loss"] = _loss(states[key])
                rec["loss_fp32"] = base_loss
                rec["steps_done"] = states[key]["i"]
            emit(rec)
        for key, err in errors.items():
            emit(dict(workload=f"I-{name}", variant=key, status="error", link=rate, reason=err))
        if torch_err:
            emit(dict(workload=f"I-{name}", variant="torch", status="skipped", link=rate, reason=torch_err))
    if torch is not None:
        import torch.distributed as tdist
        if tdist.is_initialized():
            tdist.destroy_process_group()
    return 0


def main(argv):
    if "--worker" in argv:
        args = [a for a in argv if a not in ("--worker", "--dt")]
        torch_variants = []
        if "--torch" in args:
            i = args.index("--torch")
            torch_variants = args[i + 1].split(",")
            del args[i:i + 2]
        return worker([a.upper() for a in args], "--dt" in argv, torch_variants)
    rates = ["1gbit", "10gbit"]
    names = []
    it = iter(argv)
    for a in it:
        if a == "--rates":
            rates = next(it).split(",")
        else:
            names.append(a.upper())
    return driver(names or ["A", "C"], rates)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
