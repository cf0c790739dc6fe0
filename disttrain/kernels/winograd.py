"""Winograd F(2x2, 3x3) tile transforms for 3x3 stride-1 convolution (Lavin & Gray 2015).

The op (disttrain/ops/conv.py) runs the batch in blocks of images; for each
block these kernels turn the input into V (16, C, T) -- one (C, T) matrix per
position xi = 4*i + j of the 4x4 transformed tile, T = tiles of the block --
the 16 GEMMs ``M_xi = U_xi @ V_xi`` go to BLAS, and the output transform
folds M (16, O, T) back to NCHW. Backward uses the exact adjoints: dY -> dM
(adjoint of the output transform) and dV -> dX (adjoint of the input
transform, a scatter-add of the overlapping 4x4 patches).

Tiles: output tile (ty, tx) covers output rows 2ty, 2ty+1 and columns 2tx,
2tx+1, and reads input rows 2ty-ph .. 2ty-ph+3 (columns likewise); input
outside the image is zero, output beyond (oh, ow) (the last partial tile of
an odd size) is dropped. Tile t = (b*th + ty)*tw + tx within a block.

The matrices (d a 4x4 input patch, m a 4x4 product tile):
    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]   V = B^T d B
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]                                 Y = A^T m A
Every transform is separable. A row has few tiles (tw = 6 or 12 in the
benchmarks), too short for LLVM's vectoriser, so each transform is split into
one pass with short per-row loops and one long loop over all the image's tiles:
- input: first the vertical pass B^T d, per tile row ty over its four input
  rows, all columns at once (a loop of ~2tw), into a_i[ty*2tw + K] (row
  stride 2tw, the tile stride: tile t's four columns are then a_i[2t .. 2t+3]);
  then the horizontal pass (.) B as one loop over the image's th*tw tiles. Only
  the last tile of a row reads past its row (columns 2tw, 2tw+1, kept aside
  in ext): those th tiles are redone after the loop. The transposed variant
  (V^T for the weight gradient) runs the same passes in the same order, so
  its values are bit-equal; its adjoint mirrors them (horizontal adjoint as
  the long loop, then per padded row).
- output: the 16 M streams of a whole block to the four output phases
  Q[2a+b][t] = y[2ty+a, 2tx+b] (one long loop), then interleaved into y rows;
  its adjoint mirrors it. Every input row / output element is written exactly
  once (no zeroing, no accumulation into memory).
Measured traps (LLVM's loop-vectorize remarks, numba 0.68 on AVX-512):
- an index whose sign LLVM cannot prove (``a[base + k]`` with ``base`` from
  the arguments) gets numba's negative-index wraparound select, which makes
  the access non-affine: the loop stays scalar ("cannot identify array
  bounds"). Offsets are therefore written ``max(..., 0)`` (no-ops here): that
  alone took input_transform from 2.5 to 1.1 ms per batch and output_transform
  from 1.7 to 1.0 (conv 32->64 26x26, batch 64).
- a row view (``y[b, o, yy]``) in the short loops costs a reference-count
  update, more than copying a 12-element row (plain indices there).
- streams that are rows of one 2-D buffer, written in one loop, are
  "unsafe dependent memory operations" to LLVM; separate allocations are not.
- a long loop with 16 output and 4 input streams exceeds LLVM's runtime
  alias-check budget and stays scalar, so output_transform_adjoint writes its
  16 streams in two loops of 8.
- explicit 16-wide chunks (to fit VF 16 on a 24-long row) measured no faster.
Inputs are C-contiguous float32/float64.
"""
import numpy as np

from ._jit import kernel


