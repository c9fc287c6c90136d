"""Resume planning: time to learn what is committed, from commit records, at 30k partitions,
on the local filesystem and on an S3-protocol server (moto on 127.0.0.1).

Baselines: a plain ``os.walk`` over the same ``_commits/`` tree locally, a plain paginated
``list_objects_v2`` loop (boto3) on S3: the least any plan must do. Reported: both times and their
ratio. Usage: ``python -m benchmarks.bench_planning [N] [--no-s3]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from benchmarks.results_file import record
from benchmarks.s3_server import moto_bucket
from synthclip_core.storage.store import RunStore


def local(n: int) -> dict:
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
        planned = len(store.committed_all()["images"])
        plan_s = time.perf_counter() - start
    assert planned == baseline == n
    return {"partitions": n, "plan_s": round(plan_s, 3), "baseline_s": round(base_s, 3), "baseline": "os.walk",
            "ratio": round(plan_s / base_s, 2)}


def s3(n: int) -> dict:
    import boto3
    import s3fs

    with moto_bucket():
        fs = s3fs.S3FileSystem()
        store = RunStore("s3://bench/runs", "r")
        prefix = store.path("_commits", "images")
        fs.pipe({f"{prefix}/part-{i:05d}.parquet.json": b"{}" for i in range(n)}, batch_size=64)
        client = boto3.client("s3")
        start = time.perf_counter()
        keys = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix="runs/r/_commits/"):
            keys += len(page.get("Contents", []))
        base_s = time.perf_counter() - start
        start = time.perf_counter()
        planned = len(store.committed_all()["images"])
        plan_s = time.perf_counter() - start
    assert planned == keys == n
    return {"partitions": n, "plan_s": round(plan_s, 3), "baseline_s": round(base_s, 3),
            "baseline": "boto3 list_objects_v2 pages", "ratio": round(plan_s / base_s, 2)}


def main(n: int = 30000, with_s3: bool = True) -> dict:
    results = {"local": local(n)}
    if with_s3:
        results["s3 (moto on 127.0.0.1)"] = s3(n)
    for where, r in results.items():
        print(f"resume planning over {n} committed partitions ({where}): {r['plan_s']:.3f} s; "
              f"{r['baseline']} {r['baseline_s']:.3f} s; ratio {r['ratio']}x")
    record("planning", results)
    return results


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(args[0]) if args else 30000, "--no-s3" not in sys.argv)
