"""
A small training driver for nanoGPT's model.py, after nanoGPT's train.py: the same
poor man's data loader, loss estimate, cosine learning-rate schedule with warmup and
training loop, without DDP, mixed precision, torch.compile or wandb, on a character-level
text made up on the spot (nothing to download). Then it samples from the model and
saves a checkpoint.

$ python nanogpt_train.py --max_iters=50
"""
import os
import sys
import math
import time
import tempfile

import numpy as np
import torch

from nanogpt_model import GPTConfig, GPT

# -----------------------------------------------------------------------------
out_dir = tempfile.gettempdir()
eval_interval = 25
eval_iters = 4
batch_size = 8
block_size = 32
n_layer = 2
n_head = 2
n_embd = 32
dropout = 0.0
bias = False
learning_rate = 3e-3
max_iters = 100
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.95
warmup_iters = 10
lr_decay_iters = 100
min_lr = 3e-4
device = 'cpu'
seed = 1337
for arg in sys.argv[1:]: # --key=value overrides of the integers above, e.g. --max_iters=20
    key, value = arg[2:].split('=')
    assert key in ('max_iters', 'eval_interval', 'eval_iters', 'lr_decay_iters', 'seed'), key
    globals()[key] = int(value)
# -----------------------------------------------------------------------------

torch.manual_seed(seed)

# a character-level "dataset": sums of small numbers written out
text = " ".join(f"{a}+{b}={a + b}." for a in range(40) for b in range(40))
chars = sorted(set(text))
stoi = {ch: i for i, ch in enumerate(chars)}
itos = {i: ch for i, ch in enumerate(chars)}
data = np.array([stoi[c] for c in text], dtype=np.uint16)
train_data, val_data = data[:int(0.9 * len(data))], data[int(0.9 * len(data)):]

def get_batch(split):
    data = train_data if split == 'train' else val_data
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([torch.from_numpy((data[i:i+block_size]).astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy((data[i+1:i+1+block_size]).astype(np.int64)) for i in ix])
    x, y = x.to(device), y.to(device)
    return x, y

model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                  bias=bias, vocab_size=len(chars), dropout=dropout)
model = GPT(GPTConfig(**model_args))
model.to(device)
optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), 'cpu')

@torch.no_grad()
def estimate_loss():
    out = {}
    model.eval()
    for split in ['train', 'val']:
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            X, Y = get_batch(split)
            logits, loss = model(X, Y)
            losses[k] = loss.item()
        out[split] = losses.mean()
    model.train()
    return out

def get_lr(it):
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    assert 0 <= decay_ratio <= 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (learning_rate - min_lr)

X, Y = get_batch('train')
t0 = time.time()
for iter_num in range(max_iters + 1):
    lr = get_lr(iter_num)
    for param_group in optimizer.param_groups:
        param_group['lr'] = lr
    if iter_num % eval_interval == 0 or iter_num == max_iters:
        losses = estimate_loss()
        print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
    if iter_num == max_iters:
        break
    logits, loss = model(X, Y)
    X, Y = get_batch('train')
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    t1 = time.time()
    dt, t0 = t1 - t0, t1
    if iter_num % 10 == 0:
        print(f"iter {iter_num}: loss {loss.item():.4f}, time {dt*1000:.2f}ms")

model.eval()
context = torch.tensor([[stoi['1']]], dtype=torch.long, device=device)
sample = model.generate(context, max_new_tokens=30, temperature=0.8, top_k=5)
print("sample:", "".join(itos[i] for i in sample[0].tolist()))
checkpoint = {'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
              'model_args': model_args, 'iter_num': iter_num, 'best_val_loss': losses['val'].item()}
torch.save(checkpoint, os.path.join(out_dir, 'nanogpt_ckpt.pt'))
print(f"saved {os.path.join(out_dir, 'nanogpt_ckpt.pt')}")