@kernel
def input_transform(x, ph, pw, th, tw, v):
    """v (16, C, >= B*th*tw) <- B^T d B for every 4x4 input patch d of x (B, C, H, W)."""
    nb, nc, h, w = x.shape
    p = th * tw
    w2 = max(2 * tw, 0)                      # max(): the wraparound trap (module docstring)
    kn = min(w, w2 - pw)                     # input columns that land in a_i (the rest in ext)
    ext = np.zeros((4, th, 2), x.dtype)      # padded columns w2, w2 + 1 of each tile row
    rb = np.zeros((4, w), x.dtype)           # a tile row's four input rows where some are padding
    # a_i[ty*w2 + K], the vertical pass, padded column K < w2 of tile row ty (+2: the last tile's
    # over-read); four allocations, not rows of one buffer (see the module docstring)
    a0 = np.empty(p * 2 + 2, x.dtype)
    a1 = np.empty(p * 2 + 2, x.dtype)
    a2 = np.empty(p * 2 + 2, x.dtype)
    a3 = np.empty(p * 2 + 2, x.dtype)
    for b in range(nb):
        for c in range(nc):
            # vertical pass B^T d over each tile row's four input rows, all columns at once
            for ty in range(th):
                y0 = 2 * ty - ph
                base = max(ty * w2 + pw, 0)          # max(): the wraparound trap (module docstring)
                if y0 >= 0 and y0 + 3 < h:
                    for k in range(kn):
                        d0 = x[b, c, y0, k]
                        d1 = x[b, c, y0 + 1, k]
                        d2 = x[b, c, y0 + 2, k]
                        d3 = x[b, c, y0 + 3, k]
                        a0[base + k] = d0 - d2
                        a1[base + k] = d1 + d2
                        a2[base + k] = d2 - d1
                        a3[base + k] = d1 - d3
                    for k in range(kn, w):
                        d0 = x[b, c, y0, k]
                        d1 = x[b, c, y0 + 1, k]
                        d2 = x[b, c, y0 + 2, k]
                        d3 = x[b, c, y0 + 3, k]
                        e = k + pw - w2
                        ext[0, ty, e] = d0 - d2
                        ext[1, ty, e] = d1 + d2
                        ext[2, ty, e] = d2 - d1
                        ext[3, ty, e] = d1 - d3
                else:
                    for r in range(4):
                        yy = y0 + r
                        if 0 <= yy < h:
                            for k in range(w):
                                rb[r, k] = x[b, c, yy, k]
                        else:
                            for k in range(w):
                                rb[r, k] = 0
                    for k in range(kn):
                        d0 = rb[0, k]
                        d1 = rb[1, k]
                        d2 = rb[2, k]
                        d3 = rb[3, k]
                        a0[base + k] = d0 - d2
                        a1[base + k] = d1 + d2
                        a2[base + k] = d2 - d1
                        a3[base + k] = d1 - d3
                    for k in range(kn, w):
                        d0 = rb[0, k]
                        d1 = rb[1, k]
                        d2 = rb[2, k]
                        d3 = rb[3, k]
                        e = k + pw - w2
                        ext[0, ty, e] = d0 - d2
                        ext[1, ty, e] = d1 + d2
                        ext[2, ty, e] = d2 - d1
                        ext[3, ty, e] = d1 - d3
                for k in range(pw):                          # left padding columns
                    a0[ty * w2 + k] = 0
                    a1[ty * w2 + k] = 0
                    a2[ty * w2 + k] = 0
                    a3[ty * w2 + k] = 0
                for k in range(pw + w, w2 + 2):              # right padding columns
                    if k < w2:
                        a0[ty * w2 + k] = 0
                        a1[ty * w2 + k] = 0
                        a2[ty * w2 + k] = 0
                        a3[ty * w2 + k] = 0
                    else:
                        for i in range(4):
                            ext[i, ty, k - w2] = 0
            # horizontal pass (.) B, one long loop over the image's tiles: tile t reads a[2t .. 2t+3],
            # right for every tile but the last of each row, whose columns 2tw, 2tw+1 are in ext
            t0 = b * p
            for i in range(4):
                ai = a0 if i == 0 else a1 if i == 1 else a2 if i == 2 else a3
                o0 = v[4 * i, c, t0:t0 + p]
                o1 = v[4 * i + 1, c, t0:t0 + p]
                o2 = v[4 * i + 2, c, t0:t0 + p]
                o3 = v[4 * i + 3, c, t0:t0 + p]
                for t in range(p):
                    e0 = ai[2 * t]
                    e1 = ai[2 * t + 1]
                    e2 = ai[2 * t + 2]
                    e3 = ai[2 * t + 3]
                    o0[t] = e0 - e2
                    o1[t] = e1 + e2
                    o2[t] = e2 - e1
                    o3[t] = e1 - e3
                for ty in range(th):
                    t = ty * tw + tw - 1
                    e0 = ai[2 * t]
                    e1 = ai[2 * t + 1]
                    e2 = ext[i, ty, 0]
                    e3 = ext[i, ty, 1]
                    o0[t] = e0 - e2
                    o1[t] = e1 + e2
                    o2[t] = e2 - e1
                    o3[t] = e1 - e3


