"""The caption stage: both backends on the tiny LLM inside Ray actors, resume, coverage, lineage."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from synthclip_core.pipeline import config_from_dict
from synthclip_core.runs.lifecycle import open_run
from synthclip_core.stages.captions import COVERAGE
from synthclip_core.stages.executor import execute
from synthclip_core.storage.store import RunRef

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


def _run(root: Path, run_id: str, **captions):
    data = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
    data["captions"].update(captions)
    run = open_run(config_from_dict(data), RunRef(str(root), run_id))
    execute(run, "concepts")
    return run


def captions(run):
    return execute(run, "captions")


def _captions(run) -> pd.DataFrame:
    parts = sorted(o for o in run.store.committed("captions") if o.startswith("part-"))
    return pd.concat([pd.read_parquet(run.store.uri("captions", o)) for o in parts], ignore_index=True)


def test_partition_says_row_by_row_what_produced_it(engine, tmp_path):
    run = _run(tmp_path, "rows")
    assert captions(run).computed == 2
    frame = _captions(run)
    assert list(frame.columns[:8]) == ["caption_id", "concept_id", "concept", "template", "index", "seed", "model", "backend"]
    assert set(frame["template"]) == {"synthclip@v1"} and set(frame["backend"]) == {"transformers"}
    assert frame["model"].str.startswith("tiny/llm@").all() and frame["seed"].nunique() == len(frame)
    record = run.store.record("captions", "part-00000.parquet")
    assert record["backend"] == "transformers" and record["sampling"]["temperature"] == 0.7
    assert record["throughput"]["prompts_per_s"] > 0 and record["throughput"]["tokens_per_s"] > 0
    assert record["cleaning"]["kept"] + sum(record["cleaning"]["rejected"].values()) == record["rows"]


def test_resume_of_a_partially_captioned_run(engine, tmp_path):
    reference = _run(tmp_path, "whole")
    captions(reference)
    run = _run(tmp_path, "partial")
    run.store.commit("captions", "part-00000.parquet", reference.store.read_bytes("captions", "part-00000.parquet"),
                     reference.store.record("captions", "part-00000.parquet"))
    summary = captions(run)
    assert (summary.computed, summary.skipped) == (1, 1)
    assert (run.store.record("captions", "part-00001.parquet")["sha256"]
            == reference.store.record("captions", "part-00001.parquet")["sha256"])


def test_coverage_report(engine, tmp_path):
    run = _run(tmp_path, "coverage", max_words=6)  # a tight bound rejects some captions
    assert captions(run).notes["coverage"] == run.store.record("captions", COVERAGE)["summary"]
    summary = run.store.record("captions", COVERAGE)["summary"]
    coverage = pd.read_parquet(run.store.uri("captions", COVERAGE))
    assert len(coverage) == 12 and (coverage["written"] == 2).all()
    assert (coverage["kept"] <= coverage["written"]).all() and (coverage["naming"] <= coverage["kept"]).all()
    frame = _captions(run)
    assert summary["kept"] == (frame["caption"] != "").sum() < len(frame)
    assert set(frame.loc[frame["caption"] == "", "reject_reason"]) == {"overlong"}
    zero = coverage.loc[coverage["kept"] == 0, "concept"].tolist()
    assert summary["concepts_without_kept_captions"] == len(zero)
    assert summary["examples_without_kept_captions"] == zero


def test_vllm_backend_in_its_own_environment(engine, tmp_path):
    if not VLLM_PYTHON.exists():
        pytest.fail("the vLLM CPU environment is missing: run `make vllm-env` (make test does)")
    # 144 prompts a partition: more prefill tokens than one vLLM CPU step takes (4096).
    options = {"backend": "vllm", "python": str(VLLM_PYTHON), "per_concept": 24}
    first = _run(tmp_path, "vllm-a", **options)
    second = _run(tmp_path, "vllm-b", **options)
    assert captions(first).computed == 2
    assert captions(second).computed == 2
    a, b = _captions(first), _captions(second)
    assert set(a["backend"]) == {"vllm"} and a["raw"].tolist() == b["raw"].tolist()
    naming = sum(f" {c} " in f" {t} " for c, t in zip(a["concept"], a["caption"])) / len(a)
    assert naming >= 0.7, naming
    record = first.store.record("captions", "part-00000.parquet")
    assert record["backend"] == "vllm" and record["throughput"]["tokens_per_s"] > 0


def test_gpu_actors_are_pinned_to_distinct_gpus_and_fall_back_to_cpu(engine, tmp_path):
    run = _run(tmp_path, "gpus", num_actors=2, num_gpus=1)
    assert captions(run).computed == 2
    workers = [r["worker"] for r in run.store.records("captions", ["part-00000.parquet", "part-00001.parquet"]).values()]
    assert sorted(w["gpu_ids"][0] for w in workers) == ["0", "1"]
    assert all(w["cuda_visible_devices"] == w["gpu_ids"][0] and w["device"] == "cpu" for w in workers)


def test_more_gpus_than_ray_has_is_a_clear_error(engine, tmp_path):
    from synthclip_core.errors import ConfigError

    run = _run(tmp_path, "too-many", num_gpus=4)
    with pytest.raises(ConfigError, match=r"each \{CPU: 1, GPU: 4\} \(captions.num_actors, captions.num_gpus\); no node can host even one; "
                       r"this Ray has 1 node\(s\) with CPU 2, GPU 2"):
        captions(run)


def test_a_caption_backend_plug_in_is_loaded_by_name():
    from synthclip_core.captioning.backends import create_caption_backend
    from synthclip_core.captioning.prompts import get_template
    from synthclip_core.errors import ConfigError

    backend = create_caption_backend("benchmarks.rehearsal_backends:EchoCaptioner", model="any")
    messages = [get_template("synthclip").messages(c) for c in ("red fox", "lighthouse")]
    out = backend.generate(messages, [1, 2], {})
    assert [("red fox" in o["text"], "lighthouse" in o["text"]) for o in out] == [(True, False), (False, True)]
    with pytest.raises(ConfigError, match="captions.backend 'no_such_module:Thing': cannot import it"):
        create_caption_backend("no_such_module:Thing")
