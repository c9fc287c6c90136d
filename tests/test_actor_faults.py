"""Actor death mid-partition is retried on a fresh actor; a partition that keeps failing is
recorded as failed while the rest of the stage is committed."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from synthclip_core.pipeline import load_config
from synthclip_core.runs.lifecycle import open_run
from synthclip_core.stages.executor import execute
from synthclip_core.storage.ledger import spend_records, stage_spend
from synthclip_core.storage.store import RunRef

MICRO = Path(__file__).resolve().parents[1] / "configs" / "micro.yaml"


def _new_run(root: Path, run_id: str):
    run = open_run(load_config(MICRO), RunRef(str(root), run_id))
    execute(run, "concepts")
    return run


def captions(run):
    return execute(run, "captions")


def _kill_first_busy_worker(stop: threading.Event, killed: list) -> None:
    """SIGKILL the first actor process seen inside ``PoolActor.process``."""
    while not stop.is_set() and not killed:
        for entry in Path("/proc").iterdir():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"PoolActor.process" in cmd:  # Ray's process title while a call runs
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
                return
        time.sleep(0.005)


def test_killed_actor_is_replaced_and_partition_retried(engine, tmp_path):
    reference = _new_run(tmp_path, "reference")
    assert captions(reference).computed == 2

    run = _new_run(tmp_path, "faulty")
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_first_busy_worker, args=(stop, killed), daemon=True)
    killer.start()
    summary = captions(run)
    stop.set()
    killer.join()
    assert killed, "no busy worker was seen"
    assert summary.ok and summary.computed == 2 and summary.notes["actor_restarts"] >= 1
    died = [d for d in spend_records(run.store, "captions") if d["kind"] == "failed"]  # the killed actor's minutes are spent
    assert len(died) == len(killed) and all(d["held"]["seconds"] > 0 and d["held"]["cpus"] == 1 for d in died)
    ref_records, records = reference.store.records("captions"), run.store.records("captions")
    assert {o: r["sha256"] for o, r in records.items()} == {o: r["sha256"] for o, r in ref_records.items()}
    assert not run.store.temporaries()


def test_a_partition_that_keeps_failing_is_recorded_and_the_rest_committed(engine, tmp_path):
    from flows.stages import StageFailed, captions_flow

    run = _new_run(tmp_path, "broken")
    # Corrupt one committed input behind the store's back: every attempt at it fails.
    run.store.fs.pipe_file(run.store.path("concepts", "part-00001.parquet"), b"not parquet")
    with pytest.raises(StageFailed, match="1 output\\(s\\) failed.*part-00001.parquet"):
        captions_flow(run_id=run.ref.run_id, root=run.ref.root)
    assert run.store.committed("captions") == {"part-00000.parquet"}
    failure = run.store.failure("captions", "part-00001.parquet")
    assert failure["attempts"] == 3
    failed = [d for d in spend_records(run.store, "captions") if d["kind"] == "failed"]
    assert [d["output"] for d in failed] == ["part-00001.parquet"] * 3  # every failed attempt is spent
    spend = stage_spend(run.store, "captions")
    assert spend.by_kind["failed"] == pytest.approx(sum(d["held"]["seconds"] for d in failed), abs=1e-3)
    assert "concepts/part-00001.parquet: not a readable Parquet file" in failure["error"]


def test_a_pool_that_keeps_losing_actors_goes_on_while_partitions_succeed(engine, tmp_path):
    """Replacements are bounded per partition, not per stage call: 4 of 8 partitions kill their
    actor once, between successes (more deaths than a budget of actors x tries), and all commit."""
    from pool_work import DiesOnFirstTry

    from synthclip_core.compute.pool import run_pool
    from synthclip_core.compute.resources import PoolSpec
    from synthclip_core.stages.stage import WorkItem

    marks = tmp_path / "marks"
    marks.mkdir()
    ref = RunRef(str(tmp_path), "pool")
    items = [WorkItem("pool", f"out-{i}", "f", 1) for i in range(8)]
    result = run_pool("pool", ref, PoolSpec(count=1, max_retries=2), DiesOnFirstTry, (str(marks), ref.as_dict()), items)
    assert not result.failures and sorted(result.records) == [i.output for i in items]
    assert result.actor_restarts == 4


def test_progress_moves_within_a_partition(engine, tmp_path):
    """One long partition: the pool reports fractions of it while it runs, not only 0 then 1."""
    from pool_work import InSteps

    from synthclip_core.compute import progress
    from synthclip_core.compute.pool import run_pool
    from synthclip_core.compute.resources import PoolSpec
    from synthclip_core.stages.stage import WorkItem

    seen: list[float] = []

    def listener(stage: str, done: float, total: int) -> None:
        if stage == "long":
            seen.append(done / total)

    progress.add_listener(listener)
    try:
        ref = RunRef(str(tmp_path), "pool")
        result = run_pool("long", ref, PoolSpec(count=1, label="long"), InSteps, (6, 0.6, ref.as_dict()),
                          [WorkItem("pool", "only", "f", 1)])
    finally:
        progress.remove_listener(listener)
    assert sorted(result.records) == ["only"]
    assert any(0 < f < 1 for f in seen) and seen[-1] == 1 and seen == sorted(seen)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(5))
def test_repeated_kills_never_lose_or_change_a_partition(engine, tmp_path, trial):
    reference = _new_run(tmp_path, "reference")
    captions(reference)
    run = _new_run(tmp_path, f"faulty-{trial}")
    stop, killed = threading.Event(), []
    time.sleep(0.05 * trial)
    killer = threading.Thread(target=_kill_first_busy_worker, args=(stop, killed), daemon=True)
    killer.start()
    summary = captions(run)
    stop.set()
    killer.join()
    assert summary.ok
    assert ({o: r["sha256"] for o, r in run.store.records("captions").items()}
            == {o: r["sha256"] for o, r in reference.store.records("captions").items()})
