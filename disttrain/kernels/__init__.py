"""Numba kernels: the hot loops, one module per family, knowing nothing of autograd.

activation (relu/sigmoid/tanh/gelu forward-backward), softmax (softmax,
log-softmax, fused cross-entropy), conv (im2col/col2im; the GEMMs are BLAS
calls made by the op), pooling, normalization (layer norm), embedding
(scatter-add), optim (fused optimizer updates). JIT flags live in `_jit`.
Modules are imported by the ops on first use, so `import disttrain` does not
load numba; each kernel compiles (or loads from NUMBA_CACHE_DIR) on its first
call, for float32 and/or float64 C-contiguous arrays only.
"""
