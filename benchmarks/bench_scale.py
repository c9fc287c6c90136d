"""Scale rehearsal: the real stages at the SynthCI-30M preset's partition counts, with small rows.

At full size: 500,000 concepts in 500 partitions, 1,000,000 captions (2 per concept) in 500
caption partitions, balancing against the whole bank, 50,000 render partitions of 20 captions,
about 2,080 shards of 480 samples, training to its first step (and a short epoch), eval over the
held-out rows and zero-shot over the 500,000 concepts, status, resume planning and verify. The
models are the fast deterministic plug-ins of ``rehearsal_backends.py`` (8x8 JPEGs), so what is
measured is the platform's own work. The same at 1/8, 1/4 and 1/2 of every count.

Each step runs in a process of its own; for that process and the Ray workers it uses (not Ray's
own daemons) the rehearsal samples peak RSS (``VmHWM``) and bytes read (``rchar``: every read
system call, so it includes imports and Ray's messages; a constant of tens of MB), and times the
step inside the process (after imports and Ray start). The largest commit record of each stage
comes from one listing. Per step, a least-squares fit of log(value) on log(size) gives the growth
exponent, and the extrapolation to the preset multiplies the full-size figure by
(preset partitions / rehearsal partitions) ** exponent: it rests on the fitted power law holding
up to 1.2x the largest size measured, and on rows of this size (real JPEGs make reads, hashing
and export byte-bound: their rate is in bench_verify and bench_training).

Usage: ``python -m benchmarks.bench_scale [--fractions 0.125,0.25,0.5,1] [--steps card,...] [--root DIR]``;
figures go to the results file, the plot (of a whole rehearsal) to ``docs/performance-scale.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import made_dir
from synthclip_core.stages.executor import execute

REPO = Path(__file__).resolve().parents[1]
PLOT = REPO / "docs" / "performance-scale.png"
FULL_CONCEPTS = 500_000
CONCEPTS_PER_PARTITION = 1_000  # 500 caption partitions at full size
CAPTIONS_PER_RENDER_PARTITION = 20  # 50,000 render partitions at full size
SAMPLES_PER_SHARD = 480  # about 2,080 shards at full size
PRESET = {"caption_partitions": 500, "render_partitions": 58_600, "shards": 3_000}  # SynthCI-30M (issue 19)
BUILD = ("concepts", "captions", "balanced", "images")
SUB_SECOND_REPEATS = 5  # status and resume planning: the median of this many, the first (cold) among them
WHOLE_RUN = ("balanced", "shards", "shards_1_worker", "train_start", "eval", "card", "status", "resume_planning", "verify")
TARGETS = {"time_exponent": 1.1, "memory_exponent": 0.2, "largest_record_bytes": 64 * 1024, "status_s": 5.0,
           "export_2_vs_1_workers": 1.6}


def run_config(bank: str, concepts: int) -> dict:
    return {
        "name": "scale-rehearsal", "seed": 0, "root": "runs",
        "concepts": {"source": bank, "per_partition": CONCEPTS_PER_PARTITION},
        "captions": {"backend": "benchmarks.rehearsal_backends:EchoCaptioner", "model": "tiny/llm", "num_gpus": 0,
                     "num_actors": 2, "per_concept": 2, "max_tokens": 24, "batch_size": 256},
        "balanced": {"threshold": 1_000_000, "eval_fraction": 0.001, "num_actors": 2},
        "images": {"backend": "benchmarks.rehearsal_backends:PixelRenderer", "model": "tiny/sd", "num_gpus": 0,
                   "num_actors": 2, "steps": 1, "height": 64, "width": 64, "stored_size": 8, "batch_size": 20,
                   "captions_per_partition": CAPTIONS_PER_RENDER_PARTITION},
        "shards": {"samples_per_shard": SAMPLES_PER_SHARD, "num_tasks": 2},
        "train": {"model": "SynthCLIP-Tiny", "epochs": 1, "global_batch_size": 8, "samples_per_epoch": 64,
                  "warmup_epochs": 0, "loader_workers": 0, "log_every_steps": 1},
        "eval": {"templates": "simple", "batch_size": 256},
    }


def synthetic_bank(n: int) -> list[str]:
    """``n`` distinct made-up concepts of one to three syllable words (none an English word)."""
    from benchmarks.bench_balancing import synthetic_bank as bank

    return bank(n, random.Random(0))


# -- one step, in a process of its own -----------------------------------------------------------
def _step(name: str, root: str, run_id: str) -> dict:
    """Do one step on the rehearsal run and return what it measured of itself."""
    from synthclip_core.compute.ray_runtime import ensure_ray
    from synthclip_core.runs.lifecycle import RunRef, load_run

    run = load_run(RunRef(root, run_id))
    if name in ("status", "resume_planning", "verify"):
        times = []
        for _ in range(1 if name == "verify" else SUB_SECOND_REPEATS):  # a few tens of ms: one sample is noise
            started = time.perf_counter()
            detail = _read_only_step(name, run)
            times.append(time.perf_counter() - started)
        return {"seconds": statistics.median(times), "runs_s": [round(t, 4) for t in times], **detail}
    ensure_ray(num_cpus=2)
    stage = {"shards_1_worker": "shards", "train_start": "train"}.get(name, name)
    if name == "shards_1_worker":
        run = _with(run, shards={"num_tasks": 1})
    first_step: list[float] = []
    started = time.perf_counter()
    if name == "train_start":
        threading.Thread(target=_watch_first_step, args=(run, started, first_step), daemon=True).start()
    execute(run, stage)
    out = {"seconds": time.perf_counter() - started}
    if name == "train_start":
        out = {"seconds": first_step[0] if first_step else out["seconds"], "whole_training_s": out["seconds"]}
    return out


def _watch_first_step(run, started: float, first_step: list[float]) -> None:
    while not (run.store.live("train") or {}).get("step"):
        time.sleep(0.05)
    first_step.append(time.perf_counter() - started)


def _with(run, **sections):
    """The run with operational settings changed (they are not fingerprinted)."""
    from synthclip_core.runs.lifecycle import Run

    cfg = run.config.model_copy(update={k: getattr(run.config, k).model_copy(update=v) for k, v in sections.items()})
    return Run(run.ref, cfg, run.fingerprints, run.stages, run.kind, run.layout)


def _read_only_step(name: str, run) -> dict:
    if name == "status":
        from synthclip_core.runs.status import run_status

        return {"stages": len(run_status(run))}
    if name == "resume_planning":
        from synthclip_core.runs.lifecycle import load_run

        checked = load_run(run.ref, verify=True)  # what resume does first: fingerprints, pins
        planned = pending = 0  # then, per stage, its plan against its commits (as if none were complete)
        for stage in checked.stages:
            checked.completion(stage.name)
            if stage.plan is not None:
                plan = stage.plan(checked)
                planned, pending = planned + len(plan), pending + len(set(plan) - checked.store.committed(stage.name))
        return {"planned": planned, "pending": pending}
    from synthclip_core.runs.verify import verify

    result = verify(run.store)
    return {"checked": result.checked, "bytes_verified": result.bytes}


# -- measuring a step's processes ---------------------------------------------------------------
def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += _children(current)
    return out


def _sample(pid: int) -> tuple[str, int, int] | None:
    """(name, peak RSS in bytes, bytes read) of a process: the step's own or a Ray worker's."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        status = Path(f"/proc/{pid}/status").read_text()
        io = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return None
    peak = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    read = next((int(line.split()[1]) for line in io.splitlines() if line.startswith("rchar:")), 0)
    return cmd, peak, read


