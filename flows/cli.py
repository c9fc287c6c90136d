"""The ``synthclip`` command: a thin face over the flows.

    synthclip run configs/offline.yaml [--run-id ID] [--root URI]
    synthclip resume RUN_ID [--root URI]
    synthclip plan CONFIG [--rates-from RUN_ID]         # counts, Ray asks, GPU-hours, bytes: before any work
    synthclip doctor [CONFIG]                           # can this machine run it: GPUs, vLLM, hub, disk, Ray
    synthclip status RUN_ID [--root URI]
    synthclip cost RUN_ID [--prices FILE]               # spent per stage and per 1,000 kept pairs, against the plan
    synthclip budget RUN_ID [--gpu-hours N] [--cpu-hours N] [--stage S]   # show or raise; then resume
    synthclip eval CHECKPOINT --task zeroshot --data PATH [--classes FILE] [--out DIR]
    synthclip train JOB_CONFIG [--job-id ID]            # real or mixed sources
    synthclip finetune CHECKPOINT [--config PRESET] [--limit N]
    synthclip compare LABEL=MODEL ... [--datasets FILE] [--held-out-of RUN ...] [--out DIR]
    synthclip ladder RUN_ID [--fractions F,...] [--job PRESET] [--against NAME=SOURCE]   # how metrics grow with pairs
    synthclip ladder fit POINTS.csv [--predict PAIRS] [--target VALUE]
    synthclip export clip-benchmark RUN_ID --out DIR    # its evaluation sets, for `clip_benchmark eval`
    synthclip deploy [--kubernetes] [--auto-resume N]  # deployments, and the automation that resumes failed builds
    synthclip models build-tiny [NAME ...]              # a run builds the tiny models it names on first use
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # the CLI shows rich progress instead
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# A new Prefect home migrates its SQLite database when the first command starts the local server:
# over a minute on 2 busy cores, against Prefect's default wait of 20 s.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

import typer
from rich.console import Console
from rich.table import Table

from flows.before_run import doctor, plan
from flows.cli_evaluation import compare, eval_checkpoint, export_clip_benchmark
from flows.cli_studies import ladder_app
from flows.console import RootOption, console, fail, handled, progress_bars
from flows.operations import budget, cost

app = typer.Typer(add_completion=False, no_args_is_help=True, help="SynthCLIP: CLIP on fully synthetic data.")
models_app = typer.Typer(no_args_is_help=True, help="Local models.")
app.add_typer(models_app, name="models")
export_app = typer.Typer(no_args_is_help=True, help="A run's data in the layouts other tools read.")
app.add_typer(export_app, name="export")
app.add_typer(ladder_app, name="ladder")


def _print_result(run_id: str, root: str, summaries: dict) -> None:
    from synthclip_core.runs.headline import headline
    from synthclip_core.runs.lifecycle import load_run
    from synthclip_core.storage.store import RunRef

    run = load_run(RunRef(root, run_id))
    store = run.store
    for stage, summary in summaries.items():
        console.print(f"  {stage:>9}: {summary['computed']} computed, {summary['skipped']} already committed", soft_wrap=True)
    console.print(f"[green]run[/] {run_id} is complete under {store.uri()}", soft_wrap=True)
    console.print(f"  checkpoint: {store.uri('train', 'model')} (open_clip local-dir; per epoch: "
                  f"{store.uri('train', 'checkpoints')})", soft_wrap=True)
    console.print(f"  report:     {store.uri('eval', 'report.md')}", soft_wrap=True)
    if "card" in summaries:
        console.print(f"  card:       {store.uri('README.md')} (the dataset card; docs/card.md)", soft_wrap=True)
    console.print(f"  pictures:   {store.uri('images', 'contact_sheet.png')}, {store.uri('balanced', 'histogram.png')}",
                  soft_wrap=True)
    if lines := headline(run):
        console.print("[bold]what it made and proved[/]")
        for what, figures in lines:
            console.print(f"  {what + ':':<20} {figures}", soft_wrap=True, highlight=False)


@app.command()
def run(
    config: str = typer.Argument(..., help="A run config, e.g. configs/offline.yaml."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Run id (default: <config name>-<UTC time>)."),
    root: Optional[str] = RootOption,
    fork: bool = typer.Option(False, "--fork", help="If RUN_ID holds a run of another config, run this one as "
                              "RUN_ID-fork-HASH, reusing the stages whose settings did not change."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Run the whole pipeline for CONFIG (continuing RUN_ID if it exists with the same config)."""
    with handled(debug):
        from synthclip_core.pipeline import load_config
        from synthclip_core.runs.lifecycle import default_run_id, open_run
        from synthclip_core.storage.store import RunRef
        from synthclip_core.tiny_models import named_in

        cfg = load_config(config)
        _build_tiny_models(named_in(cfg))
        ref = RunRef(root or cfg.root, run_id or default_run_id(cfg))
        run = open_run(cfg, ref, fork=fork)  # every check before any flow starts: one line for what the user can fix
        if run.ref.run_id != ref.run_id:
            reused = [s for s in run.names if run.completion(s) is not None]
            console.print(f"run {ref.run_id} has another config: forked as [bold]{run.ref.run_id}[/], "
                          f"reusing {', '.join(reused) or 'no stage'}")
        console.print(f"run [bold]{run.ref.run_id}[/] under {run.ref.root}")
        if run.ignored:
            console.print(f"[yellow]continuing with the settings the run began with; not taken from {config}[/] "
                          f"(they change where or how fast it runs, not what): {'; '.join(run.ignored)}", soft_wrap=True)
        from flows.pipeline import pipeline

        with progress_bars():
            summaries = pipeline(run_id=run.ref.run_id, root=run.ref.root)
        _print_result(run.ref.run_id, run.ref.root, summaries)


