"""Telling the launcher which ranks are to blame for a failure that another rank detected.

When the stall detector on rank 0 finds rank 3 silent, or the collective
check finds rank 1 calling a different collective, the job is aborted BY the
reporter, so mpiexec's own account ("rank 0 called MPI_Abort") names the
wrong rank. Before aborting, the reporter writes one control line

    <CONTROL>blame {"ranks": [3], "hosts": ["h1"], "reason": "stall", "by": 0, "message": "..."}

on its stderr (reasons: "stall", "collective-mismatch"), which ``dtrun`` reads, hides and uses for its headline.
A blame alone may be a warning; a rank that aborts the job also says so
(`failed`, the line a failing rank sends), which tells dtrun the job is ending.
Control lines are only written under dtrun (``DTRUN_CONTROL=1``); the line
format is the one of ``launch.rank.control`` (the runtime never imports the
launcher, hence the prefix is repeated here).
"""
import json
import os

CONTROL = "\x1edtrun:"          # == launch.rank.CONTROL


def _control(message):
    """One control line, written with a single write() so it never interleaves. False when not under dtrun."""
    if os.environ.get("DTRUN_CONTROL") != "1":
        return False
    try:
        os.write(2, f"{CONTROL}{message}\n".encode("utf-8", "replace"))
    except OSError:
        return False
    return True


def blame(ranks, hosts, reason, by, message):
    """Tell dtrun which ranks (on which hosts) are at fault."""
    record = {"ranks": sorted(int(r) for r in ranks), "hosts": sorted(set(hosts)), "reason": reason,
              "by": int(by), "message": " ".join(str(message).split())}
    return _control(f"blame {json.dumps(record, separators=(', ', ': '))}")


def failed(why):
    """Tell dtrun that this rank is ending the job (one line: why)."""
    return _control("failed " + " ".join(str(why).split()))
