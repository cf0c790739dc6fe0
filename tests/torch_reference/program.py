"""A torch-idiomatic training program, run by PyTorch (generate.py) and by disttrain
(tests/test_torch_compat.py) from the same source: ``run(torch)`` with ``torch`` either
PyTorch or ``import disttrain as torch``. Weights and data come from numpy, so both start
from the same numbers; no dropout, so both compute the same thing.
"""
import math

import numpy as np

STEPS = 6


def build(torch):
    nn = torch.nn
    F = torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding="same")
            self.blocks = nn.ModuleDict({"proj": nn.Linear(64, 16), "head": nn.Linear(16, 5)})
            self.scales = nn.ParameterList([nn.Parameter(torch.ones(16)), nn.Parameter(torch.zeros(16))])
            self.register_buffer("causal", torch.tril(torch.ones(16, 16)).view(1, 16, 16))

        def forward(self, x):
            h = F.max_pool2d(F.relu(self.conv(x)), 2)                  # (B, 4, 4, 4)
            B, C, H, W = h.size()
            peak, where = h.max(dim=1)                                 # (B, 4, 4) values and channel indices
            seq = h.permute(0, 2, 3, 1).reshape(B, H * W, C)           # (B, 16, 4) tokens
            att = (seq @ seq.transpose(1, 2)) * (1.0 / math.sqrt(seq.size(-1)))
            att = att.masked_fill(self.causal[:, :H * W, :H * W] == 0, float('-inf'))
            att = F.softmax(att, dim=-1)
            y = (att @ seq).transpose(1, 2).contiguous().view(B, -1)  # (B, 64)
            feat = F.relu(self.blocks["proj"](y))
            a, b = feat.chunk(2, dim=1)
            feat = torch.cat([b, a], dim=1)
            feat = feat * self.scales[0] + self.scales[1].unsqueeze(0).expand(B, -1)
            feat = feat + 0.01 * peak.flatten(1).sum(1, keepdim=True) + 0.001 * where.float().mean()
            feat = torch.stack([feat, 0.5 * feat], dim=0).sum(0).clamp(-3.0, 3.0)
            return F.log_softmax(self.blocks["head"](feat.unsqueeze(1).squeeze(1)), dim=1)

    model = Net()
    rng = np.random.default_rng(0)
    state = {}
    for key in sorted(model.state_dict()):
        if key != "causal":
            shape = tuple(model.state_dict()[key].shape)
            state[key] = torch.from_numpy((0.3 * rng.standard_normal(shape)).astype(np.float32))
    state["causal"] = model.state_dict()["causal"]
    model.load_state_dict(state)
    return model


def configs(torch):
    optim = torch.optim
    sched = torch.optim.lr_scheduler
    return {
        "sgd_nesterov_steplr": (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
                                lambda o: sched.StepLR(o, step_size=2, gamma=0.5)),
        "adam_multistep": (lambda p: optim.Adam(p, lr=1e-2, weight_decay=1e-3),
                           lambda o: sched.MultiStepLR(o, milestones=[2, 4], gamma=0.5)),
        "adamw_cosine": (lambda p: optim.AdamW(p, lr=1e-2), lambda o: sched.CosineAnnealingLR(o, T_max=STEPS)),
        "rmsprop_exponential": (lambda p: optim.RMSprop(p, lr=1e-3, momentum=0.5, centered=True, weight_decay=1e-3),
                                lambda o: sched.ExponentialLR(o, gamma=0.9)),
        "rmsprop_plain_lambda": (lambda p: optim.RMSprop(p, lr=1e-3),
                                 lambda o: sched.LambdaLR(o, lambda t: 1.0 / (t + 1))),
        "adadelta_linear": (lambda p: optim.Adadelta(p, lr=1.0, weight_decay=1e-3),
                            lambda o: sched.LinearLR(o, start_factor=0.5, total_iters=3)),
        "sgd_onecycle": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
                         lambda o: sched.OneCycleLR(o, max_lr=0.1, total_steps=STEPS)),
        "adam_onecycle_linear": (lambda p: optim.Adam(p, lr=1e-2),
                                 lambda o: sched.OneCycleLR(o, max_lr=0.02, total_steps=STEPS, anneal_strategy="linear",
                                                            three_phase=True)),
        "adam_sequential": (lambda p: optim.Adam(p, lr=1e-2),
                            lambda o: sched.SequentialLR(o, [sched.LinearLR(o, start_factor=0.5, total_iters=2),
                                                             sched.ExponentialLR(o, gamma=0.8)], milestones=[2])),
        "sgd_plateau": (lambda p: optim.SGD(p, lr=0.2), lambda o: sched.ReduceLROnPlateau(o, patience=0, factor=0.5)),
    }


def data(torch):
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((8, 1, 8, 8)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 5, size=8).astype(np.int64))
    return x, y


def run(torch):
    """{config: {"loss": [...], "lr": [...], "checksum": float}} over STEPS steps each."""
    F = torch.nn.functional
    x, y = data(torch)
    out = {}
    for name, (make_opt, make_sched) in configs(torch).items():
        model = build(torch)
        opt = make_opt(model.parameters())
        sch = make_sched(opt)
        losses, lrs = [], []
        for _ in range(STEPS):
            opt.zero_grad()
            loss = F.nll_loss(model(x), y)
            loss.backward()
            lrs.append(float(opt.param_groups[0]["lr"]))
            opt.step()
            losses.append(loss.item())
            if isinstance(sch, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sch.step(loss.item() + 1.0)        # never improving: the lr halves every step
            else:
                sch.step()
        with torch.no_grad():
            checksum = float(sum(float(p.double().abs().sum()) for p in model.parameters()))
        out[name] = {"loss": losses, "lr": lrs, "checksum": checksum}
    return out


def run_nanogpt(torch, model_module, steps=4):
    """nanoGPT's GPT (the examples/ port or the upstream file) from numpy weights: losses of a few
    AdamW steps (configure_optimizers) and a greedy (top_k=1) continuation."""
    cfg = model_module.GPTConfig(block_size=16, vocab_size=11, n_layer=2, n_head=2, n_embd=16, dropout=0.0,
                                 bias=True)
    model = model_module.GPT(cfg)
    rng = np.random.default_rng(2)
    sd = model.state_dict()
    state = {}
    for key in sorted(sd):
        if key.endswith(".attn.bias"):            # the causal-mask buffer (absent with flash attention)
            state[key] = sd[key]
        elif key != "transformer.wte.weight":     # tied to lm_head.weight
            state[key] = torch.from_numpy((0.1 * rng.standard_normal(tuple(sd[key].shape))).astype(np.float32))
    state["transformer.wte.weight"] = state["lm_head.weight"]
    model.load_state_dict(state)
    opt = model.configure_optimizers(0.1, 1e-2, (0.9, 0.95), "cpu")
    idx = torch.from_numpy(rng.integers(0, 11, size=(4, 16)).astype(np.int64))
    targets = torch.from_numpy(rng.integers(0, 11, size=(4, 16)).astype(np.int64))
    losses = []
    for _ in range(steps):
        logits, loss = model(idx, targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    tokens = model.generate(idx[:2, :4], 6, top_k=1)
    return {"loss": losses, "tokens": tokens.tolist()}
