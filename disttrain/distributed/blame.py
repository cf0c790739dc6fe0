"""Telling the launcher which ranks are to blame for a failure that another rank detected.

When the stall detector on rank 0 finds rank 3 silent, or the collective
check finds rank 1 calling a different collective, the job is aborted BY the
reporter, so mpiexec's own account ("rank 0 called MPI_Abort") names the
wrong rank. Before aborting, the reporter writes one control line

    <CONTROL>blame {"ranks": [3], "hosts": ["h1"], "reason": "stall", "by": 0, "message": "..."}

on its stderr (reasons: "stall", "collective-mismatch"), which ``dtrun`` reads, hides and uses for its headline.
Control lines are only written under dtrun (``DTRUN_CONTROL=1``); the line
format is the one of ``launch.rank.control`` (the runtime never imports the
launcher, hence the prefix is repeated here).
"""
import json
import os

CONTROL = "\x1edtrun:"          # == launch.rank.CONTROL


def blame(ranks, hosts, reason, by, message):
    """Write the blame control line (a single write(), so it never interleaves). False when not under dtrun."""
    if os.environ.get("DTRUN_CONTROL") != "1":
        return False
    record = {"ranks": sorted(int(r) for r in ranks), "hosts": sorted(set(hosts)), "reason": reason,
              "by": int(by), "message": " ".join(str(message).split())}
    line = f"{CONTROL}blame {json.dumps(record, separators=(', ', ': '))}\n"
    try:
        os.write(2, line.encode("utf-8", "replace"))
    except OSError:
        return False
    return True
