"""The closed loop at the paper's bank size: coverage gained per extra caption, and what each step costs.

A 500,000-concept bank (made-up concepts, as in the scale rehearsal), 2 captions per concept from
``LeakyCaptioner``, a model of an LLM that names its concept with probability 0.55 under the paper's
prompt and 0.8 under the loop's concept-focused one, 0.15 times that for the fifth of concepts that
are hard to name. Balanced at t = 4, then the loop to a target of 2 kept captions, 3 rounds at most,
oversampling 1.5. What the figures rest on: the captioner's naming rates are assumed, not measured
(the offline run's tiny LLM, which names its concept in 99% of captions, is in the closing note of
issue 22 instead); the stages, the counting and the commits are the platform's own.

Usage: ``python -m benchmarks.bench_topup [--concepts N] [--root DIR]``; figures go to the results file.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks import made_dir
from synthclip_core.stages.executor import execute


def config(bank: str) -> dict:
    return {
        "name": "topup-bench", "seed": 0, "root": "runs",
        "concepts": {"source": bank, "per_partition": 1000},
        "captions": {"backend": "benchmarks.rehearsal_backends:LeakyCaptioner", "model": "tiny/llm", "num_gpus": 0,
                     "num_actors": 2, "per_concept": 2, "max_tokens": 24, "batch_size": 1024},
        "balanced": {"threshold": 4, "eval_fraction": 0.001, "num_actors": 2},
        "topup": {"target": 2, "max_rounds": 3, "oversample": 1.5, "per_partition": 20000},
        "images": {"model": "tiny/sd", "num_gpus": 0},
        "train": {"model": "SynthCLIP-Tiny", "epochs": 1, "global_batch_size": 8},
    }


def main(concepts: int = 500_000, root: str | None = None) -> dict:
    from benchmarks.bench_scale import synthetic_bank
    from benchmarks.results_file import record
    from synthclip_core.compute.ray_runtime import ensure_ray
    from synthclip_core.pipeline import config_from_dict
    from synthclip_core.runs.lifecycle import RunRef, open_run

    root = root or tempfile.mkdtemp(prefix="bench-topup-")
    bank = os.path.join(root, f"bank-{concepts}.txt")
    Path(bank).write_text("\n".join(synthetic_bank(concepts)) + "\n")
    ensure_ray(num_cpus=2)
    run = open_run(config_from_dict(config(bank)), RunRef(root, "topup"))
    seconds = {}
    for name in ("concepts", "captions", "balanced", "topup"):
        started = time.perf_counter()
        summary = execute(run, name)
        seconds[name] = round(time.perf_counter() - started, 1)
    notes = summary.notes
    first = 2 * concepts
    out = {"concepts": concepts, "captions_before": first, "seconds": seconds, "before": notes["before"],
           "after": notes["after"], "stop": notes["stop"], "asked": notes["asked"], "kept": notes["kept"],
           "rounds": [{k: r[k] for k in ("round", "asked", "kept", "after", "under_target_after")} for r in notes["rounds"]],
           "concepts_reaching_target_per_1000_captions": notes["concepts_reaching_target_per_1000_captions"],
           "extra_captions_share": round(notes["asked"] / first, 4)}
    record("closed_loop", out)
    for line in (f"{concepts:,} concepts, {first:,} first captions; balancing left {notes['before']['at_least_1']:,} with >= 1 "
                 f"and {notes['before']['at_least_target']:,} with >= 2 kept",
                 *[f"round {r['round']}: {r['asked']:,} asked, {r['kept']:,} kept -> >= 1: {r['after']['at_least_1']:,}, "
                   f">= 2: {r['after']['at_least_target']:,}" for r in notes["rounds"]],
                 f"stopped: {notes['stop']}; {notes['concepts_reaching_target_per_1000_captions']} concepts reached "
                 f"the target per 1,000 new captions ({out['extra_captions_share']:.1%} more captions); seconds {seconds}"):
        print(line)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concepts", type=int, default=500_000)
    parser.add_argument("--root", type=made_dir, help="where the runs go (made if missing; default: a temporary directory)")
    args = parser.parse_args()
    main(args.concepts, args.root)
