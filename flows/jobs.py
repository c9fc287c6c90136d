"""Training jobs as flows: fine-tune a checkpoint on real data, train on mixed or real sources,
and put models side by side on the same benchmarks (see docs/training.md, "Real data").

A training job is a run with the ``train`` and ``eval`` stages only, so it runs through the same
stage flows as a synthetic run.
"""

from __future__ import annotations

import json
import posixpath

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from synthclip_core.errors import ConfigError
from synthclip_core.evaluation.compare import NO_PROVENANCE, provenance
from synthclip_core.evaluation.config import EvalDataset
from synthclip_core.ids import check_run_id
from synthclip_core.pipeline import JobConfig, load_job_config
from synthclip_core.runs.lifecycle import default_run_id, load_run, open_run
from synthclip_core.stages.train import training_summary
from synthclip_core.storage.store import RunRef
from tasks.failures import fails_cleanly

from .stages import run_stages


def run_job(cfg: JobConfig, job_id: str | None, root: str | None) -> dict:
    """Create (or continue) the job, its sources and weights checked first; train it, evaluate it."""
    job = open_run(cfg, RunRef(root or cfg.root, job_id or default_run_id(cfg)))
    return run_stages(job) | {"job_id": job.ref.run_id}


def finetune_config(config: str, checkpoint: str, limit: int | None = None) -> JobConfig:
    """The preset with ``init_from`` set to the checkpoint (and each source's ``limit``, if given)."""
    data = load_job_config(config).model_dump()
    data["train"]["init_from"] = checkpoint
    if limit is not None:
        data["train"]["sources"] = [{**s, "limit": limit} for s in data["train"]["sources"]]
    return JobConfig.model_validate(data)


@flow(name="train-job", flow_run_name="train {config}")
@fails_cleanly
def train_job_flow(config: str, job_id: str | None = None, root: str | None = None) -> dict:
    """Train on the config's sources: real data only, or synthetic and real mixed by weight."""
    return run_job(load_job_config(config), job_id, root)


@flow(name="finetune", flow_run_name="finetune {checkpoint}")
@fails_cleanly
def finetune(checkpoint: str, config: str = "configs/finetune-cc12m-5ep.yaml", job_id: str | None = None,
             root: str | None = None, limit: int | None = None) -> dict:
    """Fine-tune CHECKPOINT (run:ID, a checkpoint path or URI, or local-dir:PATH) on the config's real
    sources (with ``limit``: on a deterministic subset of that many samples of each), then evaluate."""
    return run_job(finetune_config(config, checkpoint, limit), job_id, root)


def resolve_model(ref: str, root: str) -> tuple[str, dict]:
    """(checkpoint URI, provenance) of a comparison entry: ``run:ID`` is that run's final model."""
    if not ref.startswith("run:"):
        return ref, NO_PROVENANCE
    check_run_id(ref[4:])
    try:
        run = load_run(RunRef(root, ref[4:]))
        summary = training_summary(run)
    except Exception:
        raise ConfigError(f"{ref}: no finished training under {root}") from None
    return run.store.uri("train", summary["checkpoint"]), provenance(summary)


def held_out_run(run_id: str, root: str):
    """A synthetic run whose held-out split a comparison evaluates every model on."""
    check_run_id(run_id)
    try:
        run = load_run(RunRef(root, run_id))
    except Exception:
        raise ConfigError(f"--held-out-of {run_id}: no run under {root}") from None
    if run.kind != "run" or run.completion("images") is None:
        raise ConfigError(f"--held-out-of {run_id}: not a synthetic run with its images rendered")
    return run


def card_headline(run_id: str, root: str) -> dict | None:
    """A run's dataset card figures (None: it has no card yet)."""
    run = load_run(RunRef(root, run_id))
    done = run.completion("card") if "card" in run.names else None
    return dict(done.notes) if done else None


@task(name="evaluate-model", task_run_name="{label}", cache_policy=NONE)
@fails_cleanly
def evaluate_model(label: str, checkpoint: str, datasets: list[dict], templates: str, batch_size: int,
                   device: str | None, held_out_of: tuple[str, ...] = (), root: str | None = None) -> dict:
    from synthclip_core.evaluation.external import evaluation_report
    from synthclip_core.stages.eval import held_out_results

    def held_out(model) -> list:
        return [r for run_id in held_out_of
                for r in held_out_results(model, held_out_run(run_id, root), f"heldout:{run_id}")]

    return evaluation_report(checkpoint, [EvalDataset.model_validate(d) for d in datasets], None, templates, batch_size,
                             device, more=held_out)


@flow(name="compare-models", flow_run_name="compare {models}")
@fails_cleanly
def compare_models(models: dict[str, str], datasets: list[dict], root: str | None = None, out: str = "comparison",
                   templates: str = "simple", batch_size: int = 64, device: str | None = None,
                   held_out_of: list[str] | None = None) -> dict:
    """Evaluate every model (label: run:ID, a checkpoint, or local-dir:PATH) on the same datasets,
    and on the held-out split of each run in ``held_out_of``, and write one side-by-side table
    (``comparison.md`` and ``comparison.json`` under ``out``). Runs compared as ``run:ID`` say what
    in their config differs from the first one's."""
    import fsspec

    from synthclip_core.evaluation.compare import comparison, config_differences, mistakes_picture, render_comparison
    from synthclip_core.evaluation.mistakes import mistakes_png
    from synthclip_core.runs.lifecycle import default_root

    root = root or default_root()
    entries = {label: resolve_model(ref, root) for label, ref in models.items()}
    configs = {label: load_run(RunRef(root, ref[4:])).config for label, ref in models.items() if ref.startswith("run:")}
    if configs:
        first = next(iter(configs.values()))
        for label, cfg in configs.items():
            entries[label][1]["differs"] = config_differences(first, cfg)
    held = tuple(held_out_of or ())
    reports = {label: evaluate_model(label, uri, datasets, templates, batch_size, device, held, root)
               for label, (uri, _) in entries.items()}
    table = comparison(entries, reports, {label: card for label, ref in models.items()
                                          if ref.startswith("run:") and (card := card_headline(ref[4:], root))})
    markdown = render_comparison(table)
    fs, base = fsspec.core.url_to_fs(out)
    fs.makedirs(base, exist_ok=True)
    fs.pipe_file(posixpath.join(base, "comparison.json"), json.dumps(table, indent=1).encode())
    fs.pipe_file(posixpath.join(base, "comparison.md"), markdown.encode())
    for dataset in table["mistakes"]:
        fs.pipe_file(posixpath.join(base, mistakes_picture(dataset)), mistakes_png(table["mistakes"], dataset))
    create_table_artifact(table=[{k: v for k, v in row.items() if k not in ("sha256", "checkpoint")} for row in table["rows"]],
                          description="models side by side")
    create_markdown_artifact(markdown=markdown, description="comparison")
    return table
