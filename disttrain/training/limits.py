"""Memory estimates checked before a job allocates: a size that cannot fit is refused up front,
with the estimate, instead of failing half-way in numpy (or thrashing the machine)."""
import math
import os


def available_bytes():
    """Memory this process could still allocate: MemAvailable (Linux), else physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def gib(n):
    return f"{n / 2 ** 30:,.1f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:,.1f} MiB"


def check_fits(nbytes, what, error, fix):
    """Raise `error` if `nbytes` (an estimate for one process) exceeds the available memory."""
    avail = available_bytes()
    if avail is not None and nbytes > avail:
        raise error(f"{what} needs about {gib(nbytes)} of memory per rank and only {gib(avail)} is available; {fix}")


def elements(shape):
    """Element count of a shape without int64 overflow."""
    return math.prod(int(s) for s in shape)
