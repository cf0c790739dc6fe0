"""The benchmark workloads, built the same way in disttrain and in PyTorch.

Each builder returns a zero-argument ``step()`` doing one full training step
(zero_grad + forward + cross-entropy + backward + optimizer step) plus the
objects behind it. The torch model gets disttrain's initial weights, so both
frameworks start from the same point on the same synthetic batches.
"""
import numpy as np

from common import SEED

LR = 0.01
MOMENTUM = 0.9
POOL = 4              # distinct synthetic batches, cycled

# name -> (input shape without batch, batch size, description)
SPECS = {
    "A": ((784,), 128, "MLP 784-1024-1024-10 relu, b128, SGD m0.9"),
    "B": ((64,), 32, "MLP 64-128-10 relu, b32, SGD m0.9"),
    "C": ((1, 28, 28), 64, "LeNet conv8-pool-conv16-pool-120-84-10, b64, SGD m0.9"),
    "L": ((1, 28, 28), 64, "MNIST CNN (pytorch/examples) conv32-conv64-pool-9216-128-10, b64, SGD m0.9"),
    "K-small": ((64,), 8, "nanoGPT 2 layers 4 heads d64 T64 vocab 65, manual causal attention, b8, AdamW"),
}

# workload K-small's model (issue 14's nanoGPT-style stand-in, written with plain ops; K is the GPT below)
GPT_VOCAB, GPT_BLOCK, GPT_EMBD, GPT_HEADS, GPT_LAYERS = 65, 64, 64, 4, 2
K_LR = 1e-3

NEEDS = {
    "A": ("dt.nn.Linear", "dt.nn.ReLU", "dt.nn.Sequential", "dt.nn.functional.cross_entropy", "dt.optim.SGD"),
    "B": ("dt.nn.Linear", "dt.nn.ReLU", "dt.nn.Sequential", "dt.nn.functional.cross_entropy", "dt.optim.SGD"),
    "C": ("dt.nn.Linear", "dt.nn.ReLU", "dt.nn.Sequential", "dt.nn.Conv2d", "dt.nn.MaxPool2d",
          "dt.nn.Flatten", "dt.nn.functional.cross_entropy", "dt.optim.SGD"),
    "L": ("dt.nn.Linear", "dt.nn.ReLU", "dt.nn.Sequential", "dt.nn.Conv2d", "dt.nn.MaxPool2d",
          "dt.nn.Flatten", "dt.nn.functional.cross_entropy", "dt.optim.SGD"),
    "K-small": ("dt.nn.Linear", "dt.nn.Embedding", "dt.nn.LayerNorm", "dt.nn.GELU", "dt.nn.ModuleList",
          "dt.ops.masked_softmax", "dt.nn.functional.cross_entropy", "dt.optim.AdamW"),
}


def batches(name, batch=None, seed=SEED, rank=0):
    """POOL (x, y) pairs of float32 inputs and int64 labels, fixed by seed (and rank)."""
    if name == "K":
        return k_batches(batch, seed, rank)
    shape, default_batch, _ = SPECS[name]
    b = default_batch if batch is None else batch
    rng = np.random.default_rng([seed, rank])
    if name == "K-small":     # token ids in, next tokens (flattened: the loss sees (B*T, vocab)) out
        return [(rng.integers(0, GPT_VOCAB, size=(b,) + shape).astype(np.int64),
                 rng.integers(0, GPT_VOCAB, size=b * shape[0]).astype(np.int64)) for _ in range(POOL)]
    return [(rng.standard_normal((b,) + shape, dtype=np.float32),
             rng.integers(0, 10, size=b).astype(np.int64)) for _ in range(POOL)]


# -- disttrain ---------------------------------------------------------------
def dt_model(name):
    import disttrain as dt
    nn = dt.nn
    dt.manual_seed(SEED)
    if name in REAL_MODELS:
        return REAL_MODELS[name][0]()
    if name == "A":
        return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                             nn.Linear(1024, 10))
    if name == "B":
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    if name == "C":
        return nn.Sequential(nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(8, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                             nn.Linear(84, 10))
    if name == "L":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10))
    if name == "K-small":
        return gpt(dt)
    raise KeyError(name)


def optimizer(name, params, optim):
    """The same update rule for both frameworks: AdamW for K-small, SGD with momentum otherwise."""
    if name == "K-small":
        return optim.AdamW(params, lr=K_LR)
    return optim.SGD(params, lr=LR, momentum=MOMENTUM)


def dt_step(model, data, wrap=None, name=None):
    """One disttrain training step over the cycled batches; returns (step, losses)."""
    import disttrain as dt
    F = dt.nn.functional
    net = wrap(model) if wrap is not None else model
    opt = optimizer(name, model.parameters(), dt.optim)
    xs = [(dt.tensor(x), y) for x, y in data]
    return _step_closure(net, opt, F.cross_entropy, xs)


