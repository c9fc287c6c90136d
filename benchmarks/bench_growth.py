"""How a model stage's wall time grows with its partitions and its actors, to extrapolate.

For the captions and images stages: one prepared run of 16 small partitions (about 0.5 s of
compute each on the tiny CPU models); the stage's flow computes 2, 4, 8 and 16 of them (the rest
stay committed), with one actor and with two. The busy span (first partition's start to last
commit, from the commit records) against the partitions gives the time per partition (slope);
how straight it is (R^2) says whether extrapolating to the thousands of partitions of a 30M-sample
run is fair. The rest of each flow's wall time is its fixed cost (start, actors, model load,
whole-run outputs), reported as the median over the points: it does not grow with partitions, and
it jitters by a second or more from one flow run to the next (Ray worker start), which is why the
fit uses the busy span. The figures go to the results file and the plot to
``docs/performance-growth.png``.

Usage: ``python -m benchmarks.bench_growth [--stages captions,images]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.bench_overhead import REPO, busy_span, forget, platform_seconds, prepare
from benchmarks.results_file import record

COUNTS = (2, 4, 8, 16)
KNOBS = {"captions": {"concepts.per_partition": 40}, "images": {"images.captions_per_partition": 40}}
PLOT = REPO / "docs" / "performance-growth.png"


def line_fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Slope, intercept and R^2 of the least-squares line."""
    import numpy as np

    slope, intercept = np.polyfit(xs, ys, 1)
    predicted = slope * np.asarray(xs) + intercept
    residual = float(((np.asarray(ys) - predicted) ** 2).sum())
    total = float(((np.asarray(ys) - np.mean(ys)) ** 2).sum()) or 1.0
    return float(slope), float(intercept), 1 - residual / total


def measure(root: str, stage: str, actors: int) -> dict:
    knobs = {**KNOBS[stage], "captions.num_actors": actors, "images.num_actors": actors}
    run = prepare(root, stage, max(COUNTS), knobs, f"-growth-{actors}")
    total = len(forget(run, stage))
    platform_seconds(run, stage)  # warm-up
    spans, walls = {}, {}
    for count in COUNTS:
        forget(run, stage, keep_parts=total - count)
        started = time.time()
        walls[count] = platform_seconds(run, stage)
        spans[count] = busy_span(run, stage, since=started)
    slope, intercept, r2 = line_fit(list(spans), list(spans.values()))
    return {"busy_s_by_partitions": {str(k): round(v, 2) for k, v in spans.items()},
            "wall_s_by_partitions": {str(k): round(v, 2) for k, v in walls.items()},
            "per_partition_s": round(slope, 3), "intercept_s": round(intercept, 2), "r2": round(r2, 4),
            "fixed_s": round(statistics.median(walls[k] - spans[k] for k in COUNTS), 2)}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for key, r in results.items():
        xs = [int(k) for k in r["busy_s_by_partitions"]]
        line, = ax.plot(xs, list(r["busy_s_by_partitions"].values()), "o",
                        label=f"{key}: {r['per_partition_s']} s x N (R^2 {r['r2']}), + {r['fixed_s']} s fixed")
        ax.plot([0, max(xs)], [r["intercept_s"], r["intercept_s"] + r["per_partition_s"] * max(xs)], "-",
                color=line.get_color(), alpha=0.5)
        ax.plot(xs, list(r["wall_s_by_partitions"].values()), "x", color=line.get_color(), alpha=0.6)
    ax.set_xlabel("partitions computed by the stage flow")
    ax.set_ylabel("seconds: busy span (o, fitted), flow wall time (x)")
    ax.set_title("Stage time against partitions (tiny models, 2-core CPU)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(stages: tuple[str, ...] = ("captions", "images")) -> dict:
    from synthclip_core.compute.ray_runtime import ensure_ray

    ensure_ray(num_cpus=2)
    results = {}
    with tempfile.TemporaryDirectory() as root:
        for stage in stages:
            for actors in (1, 2):
                r = results[f"{stage}/{actors} actor{'s' if actors > 1 else ''}"] = measure(root, stage, actors)
                print(f"{stage:<8} {actors} actor(s): {r['per_partition_s']} s/partition (R^2 {r['r2']}), fixed {r['fixed_s']} s; "
                      f"busy {r['busy_s_by_partitions']}, wall {r['wall_s_by_partitions']}", flush=True)
    path = record("growth", results, merge=True)
    merged = json.loads(path.read_text())["sections"]["growth"]
    plot({k: v for k, v in merged.items() if isinstance(v, dict)}, PLOT)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--stages", default="captions,images")
    main(tuple(parser.parse_args().stages.split(",")))
