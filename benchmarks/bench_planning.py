"""Resume planning: time to learn what is committed, from commit records, at 30k partitions.

Baseline: a plain ``os.walk`` over the same ``_commits/`` tree (the least any plan must do).
Reported: both times and their ratio. Usage: ``python -m benchmarks.bench_planning [N]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from synthclip_core.store import RunStore


def main(n: int = 30000) -> dict:
    with tempfile.TemporaryDirectory() as root:
        store = RunStore(root, "bench")
        commits = store.path("_commits", "images")
        os.makedirs(commits)
        for i in range(n):  # records only: planning never reads the data files
            with open(os.path.join(commits, f"part-{i:05d}.parquet.json"), "w") as handle:
                handle.write("{}")
        start = time.perf_counter()
        baseline = sum(len(files) for _, _, files in os.walk(store.path("_commits")))
        base_s = time.perf_counter() - start
        start = time.perf_counter()
        planned = len(store.committed()["images"])
        plan_s = time.perf_counter() - start
    assert planned == baseline == n
    result = {"partitions": n, "plan_s": round(plan_s, 3), "os_walk_s": round(base_s, 3),
              "ratio_vs_os_walk": round(plan_s / base_s, 2)}
    print(f"resume planning over {n} committed partitions (local): {plan_s:.3f} s; "
          f"os.walk baseline {base_s:.3f} s; ratio {result['ratio_vs_os_walk']}x")
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30000)