@kernel
def input_transform_t(x, ph, pw, th, tw, vt):
    """vt (16, >= B*th*tw, C) <- V transposed: vt[xi, t, c] = v[xi, c, t] of input_transform.

    For the weight gradient dU_xi = dM_xi @ V_xi^T: OpenBLAS runs that product 1.5-1.8x faster
    with V^T contiguous than through the transposed view of V (measured 2.9 vs 5.3 ms per batch
    on conv 32->64 26x26). The same two passes as input_transform, in the same order (so the
    values are bit-equal), with the intermediate channel-minor: the vertical pass writes it
    with stride C (scalar), and the horizontal one is then a loop over the channels, writing
    rows of vt."""
    nb, nc, h, w = x.shape
    p = th * tw
    w2 = max(2 * tw, 0)                      # max(): the wraparound trap (module docstring)
    kn = min(w, w2 - pw)
    a = np.empty((4, p * 2 + 2, nc), x.dtype)    # a[i, ty*w2 + K, c], as a0..a3 of input_transform
    ext = np.zeros((4, th, 2, nc), x.dtype)
    rb = np.zeros((4, w), x.dtype)
    for b in range(nb):
        for c in range(nc):
            for ty in range(th):
                y0 = 2 * ty - ph
                base = max(ty * w2 + pw, 0)
                for r in range(4):
                    yy = y0 + r
                    if 0 <= yy < h:
                        for k in range(w):
                            rb[r, k] = x[b, c, yy, k]
                    else:
                        for k in range(w):
                            rb[r, k] = 0
                for k in range(kn):
                    d0 = rb[0, k]
                    d1 = rb[1, k]
                    d2 = rb[2, k]
                    d3 = rb[3, k]
                    a[0, base + k, c] = d0 - d2
                    a[1, base + k, c] = d1 + d2
                    a[2, base + k, c] = d2 - d1
                    a[3, base + k, c] = d1 - d3
                for k in range(kn, w):
                    d0 = rb[0, k]
                    d1 = rb[1, k]
                    d2 = rb[2, k]
                    d3 = rb[3, k]
                    e = k + pw - w2
                    ext[0, ty, e, c] = d0 - d2
                    ext[1, ty, e, c] = d1 + d2
                    ext[2, ty, e, c] = d2 - d1
                    ext[3, ty, e, c] = d1 - d3
                for k in range(pw):
                    for i in range(4):
                        a[i, ty * w2 + k, c] = 0
                for k in range(pw + w, w2 + 2):
                    for i in range(4):
                        if k < w2:
                            a[i, ty * w2 + k, c] = 0
                        else:
                            ext[i, ty, k - w2, c] = 0
        t0 = b * p
        for i in range(4):
            for t in range(p):
                for c in range(nc):
                    e0 = a[i, 2 * t, c]
                    e1 = a[i, 2 * t + 1, c]
                    e2 = a[i, 2 * t + 2, c]
                    e3 = a[i, 2 * t + 3, c]
                    vt[4 * i, t0 + t, c] = e0 - e2
                    vt[4 * i + 1, t0 + t, c] = e1 + e2
                    vt[4 * i + 2, t0 + t, c] = e2 - e1
                    vt[4 * i + 3, t0 + t, c] = e1 - e3
            for ty in range(th):
                t = ty * tw + tw - 1
                for c in range(nc):
                    e0 = a[i, 2 * t, c]
                    e1 = a[i, 2 * t + 1, c]
                    e2 = ext[i, ty, 0, c]
                    e3 = ext[i, ty, 1, c]
                    vt[4 * i, t0 + t, c] = e0 - e2
                    vt[4 * i + 1, t0 + t, c] = e1 + e2
                    vt[4 * i + 2, t0 + t, c] = e2 - e1
                    vt[4 * i + 3, t0 + t, c] = e1 - e3


