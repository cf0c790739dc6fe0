"""``mp.spawn`` for scripts written for ``torch.multiprocessing``: disttrain does not start processes
itself -- the launcher does (``dtrun -n N script.py``). Under such a launch, ``spawn(fn, args, nprocs)``
calls ``fn(rank, *args)`` on the ranks below ``nprocs`` (each launched process is one of the
"spawned" ones); the other ranks skip it. Run without a launcher, it calls ``fn(0, *args)`` when
``nprocs == 1`` and otherwise says how to launch.
"""
import os


def _launched():
    for size_var, rank_var in (("PMI_SIZE", "PMI_RANK"), ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
                               ("PMIX_SIZE", "PMIX_RANK")):
        if os.environ.get(size_var, "").isdigit() and os.environ.get(rank_var, "").isdigit():
            return int(os.environ[size_var]), int(os.environ[rank_var])
    return 1, 0


def spawn(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
    size, rank = _launched()
    nprocs = int(nprocs)
    if nprocs > size:
        raise RuntimeError(f"mp.spawn(nprocs={nprocs}): disttrain does not start processes itself and this job "
                           f"has {size}; launch the script with `dtrun -n {nprocs} {_script()}` (each rank then "
                           "runs one of the spawned functions)")
    if rank < nprocs:
        fn(rank, *args)


def _script():
    import sys
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "script.py"


__all__ = ["spawn"]