def _step_closure(net, opt, cross_entropy, xs):
    """The timed step, the same code for both frameworks: zero_grad, forward, loss, backward, update."""
    state = {"i": 0, "loss": None}

    def step():
        x, y = xs[state["i"] % POOL]
        state["i"] += 1
        opt.zero_grad()
        loss = cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        state["loss"] = loss
    return step, state, net


def state_arrays(model):
    """disttrain state_dict as {name: float32 ndarray}."""
    out = {}
    for k, v in model.state_dict().items():
        out[k] = np.array(getattr(v, "data", v), copy=True)
    return out


# -- torch -------------------------------------------------------------------
def torch_model(name, torch, weights=None):
    nn = torch.nn
    if name in REAL_MODELS:
        m = REAL_MODELS[name][1](torch)
    elif name == "A":
        m = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    elif name == "B":
        m = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    elif name == "C":
        m = nn.Sequential(nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    elif name == "L":
        m = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10))
    elif name == "K-small":
        m = gpt(torch)
    else:
        raise KeyError(name)
    if weights is not None:
        m.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
                           for k, v in weights.items()})
    return m


def torch_step(model, data, torch, wrap=None, name=None):
    net = wrap(model) if wrap is not None else model
    opt = optimizer(name, model.parameters(), torch.optim)
    xs = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]
    return _step_closure(net, opt, torch.nn.functional.cross_entropy, xs)


def loss_value(loss):
    if loss is None:
        return float("nan")
    if hasattr(loss, "item"):
        return float(loss.item())
    return float(np.asarray(loss))


# -- workload K: a nanoGPT-style model, the same code over either framework ----
def gpt(fw):
    """nanoGPT's model (no dropout, untied head) with manual causal attention, built from ``fw``.

    ``fw`` is disttrain or torch: the module tree and parameter names are the
    same, so a state dict moves between them. The attention differs only in
    the scaled masked softmax: disttrain's fused kernel (``dt.ops.masked_softmax``
    with causal=True and the 1/sqrt(head dim) scale) against nanoGPT's
    ``(att * scale).masked_fill(-inf)`` + ``softmax`` in torch.
    """
    nn = fw.nn
    is_torch = fw.__name__ == "torch"
    C, H, T = GPT_EMBD, GPT_HEADS, GPT_BLOCK
    hd = C // H

    def causal_softmax(att, scale):
        if is_torch:                      # nanoGPT's manual attention
            t = att.shape[-1]
            return fw.softmax((att * scale).masked_fill(causal_mask[:t, :t], float("-inf")), dim=-1)
        return fw.ops.masked_softmax(att, causal=True, scale=scale)     # scale and mask inside the kernel

    if is_torch:
        causal_mask = fw.ones(T, T, dtype=fw.bool).triu(1)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(C, 3 * C)
            self.c_proj = nn.Linear(C, C)

        def forward(self, x):
            b, t = x.shape[0], x.shape[1]
            qkv = self.c_attn(x).reshape(b, t, 3, H, hd)
            q = qkv[:, :, 0].transpose((0, 2, 1, 3)) if not is_torch else qkv[:, :, 0].permute(0, 2, 1, 3)
            k = qkv[:, :, 1].transpose((0, 2, 3, 1)) if not is_torch else qkv[:, :, 1].permute(0, 2, 3, 1)
            v = qkv[:, :, 2].transpose((0, 2, 1, 3)) if not is_torch else qkv[:, :, 2].permute(0, 2, 1, 3)
            att = causal_softmax(q @ k, 1.0 / hd ** 0.5)
            y = att @ v                                                  # (b, H, t, hd)
            y = y.transpose((0, 2, 1, 3)) if not is_torch else y.permute(0, 2, 1, 3)
            return self.c_proj(y.reshape(b, t, C))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(C, 4 * C)
            self.gelu = nn.GELU()
            self.c_proj = nn.Linear(4 * C, C)

        def forward(self, x):
            return self.c_proj(self.gelu(self.c_fc(x)))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(C)
            self.attn = Attention()
            self.ln_2 = nn.LayerNorm(C)
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(GPT_VOCAB, C)
            self.wpe = nn.Embedding(T, C)
            self.h = nn.ModuleList([Block() for _ in range(GPT_LAYERS)])
            self.ln_f = nn.LayerNorm(C)
            self.lm_head = nn.Linear(C, GPT_VOCAB, bias=False)

        def forward(self, idx):
            t = idx.shape[1]
            pos = np.arange(t) if not is_torch else fw.arange(t)
            x = self.wte(idx) + self.wpe(pos)
            for block in self.h:
                x = block(x)
            return self.lm_head(self.ln_f(x)).reshape(-1, GPT_VOCAB)    # (B*T, vocab) for the loss

    return GPT()


