"""The stage layer: one definition per stage that everything reads, imports that point one way,
fingerprints exactly as before, the entry path checking once, and runs made before stages marked
their completion (store layout 1) still loading, showing their status and continuing."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from synthclip_core.pipeline import PIPELINE, STAGES, RunConfig, fingerprints, load_config
from synthclip_core.storage.store import RunRef

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("synthclip_core", "tasks", "flows")
LAYOUT_1 = Path(__file__).parent / "fixtures" / "layout-1"


# -- imports -------------------------------------------------------------------------------------

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """Modules of the project that ``path`` imports when it runs (anywhere in it, functions too),
    leaving out imports for type checkers only (``if TYPE_CHECKING:``). ``from P import m`` of a
    submodule ``m`` of ``modules`` depends on ``P.m``, not on what ``P/__init__.py`` defines (Python
    runs a package's ``__init__`` before any submodule of it, so that is no cycle); a name of
    ``P`` itself does depend on ``P``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for child in node.body for n in ast.walk(child)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            named = {f"{base}.{alias.name}" for alias in node.names}
            found |= named if named <= modules else named | {base}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    return {module: {m for m in _runtime_imports(path, module, set(files)) if m in files and m != module}
            for module, path in files.items()}


def test_no_import_cycle_inside_the_package():
    graph = import_graph()
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"
    assert len(graph) > 50  # the walk saw the package


def test_stages_import_no_other_stage_and_libraries_import_no_stage():
    graph = import_graph()
    stage_modules = {f"synthclip_core.stages.{name}" for name in STAGES}
    for module in stage_modules:
        assert not (graph[module] & stage_modules), f"{module} imports {graph[module] & stage_modules}"
    above = {m for m in graph if m.startswith("synthclip_core.stages")} | {"synthclip_core.runs.lifecycle", "synthclip_core.pipeline"}
    for module, imported in graph.items():
        if module.startswith(("synthclip_core.training", "synthclip_core.evaluation")):
            assert not (imported & above), f"the library module {module} imports {imported & above}"
    assert "synthclip_core.stages.registry" not in graph  # the pool takes the work class itself


# -- one definition per stage ----------------------------------------------------------------------

def test_every_stage_has_one_name():
    """Module, config section, flow and deployment are named as the stage is (the store folder:
    test_pipeline_offline)."""
    import importlib

    from flows.deploy import deployment_spec
    from flows.stages import STAGE_FLOWS

    deployments = {d["name"]: d for d in deployment_spec()["deployments"]}
    assert [s.name for s in PIPELINE] == ["concepts", "captions", "balanced", "topup", "images", "rewrites", "shards", "train", "eval",
                                          "card"]
    for stage in PIPELINE:
        assert importlib.import_module(f"synthclip_core.stages.{stage.name}").STAGE is stage
        assert RunConfig.model_fields[stage.name].annotation is stage.section
        assert STAGE_FLOWS[stage.name].name == stage.name
        assert deployments[stage.name]["entrypoint"] == f"flows/stages.py:{stage.name}_flow"
        assert set(stage.upstream) <= set(STAGES) and stage.description


# Computed by the code before the stage layer was redesigned (commit 7b789dc), and the card's since
# it came (the images' perceptual hash is derived data: it changed no fingerprint); hub models only,
# so they do not depend on the tiny models built on this machine.
PAPER_SCALE = {"concepts": "81c337da631c70eb", "captions": "7241ca2da184843c", "balanced": "7961fbed31aa898b",
               "images": "20fb88d1c479efca", "shards": "0b9128669fbcb7ca", "train": "6ea69aee6e1b5cdf",
               "eval": "e739b7fe8ee6a5d2", "card": "409f36d40ab21b5a"}  # eval version 3, card 1
LAYOUT_1_JOBS = {"finetune-cc12m-5ep": "efdd41ed07957ba8", "finetune-cc12m-10ep": "85d6bc515cb69e8b",
                 "mixed-synthci-cc12m": "4ce013d08ae6bde9"}


def test_fingerprints_are_those_of_the_code_before():
    from synthclip_core import legacy
    from synthclip_core.pipeline import load_job_config

    assert fingerprints(load_config(REPO / "configs" / "synthci-30m.yaml")) == PAPER_SCALE
    for name, fingerprint in LAYOUT_1_JOBS.items():
        assert legacy.job_fingerprint(load_job_config(REPO / "configs" / f"{name}.yaml"), STAGES["train"].version) == fingerprint


def test_operational_fields_are_marked_on_the_models_and_leave_fingerprints_alone():
    cfg = load_config(REPO / "configs" / "synthci-30m.yaml")

    def changed(section: str, **update) -> set[str]:
        other = cfg.model_copy(update={section: getattr(cfg, section).model_copy(update=update)})
        before, after = fingerprints(cfg), fingerprints(other)
        return {s for s in before if before[s] != after[s]}

    assert changed("captions", num_actors=64, batch_size=7, python="/opt/vllm/bin/python") == set()
    assert changed("images", num_gpus=0.5, captions_per_partition=64, compile=True) == set()
    assert changed("train", num_workers=8, max_failures=5) == set()
    assert changed("eval", batch_size=3) == set()
    assert changed("card", num_actors=4, num_gpus=1) == set()
    from synthclip_core.config import Budget, Limits

    budgeted = cfg.model_copy(update={"budget": Budget(gpu_hours=7500, stages={"images": Limits(gpu_hours=4000)})})
    assert fingerprints(budgeted) == fingerprints(cfg)  # a budget is raised on a run that goes on as it was
    assert changed("captions", temperature=0.5) == {"captions", "balanced", "images", "shards", "train", "eval", "card"}
    assert changed("images", steps=25) == {"images", "shards", "train", "eval", "card"}


def test_old_section_names_still_load(tmp_path):
    from synthclip_core.errors import ConfigError

    text = (REPO / "configs" / "micro.yaml").read_text()
    old = tmp_path / "old.yaml"
    old.write_text(text.replace("balanced:", "balance:").replace("images:", "render:").replace("shards:", "export:"))
    assert load_config(old) == load_config(REPO / "configs" / "micro.yaml")
    both = tmp_path / "both.yaml"
    both.write_text(text + "render:\n  model: tiny/sd\n")
    with pytest.raises(ConfigError, match="'render' and 'images' are the same section"):
        load_config(both)


# -- the entry path checks once ------------------------------------------------------------------

def _count_calls(monkeypatch, module, name: str) -> list:
    """Count the calls of a real function (it still runs)."""
    calls, real = [], getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_a_command_checks_the_run_once(offline_run, monkeypatch):
    """Config read, pre-flight, the same-config check and the fingerprints: once per command, in
    the CLI and in the deployment's flow alike (the run is complete, so no stage recomputes)."""
    from typer.testing import CliRunner

    import synthclip_core.pipeline as pipeline_module
    import synthclip_core.runs.lifecycle as run_module
    from flows.cli import app
    from flows.pipeline import build_dataset

    run, _ = offline_run
    read_yaml, preflight, create_or_open, computed = (
        _count_calls(monkeypatch, module, name) for module, name in (
            (pipeline_module, "read_yaml"), (run_module, "preflight"), (run_module, "create_or_open"),
            (run_module, "fingerprints")))
    root = ["--root", run.ref.root]
    result = CliRunner().invoke(app, ["run", str(REPO / "configs" / "offline.yaml"), "--run-id", run.ref.run_id, *root])
    assert result.exit_code == 0, result.output
    assert (len(read_yaml), len(preflight), len(create_or_open), len(computed)) == (1, 1, 1, 1)
    result = CliRunner().invoke(app, ["resume", run.ref.run_id, *root])
    assert result.exit_code == 0, result.output
    assert (len(read_yaml), len(preflight), len(create_or_open), len(computed)) == (1, 1, 1, 2)  # resume verifies once
    build_dataset(config=str(REPO / "configs" / "offline.yaml"), run_id=run.ref.run_id, root=run.ref.root)
    assert (len(read_yaml), len(preflight), len(create_or_open), len(computed)) == (2, 2, 2, 3)
    assert run.store is run.store  # built once per run


# -- runs made before stages marked their completion ---------------------------------------------

@pytest.fixture
def layout_1(tmp_path) -> str:
    root = tmp_path / "runs"
    shutil.copytree(LAYOUT_1, root, ignore=shutil.ignore_patterns("README.md"))
    _as_made_here(root / "legacy-micro")
    return str(root)


def _as_made_here(run_dir: Path) -> None:
    """The fixture run as this machine would have made it: a run made with tiny models pins them by
    content, and a tiny model built on another CPU (or by another build version) has other bytes, so
    where this machine's tiny LLM or SD is not the one the fixture's records name, run.json's
    fingerprints are those this code computes for its config here. Its outputs stay as they were."""
    import hashlib
    import json

    from synthclip_core.fingerprint import model_identity
    from synthclip_core.pipeline import config_from_dict

    made_with = {stage: json.loads(next((run_dir / "_commits" / stage).glob("part-*.json")).read_text())["model"]
                 for stage in ("captions", "images")}
    if all(made_with[stage]["content_sha256"] == model_identity(model["name"], None)["content_sha256"]
           for stage, model in made_with.items()):
        return
    doc = json.loads((run_dir / "run.json").read_text())
    doc["fingerprints"] = fingerprints(config_from_dict(doc["config"]))
    data = json.dumps(doc, indent=1, sort_keys=True).encode()
    (run_dir / "run.json").write_bytes(data)
    commit = run_dir / "_commits" / "run" / "run.json.json"
    meta = json.loads(commit.read_text())
    commit.write_text(json.dumps({**meta, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}))


def test_a_layout_1_run_shows_its_status_and_continues(engine, layout_1):
    from flows.pipeline import pipeline
    from flows.stages import STAGE_FLOWS
    from synthclip_core.runs.lifecycle import load_run
    from synthclip_core.runs.status import run_status

    run = load_run(RunRef(layout_1, "legacy-micro"))
    assert (run.kind, run.layout, run.config.balanced.threshold, run.config.images.model) == ("run", 1, 1, "tiny/sd")
    status = {s.stage: s for s in run_status(run)}
    assert all(status[s].complete and status[s].pending == 0 for s in ("concepts", "captions", "balanced", "images", "shards"))
    assert not status["train"].complete and not status["eval"].complete
    assert status["captions"].rows == 24 and status["images"].committed == 5
    before = {s: run.store.records(s) for s in ("concepts", "captions", "balanced", "images", "shards")}

    assert STAGE_FLOWS["images"](run.ref.run_id, layout_1)["computed"] == 0  # one stage alone, on layout-1 inputs
    summaries = pipeline(run_id=run.ref.run_id, root=layout_1)
    assert [s for s, summary in summaries.items() if summary["computed"]] == ["train", "eval", "card"]
    assert {s: run.store.records(s) for s in before} == before  # nothing made before was touched
    assert all(s.complete for s in run_status(run))
    assert sorted(p.name for p in (Path(layout_1) / "legacy-micro" / "_complete").iterdir()) == ["card.json", "eval.json",
                                                                                                 "train.json"]


def test_a_layout_1_job_loads_verifies_and_trains(engine, layout_1):
    from flows.pipeline import pipeline
    from synthclip_core.errors import RunStateError
    from synthclip_core.runs.lifecycle import load_run, open_run

    ref = RunRef(layout_1, "legacy-job")
    job = load_run(ref, verify=True)  # its one layout-1 fingerprint, recomputed by this code
    assert (job.kind, job.layout, job.names) == ("job", 1, ["train", "eval"])
    assert open_run(job.config, ref).fingerprints == job.fingerprints  # the same config continues it
    other = job.config.model_copy(update={"train": job.config.train.model_copy(update={"epochs": 2})})
    with pytest.raises(RunStateError, match="legacy-job .* was made with another config"):
        open_run(other, ref)
    with pytest.raises(RunStateError, match="is a training job, not a synthetic run"):
        open_run(load_config(REPO / "configs" / "micro.yaml"), ref)
    summaries = pipeline(run_id="legacy-job", root=layout_1)
    assert summaries["train"]["computed"] == 1 and "skipped" in summaries["eval"]["notes"]  # no eval.datasets
    record = job.store.record("train", "checkpoints/epoch_1.pt")
    assert {i["run_id"] for i in record["inputs"]} == {"legacy-micro"}  # the layout-1 run's shards, by commit


# -- the code-version rule: a stage that writes other bytes has another version -------------------

def test_a_stage_that_writes_other_bytes_has_bumped_its_version(micro_reference):
    """Fingerprints cover stage versions, not code: this is what holds the rule (docs/architecture.md,
    "Fingerprints")."""

    from golden import GOLDEN, MODEL_FREE, load, models_key, stage_outputs

    entries, now = load(), stage_outputs(micro_reference[0])
    golden = entries.get(models_key())
    if golden is None:  # tiny models built on a CPU no entry was made on: the stages they do not shape only
        golden = {stage: next(iter(entries.values()))[stage] for stage in MODEL_FREE}
    for stage, expected in golden.items():
        if now[stage]["version"] == expected["version"]:
            assert now[stage]["outputs"] == expected["outputs"], (
                f"stage {stage!r} writes other bytes at version {expected['version']}: bump VERSION in "
                f"synthclip_core/stages/{stage}.py, then refresh {GOLDEN.name} (python tests/golden.py ROOT RUN_ID)")
        else:
            pytest.fail(f"stage {stage!r} is at version {now[stage]['version']}, {GOLDEN.name} at "
                        f"{expected['version']}: refresh it (python tests/golden.py ROOT RUN_ID on a micro run)")
    if models_key() not in entries:
        pytest.skip(f"{GOLDEN.name} has no entry for this machine's tiny models ({models_key()}): only "
                    f"{', '.join(MODEL_FREE)} checked; add one with python tests/golden.py ROOT RUN_ID --add "
                    f"on a micro run of unchanged code")


# -- the stage as one object: the architecture doc's example, and the books the executor keeps ----

def _scratch_package_with_the_digest_stage(scratch: Path) -> None:
    """A copy of the product with ``docs/architecture.md``'s digest stage added as the doc says:
    its code block as ``stages/digest.py``, and one line in ``PIPELINE`` (and its import)."""
    import re

    for folder in ("synthclip_core", "flows", "tasks", "deployments"):
        shutil.copytree(REPO / folder, scratch / folder, ignore=shutil.ignore_patterns("__pycache__"))
    doc = (REPO / "docs" / "architecture.md").read_text()
    code = re.search(r"```python\n(# synthclip_core/stages/digest\.py\n.*?)```", doc, re.S).group(1)
    (scratch / "synthclip_core" / "stages" / "digest.py").write_text(code)
    pipeline = scratch / "synthclip_core" / "pipeline.py"
    text = pipeline.read_text()
    assert "    card.STAGE,\n" in text and "from .stages import balanced, captions, card," in text
    pipeline.write_text(text.replace("    card.STAGE,\n", "    card.STAGE,\n    digest.STAGE,\n", 1)
                        .replace("from .stages import balanced, captions, card,",
                                 "from .stages import balanced, captions, card, digest,", 1))


def test_the_architecture_doc_s_digest_example_is_true_as_written(engine, tmp_path):
    """Copied into a scratch copy of the package with one line in PIPELINE, the doc's digest stage is
    planned, runs on the micro config through the real CLI, shows in status and writes its output."""
    import os

    from commands import synthclip

    scratch, root = tmp_path / "scratch", tmp_path / "runs"
    _scratch_package_with_the_digest_stage(scratch)
    env = {"PYTHONPATH": os.pathsep.join([str(scratch), str(REPO / "tests")])}
    micro = str(REPO / "configs" / "micro.yaml")

    planned = synthclip("plan", micro, cwd=scratch, env=env)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert any(line.split("│")[1].strip() == "digest" for line in planned.stdout.splitlines() if line.count("│") > 2)
    made = synthclip("run", micro, "--run-id", "digested", "--root", str(root), cwd=scratch, env=env, timeout=900)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    digest = (root / "digested" / "digest" / "README.md").read_text()
    assert digest.startswith("# A fully synthetic image-text dataset\n") and "training pairs" in digest
    shown = synthclip("status", "digested", "--root", str(root), cwd=scratch, env=env)
    assert shown.returncode == 0, shown.stderr[-3000:]
    row = next(line for line in shown.stdout.splitlines() if line.startswith("│ digest "))
    assert [cell.strip() for cell in row.split("│")[2:5]] == ["1", "0", "0"]  # committed, pending, failed


def test_a_work_item_names_its_input_and_the_executor_checks_the_columns_the_work_declares(tmp_path):
    """A partition's work gets the rows its item names, in the columns it declares; a column the
    input lacks is one error naming the file, before any work runs."""
    import pyarrow as pa

    from synthclip_core.errors import RunStateError
    from synthclip_core.stages.executor import Made, PartitionMaker, PartitionWork
    from synthclip_core.stages.stage import WorkItem
    from synthclip_core.storage.schemas import to_parquet_bytes

    class Upper(PartitionWork):
        reads, columns, writes = "concepts", ("concept_id", "concept"), "concepts"

        def process(self, rows, item):
            concepts = [c.upper() for c in rows.column("concept").to_pylist()]
            return Made(pa.table({"concept_id": rows.column("concept_id"), "concept": concepts,
                                  "bank_index": list(range(rows.num_rows))}), {"made_by": "upper"})

    class NeedsAColumn(Upper):
        columns = ("concept", "colour")

    ref = RunRef(str(tmp_path), "items")
    store = ref.store()
    table = pa.table({"concept_id": ["a", "b", "c"], "concept": ["cat", "dog", "fox"], "bank_index": [0, 1, 2]})
    record = store.commit("concepts", "part-00000.parquet", to_parquet_bytes(table, "concepts"))
    source = ({"stage": "concepts", "output": "part-00000.parquet", "sha256": record["sha256"]},)
    item = WorkItem("shouted", "part-00000.parquet", "fp", 7, source, offset=1, length=2, params={"partition": 0})
    made = PartitionMaker(Upper, {}, ref.as_dict())(item)
    assert (made["rows"], made["slice"], made["partition"], made["made_by"]) == (2, [1, 2], 0, "upper")
    assert made["inputs"] == list(source) and made["fingerprint"] == "fp" and made["code_version"]["stage"] == 7
    assert store.read_bytes("shouted", "part-00000.parquet")  # committed under the item's stage
    with pytest.raises(RunStateError, match=r"concepts/part-00000.parquet has no column colour"):
        PartitionMaker(NeedsAColumn, {}, ref.as_dict())(item)


def test_a_fork_continues_from_the_run_open_run_read(tmp_path, monkeypatch):
    """``open_run(..., fork=True)`` reads the stored run at its id once and forks from that run."""
    import synthclip_core.runs.lifecycle as lifecycle

    cfg = load_config(REPO / "configs" / "micro.yaml")
    ref = RunRef(str(tmp_path), "forked")
    lifecycle.open_run(cfg, ref)
    other = cfg.model_copy(update={"balanced": cfg.balanced.model_copy(update={"threshold": cfg.balanced.threshold + 1})})
    reads, real = [], lifecycle._stored
    monkeypatch.setattr(lifecycle, "_stored", lambda r: reads.append(r.run_id) or real(r))
    fork = lifecycle.open_run(other, ref, fork=True)
    assert fork.ref.run_id.startswith("forked-fork-") and reads.count("forked") == 1


def test_how_coverage_matches_concepts_is_in_the_captions_fingerprint():
    """The captions stage's coverage table counts captions naming their concept with balancing's
    ``case_sensitive``: a run that matches otherwise has another captions fingerprint (a fork
    recomputes its coverage, never copies one made under the other setting); the default changes
    no run's fingerprint."""
    cfg = load_config(REPO / "configs" / "micro.yaml")
    insensitive = cfg.model_copy(update={"balanced": cfg.balanced.model_copy(update={"case_sensitive": False})})
    assert fingerprints(insensitive)["concepts"] == fingerprints(cfg)["concepts"]
    assert fingerprints(insensitive)["captions"] != fingerprints(cfg)["captions"]


def test_old_field_names_still_load_and_both_names_are_refused(tmp_path):
    from synthclip_core.errors import ConfigError

    text = (REPO / "configs" / "micro.yaml").read_text()
    old = tmp_path / "old.yaml"
    old.write_text(text.replace("balanced:\n", "balanced:\n  num_workers: 3\n", 1).replace("shards:\n", "shards:\n  num_workers: 2\n", 1))
    cfg = load_config(old)
    assert (cfg.balanced.num_actors, cfg.shards.num_tasks) == (3, 2)
    both = tmp_path / "both.yaml"
    both.write_text(text.replace("balanced:\n", "balanced:\n  num_workers: 3\n  num_actors: 3\n", 1))
    with pytest.raises(ConfigError, match="balanced.num_workers and balanced.num_actors are the same field"):
        load_config(both)


def test_a_table_written_under_a_schema_s_old_name_still_reads(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from synthclip_core.storage.schemas import SCHEMAS, from_parquet_bytes

    table = pa.table({"concept_id": ["a"], "count_before": [3], "keep_probability": [1.0]},
                     schema=SCHEMAS["balanced_counts"][1]).replace_schema_metadata({"synthclip.schema": "balance_counts/1"})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    assert from_parquet_bytes(sink.getvalue().to_pybytes(), "balanced_counts").num_rows == 1


def test_opening_a_run_reads_its_bank_file_once(tmp_path, monkeypatch):
    """Pinning the bank's content, sizing and the pre-flight check of a new run read one file once."""
    import yaml

    import synthclip_core.curation.concepts as concepts
    from synthclip_core.runs.lifecycle import open_run

    bank = tmp_path / "bank.txt"
    bank.write_text("cat\ndog\nfox\nowl\n")
    data = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
    data["concepts"] = {**data.get("concepts", {}), "source": str(bank), "limit": 3}
    reads, real = [], concepts._read_entries
    monkeypatch.setattr(concepts, "_read_entries", lambda source, column: reads.append(source) or real(source, column))
    from synthclip_core.pipeline import config_from_dict

    run = open_run(config_from_dict(data), RunRef(str(tmp_path / "runs"), "bank-once"))
    assert reads == [str(bank)] and run.config.concepts.sha256