@app.command()
def resume(
    run_id: str = typer.Argument(..., help="The run to continue."),
    root: Optional[str] = RootOption,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Recompute what is missing or failed in RUN_ID, stage by stage."""
    with handled(debug):
        from synthclip_core.runs.lifecycle import continue_run, default_root
        from synthclip_core.storage.store import RunRef

        run = continue_run(RunRef(root or default_root(), run_id))  # before any flow starts: one line for what is wrong
        from flows.pipeline import pipeline

        with progress_bars():
            summaries = pipeline(run_id=run_id, root=run.ref.root)
        _print_result(run_id, run.ref.root, summaries)


app.command()(plan)  # before any work: flows/before_run.py
app.command()(doctor)
app.command()(cost)  # what a run has spent, and how far it may go: flows/operations.py
app.command()(budget)


@app.command()
def status(
    run_id: str = typer.Argument(..., help="The run to describe."),
    root: Optional[str] = RootOption,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Per stage: outputs committed / pending / failed, rows, and lineage."""
    with handled(debug):
        from synthclip_core.runs.lifecycle import default_root, load_run
        from synthclip_core.runs.status import run_status
        from synthclip_core.storage.store import RunRef

        run = load_run(RunRef(root or default_root(), run_id))
        table = Table(title=f"run {run_id}")
        for column in ("stage", "committed", "pending", "failed", "rows", "fingerprint", "lineage"):
            table.add_column(column, justify="right" if column in {"committed", "pending", "failed", "rows"} else "left")
        statuses = run_status(run)
        for s in statuses:
            pending = "?" if s.pending is None else str(s.pending)
            table.add_row(s.stage, str(s.committed), pending, str(len(s.failed)), str(s.rows),
                          run.fingerprints.get(s.stage, "")[:8], s.lineage)
        Console(width=max(120, Console().width)).print(table)
        for s in statuses:
            for output, error in s.failed.items():
                console.print(f"[red]failed[/] {s.stage}/{output}: {error}", highlight=False)


@app.command()
def verify(
    run_id: str = typer.Argument(..., help="The run or training job to check."),
    root: Optional[str] = RootOption,
    repair: bool = typer.Option(False, "--repair", help="Move damaged outputs and markers aside (to _damaged/) and retire "
                                "their records, so `synthclip resume` recomputes exactly those; remove temporaries older "
                                "than an hour (safe beside a live resume)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Re-read every committed output of RUN_ID against its record (size, sha256, readable as its
    kind), and every record and marker against its own checksum; list orphaned files and
    temporaries. Exits 1 on damage (0 once --repair set it all aside)."""
    with handled(debug):
        from synthclip_core.errors import RunStateError
        from synthclip_core.runs.lifecycle import default_root
        from synthclip_core.runs.verify import verify as verify_run
        from synthclip_core.storage.store import RunRef

        ref = RunRef(root or default_root(), run_id)
        if not ref.store().committed("run") and not ref.store().committed_all():
            raise RunStateError(f"no run {run_id!r} under {ref.root}: nothing committed to verify")
        with progress_bars():
            found = verify_run(ref.store(), repair=repair)
        console.print(f"{found.checked} outputs, {found.bytes / (1 << 20):,.1f} MiB read in {found.seconds:.1f} s "
                      f"({found.mib_per_s:,.0f} MiB/s): {len(found.damaged)} damaged, {len(found.orphans)} orphaned, "
                      f"{len(found.temporaries)} temporaries", soft_wrap=True, highlight=False)
        for finding in found.damaged:
            console.print(f"[red]damaged[/] {finding.stage}/{finding.output}: {finding.problem}", soft_wrap=True,
                          highlight=False)
        for orphan in found.orphans:
            console.print(f"[yellow]orphaned[/] {orphan} (no record names it: a stopped writer's; the next commit of "
                          f"that output adopts or replaces it)", soft_wrap=True, highlight=False)
        kept = set(found.kept_temporaries)
        for temporary in found.temporaries:
            state = (" (kept: under an hour old, a live writer's)" if temporary in kept else " (removed)") if repair else ""
            console.print(f"[yellow]temporary[/] {temporary}{state}", soft_wrap=True, highlight=False)
        if found.unsealed:
            console.print(f"{found.unsealed} records or markers were written before they carried checksums: their "
                          f"own bytes are not proven", soft_wrap=True, highlight=False)
        if found.repaired:
            console.print(f"set aside {len(found.repaired)} damaged output(s) under {ref.store().uri('_damaged')}; "
                          f"`synthclip resume {run_id} --root {ref.root}` recomputes them", soft_wrap=True, highlight=False)
        for finding in found.unrepairable:
            console.print(f"[red]cannot repair[/] {finding.stage}/{finding.output}: it is the run's identity; restore it "
                          f"from a copy", soft_wrap=True, highlight=False)
        if found.damaged and (not repair or found.unrepairable):
            raise typer.Exit(1)


def _run_job_cli(cfg, job_id: Optional[str], root: Optional[str]) -> None:
    """Open the job (its sources, layout and weights checked: one line for what the user can fix),
    then run its stages and print where its results are."""
    from flows.pipeline import pipeline
    from synthclip_core.runs.lifecycle import default_run_id, open_run
    from synthclip_core.storage.store import RunRef

    job = open_run(cfg, RunRef(root or cfg.root, job_id or default_run_id(cfg)))
    console.print(f"job [bold]{job.ref.run_id}[/] under {job.ref.root}")
    with progress_bars():
        pipeline(run_id=job.ref.run_id, root=job.ref.root)
    store = job.store
    console.print(f"[green]job[/] {job.ref.run_id} is complete: model {store.uri('train', 'model')}", soft_wrap=True)
    if "report.md" in store.committed("eval"):
        console.print(f"  report: {store.uri('eval', 'report.md')}", soft_wrap=True)


@app.command("train")
def train_cmd(
    config: str = typer.Argument(..., help="A training job config with train.sources, e.g. configs/mixed-synthci-cc12m.yaml."),
    job_id: Optional[str] = typer.Option(None, "--job-id", help="Job id (default: <config name>-<UTC time>)."),
    root: Optional[str] = RootOption,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Train on real or mixed sources (a job beside the runs), then evaluate on eval.datasets."""
    with handled(debug):
        from synthclip_core.pipeline import load_job_config

        _run_job_cli(load_job_config(config), job_id, root)


@app.command()
def finetune(
    checkpoint: str = typer.Argument(..., help="Weights to start from: run:RUN_ID, a checkpoint file or URI, or local-dir:DIR."),
    config: str = typer.Option("configs/finetune-cc12m-5ep.yaml", "--config", help="The fine-tuning preset (5 or 10 epochs)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Fine-tune on a deterministic subset of N samples of each source."),
    job_id: Optional[str] = typer.Option(None, "--job-id", help="Job id (default: <config name>-<UTC time>)."),
    root: Optional[str] = RootOption,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Fine-tune CHECKPOINT on the preset's real data, then evaluate on its eval.datasets."""
    with handled(debug):
        from flows.jobs import finetune_config

        _run_job_cli(finetune_config(config, checkpoint, limit), job_id, root)


# evaluation commands (flows/cli_evaluation.py), listed here in the help's order
app.command("eval")(eval_checkpoint)
app.command()(compare)
export_app.command("clip-benchmark")(export_clip_benchmark)


@app.command()
def deploy(
    kubernetes: bool = typer.Option(False, "--kubernetes",
                                    help="Also the deployments on the Kubernetes pool (create it first: infra/k8s/create-work-pool.sh)."),
    auto_resume: int = typer.Option(3, "--auto-resume", min=0,
                                    help="Resume a failed or crashed build automatically, at most this many times in a row "
                                    "(an automation on the server; 0: none)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Register the deployments with the Prefect server (PREFECT_API_URL): deployments/prefect.yaml's
    and one per stage of the pipeline."""
    import subprocess
    import tempfile

    import yaml

    with handled(debug):
        from flows.deploy import deployment_spec

        repo = Path(__file__).resolve().parents[1]
        spec = deployment_spec()
        local_pool = spec["definitions"]["work_pools"]["local"]["name"]
        _ensure_process_pool(local_pool)
        names = [d["name"] for d in spec["deployments"] if kubernetes or d["work_pool"]["name"] == local_pool]
        with tempfile.TemporaryDirectory() as folder:
            expanded = Path(folder) / "prefect.yaml"
            expanded.write_text(yaml.safe_dump(spec, sort_keys=False))
            command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--prefect-file", str(expanded)]
            for name in names:
                command += ["--name", name]
            env = {**os.environ, "SYNTHCLIP_REPO_DIR": str(repo)}
            result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            tail = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()][-3:]
            fail("prefect deploy failed: " + " | ".join(tail), 1)
        console.print(f"registered {len(names)} deployments on work pool {local_pool}"
                      + (" and the Kubernetes pool" if kubernetes else "") + ": " + ", ".join(names), soft_wrap=True)
        from flows.automations import ensure_automation

        automation = ensure_automation(auto_resume)
        console.print(f"automation {automation!r}: " + (f"a failed or crashed build is resumed, at most {auto_resume} times"
                                                       if auto_resume else "removed"), soft_wrap=True)
        console.print(f"start a worker: prefect worker start --pool {local_pool}", soft_wrap=True)


def _ensure_process_pool(name: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            pass


def _build_tiny_models(names: list[str], force: bool = False) -> None:
    """The tiny models named, built where missing (two at a time, a bar each), before a run opens:
    on first use, so a first run builds only what it uses."""
    from synthclip_core.tiny_models import build_many, is_built, models_dir

    missing = [name for name in names if force or not is_built(name)]
    if not missing:
        return
    console.print(f"building {', '.join('tiny/' + n for n in missing)} into {models_dir()} (once; a model "
                  "that trains takes a few minutes on the CPU)", soft_wrap=True, highlight=False)
    with progress_bars():
        build_many(missing, force=force)


@models_app.command("build-tiny")
def build_tiny(
    names: Optional[list[str]] = typer.Argument(None, help="Which (llm, sd, safety, sdxl, sd3, sd-checked, clip); default: all."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if present."),
) -> None:
    """Build the tiny offline models into $SYNTHCLIP_MODELS_DIR (a run builds those it names on first use)."""
    from synthclip_core.tiny_models import TINY_NAMES, tiny_path

    with handled(False):
        unknown = [n for n in names or [] if n.removeprefix("tiny/") not in TINY_NAMES]
        if unknown:
            fail(f"unknown tiny model {', '.join(unknown)} (known: {', '.join(TINY_NAMES)})", 2)
        chosen = [n.removeprefix("tiny/") for n in names] if names else list(TINY_NAMES)
        _build_tiny_models(chosen, force=force)
        for name in chosen:
            console.print(f"tiny/{name}: {tiny_path(name)}", soft_wrap=True, highlight=False)


@models_app.command("world-pairs")
def world_pairs(
    run_id: str = typer.Argument(..., help="An offline run: its training concepts (held-out ones left out)."),
    out: str = typer.Option(..., "--out", help="Where the tars go (any fsspec URI)."),
    per_concept: int = typer.Option(8, "--per-concept", min=1, help="Pairs per concept."),
    root: Optional[str] = RootOption,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Real pairs of the offline world (each concept's own picture, captioned), to set a run against."""
    with handled(debug):
        from synthclip_core.curation.balancing import held_out_concepts
        from synthclip_core.runs.lifecycle import RunRef, default_root, load_run
        from synthclip_core.stages.common import data_parts, read_concepts
        from synthclip_core.tiny_models.world_pairs import write_world_pairs

        run = load_run(RunRef(root or default_root(), run_id))
        table = read_concepts(run.store, data_parts(run.require("concepts").outputs))
        concepts = list(zip(table.column("concept_id").to_pylist(), table.column("concept").to_pylist()))
        b = run.config.balanced
        held = held_out_concepts(run.config.seed, concepts, b.holdout_concepts, b.holdout_composed)
        written = write_world_pairs([name for cid, name in concepts if cid not in held], per_concept, out, run.config.seed)
        console.print(f"{written} pairs of {len(concepts) - len(held)} concepts in {out}", soft_wrap=True)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
