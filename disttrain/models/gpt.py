"""A GPT (decoder-only transformer) with nanoGPT's structure and parameter names.

    transformer.wte.weight (vocab, C)        token embedding (also the output head when tied)
    transformer.wpe.weight (block_size, C)   position embedding
    transformer.h.<i>.ln_1 / attn.c_attn / attn.c_proj / ln_2 / mlp.c_fc / mlp.c_proj
    transformer.ln_f                         final LayerNorm
    lm_head.weight (vocab, C)                only when the head is not tied

Pre-LayerNorm blocks (x + attn(ln_1(x)), x + mlp(ln_2(x))), causal self-attention through
`F.scaled_dot_product_attention`, GELU MLP of width 4C, dropout on embeddings, attention weights
and residual branches. Initialisation as nanoGPT: N(0, 0.02) for linear and embedding weights,
N(0, 0.02 / sqrt(2 n_layer)) for the residual projections, zero biases.
"""
import math

import numpy as np

from .. import nn
from ..nn import functional as F
from ..nn.module import Module


def _normal(p, std):
    from .. import random as _random
    p.data[...] = (_random.generator().standard_normal(p.data.shape) * std).astype(p.data.dtype)


class CausalSelfAttention(Module):
    def __init__(self, n_embd, n_head, dropout=0.0, dtype=np.float32, bias=True):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"CausalSelfAttention: n_embd {n_embd} is not a multiple of n_head {n_head}")
        self.n_head, self.n_embd, self.dropout = n_head, n_embd, float(dropout)
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias, dtype=dtype)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias, dtype=dtype)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x):
        b, t, c = x.shape
        h = self.n_head
        qkv = self.c_attn(x)

        def heads(i):    # (B, T, C) slice i of q, k, v -> (B, heads, T, C / heads)
            return qkv[:, :, i * c:(i + 1) * c].reshape(b, t, h, c // h).transpose((0, 2, 1, 3))
        y = F.scaled_dot_product_attention(heads(0), heads(1), heads(2), is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose((0, 2, 1, 3)).reshape(b, t, c)
        return self.resid_dropout(self.c_proj(y))


class MLP(Module):
    def __init__(self, n_embd, dropout=0.0, dtype=np.float32, bias=True):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias, dtype=dtype)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias, dtype=dtype)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(Module):
    def __init__(self, n_embd, n_head, dropout=0.0, dtype=np.float32, bias=True):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias, dtype=dtype)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, dtype, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias, dtype=dtype)
        self.mlp = MLP(n_embd, dropout, dtype, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class _Transformer(Module):
    """The body, so that parameter names read transformer.wte, transformer.h.0, ... as in nanoGPT."""

    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd, dropout, dtype, bias=True):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd, dtype=dtype)
        self.wpe = nn.Embedding(block_size, n_embd, dtype=dtype)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList([Block(n_embd, n_head, dropout, dtype, bias) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd, bias=bias, dtype=dtype)


class GPT(Module):
    """``GPT(vocab_size, block_size, n_layer=4, n_head=4, n_embd=128, dropout=0.0, tie_weights=True, bias=True)``;
    ``model(idx)`` maps token ids (B, T <= block_size) to logits (B, T, vocab_size). ``bias=False``
    drops the biases of every Linear and LayerNorm (nanoGPT's ``bias``; its train.py default)."""

    def __init__(self, vocab_size, block_size, n_layer=4, n_head=4, n_embd=128, dropout=0.0, tie_weights=True,
                 dtype=np.float32, bias=True):
        super().__init__()
        self.vocab_size, self.block_size = int(vocab_size), int(block_size)
        self.tie_weights = bool(tie_weights)
        self.transformer = _Transformer(vocab_size, block_size, n_layer, n_head, n_embd, dropout, dtype, bias)
        if not self.tie_weights:
            self.lm_head = nn.Linear(n_embd, vocab_size, bias=False, dtype=dtype)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                _normal(p, 0.02 / math.sqrt(2 * n_layer))
            elif name.endswith(".weight") and p.data.ndim == 2:
                _normal(p, 0.02)
            elif name.endswith(".bias") and ".ln_" not in name:
                p.data[...] = 0

    def forward(self, idx):
        t = idx.shape[-1]
        if t > self.block_size:
            raise ValueError(f"GPT: a sequence of {t} tokens is longer than block_size {self.block_size}")
        tr = self.transformer
        x = tr.drop(tr.wte(idx) + tr.wpe(np.arange(t)))
        for block in tr.h:
            x = block(x)
        x = tr.ln_f(x)
        head = tr.wte.weight if self.tie_weights else self.lm_head.weight
        return F.linear(x, head)

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, rng=None):
        """Append ``max_new_tokens`` sampled tokens to ``idx`` (B, T) (numpy ids), feeding at most the
        last block_size tokens; returns the (B, T + max_new_tokens) ids."""
        from ..autograd.grad_mode import no_grad
        rng = rng if rng is not None else np.random.default_rng()
        idx = np.asarray(idx, dtype=np.int64)
        was = self.training
        self.eval()
        try:
            with no_grad():
                for _ in range(int(max_new_tokens)):
                    logits = self(idx[:, -self.block_size:]).numpy()[:, -1, :].astype(np.float64)
                    logits = logits / max(float(temperature), 1e-8)
                    if top_k:
                        kth = np.sort(logits, axis=-1)[:, -min(int(top_k), logits.shape[-1])][:, None]
                        logits = np.where(logits < kth, -np.inf, logits)
                    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
                    p /= p.sum(axis=-1, keepdims=True)
                    nxt = np.array([rng.choice(p.shape[-1], p=row) for row in p], dtype=np.int64)
                    idx = np.concatenate([idx, nxt[:, None]], axis=1)
        finally:
            self.train(was)
        return idx
