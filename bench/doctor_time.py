"""Wall time of `tunedeck doctor --json` against its 15 s target, and its share spent inside the checks.

Each run is a fresh process (torch import included), as a user or the app's hardware screen runs it.
Run: .venv/bin/python bench/doctor_time.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_S = 15.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    walls, inside = [], []
    with tempfile.TemporaryDirectory() as runs_root:
        for _ in range(args.runs):
            started = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "tunedeck.core.cli.main", "doctor", "--json", "--runs-dir",
                                     runs_root], capture_output=True, text=True, check=False)
            walls.append(time.perf_counter() - started)
            report = json.loads(result.stdout)
            inside.append(report["seconds"])
    wall = statistics.median(walls)
    print(json.dumps({"runs": args.runs, "wall_s": [round(w, 2) for w in walls], "checks_s": inside,
                      "median_wall_s": round(wall, 2), "target_s": TARGET_S,
                      "share_of_target": round(wall / TARGET_S, 2),
                      "matmul_gflops": report["matmul"]["gflops"],
                      "recommended_precision": report["recommended_precision"]}))


if __name__ == "__main__":
    main()
