"""Training jobs beside the runs: fine-tuning a checkpoint, or training on real or mixed sources.

A job lives under ``ROOT/JOB_ID`` like a run and has the same ``train/`` and ``eval/`` stages
(checkpoints, metrics, curves, an open_clip export and ``summary.json``; then ``report.json`` and
``report.md`` on the job's ``eval.datasets``), plus ``job/job.json`` with its config and
fingerprint. Running a job id again continues it from its latest checkpoint; another config under
the same id is refused. Any run or job with finished training is ``run:ID`` to later jobs: as
weights to start from (``train.init_from``) or, for runs, as a data source.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from .config import JobConfig, job_config_from_dict
from .errors import RunStateError
from .fingerprint import STAGE_VERSIONS, _hash, train_settings
from .run import RunRef, code_version
from .stages.common import StageSummary, finished_summary, input_ref, lineage

JOB_FILE = "job.json"


@dataclass(frozen=True)
class Job:
    ref: RunRef
    config: JobConfig
    fingerprint: str

    @property
    def store(self):
        return self.ref.store()


def job_fingerprint(cfg: JobConfig) -> str:
    return _hash({"kind": "job", "version": STAGE_VERSIONS["train"], "seed": cfg.seed, "train": train_settings(cfg.train),
                  "eval": cfg.eval.model_dump(exclude={"batch_size", "num_gpus"})})


def create_or_open_job(cfg: JobConfig, ref: RunRef) -> Job:
    """Start a job, or continue it when ``job.json`` exists with the same fingerprint."""
    if (existing := existing_job(cfg, ref)) is not None:
        return existing
    job = Job(ref, cfg, job_fingerprint(cfg))
    doc = {"job_id": ref.run_id, "config": cfg.model_dump(mode="json"), "fingerprint": job.fingerprint,
           "code_version": code_version(), "created_at": time.time()}
    job.store.commit("job", JOB_FILE, json.dumps(doc, indent=1, sort_keys=True).encode())
    return job


def existing_job(cfg: JobConfig, ref: RunRef) -> Job | None:
    """The job at ``ref`` if it exists with ``cfg``; refused if ``ref`` holds a run or a job of another config."""
    store = ref.store()
    if store.committed("run").get("run"):
        raise RunStateError(f"{ref.run_id} under {ref.root} is a run, not a training job: choose another job id")
    if JOB_FILE not in store.committed("job").get("job", set()):
        return None
    existing = load_job(ref)
    if existing.fingerprint != job_fingerprint(cfg):
        raise RunStateError(f"job {ref.run_id} under {ref.root} was made with another config or code; start a new job (--job-id NEW)")
    return existing


def load_job(ref: RunRef) -> Job:
    store = ref.store()
    if JOB_FILE not in store.committed("job").get("job", set()):
        raise RunStateError(f"no training job {ref.run_id!r} under {ref.root}")
    doc = json.loads(store.read_bytes("job", JOB_FILE))
    return Job(ref, job_config_from_dict(doc["config"], source=f"{ref.run_id}/job/{JOB_FILE}"), doc["fingerprint"])


def job_spec(job: Job):
    """The job's TrainSpec: every source resolved and checked, the weights to start from found."""
    from .stages.train import build_spec
    from .training.init_weights import resolve_init
    from .training.sources import resolve

    t, ref = job.config.train, job.ref
    resolved = [resolve(s, ref.root, ref.storage_options) for s in t.sources]
    init = resolve_init(t.init_from, ref.root, ref.storage_options, t.model) if t.init_from else None
    return build_spec(ref, t, job.config.seed, job.fingerprint, resolved, init)


def check_job(cfg: JobConfig, ref: RunRef) -> None:
    """Everything that can be checked before a flow starts: the id is free for this config, every
    source is readable in the expected layout, the starting weights exist and fit the model."""
    from .training.fit import preflight

    existing_job(cfg, ref)
    preflight(job_spec(Job(ref, cfg, job_fingerprint(cfg))))


def train_job(job: Job) -> StageSummary:
    """Train the job to its last epoch (continuing from its latest checkpoint), then finalise."""
    from .stages.train import SUMMARY, train_and_finish

    if (finished := finished_summary(job.store, "train", SUMMARY)) is not None:
        return finished
    t = job.config.train
    names = " + ".join(s.name for s in t.sources)
    start = f" from {t.init_from}" if t.init_from else ""
    return train_and_finish(job_spec(job), f"{t.model} on {names}{start} (job {job.ref.run_id})")


def evaluate_job(job: Job) -> StageSummary:
    """The final checkpoint on the job's ``eval.datasets``, as ``eval/report.json`` and ``report.md``
    (a Ray task, on a GPU when ``eval.num_gpus``)."""
    import ray

    from .evaluation.external import evaluation_report
    from .evaluation.report import render_markdown
    from .stages.train import SUMMARY

    store, cfg = job.store, job.config.eval
    if (finished := finished_summary(store, "eval", "report.json")) is not None:
        finished.reports = ["eval/report.md"]
        return finished
    if not cfg.datasets:
        return StageSummary("eval", notes={"skipped": "eval.datasets is empty: nothing to evaluate"})
    started = time.time()
    train_summary = json.loads(store.read_bytes("train", SUMMARY))
    checkpoint = store.uri("train", train_summary["checkpoint"])
    task = ray.remote(num_cpus=1, num_gpus=cfg.num_gpus)(evaluation_report)
    report = ray.get(task.remote(checkpoint, cfg.datasets, train_summary["arch"], cfg.templates, cfg.batch_size))
    base = lineage(job.fingerprint, [input_ref(store, "train", train_summary["checkpoint"])], started, len(report["results"]))
    store.commit("eval", "report.md", render_markdown(report, f"Evaluation of job `{job.ref.run_id}`").encode(), base)
    store.commit("eval", "report.json", json.dumps(report, indent=1).encode(), {**base, "outputs": ["report.md"]})
    summary = StageSummary("eval", total=1, computed=1, reports=["eval/report.md"])
    summary.notes = {f"{r['dataset']}/{r['task']}/{r['metric']}": r["value"] for r in report["results"]}
    return summary
