"""The commit rule, on the local filesystem and on a real S3-protocol server."""

import json

import pytest

from synthclip_core.errors import StorageError
from synthclip_core.store import RunStore, check_root_writable


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return RunStore(str(tmp_path), "r1")
    bucket = request.getfixturevalue("bucket")
    return RunStore(f"s3://{bucket}/prefix", "r1")


def test_commit_writes_data_then_record(store):
    record = store.commit("captions", "part-00000.parquet", b"abc", {"rows": 3})
    assert store.read_bytes("captions", "part-00000.parquet") == b"abc"
    assert store.committed() == {"captions": {"part-00000.parquet"}}
    assert store.record("captions", "part-00000.parquet")["sha256"] == record["sha256"]
    assert record["rows"] == 3 and record["bytes"] == 3
    leftovers = [p for p in store.fs.find(store.base) if "/.tmp-" in p]
    assert leftovers == []


def test_second_writer_keeps_the_first_record(store):
    first = store.commit("images", "part-00001.parquet", b"same", {"worker": "a"})
    second = store.commit("images", "part-00001.parquet", b"same", {"worker": "b"})
    assert second["worker"] == "a" == first["worker"]


def test_failure_is_recorded_then_superseded(store):
    store.fail("captions", "part-00002.parquet", RuntimeError("boom"))
    assert store.failed() == {"captions": {"part-00002.parquet"}}
    assert "boom" in store.failure("captions", "part-00002.parquet")["error"]
    store.commit("captions", "part-00002.parquet", b"x")
    assert store.failed() == {}


def test_uncommitted_data_is_invisible(store):
    if store.local:
        store.fs.makedirs(store.path("captions"), exist_ok=True)
    store.fs.pipe_file(store.path("captions", "part-00009.parquet"), b"orphan")
    assert store.committed() == {}
    store.commit("captions", "part-00000.parquet", b"ok")
    assert store.records("captions") .keys() == {"part-00000.parquet"}


def test_run_json_sits_at_the_top(store):
    store.commit("run", "run.json", json.dumps({"a": 1}).encode())
    assert store.fs.cat_file(store.path("run.json")) == b'{"a": 1}'


def test_unwritable_roots_are_one_line_errors(tmp_path, s3_server):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="not writable"):
        check_root_writable(str(blocker / "sub"))
    with pytest.raises(StorageError, match="not writable"):
        check_root_writable("s3://no-such-bucket-synthclip/runs")
