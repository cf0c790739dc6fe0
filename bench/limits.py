"""Workload H: what this machine can do at all, measured in the same run.

    python bench/limits.py                               # sgemm GFLOP/s, memcpy GB/s (1 thread)
    mpiexec -n 2 python -m mpi4py bench/limits.py        # raw MPI Allreduce bandwidth

Each training figure can then be read as a fraction of these limits: a step
of workload A is ~1.4 GFLOP of sgemm, its gradient ~7.1 MiB of allreduce.
"""
import common  # noqa: F401  (thread limits before numpy loads)
import sys
import time

import numpy as np

from common import emit, median, import_torch

A_GRAD_BYTES = 4 * (784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10)


def best_of(fn, reps, inner=1):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        ts.append((time.perf_counter() - t0) / inner)
    return median(ts), min(ts)


def sgemm():
    rng = np.random.default_rng(0)
    n = 1024
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    np.matmul(a, b, out=c)
    med, best = best_of(lambda: np.matmul(a, b, out=c), 15)
    flop = 2.0 * n ** 3
    rec = dict(workload="H-sgemm", status="ok", unit="GFLOP/s", n=n, numpy=flop / med / 1e9,
               numpy_best=flop / best / 1e9)
    torch = import_torch()
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        tc = torch.empty(n, n)
        torch.matmul(ta, tb, out=tc)
        tmed, _ = best_of(lambda: torch.matmul(ta, tb, out=tc), 15)
        rec["torch"] = flop / tmed / 1e9
    # The shape of workload A's biggest forward matmul: (128,1024) @ (1024,1024)^T.
    x = rng.standard_normal((128, 1024), dtype=np.float32)
    w = rng.standard_normal((1024, 1024), dtype=np.float32)
    y = np.empty((128, 1024), np.float32)
    med_a, _ = best_of(lambda: np.matmul(x, w.T, out=y), 30)
    rec["numpy_A_shape"] = 2.0 * 128 * 1024 * 1024 / med_a / 1e9
    return emit(rec)


def memcpy():
    n = 64 * 2 ** 20 // 4                     # 64 MiB of float32: far beyond the caches
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    med, best = best_of(lambda: np.copyto(dst, src), 15)
    # Read + write traffic counted once (the "copy" convention of STREAM counts both: x2).
    return emit(dict(workload="H-memcpy", status="ok", unit="GB/s", bytes=src.nbytes,
                     copy=src.nbytes / med / 1e9, copy_best=src.nbytes / best / 1e9))


def allreduce(comm):
    from mpi4py import MPI
    size = comm.Get_size()
    out = []
    for nbytes in (2 ** 12, 2 ** 16, 2 ** 20, A_GRAD_BYTES, 2 ** 25):
        n = nbytes // 4
        send = np.ones(n, np.float32)
        recv = np.empty_like(send)
        reps = 30 if nbytes >= 2 ** 20 else 200
        for _ in range(3):
            comm.Allreduce(send, recv, op=MPI.SUM)
        ts = []
        for _ in range(reps):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(send, recv, op=MPI.SUM)
            ts.append(time.perf_counter() - t0)
        t = np.array(ts)
        tmax = np.empty_like(t)
        comm.Allreduce(t, tmax, op=MPI.MAX)
        med = float(np.median(tmax))
        rec = dict(workload="H-allreduce", status="ok", unit="GB/s", ranks=size, bytes=send.nbytes,
                   time_ms=med * 1e3, algbw=send.nbytes / med / 1e9,
                   busbw=2 * (size - 1) / size * send.nbytes / med / 1e9,
                   is_A_grad=nbytes == A_GRAD_BYTES)
        if comm.Get_rank() == 0:
            out.append(emit(rec))
    return out


def main():
    try:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
    except ImportError:
        comm = None
    if comm is not None and comm.Get_size() > 1:
        allreduce(comm)
    else:
        sgemm()
        memcpy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
