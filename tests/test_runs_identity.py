"""The same config under two run ids, on two storage backends, gives identical outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthclip_core.errors import RunStateError
from synthclip_core.run import RunRef

MICRO = str(Path(__file__).resolve().parents[1] / "configs" / "micro.yaml")
DATA_STAGES = ("concepts", "captions", "balanced", "images", "shards")


def _hashes(ref: RunRef) -> dict:
    store = ref.store()
    return {(stage, o): r["sha256"] for stage in DATA_STAGES for o, r in store.records(stage).items()}


def test_same_config_two_run_ids_local_and_s3(engine, tmp_path, bucket):
    from flows.pipeline import build_dataset

    local = RunRef(str(tmp_path), "micro-a")
    remote = RunRef(f"s3://{bucket}/runs", "micro-b")
    build_dataset(config=MICRO, run_id=local.run_id, root=local.root)
    build_dataset(config=MICRO, run_id=remote.run_id, root=remote.root)
    a, b = _hashes(local), _hashes(remote)
    assert a and a == b
    store = remote.store()
    assert store.fs.exists(store.path("eval", "report.json")) and store.record("train", "summary.json")
    assert store.uri("shards").startswith("s3://")


def test_resuming_with_another_config_is_refused(engine, tmp_path):
    from synthclip_core.config import load_config
    from synthclip_core.run import create_or_open

    ref = RunRef(str(tmp_path), "refuse")
    cfg = load_config(MICRO)
    create_or_open(cfg, ref)
    changed = cfg.model_copy(update={"captions": cfg.captions.model_copy(update={"temperature": 0.9})})
    with pytest.raises(RunStateError, match="stages changed: captions"):
        create_or_open(changed, ref)