def measure_step(name: str, root: str, run_id: str) -> dict:
    """Run one step in a new process and watch it and its Ray workers until it ends."""
    command = [sys.executable, "-m", "benchmarks.bench_scale", "--step", name, "--root", root, "--run-id", run_id]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "RAY_DEDUP_LOGS": "0"})
    peaks: dict[int, int] = {}
    reads: dict[int, int] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for pid in _tree(proc.pid):
                sample = _sample(pid)
                if sample is None:
                    continue
                cmd, peak, read = sample
                if pid == proc.pid or cmd.startswith("ray::"):  # the step and its workers, not Ray's daemons
                    peaks[pid], reads[pid] = max(peaks.get(pid, 0), peak), max(reads.get(pid, 0), read)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    done.set()
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"step {name} failed:\n{err[-3000:]}")
    inner = json.loads(out.strip().splitlines()[-1])
    return {**inner, "peak_rss_mb": round(max(peaks.values(), default=0) / 2**20, 1),
            "bytes_read_mb": round(sum(reads.values()) / 2**20, 1)}


def largest_records(root: str, run_id: str) -> dict[str, int]:
    """Per stage, the size of its largest commit record (one listing)."""
    import fsspec

    fs = fsspec.filesystem("file")
    sizes: dict[str, int] = {}
    for path, info in fs.find(os.path.join(root, run_id, "_commits"), detail=True).items():
        stage = path.split("/_commits/", 1)[1].split("/", 1)[0]
        sizes[stage] = max(sizes.get(stage, 0), info["size"])
    return sizes


