"""The commit rule, on the local filesystem and on a real S3-protocol server."""

import hashlib
import json
from pathlib import Path

import pytest

from synthclip_core.errors import StorageError
from synthclip_core.storage.store import RunStore, check_root_writable


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return RunStore(str(tmp_path), "r1")
    bucket = request.getfixturevalue("bucket")
    return RunStore(f"s3://{bucket}/prefix", "r1")


def test_commit_writes_data_then_record(store):
    record = store.commit("captions", "part-00000.parquet", b"abc", {"rows": 3})
    assert store.read_bytes("captions", "part-00000.parquet") == b"abc"
    assert store.committed_all() == {"captions": {"part-00000.parquet"}}
    assert store.record("captions", "part-00000.parquet")["sha256"] == record["sha256"]
    assert record["rows"] == 3 and record["bytes"] == 3
    leftovers = store.temporaries()
    assert leftovers == []


def test_second_writer_keeps_the_first_record(store):
    first = store.commit("images", "part-00001.parquet", b"same", {"worker": "a"})
    second = store.commit("images", "part-00001.parquet", b"same", {"worker": "b"})
    assert second["worker"] == "a" == first["worker"]


def test_failure_is_recorded_then_superseded(store):
    store.fail("captions", "part-00002.parquet", RuntimeError("boom"))
    assert store.failed_all() == {"captions": {"part-00002.parquet"}}
    assert "boom" in store.failure("captions", "part-00002.parquet")["error"]
    store.commit("captions", "part-00002.parquet", b"x")
    assert store.failed_all() == {}


def test_uncommitted_data_is_invisible(store):
    if store.local:
        store.fs.makedirs(store.path("captions"), exist_ok=True)
    store.fs.pipe_file(store.path("captions", "part-00009.parquet"), b"orphan")
    assert store.committed_all() == {}
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


def test_racing_writers_with_different_bytes_leave_a_record_naming_the_file(store):
    """Eight writers commit different (whole) bytes to one output whose bytes may differ between
    writers, at once: one wins, the record names exactly the bytes that are there, and every
    writer is told that record."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    for round_ in range(5):
        output = f"manifest-{round_}.json"
        writers = [RunStore(store.root, store.run_id, store.storage_options) for _ in range(8)]
        with ThreadPoolExecutor(8) as pool:
            records = list(pool.map(lambda w: w[1].commit("train", output, json.dumps({"writer": w[0]}).encode(), {"by": w[0]},
                                                          deterministic=False), enumerate(writers)))
        on_disk = store.read_bytes("train", output)
        record = store.record("train", output)
        assert record["sha256"] == hashlib.sha256(on_disk).hexdigest()
        assert {r["sha256"] for r in records} == {record["sha256"]}
    assert not store.temporaries()


def test_a_file_placed_by_a_killed_writer_is_adopted_not_replaced(store):
    """A writer killed between placing its file and creating its record leaves a complete file;
    the next writer commits those bytes as they are."""
    from synthclip_core.storage.schemas import table_from_rows, to_parquet_bytes

    def images(seed: int) -> bytes:  # a model output whose bytes may differ between writers (GPUs)
        return to_parquet_bytes(table_from_rows([{"image_id": f"i{seed}", "jpg": bytes([seed])}], "images"), "images")

    if store.local:
        store.fs.makedirs(store.path("images"), exist_ok=True)
    store.fs.pipe_file(store.path("images", "part-00003.parquet"), images(1))
    record = store.commit("images", "part-00003.parquet", images(2), deterministic=False)
    assert record["adopted"] is True
    assert store.read_bytes("images", "part-00003.parquet") == images(1)
    assert record["sha256"] == hashlib.sha256(images(1)).hexdigest()


def test_temporaries_are_hidden_from_readers_and_globs(tmp_path):
    """What a killed local writer leaves behind is a hidden name no glob or reader picks up."""
    store = RunStore(str(tmp_path), "r1")
    store.commit("shards", "00000.tar", b"tar")
    (tmp_path / "r1" / "shards" / f".00001.tar.{'ab' * 16}.tmp").write_bytes(b"half")
    assert [Path(p).name for p in store.temporaries()] == [f".00001.tar.{'ab' * 16}.tmp"]
    assert sorted(p.name for p in (tmp_path / "r1" / "shards").glob("*.tar")) == ["00000.tar"]
    assert store.committed("shards") == {"00000.tar"}


def test_a_commit_record_stays_small_however_many_inputs_it_has(tmp_path):
    """A whole-run output of a paper-scale run (58,600 render partitions) keeps a record of a few KB:
    beyond 32 inputs, one summary per upstream that the upstream's records reproduce."""
    import hashlib
    import json

    from synthclip_core.storage.lineage import MAX_LISTED_INPUTS, bounded_inputs, lineage

    refs = [{"stage": "images", "output": f"part-{i:06d}.parquet", "sha256": hashlib.sha256(str(i).encode()).hexdigest()}
            for i in range(58_600)]
    store = RunStore(str(tmp_path), "r")
    record = store.commit("shards", "sizes.json", b"{}", lineage("f" * 16, 2, refs, 0.0, 1))
    assert len(json.dumps(record)) < 2048 and record["inputs"] == [{
        "stage": "images", "count": 58_600, "first": "part-000000.parquet", "last": "part-058599.parquet",
        "sha256": hashlib.sha256("".join(f"{r['output']} {r['sha256']}\n" for r in refs).encode()).hexdigest()}]
    assert bounded_inputs(refs[:MAX_LISTED_INPUTS]) == refs[:MAX_LISTED_INPUTS]  # a few are each named
    other_run = [{**r, "run_id": "synthetic"} for r in refs[:40]]
    summaries = bounded_inputs(other_run + refs[:40])  # another run's shards and this run's, apart
    assert [(s.get("run_id"), s["count"]) for s in summaries] == [("synthetic", 40), (None, 40)]