@kernel
def input_transform_adjoint(dv, ph, pw, th, tw, gx):
    """gx (B, C, H, W) <- the sum of B dV B^T over every tile of dv (16, C, >= B*th*tw), at the tile's
    input patch (the parts in the padding dropped). gx is overwritten."""
    nb, nc, h, w = gx.shape
    p = th * tw
    w2 = max(2 * tw, 0)                      # max(): the wraparound trap (module docstring)
    kn = min(w, w2 - pw)
    # da_i: the adjoint of input_transform's a_i, row s of tile rows at (s + 1) * w2, with a zero
    # row before the first and after the last (the vertical adjoint reads rows s and s - 1)
    da = np.zeros((4, (th + 2) * w2), dv.dtype)
    da0 = da[0]
    da1 = da[1]
    da2 = da[2]
    da3 = da[3]
    ext = np.zeros((4, th + 2, 2), dv.dtype)     # padded columns w2, w2 + 1, rows as da's
    for b in range(nb):
        t0 = b * p
        for c in range(nc):
            # adjoint of the horizontal pass: tile t's (e0..e3) gradient is (g0, g1 - g2 + g3,
            # -g0 + g1 + g2, -g3); columns 2t, 2t+1 get this tile's first two and the previous
            # tile's last two. One long loop (the previous tile is wrong for the first tile of a
            # row: fixed below), the last tile's last two go to ext.
            for i in range(4):
                di = da[i]
                g0 = dv[4 * i, c, t0:t0 + p]
                g1 = dv[4 * i + 1, c, t0:t0 + p]
                g2 = dv[4 * i + 2, c, t0:t0 + p]
                g3 = dv[4 * i + 3, c, t0:t0 + p]
                for t in range(p - 1):                 # tile t + 1 and tile t before it
                    di[w2 + 2 * t + 2] = g0[t + 1] + (g1[t] + g2[t] - g0[t])
                    di[w2 + 2 * t + 3] = (g1[t + 1] - g2[t + 1] + g3[t + 1]) - g3[t]
                for ty in range(th):
                    t = ty * tw
                    di[w2 + 2 * t] = g0[t]
                    di[w2 + 2 * t + 1] = g1[t] - g2[t] + g3[t]
                    t = ty * tw + tw - 1
                    ext[i, ty + 1, 0] = g1[t] + g2[t] - g0[t]
                    ext[i, ty + 1, 1] = -g3[t]
            # adjoint of the vertical pass: padded row 2s gets tile row s's ga0 and tile row s-1's
            # -ga0 + ga1 + ga2; row 2s + 1 gets s's ga1 - ga2 + ga3 and s-1's -ga3
            for s in range(th + 1):
                cur = max((s + 1) * w2 + pw, 0)
                prev = max(s * w2 + pw, 0)
                y0 = 2 * s - ph
                if 0 <= y0 < h:
                    for k in range(kn):
                        gx[b, c, y0, k] = da0[cur + k] + (da1[prev + k] + da2[prev + k] - da0[prev + k])
                    for k in range(kn, w):
                        e = k + pw - w2
                        gx[b, c, y0, k] = ext[0, s + 1, e] + (ext[1, s, e] + ext[2, s, e] - ext[0, s, e])
                if 0 <= y0 + 1 < h:
                    for k in range(kn):
                        gx[b, c, y0 + 1, k] = (da1[cur + k] - da2[cur + k] + da3[cur + k]) - da3[prev + k]
                    for k in range(kn, w):
                        e = k + pw - w2
                        gx[b, c, y0 + 1, k] = (ext[1, s + 1, e] - ext[2, s + 1, e] + ext[3, s + 1, e]) \
                            - ext[3, s, e]


@kernel
def output_transform(m, bias, th, tw, y):
    """y (B, O, oh, ow) <- A^T m A + bias[o] for every tile of m (16, O, >= B*th*tw), cropped.
    No bias: pass zeros (one add per output costs less than a second kernel variant)."""
    nb, no, oh, ow = y.shape
    p = th * tw
    n = nb * p
    q = np.empty((4, n), m.dtype)            # the four output phases y[2ty + a, 2tx + b] -> q[2a + b]
    q0 = q[0]
    q1 = q[1]
    q2 = q[2]
    q3 = q[3]
    for o in range(no):
        m0 = m[0, o, :n]
        m1 = m[1, o, :n]
        m2 = m[2, o, :n]
        m3 = m[3, o, :n]
        m4 = m[4, o, :n]
        m5 = m[5, o, :n]
        m6 = m[6, o, :n]
        m7 = m[7, o, :n]
        m8 = m[8, o, :n]
        m9 = m[9, o, :n]
        m10 = m[10, o, :n]
        m11 = m[11, o, :n]
        m12 = m[12, o, :n]
        m13 = m[13, o, :n]
        m14 = m[14, o, :n]
        m15 = m[15, o, :n]
        bo = bias[o]
        for t in range(n):
            # A^T m: row 0 = m0. + m1. + m2., row 1 = m1. - m2. - m3. (mi. = row i, 4 columns)
            s00 = m0[t] + m4[t] + m8[t]
            s01 = m1[t] + m5[t] + m9[t]
            s02 = m2[t] + m6[t] + m10[t]
            s03 = m3[t] + m7[t] + m11[t]
            s10 = m4[t] - m8[t] - m12[t]
            s11 = m5[t] - m9[t] - m13[t]
            s12 = m6[t] - m10[t] - m14[t]
            s13 = m7[t] - m11[t] - m15[t]
            q0[t] = s00 + s01 + s02 + bo
            q1[t] = s01 - s02 - s03 + bo
            q2[t] = s10 + s11 + s12 + bo
            q3[t] = s11 - s12 - s13 + bo
        # interleave into y rows; plain indices, no row views (see the module docstring)
        half = ow // 2
        for b in range(nb):
            for ty in range(th):
                base = max(b * p + ty * tw, 0)     # max(): the wraparound trap (module docstring)
                y0 = 2 * ty
                for tx in range(half):
                    y[b, o, y0, 2 * tx] = q0[base + tx]
                    y[b, o, y0, 2 * tx + 1] = q1[base + tx]
                if ow & 1:
                    y[b, o, y0, ow - 1] = q0[base + half]
                if y0 + 1 < oh:
                    for tx in range(half):
                        y[b, o, y0 + 1, 2 * tx] = q2[base + tx]
                        y[b, o, y0 + 1, 2 * tx + 1] = q3[base + tx]
                    if ow & 1:
                        y[b, o, y0 + 1, ow - 1] = q2[base + half]