# -- one size -----------------------------------------------------------------------------------
def rehearse(fraction: float, root: str, steps: tuple[str, ...] = WHOLE_RUN) -> dict:
    from synthclip_core.pipeline import config_from_dict
    from synthclip_core.runs.lifecycle import open_run
    from synthclip_core.storage.store import RunRef

    concepts = int(FULL_CONCEPTS * fraction)
    bank = os.path.join(root, f"bank-{concepts}.txt")
    Path(bank).write_text("\n".join(synthetic_bank(concepts)) + "\n")
    run_id = f"scale-{concepts}"
    run = open_run(config_from_dict(run_config(bank, concepts)), RunRef(root, run_id))
    measured: dict[str, dict] = {}
    for name in (*BUILD, *(("shards_1_worker",) if "shards_1_worker" in steps else ())):
        measured[name] = measure_step(name, root, run_id)
        print(f"  {fraction:g}: {name} {measured[name]}", flush=True)
    if "shards_1_worker" in measured:  # export again on 2 workers, from nothing
        for output in sorted(run.store.committed("shards")):
            run.store.retire("shards", output)
        run.store.fs.rm(run.store.path("_complete", "shards.json"))
    # what a later step needs is made even when it is not asked for (a card needs the checkpoint)
    for name in ("shards", "train_start", "eval", "card", "status", "resume_planning", "verify"):
        if name not in steps and name not in ("shards", "train_start", "eval"):
            continue
        measured[name] = measure_step(name, root, run_id)
        print(f"  {fraction:g}: {name} {measured[name]}", flush=True)
    store = run.store
    sizes = json.loads(store.read_bytes("shards", "sizes.json"))
    counts = {"concepts": concepts, "caption_partitions": len([o for o in store.committed("captions") if o.startswith("part-")]),
              "render_partitions": len([o for o in store.committed("images") if o.startswith("part-")]),
              "shards": len(sizes), "samples": sum(sizes.values()),
              "captions": sum(r["rows"] for o, r in store.records("captions").items() if o.startswith("part-"))}
    return {"fraction": fraction, "counts": counts, "steps": measured, "largest_record_bytes": largest_records(root, run_id)}


def fit(xs: list[float], ys: list[float]) -> float:
    """The exponent b of y = a * x^b, least squares in log-log."""
    import numpy as np

    xs, ys = np.log(np.asarray(xs, float)), np.log(np.maximum(np.asarray(ys, float), 1e-6))
    return float(np.polyfit(xs, ys, 1)[0])


