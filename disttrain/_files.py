"""Writing files so that a crash never leaves half of one."""
import os

import numpy as np


def savez_atomic(path, arrays):
    """``np.savez(path, **arrays)`` through a temporary file in the same directory, fsynced and then
    renamed over ``path``: a kill or a full disk leaves the previous file (or none), never a torn one.
    OSError propagates (the temporary file is removed first)."""
    path = os.fspath(path)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
