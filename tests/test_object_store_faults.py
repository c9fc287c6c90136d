"""Object store faults, injected by a real HTTP proxy in front of the test S3 server: transient
errors and slow answers are retried with backoff and the run completes with the reference's bytes;
a permanent error (access denied, no bucket) fails fast in one line and changes nothing committed."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import commands
import pytest
import s3fs
from commands import one_line_error
from s3_proxy import FaultyS3Proxy

from synthclip_core.errors import StorageError
from synthclip_core.pipeline import load_config
from synthclip_core.runs.lifecycle import load_run, open_run
from synthclip_core.stages.executor import execute
from synthclip_core.storage.store import RunRef, RunStore

REPO = Path(__file__).resolve().parents[1]
MICRO = REPO / "configs" / "micro.yaml"
DATA_STAGES = ("concepts", "captions", "balanced", "images", "shards")


def synthclip(*args: str, endpoint: str) -> subprocess.CompletedProcess:
    return commands.synthclip(*args, env={"AWS_ENDPOINT_URL": endpoint}, timeout=900)


def snapshot(bucket: str) -> dict[str, str]:
    fs = s3fs.S3FileSystem(use_listings_cache=False)
    return {p: hashlib.sha256(fs.cat_file(p)).hexdigest() for p in fs.find(bucket)}


def test_commits_survive_transient_errors_lost_answers_and_slow_responses(s3_server, bucket):
    with FaultyS3Proxy(s3_server, seed=7, transient_rate=0.2, slow_rate=0.1, slow_s=0.2) as proxy:
        store = RunStore(f"s3://{bucket}/runs", "r1", {"endpoint_url": proxy.url})
        for i in range(20):
            store.commit("captions", f"part-{i:05d}.parquet", f"rows of part {i}".encode(), {"rows": i})
    assert proxy.counts["slowdown_before"] and proxy.counts["lost_after"] and proxy.counts["slow"]
    direct = RunStore(f"s3://{bucket}/runs", "r1")
    records = direct.records("captions")
    assert len(records) == 20
    for output, record in records.items():
        assert hashlib.sha256(direct.read_bytes("captions", output)).hexdigest() == record["sha256"]
        assert not record.get("adopted")  # a retried conditional put met its own write, not another's


@pytest.mark.slow  # about 3 minutes: a whole micro run through a flaky store (make test-slow)
def test_a_run_through_a_flaky_store_completes_with_the_reference_bytes(micro_reference, s3_server, bucket):
    reference, _ = micro_reference
    with FaultyS3Proxy(s3_server, seed=11, transient_rate=0.1, slow_rate=0.05, slow_s=0.3) as proxy:
        result = synthclip("run", str(MICRO), "--run-id", "flaky", "--root", f"s3://{bucket}/runs", endpoint=proxy.url)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert proxy.counts["slowdown_before"] > 5 and proxy.counts["lost_after"] > 5, proxy.counts
    store = RunStore(f"s3://{bucket}/runs", "flaky")
    for stage in DATA_STAGES:
        assert ({o: r["sha256"] for o, r in store.records(stage).items()}
                == {o: r["sha256"] for o, r in reference.records(stage).items()}), stage
    assert "report.json" in store.committed("eval")


def test_access_denied_fails_fast_and_keeps_what_is_committed(engine, s3_server, bucket):
    """A half-done run, then the store starts refusing writes: the resume stops at once, in one line."""
    ref = RunRef(f"s3://{bucket}/runs", "denied")
    run = open_run(load_config(MICRO), ref)
    execute(run, "concepts")
    assert execute(run, "captions").computed == 2
    store = ref.store()
    store.fs.rm_file(store.path("_commits", "captions", "part-00001.parquet.json"))  # one partition to redo
    before = snapshot(bucket)
    with FaultyS3Proxy(s3_server) as proxy:
        proxy.deny = "writes"
        cli = synthclip("resume", ref.run_id, "--root", ref.root, endpoint=proxy.url)
        assert cli.returncode != 0
        lines = [ln for ln in cli.stderr.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and "not writable" in lines[0] and "Access Denied" in lines[0], cli.stderr
        cli_requests = proxy.counts["requests"]

        # Past the pre-flight check (access revoked mid-run): the stage stops at its first write.
        run = load_run(RunRef(ref.root, ref.run_id, {"endpoint_url": proxy.url}))
        # (the partition's file is there already, so the first write is its record's)
        with pytest.raises(StorageError, match=r"cannot write s3://.*captions/part-00001.parquet(.json)?: permission denied"):
            execute(run, "captions")
    assert cli_requests < 10 and proxy.counts["denied"] <= 3, proxy.counts  # no retry storm
    assert snapshot(bucket) == before


def test_a_missing_bucket_is_one_line(s3_server):
    cli = synthclip("run", str(MICRO), "--run-id", "x", "--root", "s3://no-such-bucket-synthclip/runs", endpoint=s3_server)
    lines = [ln for ln in cli.stderr.strip().splitlines() if ln.strip()]
    assert cli.returncode != 0 and len(lines) == 1 and "no-such-bucket-synthclip" in lines[0], cli.stderr
    assert "Traceback" not in cli.stderr


# -- 2. exclusive create on an object store is proven on the target root, not assumed ------------

def test_a_store_that_ignores_conditional_writes_is_refused_before_any_write(s3_server, bucket):
    import s3fs
    from s3_proxy import FaultyS3Proxy

    from synthclip_core.errors import StorageError
    from synthclip_core.storage.store import check_root_writable

    root = f"s3://{bucket}/runs"
    with FaultyS3Proxy(s3_server) as proxy:
        check_root_writable(root, {"endpoint_url": proxy.url})  # the store honours If-None-Match: *
        proxy.strip_headers = {"if-none-match"}  # a store that ignores it
        with pytest.raises(StorageError, match=rf"storage root '{root}' does not honour conditional writes"):
            check_root_writable(root, {"endpoint_url": proxy.url})
        cli = synthclip("run", "configs/micro.yaml", "--run-id", "r", "--root", root, endpoint=proxy.url)
    one_line_error(cli, root, "does not honour conditional writes")
    assert s3fs.S3FileSystem(use_listings_cache=False).find(bucket) == []  # probes removed, nothing else written



# -- 5 and 6. answers an object store gives to conditional writes that are not errors of the run ---

def test_a_conditional_request_conflict_is_retried(s3_server, bucket):
    from s3_proxy import FaultyS3Proxy

    with FaultyS3Proxy(s3_server) as proxy:
        store = RunStore(f"s3://{bucket}/runs", "r", {"endpoint_url": proxy.url})
        proxy.conflicts = 3  # another conditional write on the key was in flight, three times running
        record = store.commit("captions", "part-00000.parquet", b"rows")
    assert proxy.counts["conflict"] == 3
    assert RunStore(f"s3://{bucket}/runs", "r").read_bytes("captions", "part-00000.parquet") == b"rows"
    assert record["bytes"] == 4


def test_a_lost_answer_to_a_multipart_complete_is_adopted(s3_server, bucket):
    import hashlib

    from s3_proxy import FaultyS3Proxy

    data = os.urandom(101 * 2**20)  # s3fs uploads 100 MiB and up in parts
    with FaultyS3Proxy(s3_server) as proxy:
        store = RunStore(f"s3://{bucket}/runs", "r", {"endpoint_url": proxy.url})
        proxy.lose_completes = 1  # the object is assembled, the answer never arrives
        record = store.commit("train", "checkpoints/epoch_1.pt", data, deterministic=False)
    assert proxy.counts["lost_complete"] == 1 and proxy.counts["complete_retried"] >= 1, proxy.counts
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and "replaced" not in record
    assert RunStore(f"s3://{bucket}/runs", "r").committed("train") == {"checkpoints/epoch_1.pt"}