def summarise(sizes: list[dict]) -> dict:
    """Exponents and preset figures of every step measured at each size."""
    xs = [s["counts"]["render_partitions"] for s in sizes]
    full = sizes[-1]
    scale = PRESET["render_partitions"] / full["counts"]["render_partitions"]
    table = {}
    for step in (*BUILD, *WHOLE_RUN):
        if not all(step in s["steps"] for s in sizes):
            continue
        times = [s["steps"][step]["seconds"] for s in sizes]
        peaks = [s["steps"][step]["peak_rss_mb"] for s in sizes]
        reads = [s["steps"][step]["bytes_read_mb"] for s in sizes]
        b_time, b_mem = fit(xs, times), fit(xs, peaks)
        table[step] = {"seconds": [round(t, 2) for t in times], "peak_rss_mb": peaks, "bytes_read_mb": reads,
                       "time_exponent": round(b_time, 3), "memory_exponent": round(b_mem, 3),
                       "preset_seconds": round(times[-1] * scale ** b_time, 1),
                       "preset_peak_rss_mb": round(peaks[-1] * scale ** b_mem, 1)}
    records = {stage: [s["largest_record_bytes"].get(stage, 0) for s in sizes] for stage in full["largest_record_bytes"]}
    one_worker = full["steps"].get("shards_1_worker")
    export = one_worker["seconds"] / full["steps"]["shards"]["seconds"] if one_worker else None
    return {"partitions": xs, "counts": [s["counts"] for s in sizes], "steps": table,
            "largest_record_bytes": records, "export_2_vs_1_workers": export and round(export, 2),
            "status_s_full": full["steps"].get("status", {}).get("seconds"), "preset_scale": round(scale, 3),
            "targets": TARGETS}


def plot(summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = summary["partitions"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for step in WHOLE_RUN:
        row = summary["steps"][step]
        left.plot(xs, row["seconds"], marker="o", label=f"{step} (b={row['time_exponent']:.2f})")
        right.plot(xs, row["peak_rss_mb"], marker="o", label=f"{step} (b={row['memory_exponent']:.2f})")
    guide = [xs[0], xs[-1]]
    for axis, title, unit in ((left, "wall time", "seconds"), (right, "peak RSS of the process doing it", "MB")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("render partitions (1/8 .. all of 50,000)")
        axis.set_ylabel(unit)
        axis.set_title(f"Whole-run steps: {title}")
        axis.legend(fontsize=7)
    top = max(max(summary["steps"][s]["seconds"]) for s in WHOLE_RUN)
    left.plot(guide, [top / 8, top], color="grey", linestyle=":", label="linear")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def main(fractions: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0), root: str | None = None,
         steps: tuple[str, ...] = WHOLE_RUN) -> dict:
    """Rehearse at each fraction; ``steps`` narrows the whole-run steps measured (the build is always
    measured, and what a later step needs is made): a new step's exponents without the hour of all."""
    from benchmarks.results_file import record

    sizes = []
    for fraction in fractions:
        where = tempfile.mkdtemp(prefix=f"scale-{fraction:g}-", dir=root)
        try:
            sizes.append(rehearse(fraction, where, steps))
        finally:
            shutil.rmtree(where, ignore_errors=True)
    summary = summarise(sizes) if len(sizes) > 1 else {"sizes": sizes}
    whole = set(steps) == set(WHOLE_RUN)
    if len(sizes) > 1:
        if whole:
            plot(summary)
        for step, row in summary["steps"].items():
            print(f"{step:>16}: time b={row['time_exponent']:.2f}, memory b={row['memory_exponent']:.2f}, "
                  f"full {row['seconds'][-1]:.1f} s / {row['peak_rss_mb'][-1]:.0f} MB, preset ~{row['preset_seconds']:.0f} s")
        print(f"largest commit record: {max(v[-1] for v in summary['largest_record_bytes'].values()):,} B; "
              f"status {summary['status_s_full']} s; export 2 vs 1 workers {summary['export_2_vs_1_workers']}x")
    record("scale_rehearsal" if whole else "scale_rehearsal_" + "_".join(steps), summary)
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step")
    parser.add_argument("--root", type=made_dir, help="where the runs go (made if missing; default: a temporary directory)")
    parser.add_argument("--run-id")
    parser.add_argument("--fractions", default="0.125,0.25,0.5,1")
    parser.add_argument("--steps", default=",".join(WHOLE_RUN), help="the whole-run steps to measure")
    args = parser.parse_args()
    if args.step:
        print(json.dumps(_step(args.step, args.root, args.run_id)))
    else:
        main(tuple(float(f) for f in args.fractions.split(",")), args.root, tuple(args.steps.split(",")))
    sys.exit(0)
