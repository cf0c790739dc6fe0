"""Run every benchmark (A-H, K, L and the single layers), write bench/results/latest.json and a chart of the ratios.

    python bench/run_all.py                 # everything, ~5-10 minutes on 2 cores
    BENCH_QUICK=1 python bench/run_all.py   # smoke run with few steps
    python bench/run_all.py --only A,D,H    # a subset (letters of the workloads; P = phases.py)

Each script runs in its own process (multi-rank ones under `mpiexec -n 2`
with MPIEXEC_TIMEOUT, so nothing can hang), prints JSON lines, and this runner
collects them, checks each target and prints one table.
"""
import common  # noqa: F401
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

from common import BENCH_DIR, REPO_DIR, parse_lines, machine_info

RESULTS = os.path.join(BENCH_DIR, "results")

# (letters, script, ranks, timeout seconds, extra args)
JOBS = [
    ("H", "limits.py", 1, 120, []),
    ("H", "limits.py", 2, 120, []),
    ("ABCDLK", "step_times.py", 1, 420, None),
    ("LK", "layers.py", 1, 300, []),             # single layers of L and K, forward+backward
    ("P", "phases.py", 1, 240, []),              # diagnostic: per-phase split of A, B, C
    ("E", "scaling.py", 2, 300, []),
    ("F", "ddp_sync.py", 2, 240, []),
    ("G", "startup.py", 1, 240, []),
    ("J", "sharded.py", 2, 300, []),                  # J: sharded update (ZeRO-1) vs DDP, MLP-A + Adam
    ("J", "sharded.py", 2, 120, ["rss", "ddp"]),      # peak memory: one configuration per launch
    ("J", "sharded.py", 2, 120, ["rss", "node"]),
    ("J", "sharded.py", 2, 120, ["rss", "any"]),
    ("J", "sharded.py", 4, 420, []),                  # 4 ranks: oversubscribed on a 2-core machine
]

# E is the noisiest figure (two ranks in lockstep on a shared machine): it runs in several launches
# and the launch with the median disttrain efficiency is reported (with its own torch/raw-MPI peers).
E_LAUNCHES = int(os.environ.get("BENCH_E_LAUNCHES", "1" if common.QUICK else "3"))

# workload -> (what is compared, target, "le" | "ge")
TARGETS = {
    # A-D: issue 14's bar (A toward the GEMM limit; B, C, D keep what cycle 1 reached).
    "A": ("step time ratio dt/torch", 0.90, "le"),
    "B": ("step time ratio dt/torch", 0.51, "le"),
    "C": ("step time ratio dt/torch", 0.72, "le"),
    "D": ("per-op time ratio dt/torch", 0.60, "le"),
    "L": ("step time ratio dt/torch", 1.0, "le"),
    "L-conv1": ("fwd+bwd time ratio dt/torch", 1.0, "le"),
    "L-conv2": ("fwd+bwd time ratio dt/torch", 1.0, "le"),
    "conv-64-128": ("fwd+bwd time ratio dt/torch", 1.0, "le"),
    "K": ("step time ratio dt/torch", 1.0, "le"),
    "E-A": ("2-rank scaling efficiency", 0.85, "ge"),
    "E-C": ("2-rank scaling efficiency", 0.85, "ge"),
    "F": ("DDP sync / raw Allreduce", 1.10, "le"),
    "G-cold": ("cold start: import+1st step", 10.0, "le"),
    "G-warm": ("warm start: import+1st step", 2.0, "le"),
    "J": ("2-rank eff., sharded node-shared", 0.90, "ge"),
    "J-sync": ("sync+update / (Allreduce+upd.)", 1.0, "le"),
    "J-rss": ("RSS saved / (N-1)/N Adam state", 1.0, "ge"),
    "J-4": ("4-rank eff., sharded node-shared", 0.90, "ge"),
}


def mpiexec():
    cand = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return cand if os.path.exists(cand) else shutil.which("mpiexec")


