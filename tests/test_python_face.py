"""The Python face (docs/python.md): a run opened, run, read and planned from Python, without
Prefect and without knowing the store's layout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import synthclip_core as sc

REPO = Path(__file__).resolve().parents[1]


def test_importing_the_face_loads_nothing_heavy():
    quiet = "import sys, synthclip_core; print([m for m in ('torch', 'ray', 'prefect', 'diffusers', 'vllm') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", quiet], capture_output=True, text=True, cwd=REPO).stdout.strip() == "[]"
    assert sorted(sc.__all__) == sorted(["load_config", "open_run", "load_run", "run_stage", "run_all", "plan", "read_table",
                                         "to_dataset"])


def test_a_micro_run_from_python(ray_local, micro_reference, tmp_path):
    """A copy of the session's finished micro run with its training and evaluation undone, run to
    the end from Python: the stages still to do run, the rest are skipped, and again nothing runs."""
    from faults import copy_run

    run_id = copy_run(micro_reference[0], tmp_path, forget=("train", "eval")).run_id
    run = sc.open_run(REPO / "configs" / "micro.yaml", run_id=run_id, root=str(tmp_path))
    summaries = sc.run_all(run)
    assert list(summaries) == run.names and all(s.ok for s in summaries.values())
    assert summaries["train"].computed == 1 and summaries["images"].computed == 0
    again = sc.run_all(sc.load_run(run_id, root=str(tmp_path)))
    assert all(s.computed == 0 and s.skipped == s.total for s in again.values())  # resumable: nothing made twice
    images = sc.read_table(run, "images", columns=["image_id", "jpg", "split"])
    assert images.num_rows == summaries["images"].rows and images.column("jpg")[0].as_py().startswith(b"\xff\xd8")
    dataset = sc.to_dataset(run, "images", columns=["jpg", "caption"])
    assert dataset.num_rows == images.num_rows and dataset[0]["jpg"].size == (64, 64)  # a PIL image
    stats = sc.read_table(run, "balanced", "stats.parquet")
    assert "count_after" in stats.column_names


def test_the_face_on_the_offline_run_and_its_errors(offline_run):
    from synthclip_core.errors import UserError

    run, _ = offline_run
    same = sc.load_run(run.ref.run_id, root=run.ref.root)
    assert same.names == run.names == ["concepts", "captions", "balanced", "images", "shards", "train", "eval", "card"]
    captions = sc.read_table(same, "captions", columns=["concept", "caption", "reject_reason"])
    assert captions.num_rows == run.require("captions").rows
    assert sc.run_stage(same, "eval").computed == 0  # complete: skipped
    with pytest.raises(UserError, match="has no stage 'topup'"):
        sc.read_table(same, "topup")
    with pytest.raises(UserError, match="writes no row partitions; name one of its outputs"):
        sc.read_table(same, "eval")
    planned = sc.plan(REPO / "configs" / "synthci-30m.yaml", bank_size=500_000)
    assert [s.stage for s in planned.stages] == ["concepts", "captions", "balanced", "images", "shards", "train", "eval",
                                                 "card"]
    assert planned.train_pairs > 20_000_000 and 5_000 < planned.gpu_hours < 7_000
