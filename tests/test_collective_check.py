"""Mismatched collectives are caught before they sum anything; deadlocks end with a precise report."""
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi"))
import mpirun  # noqa: E402

import numpy as np  # noqa: E402

from disttrain.distributed import collective_check as cc  # noqa: E402


def _run(n, mode, timeout=60, python=None):
    return mpirun.run(n, "check_cases.py", mode, timeout=timeout, python=python)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("mode,odd,ref", [
    ("skip-caught", "all_reduce[sum] float64 shape (5,)", "all_reduce[sum] float64 shape (3,)"),
    ("shape-caught", "all_reduce[sum] float64 shape (5,)", "all_reduce[sum] float64 shape (4,)"),
])
def test_mismatch_fails_on_every_rank_naming_the_divergent_rank_and_both_ops(n, mode, odd, ref):
    rc, out, err, secs = _run(n, mode)
    assert rc == 0, out + err
    last = n - 1
    for r in range(n):
        line = re.search(rf"CAUGHT rank={r} (.*)", out)
        assert line, f"rank {r} did not raise CollectiveMismatchError:\n{out}\n{err}"
        assert f"rank {last} called #" in line.group(1) and odd in line.group(1), line.group(1)
        assert "where rank 0" in line.group(1) and ref in line.group(1), line.group(1)
        # nothing was summed by the mismatched call, and the job is still consistent afterwards
        assert f"AFTER rank={r} sum={n}" in out, out


def test_uncaught_mismatch_ends_the_job(mpi_python):
    rc, out, err, secs = _run(3, "shape", python=mpi_python)
    assert rc != 0 and secs < 30, (rc, secs, out, err)
    assert "CollectiveMismatchError" in err and "rank 2 called #" in err and "shape (5,)" in err, err


def test_deadlocked_script_ends_by_default_naming_exited_and_silent_ranks(mpi_python):
    rc, out, err, secs = _run(3, "deadlock", python=mpi_python)
    assert rc != 0 and secs < 30, (rc, secs, out, err)
    assert "ranks that have not joined it: [1, 2]" in err, err
    assert "rank 1 exited" in err and "rank 2 not responding" in err, err
    assert "aborting the job" in err and "still running" not in out, err


def test_stall_report_names_the_other_collective():
    rc, out, err, secs = _run(2, "other-op")
    assert rc != 0 and secs < 30, (rc, secs, out, err)
    # both ranks wait; whichever reports first names the other's collective
    assert (re.search(r"rank 1 is in a different collective #\d+ broadcast from 0 float64 shape \(2,\)", err) or
            re.search(r"rank 0 is in a different collective #\d+ all_reduce\[sum\] float64 shape \(3,\)", err)), err


def test_a_long_wait_sleep_polls():
    rc, out, err, secs = _run(2, "quiet-wait")
    assert rc == 0, out + err
    cpu = float(re.search(r"WAITCPU (\S+)", out).group(1))
    # 4 s of waiting after the spin limit (1 s): a spinning rank would burn most of it
    assert cpu < 0.5, f"rank 0 used {cpu:.2f} CPU s in 4 s of waiting"


def test_descriptor_round_trip_and_verify():
    a = np.zeros((2, 3), np.float32)
    vec = cc.encode(7, cc.descriptor("all_reduce", "avg", a))
    assert len(vec) == cc.LENGTH
    assert cc.describe(vec) == "#7 all_reduce[avg] float32 shape (2, 3) (6 elements)"
    assert cc.describe(cc.encode(1, cc.descriptor("broadcast", None, a[0], 2))) == \
        "#1 broadcast from 2 float32 shape (3,) (3 elements)"
    assert cc.describe(cc.encode(3, None)) == "#3 other"
    same = np.array([vec, vec, vec])
    cc.verify(same, 0)                      # no error
    odd = same.copy()
    odd[1] = cc.encode(7, cc.descriptor("all_reduce", "sum", a))
    with pytest.raises(cc.CollectiveMismatchError, match=r"rank 1 called #7 all_reduce\[sum\].*where rank 0 "
                                                          r"and 1 other rank\(s\) called #7 all_reduce\[avg\]"):
        cc.verify(odd, 2)


def test_check_mode_switches():
    assert cc.mode_from(True) == "all" and cc.mode_from(False) is None and cc.mode_from(5) == 5
    assert cc.mode_from("auto") == cc.AUTO_FIRST and cc.mode_from("off") is None and cc.mode_from("1") == "all"
    with pytest.raises(ValueError, match="DISTTRAIN_CHECK_COLLECTIVES"):
        cc.mode_from("sometimes")