def run_job(script, ranks, timeout, args):
    path = os.path.join(BENCH_DIR, script)
    if not os.path.exists(path):
        return [], f"{script} not written yet", 0.0
    if ranks == 1:
        cmd = [sys.executable, path] + args
    else:
        launcher = mpiexec()
        if launcher is None:
            return [], "mpiexec not found", 0.0
        cmd = [launcher, "-n", str(ranks), sys.executable, "-m", "mpi4py", path] + args
    env = dict(os.environ, MPIEXEC_TIMEOUT=str(timeout), PYTHONPATH=os.pathsep.join(
        p for p in (BENCH_DIR, REPO_DIR, os.environ.get("PYTHONPATH")) if p))
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=timeout + 30)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return parse_lines(out), f"timed out after {timeout}s", time.perf_counter() - t0
    wall = time.perf_counter() - t0
    recs = parse_lines(p.stdout)
    problem = None
    if p.returncode != 0:
        problem = f"exit status {p.returncode}: " + (p.stderr.strip().splitlines() or ["(no stderr)"])[-1][:300]
    sys.stderr.write(p.stderr[-3000:] if p.returncode else "")
    return recs, problem, wall


def find(records, workload, **match):
    for r in records:
        if r.get("workload") == workload and r.get("status", "ok") == "ok" and all(
                r.get(k) == v for k, v in match.items()):
            return r
    return None


def normalise_f(records):
    """Give bench/ddp_sync.py's lines a workload name (F-mlp, F-lenet) and the F ratio."""
    for r in records:
        if r.get("bench") == "ddp_sync":
            r.setdefault("workload", f"F-{r.get('model') or r.get('probe') or 'sync'}")
            r.setdefault("status", "ok")
            sync, raw = r.get("sync_cost_ms"), r.get("raw_allreduce_ms")
            if isinstance(sync, (int, float)) and isinstance(raw, (int, float)) and raw > 0:
                r["sync_vs_raw"] = sync / raw


def f_record(records):
    """Workload F's headline: MLP (A) at the default bucket_cap_mb=25, best progress/wait mode."""
    cands = [r for r in records if r.get("workload") == "F-mlp" and isinstance(r.get("sync_vs_raw"), float)
             and r.get("bucket_cap_mb") == 25]
    if not cands:
        return None, None
    return min(cands, key=lambda r: r["sync_vs_raw"]), "sync_vs_raw"