# -- workload D: per-op overhead ---------------------------------------------
D_INNER = 200         # iterations per timed sample


def dt_op_loop():
    import disttrain as dt
    rng = np.random.default_rng(SEED)
    a = dt.tensor(rng.standard_normal(16, dtype=np.float32), requires_grad=True)
    b = dt.tensor(rng.standard_normal(16, dtype=np.float32), requires_grad=True)

    def loop():
        for _ in range(D_INNER):
            y = (a * b + a).sum()
            y.backward()
        a.grad = None
        b.grad = None
    return loop


def torch_op_loop(torch):
    rng = np.random.default_rng(SEED)
    a = torch.from_numpy(rng.standard_normal(16, dtype=np.float32)).requires_grad_()
    b = torch.from_numpy(rng.standard_normal(16, dtype=np.float32)).requires_grad_()

    def loop():
        for _ in range(D_INNER):
            y = (a * b + a).sum()
            y.backward()
        a.grad = None
        b.grad = None
    return loop


# -- real models (issue 12): C-BN (LeNet + BatchNorm2d) and K (the char GPT) ----------------------
# The shared harness (step_times.py, phases.py, scaling.py) runs them like A-C: K's model returns
# its logits flattened to (batch * block, vocab) and its batches hold flattened next-token targets,
# so the step is the same zero_grad / forward / cross-entropy / backward / SGD step.
K_VOCAB, K_BLOCK, K_BATCH = 65, 64, 12
K_GPT = dict(n_layer=4, n_head=4, n_embd=128)
SPECS.update({
    "C-BN": ((1, 28, 28), 64, "LeNet + BatchNorm2d after each conv, b64, SGD m0.9"),
    "K": ((K_BLOCK,), K_BATCH, "char GPT 4 layers x 4 heads x 128, block 64, vocab 65, b12, SGD m0.9"),
})
NEEDS.update({
    "C-BN": NEEDS["C"] + ("dt.nn.BatchNorm2d",),
    "K": ("dt.nn.functional.scaled_dot_product_attention", "dt.nn.functional.cross_entropy",
          "dt.optim.SGD"),
})


def k_batches(batch=None, seed=SEED, rank=0):
    b = K_BATCH if batch is None else batch
    rng = np.random.default_rng([seed, rank])
    out = []
    for _ in range(POOL):
        tokens = rng.integers(0, K_VOCAB, size=(b, K_BLOCK + 1)).astype(np.int64)
        out.append((tokens[:, :-1].copy(), tokens[:, 1:].reshape(-1).copy()))
    return out


def _dt_lenet_bn():
    import disttrain as dt
    nn = dt.nn
    return nn.Sequential(nn.Conv2d(1, 8, 5), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def _torch_lenet_bn(torch):
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 8, 5), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def _dt_gpt():
    import disttrain as dt
    from disttrain.models import GPT

    class FlatLogits(dt.nn.Module):
        def __init__(self):
            super().__init__()
            self.gpt = GPT(K_VOCAB, K_BLOCK, **K_GPT)

        def forward(self, idx):
            return self.gpt(idx).reshape(-1, K_VOCAB)
    return FlatLogits()


def _torch_gpt(torch):
    """nanoGPT's model (bias=True, tied head, dropout 0) with the same parameter names."""
    nn, F = torch.nn, torch.nn.functional
    c, h = K_GPT["n_embd"], K_GPT["n_head"]

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn, self.c_proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
            self.resid_dropout = nn.Dropout(0.0)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = (z.view(b, t, h, c // h).transpose(1, 2) for z in self.c_attn(x).split(c, dim=2))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c)))

    class Mlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc, self.gelu, self.c_proj = nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c)
            self.dropout = nn.Dropout(0.0)

        def forward(self, x):
            return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2, self.mlp = nn.LayerNorm(c), Attn(), nn.LayerNorm(c), Mlp()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class Gpt(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(K_VOCAB, c), wpe=nn.Embedding(K_BLOCK, c), drop=nn.Dropout(0.0),
                h=nn.ModuleList([Block() for _ in range(K_GPT["n_layer"])]), ln_f=nn.LayerNorm(c)))

        def forward(self, idx):
            tr = self.transformer
            x = tr.drop(tr.wte(idx) + tr.wpe(torch.arange(idx.shape[1])))
            for block in tr.h:
                x = block(x)
            return F.linear(tr.ln_f(x), tr.wte.weight)

    class FlatLogits(nn.Module):
        def __init__(self):
            super().__init__()
            self.gpt = Gpt()

        def forward(self, idx):
            return self.gpt(idx).reshape(-1, K_VOCAB)
    return FlatLogits()


# name -> (disttrain builder, torch builder)
REAL_MODELS = {"C-BN": (_dt_lenet_bn, _torch_lenet_bn), "K": (_dt_gpt, _torch_gpt)}
