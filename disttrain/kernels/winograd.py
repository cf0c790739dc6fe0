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
Every transform is separable, but a row has few tiles (tw = 6 or 12 in the
benchmarks), too short for LLVM's vectoriser: written as plain loops over one
row of tiles, every transform ran as scalar code (4-6 ms each for conv
32->64 26x26 batch 64). So each is split into a short-loop part on the
smaller side and a long-loop part on the 16-stream side, which vectorises:
- input: per padded input row, the horizontal transform d B of its tiles into
  H[row parity, j] planes of (th+1, tw) (short loops, input-sized); then the
  vertical one, V[4i+j][t] from H[., j] at t and t + tw (one loop over the
  image's th*tw tiles: row 2ty+2 of tile t is row 2ty of tile t + tw).
- output: the 16 M streams of a whole block to the four output phases
  Q[2a+b][t] = y[2ty+a, 2tx+b] (one long loop), then interleaved into y rows.
- the adjoints mirror these two. Every input row / output element is written
  exactly once (no zeroing, no accumulation into memory).
Two measured traps: a row view (``y[b, o, yy]``) in the short loops costs a
reference-count update, more than copying a 12-element row (2.5x slower
output transforms; plain indices there); and a long loop with 16 output and
4 input streams exceeds LLVM's runtime alias-check budget and stays scalar,
so output_transform_adjoint writes its 16 streams in two loops of 8.
Inputs are C-contiguous float32/float64.
"""
import numpy as np

from ._jit import kernel


@kernel
def input_transform(x, ph, pw, th, tw, v):
    """v (16, C, >= B*th*tw) <- B^T d B for every 4x4 input patch d of x (B, C, H, W)."""
    nb, nc, h, w = x.shape
    p = th * tw
    rowbuf = np.zeros(2 * tw + 2, x.dtype)      # a padded input row; only [pw, pw + w) is written
    hh = np.empty((2, 4, (th + 1) * tw), x.dtype)
    for b in range(nb):
        for c in range(nc):
            for y in range(2 * th + 2):          # padded rows: H[y % 2, j][(y // 2) * tw + tx]
                yy = y - ph
                pr = y & 1
                base = (y >> 1) * tw
                if 0 <= yy < h:
                    for k in range(w):
                        rowbuf[pw + k] = x[b, c, yy, k]
                    for tx in range(tw):
                        e0 = rowbuf[2 * tx]
                        e1 = rowbuf[2 * tx + 1]
                        e2 = rowbuf[2 * tx + 2]
                        e3 = rowbuf[2 * tx + 3]
                        hh[pr, 0, base + tx] = e0 - e2
                        hh[pr, 1, base + tx] = e1 + e2
                        hh[pr, 2, base + tx] = e2 - e1
                        hh[pr, 3, base + tx] = e1 - e3
                else:
                    for j in range(4):
                        for tx in range(tw):
                            hh[pr, j, base + tx] = 0
            t0 = b * p
            for j in range(4):
                # rows 2ty .. 2ty+3 of tile t: H[0, j][t], H[1, j][t], H[0, j][t + tw], H[1, j][t + tw]
                he = hh[0, j]
                ho = hh[1, j]
                o0 = v[j, c, t0:t0 + p]
                o1 = v[4 + j, c, t0:t0 + p]
                o2 = v[8 + j, c, t0:t0 + p]
                o3 = v[12 + j, c, t0:t0 + p]
                for t in range(p):
                    d0 = he[t]
                    d1 = ho[t]
                    d2 = he[t + tw]
                    d3 = ho[t + tw]
                    o0[t] = d0 - d2
                    o1[t] = d1 + d2
                    o2[t] = d2 - d1
                    o3[t] = d1 - d3


@kernel
def input_transform_t(x, ph, pw, th, tw, vt):
    """vt (16, >= B*th*tw, C) <- V transposed: vt[xi, t, c] = v[xi, c, t] of input_transform.

    For the weight gradient dU_xi = dM_xi @ V_xi^T: OpenBLAS runs that product 1.5-1.8x faster
    with V^T contiguous than through the transposed view of V (measured 2.9 vs 5.3 ms per batch
    on conv 32->64 26x26), and this kernel is no slower than input_transform: the horizontal
    pass writes H channel-minor (scalar either way), and the vertical one is then a loop over
    the channels, writing rows of vt."""
    nb, nc, h, w = x.shape
    p = th * tw
    rowbuf = np.zeros(2 * tw + 2, x.dtype)
    hh = np.empty((8, (th + 1) * tw, nc), x.dtype)    # H[4 * parity + j, tile, c]
    for b in range(nb):
        for c in range(nc):
            for y in range(2 * th + 2):
                yy = y - ph
                r0 = 4 * (y & 1)
                base = (y >> 1) * tw
                if 0 <= yy < h:
                    for k in range(w):
                        rowbuf[pw + k] = x[b, c, yy, k]
                    for tx in range(tw):
                        e0 = rowbuf[2 * tx]
                        e1 = rowbuf[2 * tx + 1]
                        e2 = rowbuf[2 * tx + 2]
                        e3 = rowbuf[2 * tx + 3]
                        hh[r0, base + tx, c] = e0 - e2
                        hh[r0 + 1, base + tx, c] = e1 + e2
                        hh[r0 + 2, base + tx, c] = e2 - e1
                        hh[r0 + 3, base + tx, c] = e1 - e3
                else:
                    for j in range(4):
                        for tx in range(tw):
                            hh[r0 + j, base + tx, c] = 0
        t0 = b * p
        for j in range(4):
            for t in range(p):
                for c in range(nc):
                    d0 = hh[j, t, c]
                    d1 = hh[4 + j, t, c]
                    d2 = hh[j, t + tw, c]
                    d3 = hh[4 + j, t + tw, c]
                    vt[j, t0 + t, c] = d0 - d2
                    vt[4 + j, t0 + t, c] = d1 + d2
                    vt[8 + j, t0 + t, c] = d2 - d1
                    vt[12 + j, t0 + t, c] = d1 - d3


@kernel
def input_transform_adjoint(dv, ph, pw, th, tw, gx):
    """gx (B, C, H, W) <- the sum of B dV B^T over every tile of dv (16, C, >= B*th*tw), at the tile's
    input patch (the parts in the padding dropped). gx is overwritten."""
    nb, nc, h, w = gx.shape
    p = th * tw
    dh = np.empty((2, 4, (th + 1) * tw), dv.dtype)
    rowg = np.empty(2 * tw + 2, dv.dtype)
    for b in range(nb):
        for c in range(nc):
            t0 = b * p
            for j in range(4):
                # adjoint of the vertical pass: B^T's columns (1,0,0,0), (0,1,-1,1), (-1,1,1,0), (0,0,0,-1)
                de = dh[0, j]
                do = dh[1, j]
                v0 = dv[j, c, t0:t0 + p]
                v1 = dv[4 + j, c, t0:t0 + p]
                v2 = dv[8 + j, c, t0:t0 + p]
                v3 = dv[12 + j, c, t0:t0 + p]
                for t in range(p):
                    de[t] = v0[t]
                    do[t] = v1[t] - v2[t] + v3[t]
                for t in range(p, p + tw):
                    de[t] = 0
                    do[t] = 0
                for t in range(p):
                    de[t + tw] += v1[t] + v2[t] - v0[t]
                    do[t + tw] -= v3[t]
            for y in range(2 * th + 2):
                yy = y - ph
                if yy < 0 or yy >= h:
                    continue
                pr = y & 1
                base = (y >> 1) * tw
                # adjoint of the horizontal pass, overlapping tiles summed: column 2k gets this tile's
                # dH0 and the previous tile's -dH0 + dH1 + dH2; column 2k+1 this tile's dH1 - dH2 + dH3
                # and the previous one's -dH3
                for tx in range(tw):
                    rowg[2 * tx] = dh[pr, 0, base + tx]
                    rowg[2 * tx + 1] = dh[pr, 1, base + tx] - dh[pr, 2, base + tx] + dh[pr, 3, base + tx]
                rowg[2 * tw] = 0
                rowg[2 * tw + 1] = 0
                for tx in range(tw):
                    rowg[2 * tx + 2] += dh[pr, 1, base + tx] + dh[pr, 2, base + tx] - dh[pr, 0, base + tx]
                    rowg[2 * tx + 3] -= dh[pr, 3, base + tx]
                for k in range(w):
                    gx[b, c, yy, k] = rowg[pw + k]


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
                base = b * p + ty * tw
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
    q = np.empty((4, n), g.dtype)            # the gradient's four phases, as in output_transform
    q0 = q[0]
    q1 = q[1]
    q2 = q[2]
    q3 = q[3]
    half = ow // 2
    for o in range(no):
        for b in range(nb):
            for ty in range(th):
                base = b * p + ty * tw
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