def summarise(records):
    rows = []
    for w in ("A", "B", "C", "D", "L", "L-conv1", "L-conv2", "conv-64-128", "K"):
        r = find(records, w)
        rows.append(row(w, r, r and r.get("ratio"), r and r.get("disttrain"), r and r.get("torch"),
                        (r and r.get("unit")) or "", records, cpu=r and r.get("cpu_ratio")))
    for w in ("E-A", "E-C"):
        runs = sorted((x for x in records if x.get("workload") == w and x.get("framework") == "disttrain"
                       and x.get("status") == "ok" and isinstance(x.get("efficiency"), float)),
                      key=lambda x: x["efficiency"])
        r = runs[(len(runs) - 1) // 2] if runs else find(records, w, framework="disttrain")
        launch = r.get("launch") if r else None
        t = find(records, w, framework="torch", launch=launch) if r else find(records, w, framework="torch")
        cpu = None
        if r and r.get("cpu_1rank") and r.get("cpu_nrank"):
            cpu = r["cpu_1rank"] / r["cpu_nrank"]
        rows.append(row(w, r, r and r.get("efficiency"), r and r.get("t_nrank"), t and t.get("t_nrank"),
                        "ms/step@2", records, peer=t and t.get("efficiency"), cpu=cpu))
        rows[-1]["raw_mpi"] = r and r.get("raw_mpi_efficiency")
        rows[-1]["ceiling"] = r and r.get("ceiling")
        if len(runs) > 1:
            rows[-1]["spread"] = [round(x["efficiency"], 3) for x in runs]
    fr, key = f_record(records)
    rows.append(row("F", fr, fr and fr[key], fr and fr.get("sync_cost_ms"), None,
                    "sync ms" + (f", {fr['progress']}/{fr['wait']}" if fr else ""), records,
                    raw=fr and fr.get("raw_allreduce_ms")))
    g = find(records, "G-startup")
    rows.append(row("G-cold", g, g and g["cold"], g and g["cold"], None, "s", records))
    rows.append(row("G-warm", g, g and g["warm"], g and g["warm"], None, "s", records))
    rows += j_rows(records)
    return rows


def j_rows(records):
    """Workload J (bench/sharded.py): sharded update vs plain DDP, the no-comm ceiling and ZeRO in torch."""
    out = []
    for w, ranks in (("J", 2), ("J-4", 4)):
        j = find(records, "J", ranks=ranks)
        r = row(w, j, j and j.get("eff_node"), j and j.get("t_node_ms"), j and j.get("t_torch-zero_ms"),
                f"ms/step@{ranks}" + (", oversubscribed" if j and j.get("oversubscribed") else ""), records,
                peer=j and j.get("eff_torch-zero"))
        if j:
            r["note"] = (f"torch column: DDP + ZeroRedundancyOptimizer over gloo; plain DDP eff. {j['eff_ddp']:.2f}; "
                         f"any-topology sharded {j['eff_any']:.2f}; no-comm ceiling {j['eff_nocomm']:.2f}")
        out.append(r)
        if ranks == 2:
            r = row("J-sync", j, j and j.get("sync_update_ratio_node"), j and j.get("sync_update_node_ms"), None,
                    "ms", records, raw=j and j.get("sync_update_reference_ms"))
            if j:
                r["note"] = f"any-topology path {j['sync_update_ratio_any']:.2f}"
            out.append(r)
    rss = {m: find(records, "J-rss", mode=m) for m in ("ddp", "node", "any")}
    value = r_note = None
    if rss["ddp"] and rss["node"]:
        n = rss["ddp"]["ranks"]
        share = max(rss["ddp"]["optimizer_state_mib"]) * (n - 1) / n
        saved = {m: max(rss["ddp"]["peak_growth_mib"]) - max(rss[m]["peak_growth_mib"])
                 for m in ("node", "any") if rss[m]}
        pss = {m: max(rss["ddp"]["pss_end_mib"]) - max(rss[m]["pss_end_mib"]) for m in ("node", "any") if rss[m]}
        value = saved["node"] / share
        r_note = (f"peak RSS growth per rank: DDP {max(rss['ddp']['peak_growth_mib']):.1f} MiB, node-shared "
                  f"{max(rss['node']['peak_growth_mib']):.1f}, any-topology "
                  f"{max(rss['any']['peak_growth_mib']) if rss['any'] else float('nan'):.1f}; (N-1)/N of the Adam "
                  f"state {share:.1f} MiB; PSS saved: node-shared {pss['node']:.1f} MiB, any-topology "
                  f"{pss.get('any', float('nan')):.1f} MiB (RSS counts the shared window on every rank)")
    r = row("J-rss", rss["node"], value, rss["node"] and max(rss["node"]["peak_growth_mib"]),
            None, "MiB peak growth", records)
    r["note"] = r_note
    out.append(r)
    return out


def row(w, rec, value, dt_val, torch_val, unit, records, peer=None, raw=None, cpu=None):
    what, target, sense = TARGETS[w]
    met = None
    if isinstance(value, (int, float)):
        met = value <= target if sense == "le" else value >= target
    reason = None
    if rec is None:
        skipped = [r for r in records if str(r.get("workload", "")).startswith(w[0])
                   and r.get("status") in ("skipped", "error")]
        reason = skipped[0].get("reason") if skipped else "no result"
    return dict(workload=w, measure=what, unit=unit, disttrain=dt_val, torch=torch_val, value=value,
                peer_value=peer, target=target, sense=sense, met=met, reason=reason, raw=raw, cpu=cpu)


def fmt(x, nd=3):
    return "-" if not isinstance(x, (int, float)) else f"{x:.{nd}f}"


def table(rows):
    out = [f"{'wl':<12}{'measure':<28}{'disttrain':>10}{'torch':>10}{'value':>8}{'cpu':>6}{'target':>9}  met"]
    for r in rows:
        tgt = ("<=" if r["sense"] == "le" else ">=") + f"{r['target']:g}"
        met = {True: "MET", False: "NOT MET", None: "n/a"}[r["met"]]
        line = f"{r['workload']:<12}{r['measure']:<28}{fmt(r['disttrain']):>10}{fmt(r['torch']):>10}" \
               f"{fmt(r['value'], 2):>8}{fmt(r.get('cpu'), 2):>6}{tgt:>9}  {met}"
        if r["peer_value"] is not None:
            line += f"  (torch DDP: {r['peer_value']:.2f}"
            if r.get("raw_mpi") is not None:
                line += f"; raw MPI: {r['raw_mpi']:.2f}"
            if r.get("ceiling") is not None:
                line += f"; no-comm ceiling: {r['ceiling']:.2f}"
            line += ")"
        if r.get("spread"):
            line += f"  [launches: {', '.join(f'{v:.2f}' for v in r['spread'])}]"
        if r.get("raw") is not None:
            line += f"  (raw Allreduce {r['raw']:.3f} ms; {r['unit']})"
        if r["reason"]:
            line += f"  [{r['reason'][:60]}]"
        if r.get("note"):
            line += f"  ({r['note']})"
        out.append(line)
    return "\n".join(out)


def markdown(rows, doc):
    """The README's figures table, generated from the same rows."""
    m = doc["machine"]
    lines = [f"Run {doc['started']} UTC, {doc['wall_s']:.0f} s; {m['cpu']}, {m['cores']} cores; "
             f"Python {m['python']}, numpy {m['numpy']}, numba {m['numba']}, mpi4py {m['mpi4py']}, "
             f"{m['mpi']}, torch {m['torch']}; OPENBLAS_CORETYPE {m.get('openblas_coretype', '?')}"
             + (f" (environment's {m['openblas_env_unset']} unset for bench)" if m.get("openblas_env_unset") else "")
             + "; "
             f"{m['threads']} thread(s) per process"
             + (f" ({'; '.join(m['threadpools'])})" if m.get("threadpools") else "") + "; "
             f"medians of {doc['steps']} timed steps in {doc['rounds']} alternating rounds after "
             f"{doc['warmup']} warm-up steps.", "",
             "| workload | measure | disttrain | PyTorch | value | same on CPU time | target | met |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tgt = ("<= " if r["sense"] == "le" else ">= ") + f"{r['target']:g}"
        met = {True: "met", False: "**not met**", None: "n/a"}[r["met"]]
        torch_col = fmt(r["torch"])
        if r.get("raw") is not None:
            torch_col = f"raw Allreduce {r['raw']:.3f} ms"
        if r["peer_value"] is not None:
            torch_col += f" (eff. {r['peer_value']:.2f})"
        note = f" ({r['reason'][:80]})" if r["reason"] else ""
        if r.get("raw_mpi") is not None:
            note += f"; raw-MPI reference eff. {r['raw_mpi']:.2f}"
        if r.get("ceiling") is not None:
            note += f"; no-comm ceiling {r['ceiling']:.2f}"
        if r.get("spread"):
            note += f"; median of {len(r['spread'])} launches: {', '.join(f'{v:.2f}' for v in r['spread'])}"
        if r.get("note"):
            note += f"; {r['note']}"
        lines.append(f"| {r['workload']} | {r['measure']} [{r['unit']}] | {fmt(r['disttrain'])} | {torch_col} | "
                     f"{fmt(r['value'], 2)} | {fmt(r.get('cpu'), 2)} | {tgt} | {met}{note} |")
    lines += limits_lines(doc["records"])
    lines += ["", "All result lines (numbers rounded):", ""]
    skip_keys = {"workload", "status", "threads", "source", "desc", "unit"}
    for rec in doc["records"]:
        parts = []
        for k, v in rec.items():
            if k in skip_keys or v is None:
                continue
            if isinstance(v, float):
                v = f"{v:.4g}"
            elif isinstance(v, (list, dict)):
                continue
            parts.append(f"{k}={v}")
        lines.append(f"- `{rec.get('workload')}` [{rec.get('unit', '')}] " + ", ".join(parts))
    return "\n".join(lines) + "\n"


A_GFLOP = 2 * 128 * (784 * 1024 + 1024 * 1024 + 1024 * 10) * 3 / 1e9 - 2 * 128 * 784 * 1024 / 1e9
# forward + weight gradients + input gradients (none for the first layer's input): ~1.22 GFLOP per step


def limits_lines(records):
    """Each headline figure as a fraction of this machine's limits (workload H, same run)."""
    sg = find(records, "H-sgemm")
    mc = find(records, "H-memcpy")
    ar = find(records, "H-allreduce", is_A_grad=True)
    a = find(records, "A")
    out = ["", "Against this machine's limits (workload H, same run):", ""]
    if sg:
        out.append(f"- single-thread sgemm 1024^3: numpy (OpenBLAS) {sg['numpy']:.0f} GFLOP/s"
                   + (f", torch {sg['torch']:.0f} GFLOP/s" if sg.get("torch") else ""))
    if sg and a:
        g = A_GFLOP / (a["disttrain"] / 1e3)
        out.append(f"- workload A runs at {g:.0f} GFLOP/s in disttrain ({g / sg['numpy'] * 100:.0f}% of numpy's "
                   f"sgemm)" + (f", {A_GFLOP / (a['torch'] / 1e3):.0f} GFLOP/s in torch" if a.get("torch") else ""))
    for r in records:
        if sg and r.get("status") == "ok" and r.get("gflops_disttrain"):
            out.append(f"- {r['workload']} ({r.get('desc', '')}): {r['gflops_disttrain']:.0f} GFLOP/s in disttrain "
                       f"({r['gflops_disttrain'] / sg['numpy'] * 100:.0f}% of numpy's sgemm)"
                       + (f", {r['gflops_torch']:.0f} GFLOP/s in torch" if r.get("gflops_torch") else ""))
    if mc:
        out.append(f"- memory copy: {mc['copy']:.1f} GB/s (one thread)")
    if ar:
        out.append(f"- raw MPI Allreduce of A's gradient ({ar['bytes'] / 2**20:.1f} MiB, 2 ranks): "
                   f"{ar['time_ms']:.2f} ms = {ar['algbw']:.2f} GB/s")
    return out if len(out) > 3 else []


def update_readme(md):
    """Replace the README's figures section with this run's table (all lines folded away)."""
    path = os.path.join(BENCH_DIR, "README.md")
    with open(path) as f:
        text = f.read()
    begin, end = text.find("<!-- FIGURES:BEGIN"), text.find("<!-- FIGURES:END -->")
    if begin < 0 or end < 0:
        print("README.md has no FIGURES markers; not updated", file=sys.stderr)
        return
    head, _, rest = md.partition("\nAll result lines")
    body = (head.rstrip() + "\n\n<details><summary>All result lines of this run</summary>\n\nAll result lines"
            + rest + "\n</details>\n")
    begin = text.index("\n", begin) + 1
    with open(path, "w") as f:
        f.write(text[:begin] + body + text[end:])


def chart(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw=dict(width_ratios=[3, 2]))
    ratio_rows = [r for r in rows if r["workload"] in ("A", "B", "C", "D", "L", "K", "F") and r["value"] is not None]
    names = [r["workload"] for r in ratio_rows]
    vals = [r["value"] for r in ratio_rows]
    colors = ["tab:green" if r["met"] else "tab:red" for r in ratio_rows]
    ax1.bar(names, vals, color=colors)
    for i, r in enumerate(ratio_rows):
        ax1.hlines(r["target"], i - 0.4, i + 0.4, colors="k", linestyles="--")
        ax1.text(i, r["value"], f"{r['value']:.2f}", ha="center", va="bottom")
    ax1.axhline(1.0, color="grey", lw=0.5)
    ax1.set_ylabel("disttrain / reference time (lower is better)")
    ax1.set_title("Step-time ratios (dashed: target)")
    eff = [r for r in rows if r["workload"].startswith("E-")]
    xs, labels, vs, cs = [], [], [], []
    for i, r in enumerate(eff):
        for j, (v, c, lab) in enumerate(((r["value"], "tab:blue", "disttrain"), (r["peer_value"], "tab:orange", "torch"))):
            if v is not None:
                xs.append(i * 3 + j)
                vs.append(v)
                cs.append(c)
                labels.append(f"{r['workload']}\n{lab}")
    ax2.bar(xs, vs, color=cs)
    ax2.set_xticks(xs, labels)
    ax2.axhline(0.85, color="k", ls="--")
    ax2.set_ylim(0, 1.05)
    ax2.set_title("2-rank scaling efficiency (dashed: target 0.85)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="letters of workloads, e.g. A,D,H")
    ap.add_argument("--out", default=os.path.join(RESULTS, "latest.json"))
    ap.add_argument("--update-readme", action="store_true",
                    help="also paste the figures table into bench/README.md (between the FIGURES markers)")
    opts = ap.parse_args()
    only = set(opts.only.replace(",", "").upper())
    started = datetime.datetime.now(datetime.timezone.utc)
    t_all = time.perf_counter()
    records, jobs = [], []
    for letters, script, ranks, timeout, args in JOBS:
        if only and not (set(letters) & only):
            continue
        if args is None:          # step_times: only the wanted letters
            args = sorted(set(letters) & only) if only else []
        for launch in range(E_LAUNCHES if script == "scaling.py" else 1):
            print(f"== {script} ({ranks} rank{'s' if ranks > 1 else ''}) ...", flush=True)
            load = os.getloadavg()[0]
            recs, problem, wall = run_job(script, ranks, timeout, args)
            for r in recs:
                r.setdefault("source", script)
                r["launch"] = launch
            records += recs
            jobs.append(dict(script=script, ranks=ranks, wall_s=round(wall, 1), problem=problem,
                             results=len(recs), loadavg_before=round(load, 2)))
            print(f"   {len(recs)} result(s) in {wall:.1f}s" + (f"  PROBLEM: {problem}" if problem else ""),
                  flush=True)
            if problem and not recs:
                records.append(dict(workload=letters[0], status="skipped", reason=problem, source=script))
    normalise_f(records)
    rows = summarise(records)
    os.makedirs(RESULTS, exist_ok=True)
    png = chart(rows, os.path.splitext(opts.out)[0] + ".png")
    doc = dict(started=started.isoformat(timespec="seconds"), wall_s=round(time.perf_counter() - t_all, 1),
               quick=common.QUICK, steps=common.STEPS, rounds=common.ROUNDS, warmup=common.WARMUP,
               machine=machine_info(), jobs=jobs, targets=rows, records=records, chart=png)
    with open(opts.out, "w") as f:
        json.dump(doc, f, indent=1, default=str)
        f.write("\n")
    md = markdown(rows, doc)
    with open(os.path.splitext(opts.out)[0] + ".md", "w") as f:
        f.write(md)
    if opts.update_readme:
        update_readme(md)
    print()
    for r in records:                      # every result as one JSON line, then the table
        print("BENCH " + json.dumps(r, sort_keys=True, default=str))
    print()
    print(table(rows))
    print(f"\nwrote {os.path.relpath(opts.out, REPO_DIR)}" + (f" and {os.path.relpath(png, REPO_DIR)}" if png else
                                                           " (no chart: matplotlib not installed)")
          + f" in {doc['wall_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
