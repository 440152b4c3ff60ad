"""Cold `polyner tag` calls: each in a fresh process (imports, tokenizer, ONNX session, tagging), min/median/max.

    python benchmarks/cold_start.py                       # 5 runs of the README's sentence with the shipped default
    python benchmarks/cold_start.py --runs 5 --polyner /tmp/core/bin/polyner   # a core-only install's command

Checks that every run finds Angela Merkel (PER) and Paris (LOC). Run it on an idle machine: the figure is
the wall time of a whole process, so anything else running on the cores shows in it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

TEXT = "Angela Merkel besuchte am Montag Paris."
EXPECTED = {("Angela Merkel", "PER"), ("Paris", "LOC")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--polyner", default=shutil.which("polyner") or "polyner", help="the polyner command to time")
    parser.add_argument("--model", default=None, help="--model for polyner tag (default: the shipped default)")
    args = parser.parse_args()
    command = [args.polyner, "tag", TEXT] + (["--model", args.model] if args.model else [])
    times = []
    for run in range(args.runs):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        found = {(e["text"], e["label"]) for e in json.loads(done.stdout)["entities"]}
        if not EXPECTED <= found:
            print(f"run {run + 1}: found {sorted(found)}, not {sorted(EXPECTED)}", file=sys.stderr)
            return 1
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{' '.join(command[:2])} {TEXT!r}: {args.runs} cold runs, min {min(times):.2f} s, median "
          f"{statistics.median(times):.2f} s, max {max(times):.2f} s; peak RSS {peak_mb:.0f} MB; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