@kernel
def output_transform_adjoint(g, th, tw, dm):
    """dm (16, O, >= B*th*tw) <- A dY A^T for every 2x2 tile of g (B, O, oh, ow), zero beyond
    (oh, ow)."""
    nb, no, oh, ow = g.shape
    p = th * tw
    n = nb * p
    q0 = np.empty(n, g.dtype)                # the gradient's four phases, as in output_transform
    q1 = np.empty(n, g.dtype)
    q2 = np.empty(n, g.dtype)
    q3 = np.empty(n, g.dtype)
    half = ow // 2
    for o in range(no):
        for b in range(nb):
            for ty in range(th):
                base = max(b * p + ty * tw, 0)     # max(): the wraparound trap (module docstring)
                y0 = 2 * ty
                for tx in range(half):
                    q0[base + tx] = g[b, o, y0, 2 * tx]
                    q1[base + tx] = g[b, o, y0, 2 * tx + 1]
                if ow & 1:
                    q0[base + half] = g[b, o, y0, ow - 1]
                    q1[base + half] = 0
                if y0 + 1 < oh:
                    for tx in range(half):
                        q2[base + tx] = g[b, o, y0 + 1, 2 * tx]
                        q3[base + tx] = g[b, o, y0 + 1, 2 * tx + 1]
                    if ow & 1:
                        q2[base + half] = g[b, o, y0 + 1, ow - 1]
                        q3[base + half] = 0
                else:
                    for tx in range(tw):
                        q2[base + tx] = 0
                        q3[base + tx] = 0
        m0 = dm[0, o, :n]
        m1 = dm[1, o, :n]
        m2 = dm[2, o, :n]
        m3 = dm[3, o, :n]
        m4 = dm[4, o, :n]
        m5 = dm[5, o, :n]
        m6 = dm[6, o, :n]
        m7 = dm[7, o, :n]
        m8 = dm[8, o, :n]
        m9 = dm[9, o, :n]
        m10 = dm[10, o, :n]
        m11 = dm[11, o, :n]
        m12 = dm[12, o, :n]
        m13 = dm[13, o, :n]
        m14 = dm[14, o, :n]
        m15 = dm[15, o, :n]
        # two loops of 8 output streams: with all 16 (and the 4 inputs) LLVM's runtime alias checks
        # exceed its budget and the loop stays scalar
        for t in range(n):
            # u = A g (rows u0 = g0, u1 = g0 + g1, u2 = g0 - g1, u3 = -g1), dm row i = u_i A^T =
            # (u_i0, u_i0 + u_i1, u_i0 - u_i1, -u_i1)
            g00 = q0[t]
            g01 = q1[t]
            g10 = q2[t]
            g11 = q3[t]
            a0 = g00 + g10
            a1 = g01 + g11
            m0[t] = g00
            m1[t] = g00 + g01
            m2[t] = g00 - g01
            m3[t] = -g01
            m4[t] = a0
            m5[t] = a0 + a1
            m6[t] = a0 - a1
            m7[t] = -a1
        for t in range(n):
            g00 = q0[t]
            g01 = q1[t]
            g10 = q2[t]
            g11 = q3[t]
            b0 = g00 - g10
            b1 = g01 - g11
            m8[t] = b0
            m9[t] = b0 + b1
            m10[t] = b0 - b1
            m11[t] = -b1
            m12[t] = -g10
            m13[t] = -g10 - g11
            m14[t] = g11 - g10
            m15[t] = g11
