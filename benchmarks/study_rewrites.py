"""Caption rewrites on the offline world at a fixed image budget: what they buy.

One offline run with ``rewrites.per_caption`` rewrites of every train caption (the tiny LLM learned
the rewrite template at build time), exported once. On its shards, training jobs with the offline
recipe: ``train.texts: original`` (the caption alone) and ``any`` (a text drawn per epoch from the
caption and its rewrites), the same images, epochs and steps, for several seeds; each evaluated on
the run's held-out split. What differs between the two arms is the text a sample trains on, and
nothing else.

Usage: ``python -m benchmarks.study_rewrites [--seeds 0,1,2] [--per-caption 3] [--root DIR]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import yaml

from benchmarks import made_dir

REPO = Path(__file__).resolve().parents[1]
ARMS = ("original", "any")


def build(root: str, per_caption: int):
    """The offline run with rewrites, through its export (its own training is the jobs')."""
    from synthclip_core.pipeline import config_from_dict
    from synthclip_core.runs.lifecycle import open_run
    from synthclip_core.stages.executor import execute
    from synthclip_core.storage.store import RunRef

    data = yaml.safe_load((REPO / "configs" / "offline.yaml").read_text())
    data["rewrites"] = {"per_caption": per_caption}
    run = open_run(config_from_dict(data), RunRef(root, "offline-rewrites"))
    for stage in ("concepts", "captions", "balanced", "images", "rewrites", "shards"):
        summary = execute(run, stage)
        assert summary.ok, summary.failures
    return run, data


def train_and_evaluate(run, data: dict, texts: str, seed: int) -> dict:
    """One job on the run's shards: the offline recipe with ``train.texts`` and ``seed``."""
    from synthclip_core.pipeline import JobConfig
    from synthclip_core.runs.lifecycle import open_run
    from synthclip_core.stages.executor import execute
    from synthclip_core.storage.store import RunRef

    job_id = f"rewrites-{texts}-seed{seed}"
    cfg = JobConfig(name=job_id, seed=seed, root=run.ref.root,
                    train={**data["train"], "texts": texts, "sources": [{"name": "synthetic", "uri": f"run:{run.ref.run_id}"}]},
                    eval={**data["eval"], "held_out_of": f"run:{run.ref.run_id}"})
    job = open_run(cfg, RunRef(run.ref.root, job_id))
    for stage in ("train", "eval"):
        assert execute(job, stage).ok
    return {k: v for k, v in job.require("eval").notes.items() if "heldout" in k.split("/")[0]}  # the run's held-out split


def main(seeds: tuple[int, ...] = (0, 1, 2), per_caption: int = 3, root: str | None = None) -> dict:
    from benchmarks.results_file import record
    from synthclip_core.compute.ray_runtime import ensure_ray

    ensure_ray(num_cpus=2)
    with tempfile.TemporaryDirectory(dir=root) as where:
        run, data = build(where, per_caption)
        notes = run.require("rewrites").notes
        results = {arm: {seed: train_and_evaluate(run, data, arm, seed) for seed in seeds} for arm in ARMS}
    metrics = sorted(next(iter(results["original"].values())))
    summary = {arm: {m: {"mean": statistics.mean(r[m] for r in results[arm].values()),
                         "sd": statistics.stdev(r[m] for r in results[arm].values()) if len(seeds) > 1 else 0.0,
                         "values": [results[arm][s][m] for s in seeds]} for m in metrics} for arm in ARMS}
    out = {"per_caption": per_caption, "seeds": list(seeds), "rewrites": notes, "results": summary}
    for m in metrics:
        a, b = summary["original"][m], summary["any"][m]
        print(f"{m:<48} original {a['mean']:.3f} (sd {a['sd']:.3f})   any {b['mean']:.3f} (sd {b['sd']:.3f})   "
              f"difference {b['mean'] - a['mean']:+.3f}", flush=True)
    print(f"rewrites: {notes['rewrites_kept']} of {notes['rewrites_written']} count; {notes['texts_per_image']} texts per image")
    record("rewrites_study", out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--per-caption", type=int, default=3)
    parser.add_argument("--root", type=made_dir, help="where the runs go (made if missing; default: a temporary directory)")
    args = parser.parse_args()
    main(tuple(int(s) for s in args.seeds.split(",")), args.per_caption, args.root)
