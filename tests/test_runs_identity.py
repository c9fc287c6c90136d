"""The same config under two run ids, on two storage backends, gives identical outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthclip_core.errors import RunStateError
from synthclip_core.storage.store import RunRef

MICRO = str(Path(__file__).resolve().parents[1] / "configs" / "micro.yaml")
DATA_STAGES = ("concepts", "captions", "balanced", "images", "shards")


def _hashes(ref: RunRef) -> dict:
    store = ref.store()
    return {(stage, o): r["sha256"] for stage in DATA_STAGES for o, r in store.records(stage).items()}


@pytest.mark.slow  # 2 minutes; the same bytes on S3 are also proven by test_object_store_faults, across runs by golden
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
    _assert_no_credentials_anywhere(store)


def _assert_no_credentials_anywhere(store) -> None:
    """The S3 keys appear in no stored object (run.json, commit records, reports...), no Prefect
    artifact and no Prefect log."""
    import os

    from prefect.client.orchestration import get_client

    secrets = [os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["AWS_ACCESS_KEY_ID"]]
    objects = store.fs.find(store.base)
    assert len(objects) > 20
    for path in objects:
        data = store.fs.cat_file(path)
        assert not any(s.encode() in data for s in secrets), path
    texts = []
    with get_client(sync_client=True) as client:
        for read, text in ((client.read_artifacts, lambda a: str(a.data)), (client.read_logs, lambda log: log.message)):
            offset = 0
            while batch := read(limit=200, offset=offset):
                texts += [text(item) for item in batch]
                offset += len(batch)
    assert texts and not any(s in t for s in secrets for t in texts)


def test_resuming_with_another_config_is_refused(engine, tmp_path):
    from synthclip_core.pipeline import load_config
    from synthclip_core.runs.lifecycle import open_run

    ref = RunRef(str(tmp_path), "refuse")
    cfg = load_config(MICRO)
    open_run(cfg, ref)
    changed = cfg.model_copy(update={"captions": cfg.captions.model_copy(update={"temperature": 0.9})})
    with pytest.raises(RunStateError, match="stages changed: captions"):
        open_run(changed, ref)
