#!/usr/bin/env python
"""The convergence property (tests/sync/test_convergence.py) with fresh random examples,
as many as asked, instead of the suite's fixed 25 derandomised ones.

    .venv/bin/python bench/convergence.py [--examples 200] [--seed N] [--no-shrink]

Runs that test under pytest (its database is pytest's `test_<name>`, reused), with
Hypothesis seeded by --seed (random when not given, and printed, so a failure can be run
again with the same seed), and prints what the examples did: how many, their steps, and each
(operation, answer) pair counted. Exit status is pytest's: 0 when every example held.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/sync/test_convergence.py::test_random_interleavings_lose_nothing_and_converge"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-shrink", action="store_true", help="report the first failing example as found")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    with tempfile.TemporaryDirectory() as tmp:
        tally = Path(tmp) / "tally.json"
        env = {**os.environ, "FIELDSYNC_CONVERGENCE_EXAMPLES": str(args.examples), "FIELDSYNC_CONVERGENCE_RANDOM": "1",
               "FIELDSYNC_CONVERGENCE_TALLY": str(tally),
               "FIELDSYNC_CONVERGENCE_SHRINK": "0" if args.no_shrink else "1"}
        print(f"convergence: {args.examples} random examples, seed {seed}"
              f"{', no shrinking' if args.no_shrink else ''}", flush=True)
        started = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:cacheprovider", "--reuse-db",
                              f"--hypothesis-seed={seed}", "--hypothesis-show-statistics"], cwd=ROOT, env=env,
                             check=False)
        took = time.monotonic() - started
        counted = json.loads(tally.read_text()) if tally.exists() else {}
    print(f"\n{counted.pop('examples', 0)} examples ran ({counted.pop('steps', 0)} steps) in {took:.0f} s; "
          f"{'every one held' if run.returncode == 0 else 'FAILED (see above; rerun with --seed ' + str(seed) + ')'}")
    for key in sorted(counted):
        print(f"  {key:<22} {counted[key]}")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
