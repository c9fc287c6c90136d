"""``synthclip verify``: its read rate against a plain read-and-hash of the same files, at several
run sizes, locally and on an S3-protocol server (moto on 127.0.0.1).

The run is synthetic: committed webdataset tars of 1 MiB random "images" (so verify reads every
member, as it does a shard's). Baseline: one loop of ``cat_file`` and ``sha256`` over the committed
files, nothing else (``plain_read_and_hash`` here). Reported: MiB/s of both, their ratio (verify
time / baseline time), and a least-squares fit of verify time against MiB read.
Usage: ``python -m benchmarks.bench_verify [--no-s3]``.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import tempfile
import time

import numpy as np

from benchmarks.results_file import record
from benchmarks.s3_server import moto_bucket
from synthclip_core.runs.verify import verify
from synthclip_core.storage.store import RunStore


def plain_read_and_hash(store: RunStore) -> tuple[int, float]:
    """The baseline: every committed file read and hashed in one loop, nothing else. (bytes, seconds)"""
    started, total = time.perf_counter(), 0
    for stage, outputs in store.committed_all().items():
        for output in outputs:
            data = store.fs.cat_file(store.data_path(stage, output))
            hashlib.sha256(data).hexdigest()
            total += len(data)
    return total, time.perf_counter() - started


def shard(members: int, seed: int) -> bytes:
    rng, out = np.random.default_rng(seed), io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for i in range(members):
            data = rng.bytes(1 << 20)
            info = tarfile.TarInfo(f"{seed:05d}-{i:03d}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def measure(store: RunStore, mib: int, per_shard: int = 8) -> dict:
    for index in range(mib // per_shard):
        store.commit("shards", f"{index:05d}.tar", shard(per_shard, index))
    base_bytes, base_s = min((plain_read_and_hash(store) for _ in range(3)), key=lambda r: r[1])
    found = min((verify(store) for _ in range(3)), key=lambda r: r.seconds)
    assert found.ok and found.bytes == base_bytes
    return {"mib": round(found.bytes / (1 << 20), 1), "verify_s": round(found.seconds, 3), "baseline_s": round(base_s, 3),
            "verify_mib_per_s": round(found.mib_per_s, 1), "baseline_mib_per_s": round(base_bytes / (1 << 20) / base_s, 1),
            "ratio": round(found.seconds / base_s, 2), "outputs": found.checked}


def fit(rows: list[dict]) -> dict:
    slope, intercept = np.polyfit([r["mib"] for r in rows], [r["verify_s"] for r in rows], 1)
    return {"s_per_mib": round(float(slope), 5), "fixed_s": round(float(intercept), 3)}


def local(sizes: tuple[int, ...]) -> list[dict]:
    rows = []
    for mib in sizes:
        with tempfile.TemporaryDirectory() as root:
            rows.append(measure(RunStore(root, "bench"), mib))
    return rows


def s3(sizes: tuple[int, ...]) -> list[dict]:
    with moto_bucket():
        return [measure(RunStore("s3://bench/runs", f"r{mib}"), mib) for mib in sizes]


def main(with_s3: bool = True) -> dict:
    results = {"local": {"sizes": local((32, 128, 512))}}
    if with_s3:
        results["s3 (moto on 127.0.0.1)"] = {"sizes": s3((32, 128))}
    for where, r in results.items():
        r["fit"] = fit(r["sizes"])
        for row in r["sizes"]:
            print(f"verify ({where}) {row['mib']:.0f} MiB in {row['outputs']} tars: {row['verify_mib_per_s']:.0f} MiB/s; "
                  f"plain read-and-hash {row['baseline_mib_per_s']:.0f} MiB/s; ratio {row['ratio']}x")
        print(f"verify ({where}) time = {r['fit']['fixed_s']} s + {r['fit']['s_per_mib'] * 1000:.2f} ms/MiB")
    record("verify", results)
    return results


if __name__ == "__main__":
    main("--no-s3" not in sys.argv)
