"""The harness of the multi-rank check scripts (tests/mpi/*_checks.py).

Every rank runs the same named checks in the same order; a failing check is recorded (and printed with
its traceback) and the next one runs, so the ranks stay in step through the collectives that follow.
Each rank writes its own results file, because mpiexec may interleave the ranks' stdout mid-line;
`mpirun.run_checks` reads them back.
"""
import json
import os
import sys
import traceback


class Checks:
    def __init__(self, rank):
        self.rank = rank
        self.results = {}         # check name -> "ok" or "ExcType: message"

    def __call__(self, name, fn):
        try:
            fn()
        except Exception as e:     # report and go on: the other checks stay in step
            msg = f"{type(e).__name__}: {e}".replace("\n", " | ")
            self.results[name] = msg
            print(f"CHECK {name} rank={self.rank} FAIL {msg}", flush=True)
            traceback.print_exc()
            sys.stderr.flush()
        else:
            self.results[name] = "ok"
            print(f"CHECK {name} rank={self.rank} ok", flush=True)

    def write(self, outdir):
        with open(os.path.join(outdir, f"results-{self.rank}.json"), "w") as f:
            json.dump(self.results, f)
