"""Single layers of workloads L and K, forward+backward, disttrain vs PyTorch, side by side.

    python bench/layers.py                 # every layer below
    python bench/layers.py L-conv2 K-bmm   # a subset

The two convolutions of the MNIST CNN (L-conv1: 1->32 3x3 on 28x28, no
input gradient, as the first layer; L-conv2: 32->64 3x3 on 26x26) and a
deeper one (conv-64-128: 64->128 3x3 on 14x14), all batch 64; L's 2x2
max-pool; and the attention pieces of K at its sizes (batch 8, 4 heads,
64 tokens, 64-dim): the batched matmuls of attention, the scaled causal
softmax (disttrain's fused kernel vs scale, masked_fill, softmax), LayerNorm and GELU.
Each line: median ms per forward+backward, ratio, and for the convolutions
the achieved GFLOP/s (compare with workload H's sgemm in the same run).
"""
import common  # noqa: F401  (thread limits and the BLAS kernel choice before numpy/torch load)
import sys
import traceback

import numpy as np

from common import SEED, emit, import_torch, time_alternating, pair_record

N_STEPS = 30


def conv_case(c, o, hw, input_grad, n=64, k=3):
    def build(fw, is_torch):
        rng = np.random.default_rng(SEED)
        x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
        w = rng.standard_normal((o, c, k, k), dtype=np.float32) * np.float32((c * k * k) ** -0.5)
        b = rng.standard_normal(o, dtype=np.float32)
        g = rng.standard_normal((n, o, hw - k + 1, hw - k + 1), dtype=np.float32)
        conv = fw.nn.functional.conv2d
        return [x, w, b], [input_grad, True, True], lambda x, w, b: conv(x, w, b), g
    flop = 2.0 * n * o * c * k * k * (hw - k + 1) ** 2 * (3 if input_grad else 2)
    return build, flop


def attention_matmuls(fw, is_torch):
    rng = np.random.default_rng(SEED)
    q = rng.standard_normal((8, 4, 64, 16), dtype=np.float32)
    kt = rng.standard_normal((8, 4, 16, 64), dtype=np.float32)
    v = rng.standard_normal((8, 4, 64, 16), dtype=np.float32)
    g = rng.standard_normal((8, 4, 64, 16), dtype=np.float32)
    return [q, kt, v], [True, True, True], lambda q, kt, v: (q @ kt) @ v, g


def causal_softmax(fw, is_torch):
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((8, 4, 64, 64), dtype=np.float32)
    g = rng.standard_normal(x.shape, dtype=np.float32)
    if is_torch:
        mask = fw.ones(64, 64, dtype=fw.bool).triu(1)
        return [x], [True], lambda x: fw.softmax((x * 0.25).masked_fill(mask, float("-inf")), dim=-1), g
    return [x], [True], lambda x: fw.ops.masked_softmax(x, causal=True, scale=0.25), g


def layer_norm(fw, is_torch):
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((8, 64, 64), dtype=np.float32)
    w = rng.standard_normal(64, dtype=np.float32)
    b = rng.standard_normal(64, dtype=np.float32)
    g = rng.standard_normal(x.shape, dtype=np.float32)
    ln = fw.nn.functional.layer_norm
    return [x, w, b], [True, True, True], lambda x, w, b: ln(x, (64,), w, b, 1e-5), g


def gelu(fw, is_torch):
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((8, 64, 256), dtype=np.float32)
    g = rng.standard_normal(x.shape, dtype=np.float32)
    return [x], [True], fw.nn.functional.gelu, g


def max_pool(fw, is_torch):
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((64, 64, 24, 24), dtype=np.float32)
    g = rng.standard_normal((64, 64, 12, 12), dtype=np.float32)
    return [x], [True], lambda x: fw.nn.functional.max_pool2d(x, 2), g


CASES = {
    "L-conv1": (*conv_case(1, 32, 28, input_grad=False), "conv 1->32 3x3 28x28 b64 (no input grad)"),
    "L-conv2": (*conv_case(32, 64, 26, input_grad=True), "conv 32->64 3x3 26x26 b64"),
    "conv-64-128": (*conv_case(64, 128, 14, input_grad=True), "conv 64->128 3x3 14x14 b64"),
    "L-pool": (max_pool, None, "max_pool2d 2x2 on (64, 64, 24, 24)"),
    "K-bmm": (attention_matmuls, None, "(q @ k^T) @ v, (8, 4, 64, 16) per operand"),
    "K-softmax": (causal_softmax, None, "scaled causal softmax of (8, 4, 64, 64) scores"),
    "K-layernorm": (layer_norm, None, "layer_norm (8, 64, 64) with weight and bias"),
    "K-gelu": (gelu, None, "gelu (exact) of (8, 64, 256)"),
}


def step_fn(fw, is_torch, build):
    arrays, needs, fn, g = build(fw, is_torch)
    if is_torch:
        ins = [fw.from_numpy(a).requires_grad_(r) for a, r in zip(arrays, needs)]
        gt = fw.from_numpy(g)
    else:
        ins = [fw.tensor(a, requires_grad=r) for a, r in zip(arrays, needs)]
        gt = fw.tensor(g)
    state = {}

    def step():
        for t in ins:
            t.grad = None
        out = fn(*ins)
        out.backward(gt)
        state["out"] = out
    return step, state, ins


def bench(name, torch):
    import disttrain as dt
    build, flop, desc = CASES[name]
    dstep, dstate, dins = step_fn(dt, False, build)
    steps = {"disttrain": dstep}
    extra = {"desc": desc}
    if torch is not None:
        tstep, tstate, tins = step_fn(torch, True, build)
        steps["torch"] = tstep
        dstep()
        tstep()
        # same inputs, same results within float32 noise: the pair is fair
        errs = [np.abs(dstate["out"].numpy() - tstate["out"].detach().numpy()).max()
                / max(np.abs(tstate["out"].detach().numpy()).max(), 1e-30)]
        for a, b in zip(dins, tins):
            if a.grad is not None:
                tg = b.grad.numpy()
                errs.append(np.abs(a.grad.numpy() - tg).max() / max(np.abs(tg).max(), 1e-30))
        extra["max_rel_diff"] = float(max(errs))
    times = time_alternating(steps, n_steps=N_STEPS)
    rec = pair_record(name, "ms/fwd+bwd", times, scale=1e3, **extra)
    if flop:
        rec["gflop"] = flop / 1e9
        rec["gflops_disttrain"] = flop / rec["disttrain"] / 1e6
        if rec.get("torch"):
            rec["gflops_torch"] = flop / rec["torch"] / 1e6
    return emit(rec)


def main(argv):
    torch = import_torch()
    wanted = argv or list(CASES)
    for name in wanted:
        try:
            bench(name, torch)
        except Exception as e:          # noqa: BLE001 -- one broken case must not hide the others
            traceback.print_exc()
            emit(dict(workload=name, status="error", reason=f"{type(e).__name__}: {e}"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
