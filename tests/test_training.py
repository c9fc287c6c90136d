"""Training on Ray Train with two CPU workers (DDP over gloo) on the micro run's shards."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from synthclip_core.config import config_from_dict
from synthclip_core.fingerprint import STAGES
from synthclip_core.run import RunRef, create_or_open
from synthclip_core.stages.runner import run_stage

REPO = Path(__file__).resolve().parents[1]


def test_two_workers_train_data_parallel(engine, tmp_path):
    data = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
    data["train"].update(num_workers=2, cpus_per_worker=0.5, global_batch_size=4)
    run = create_or_open(config_from_dict(data), RunRef(str(tmp_path), "ddp"))
    for stage in STAGES[: STAGES.index("train") + 1]:
        assert run_stage(run, stage).ok
    record = run.store.record("train", "checkpoints/epoch_1.pt")
    assert record["worker"]["world_size"] == 2
    assert math.isfinite(record["metrics"]["loss"]) and record["rows"] > 0
