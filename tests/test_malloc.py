"""disttrain/_malloc.py: at import, glibc keeps freed array memory for the next step (no page faults
per step), unless the user tuned the allocator or asked for the defaults."""
import os
import subprocess
import sys

import pytest

from disttrain import _malloc

# Four 3 MB arrays made and freed per "step", as a training step's activations are: with glibc's
# defaults every step gets its pages from the kernel again (one fault per 4 KiB page).
STEPS = """
import resource, numpy as np
import disttrain
from disttrain import _malloc
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    xs = [np.ones(750_000, np.float32) for _ in range(4)]; del xs
f0 = faults()
for _ in range(30):
    xs = [np.ones(750_000, np.float32) for _ in range(4)]; del xs
print(_malloc.applied, (faults() - f0) / 30)
"""


def _run(**env):
    full = {k: v for k, v in os.environ.items()
            if not (k.startswith("MALLOC_") or k in ("DISTTRAIN_MALLOC", "GLIBC_TUNABLES"))}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", STEPS], env=full, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    applied, faults = out.stdout.split()
    return applied == "True", float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_import_keeps_freed_memory_so_steps_stop_faulting():
    applied, faults = _run()
    assert applied and faults < 50, faults            # the pages are reused: (almost) no faults
    applied, faults = _run(DISTTRAIN_MALLOC="default")
    assert not applied and faults > 2000, faults       # glibc's defaults: ~2900 (12 MB) per step
    applied, _ = _run(MALLOC_ARENA_MAX="2", MALLOC_TOP_PAD_="0")
    assert not applied                                 # the user's own settings win


def test_user_settings_are_left_alone():
    assert not _malloc._user_tuned({})
    assert not _malloc._user_tuned({"DISTTRAIN_MALLOC": "tuned", "PATH": "/bin"})
    assert _malloc._user_tuned({"DISTTRAIN_MALLOC": "default"})
    assert _malloc._user_tuned({"MALLOC_TRIM_THRESHOLD_": "1"})
    assert _malloc._user_tuned({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"})
    assert not _malloc._user_tuned({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F"})
