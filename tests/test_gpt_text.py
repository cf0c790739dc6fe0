"""The text data source, the GPT model and the char_gpt job (cut to a few steps) with `dtrun sample`."""
import hashlib
import json
import os

import numpy as np
import pytest

import disttrain as dt
from disttrain.autograd import gradcheck
from disttrain.data import CharTokenizer, TokenBlocks, load_text
from disttrain.models import GPT, CausalSelfAttention
from disttrain.training.metrics import read_metrics
from dtrun_helpers import CONFIGS, dtrun


def test_shipped_tiny_shakespeare_and_char_tokenizer():
    text = load_text()
    assert len(text) == 1115394 and text.startswith("First Citizen:")
    assert hashlib.sha256(text.encode()).hexdigest() == \
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == 65 and tok.decode(tok.encode("To be, or not")) == "To be, or not"
    assert CharTokenizer.from_json(tok.to_json()).chars == tok.chars
    with pytest.raises(ValueError, match="'#' is not in the vocabulary"):
        tok.encode("a#")


def test_token_blocks_are_every_contiguous_block_with_next_token_targets():
    tokens = np.arange(10) * 3
    ds = TokenBlocks(tokens, 4)
    assert len(ds) == 6
    x, y = ds[np.array([0, 5, 2])]
    np.testing.assert_array_equal(x, [[0, 3, 6, 9], [15, 18, 21, 24], [6, 9, 12, 15]])
    np.testing.assert_array_equal(y, x + 3)
    np.testing.assert_array_equal(ds.arrays[0][1:3], [[3, 6, 9, 12], [6, 9, 12, 15]])
    with pytest.raises(IndexError):
        ds.arrays[0][np.array([6])]


def test_gpt_names_causality_and_attention_gradcheck():
    dt.manual_seed(0)
    m = GPT(11, 8, n_layer=2, n_head=2, n_embd=8)
    names = list(m.state_dict())
    assert names[:2] == ["transformer.wte.weight", "transformer.wpe.weight"]
    assert "transformer.h.1.attn.c_attn.weight" in names and "transformer.h.0.mlp.c_proj.bias" in names
    assert names[-2:] == ["transformer.ln_f.weight", "transformer.ln_f.bias"] and "lm_head.weight" not in names
    assert "lm_head.weight" in GPT(11, 8, n_layer=1, n_head=2, n_embd=8, tie_weights=False).state_dict()
    idx = np.random.default_rng(0).integers(0, 11, (2, 8))
    out = m(dt.tensor(idx)).numpy()
    assert out.shape == (2, 8, 11)
    changed = idx.copy()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11
    out2 = m(dt.tensor(changed)).numpy()
    np.testing.assert_allclose(out2[:, :5], out[:, :5], rtol=1e-6)     # the past never sees the future
    assert not np.allclose(out2[:, 5:], out[:, 5:])
    attn = CausalSelfAttention(6, 3).double()
    x = np.random.default_rng(1).standard_normal((2, 4, 6))
    assert gradcheck(lambda a: attn(a), (x,))
    gen = m.generate(idx[:1, :3], 12, rng=np.random.default_rng(0))
    assert gen.shape == (1, 15) and (gen[:, :3] == idx[:1, :3]).all() and gen.max() < 11


def test_char_gpt_job_two_ranks_and_sample(tmp_path):
    run = tmp_path / "run"
    rc, out, err, _ = dtrun("-n", "2", os.path.join(CONFIGS, "char_gpt.toml"), "--run-dir", run,
                            "--set", "model.n_layer=1", "--set", "model.n_embd=32", "--set", "train.max_steps=8",
                            "--set", "schedule.warmup_steps=2", "--set", "train.eval_interval=4",
                            "--set", "data.max_val_samples=40", "--set", "logging.log_interval=4",
                            "--set", "checkpoint.interval=4", cwd=tmp_path, timeout=240)
    assert rc == 0, err + out
    vocab = json.loads((run / "vocab.json").read_text())
    assert vocab["kind"] == "char" and len(vocab["chars"]) == 65
    rows = read_metrics(run / "metrics.jsonl")
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [4, 8] and [r["step"] for r in evals] == [4, 8]
    assert train[-1]["loss"] < np.log(65) and abs(train[-1]["perplexity"] - np.exp(train[-1]["loss"])) < 1e-9
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_val_loss"] == evals[-1]["val_loss"] and summary["best_val_loss"] <= evals[0]["val_loss"]
    assert "ppl" in out and "done: val_loss" in out
    rc, out, err, _ = dtrun("sample", run, "--tokens", "40", "--prompt", "ROMEO:", cwd=tmp_path, timeout=120)
    assert rc == 0, err
    assert out.startswith("ROMEO:") and len(out.rstrip("\n")) >= 46 and "step 8" in err
    rc, out, err, _ = dtrun("sample", run, "--prompt", "#", cwd=tmp_path, timeout=120)
    assert rc != 0 and "'#' is not in the vocabulary" in err


def test_gpt_without_biases_as_nanogpt_train_default():
    """bias=False (nanoGPT train.py's default, configs/char_gpt.toml): no Linear or LayerNorm bias at all,
    the same parameter names otherwise, and the blocks still differentiate correctly."""
    dt.manual_seed(0)
    m = GPT(11, 8, n_layer=2, n_head=2, n_embd=8, bias=False)
    names = list(m.state_dict())
    assert not [n for n in names if n.endswith(".bias")]
    with_bias = [n for n in GPT(11, 8, n_layer=2, n_head=2, n_embd=8).state_dict() if not n.endswith(".bias")]
    assert names == with_bias and names[-1] == "transformer.ln_f.weight"
    assert m.transformer.h[0].ln_1.bias is None and m.transformer.h[0].mlp.c_fc.bias is None
    assert sum(p.data.size for p in m.parameters()) == 11 * 8 + 8 * 8 + 2 * (2 * 8 + 8 * 24 + 8 * 8 + 8 * 32 * 2) + 8
    block = m.transformer.h[0].double()
    x = np.random.default_rng(2).standard_normal((2, 4, 8))
    assert gradcheck(lambda a: block(a), (x,))
