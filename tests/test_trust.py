"""Holes in the commit rule, the fingerprints and the ids, each proven closed (docs/reliability.md,
"Trust"): every test here failed before its fix."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from commands import one_line_error, synthclip

from synthclip_core.errors import ConfigError
from synthclip_core.stages.executor import execute
from synthclip_core.storage.store import RunRef, RunStore

REPO = Path(__file__).resolve().parents[1]


# -- 9. ids reach storage paths only as one name under the root -----------------------------------

@pytest.mark.parametrize("bad", ["../escape", "/etc", "a/b", ".hidden", "_commits", "", "x" * 201, "run\nid"])
def test_a_run_id_is_one_name_under_the_root(bad, tmp_path):
    with pytest.raises(ConfigError, match="is not a name under the root"):
        RunRef(str(tmp_path), bad)
    with pytest.raises(ConfigError, match="is not a name under the root"):
        RunStore(str(tmp_path), bad)
    assert RunRef(str(tmp_path), "offline-20261126-020259.fork-1a2b_3").run_id


def test_run_ids_inside_configs_are_checked_where_they_are_read():
    from synthclip_core.pipeline import job_config_from_dict

    def job(source: str, init_from: str | None = None) -> dict:
        return {"name": "j", "train": {"model": "SynthCLIP-Tiny", "epochs": 1, "global_batch_size": 8,
                                       "init_from": init_from, "sources": [{"name": "a", "uri": source}]}}

    with pytest.raises(ConfigError, match=r"job.yaml: train.sources.0.uri: .*'run:../x': the run id after 'run:'"):
        job_config_from_dict(job("run:../x"), source="job.yaml")
    with pytest.raises(ConfigError, match=r"train.init_from: .*'run:/etc'"):
        job_config_from_dict(job("s3://bucket/tars", init_from="run:/etc"))


def test_the_cli_refuses_an_escaping_run_id_before_writing(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    for bad in ("../escape", "/etc"):
        one_line_error(synthclip("run", "configs/micro.yaml", "--run-id", bad, "--root", str(root)), repr(bad), "not a name")
        one_line_error(synthclip("resume", bad, "--root", str(root)), "not a name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"] and not any(root.iterdir())


# -- 14 and 17. concept banks: lines are lines, a BOM is not a concept, bad banks are one line ------

def test_a_txt_bank_splits_at_line_feeds_only_and_no_bank_keeps_a_bom(tmp_path):
    from synthclip_core.curation.concepts import load_bank

    txt = tmp_path / "bank.txt"
    txt.write_bytes("\ufefftench\r\ngold\x1efish\nsea\u2028lion\nnight\x85jar\n".encode("utf-8"))
    bank = load_bank(str(txt))
    assert bank.concepts == ["tench", "gold fish", "sea lion", "night jar"]  # inside an entry they are white space
    assert bank.dropped == {}  # and the last line feed ends the last line
    (tmp_path / "bank.json").write_bytes('\ufeff["tench", "goldfish"]'.encode("utf-8"))
    assert load_bank(str(tmp_path / "bank.json")).concepts == ["tench", "goldfish"]
    (tmp_path / "bank.csv").write_bytes("\ufeffconcept,n\ntench,1\ngoldfish,2\n".encode("utf-8"))
    assert load_bank(str(tmp_path / "bank.csv")).concepts == ["tench", "goldfish"]


@pytest.mark.parametrize("name,content,words", [
    ("empty.txt", b"", ("no concepts left",)),
    ("latin1.txt", "caf\xe9\n".encode("latin-1"), ("not UTF-8", "line 1")),
    ("object.json", b'{"concepts": ["tench"]}', ("expected a JSON list of strings, got dict",)),
    ("numbers.json", b"[1, 2, 3]", ("entry 0 is int",)),
])
def test_a_bad_bank_is_one_line_before_any_flow(tmp_path, name, content, words):
    bank = tmp_path / name
    bank.write_bytes(content)
    config = tmp_path / "bad-bank.yaml"
    config.write_text((REPO / "configs" / "micro.yaml").read_text().replace("source: builtin:imagenet-1k", f"source: {bank}"))
    one_line_error(synthclip("run", str(config), "--root", str(tmp_path / "runs")), f"concept bank {bank}", *words)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# -- 10. credentials are never written into a config the platform stores -------------------------

def test_credentials_in_a_source_are_refused_naming_the_environment_variables():
    from synthclip_core.pipeline import job_config_from_dict

    def job(options: dict) -> dict:
        return {"name": "j", "train": {"model": "SynthCLIP-Tiny", "epochs": 1, "global_batch_size": 8,
                                       "sources": [{"name": "cc", "uri": "s3://b/cc", "storage_options": options}]}}

    for options, named in (({"key": "AKID", "secret": "s"}, "key, secret"),
                           ({"client_kwargs": {"aws_secret_access_key": "s"}}, "client_kwargs.aws_secret_access_key"),
                           ({"token": "t"}, "token")):
        with pytest.raises(ConfigError, match=rf"train.sources.0.storage_options: .*{named}: credentials would be written "
                                              r"into run.json.*AWS_ACCESS_KEY_ID"):
            job_config_from_dict(job(options))
    ok = job_config_from_dict(job({"endpoint_url": "http://127.0.0.1:9000", "config_kwargs": {"retries": {"max_attempts": 3}}}))
    assert ok.train.sources[0].storage_options["endpoint_url"]


# -- 3 and 7. local placing: exclusive without hard links; a full disk is one line, nothing left ---

def test_without_hard_links_a_placed_file_is_still_never_replaced(tmp_path, monkeypatch):
    """A filesystem that refuses hard links, and a second writer whose check for the file comes
    just before the first writer places it (the window the old check-then-rename left open)."""
    import ctypes
    import errno

    store = RunStore(str(tmp_path), "nolinks")  # outputs whose bytes may differ between writers, of no checked kind
    store.commit("train", "blob.dat", b"the first writer's bytes", deterministic=False)
    os.remove(store.path("_commits", "train", "blob.dat.json"))  # killed before its record
    final = store.data_path("train", "blob.dat")
    real_exists = os.path.exists

    def refuse_links(*args):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse_links)
    monkeypatch.setattr(os.path, "exists", lambda p: False if p == final else real_exists(p))  # checked too early
    record = store.commit("train", "blob.dat", b"a second writer's other bytes", deterministic=False)
    assert open(final, "rb").read() == b"the first writer's bytes"
    assert record["adopted"] and record["bytes"] == len(b"the first writer's bytes")
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: object())  # no renameat2 either: exclusive create
    os.remove(store.path("_commits", "train", "blob.dat.json"))
    assert store.commit("train", "blob.dat", b"a third writer's", deterministic=False)["adopted"]
    assert open(final, "rb").read() == b"the first writer's bytes" and not store.temporaries()
    assert store.commit("train", "new.dat", b"new")["bytes"] == 3 and open(store.data_path("train", "new.dat"), "rb").read() == b"new"


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A root on a 256 KiB tmpfs (mounted when this process may; else the writes fail with ENOSPC)."""
    import errno

    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True).returncode == 0
    if not mounted:
        real_fsync = os.fsync

        def fsync(fd):
            if os.fstat(fd).st_size > 200_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
    yield mount
    if mounted:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_clear_error_and_leaves_nothing_behind(full_disk):
    from synthclip_core.errors import StorageError

    store = RunStore(str(full_disk), "full")
    store.commit("captions", "part-00000.parquet", b"small")
    for attempt in range(3):  # retried writes leak nothing either
        with pytest.raises(StorageError, match=rf"storage root {full_disk} is full \(no space left on device\)"):
            store.commit("captions", "part-00001.parquet", os.urandom(400_000))
    assert store.committed("captions") == {"part-00000.parquet"} and not store.temporaries()
    assert not os.path.exists(store.data_path("captions", "part-00001.parquet"))
    assert store.commit("captions", "part-00002.parquet", b"fits")["bytes"] == 4


# -- 4. retiring an output never leaves a record without its file ---------------------------------

def test_a_writer_racing_a_retire_never_leaves_a_record_without_its_file(tmp_path, monkeypatch):
    import hashlib

    store, racer = RunStore(str(tmp_path), "retire"), RunStore(str(tmp_path), "retire")
    store.commit("train", "checkpoints/step_4.pt", b"superseded step checkpoint")
    real_rm = store.fs.rm_file
    raced = []

    def remove_then_race(path, *args, **kwargs):  # another writer runs right after the record goes
        real_rm(path, *args, **kwargs)
        if path.endswith("step_4.pt.json") and not raced:
            raced.append(racer.commit("train", "checkpoints/step_4.pt", b"made again by a racing writer"))

    monkeypatch.setattr(store.fs, "rm_file", remove_then_race)
    store.retire("train", "checkpoints/step_4.pt")
    assert raced
    for output, record in store.records("train").items():
        assert hashlib.sha256(store.read_bytes("train", output)).hexdigest() == record["sha256"]
    assert not store.temporaries()


# -- 1. a placed file is adopted only when it is the output ---------------------------------------

def test_a_truncated_shard_whose_record_was_deleted_is_made_again(engine, tmp_path):
    """The documented way to recompute an output (delete its record) on a damaged shard: the
    export replaces the truncated file instead of blessing it again."""
    import hashlib
    import shutil
    import tarfile

    from synthclip_core.runs.lifecycle import load_run

    shutil.copytree(REPO / "tests" / "fixtures" / "layout-1" / "legacy-micro", tmp_path / "legacy-micro")
    run = load_run(RunRef(str(tmp_path), "legacy-micro"))
    shard = run.store.data_path("shards", "00000.tar")
    whole = run.store.record("shards", "00000.tar")
    with open(shard, "r+b") as handle:
        handle.truncate(whole["bytes"] // 2)
    os.remove(run.store.path("_commits", "shards", "00000.tar.json"))
    assert execute(run, "shards").computed >= 1
    record = run.store.record("shards", "00000.tar")
    assert record["sha256"] == whole["sha256"] and record["replaced"]["bytes"] == whole["bytes"] // 2
    assert "other bytes" in record["replaced"]["reason"] and not record.get("adopted")
    with tarfile.open(shard) as tar:
        assert len(tar.getnames()) == 3 * run.store.record("shards", "00000.tar")["rows"]
    assert hashlib.sha256(open(shard, "rb").read()).hexdigest() == whole["sha256"]


def test_a_placed_model_output_is_adopted_when_whole_and_replaced_when_damaged(tmp_path):
    import io

    import torch

    def checkpoint(value: float) -> bytes:
        buffer = io.BytesIO()
        torch.save({"state_dict": {"w": torch.full((64, 64), value)}}, buffer)
        return buffer.getvalue()

    store = RunStore(str(tmp_path), "ckpt")
    final = store.data_path("train", "checkpoints/epoch_1.pt")
    os.makedirs(os.path.dirname(final))
    open(final, "wb").write(checkpoint(1.0))  # a whole checkpoint of a killed attempt
    record = store.commit("train", "checkpoints/epoch_1.pt", checkpoint(2.0), deterministic=False)
    assert record["adopted"] and open(final, "rb").read() == checkpoint(1.0)
    os.remove(store.path("_commits", "train", "checkpoints/epoch_1.pt.json"))
    open(final, "wb").write(checkpoint(1.0)[:-300])  # cut short: not the output
    record = store.commit("train", "checkpoints/epoch_1.pt", checkpoint(2.0), deterministic=False)
    assert not record.get("adopted") and "unreadable pt" in record["replaced"]["reason"]
    assert open(final, "rb").read() == checkpoint(2.0) and torch.load(final, weights_only=True)["state_dict"]["w"][0, 0] == 2.0


@pytest.mark.parametrize("name,damaged", [
    ("part-00000.parquet", b"PAR1 then nothing"), ("00000.tar", b"\0" * 100), ("sizes.json", b'{"00000.tar": 8'),
    ("metrics/step_000000008.jsonl", b'{"step": 1}\n{"step"'), ("curves.png", b"\x89PNG\r\n\x1a\n cut"),
])
def test_every_checked_kind_refuses_a_damaged_file(name, damaged):
    from synthclip_core.storage.validation import problem

    assert problem(name, damaged), name


# -- 15. a damaged last checkpoint: resume from the one before, say so, train the epoch again -----

def test_a_damaged_last_checkpoint_is_set_aside_and_its_epoch_trained_again(ray_local, tmp_path, caplog):
    import logging

    import shapes

    from synthclip_core.clip_models import model_config
    from synthclip_core.training import checkpoints
    from synthclip_core.training.config import TrainConfig
    from synthclip_core.training.fit import fit
    from synthclip_core.training.spec import TrainSpec

    shards = shapes.write_shards(shapes.samples(2, seed=5), tmp_path / "shards", per_shard=12)  # 24 samples

    def spec(epochs: int) -> TrainSpec:
        t = TrainConfig(model="SynthCLIP-Tiny", epochs=epochs, global_batch_size=12, lr=1e-3, warmup_epochs=0,
                        loader_workers=0, cpus_per_worker=1)
        return TrainSpec(ref=RunRef(str(tmp_path), "damaged").as_dict(), shards=shards, train=t.model_dump(), seed=0,
                         model_cfg=model_config("SynthCLIP-Tiny"))

    fit(spec(2), "test-damaged-2")
    store = RunRef(str(tmp_path), "damaged").store()
    last = store.data_path("train", checkpoints.epoch_name(2))
    with open(last, "r+b") as handle:  # a bad disk under a committed checkpoint
        handle.seek(1000)
        handle.write(b"\0" * 64)
    with caplog.at_level(logging.WARNING, logger="synthclip.train"):
        fit(spec(3), "test-damaged-3")
    assert any("train/checkpoints/epoch_2.pt is damaged" in r.message for r in caplog.records)
    assert checkpoints.committed_epochs(store) == [1, 2, 3]
    assert checkpoints.load(store, checkpoints.epoch_name(2))  # made again, readable
    [why] = (tmp_path / "damaged" / "_damaged").glob("*/train/checkpoints/epoch_2.pt.why.json")
    assert why.is_file() and "damaged checkpoint" in why.read_text()  # the bad bytes kept aside, not deleted


# -- 12. real-data tars: an unreadable sample is left out and counted; too many stop training -------

def _damaged_rows(bad: list[int], seed: int) -> list:
    import shapes

    rows = shapes.samples(2, seed=seed)  # 24
    for i in bad:  # a corrupt image, or a caption that is not UTF-8, in turn
        key, jpg, text, label = rows[i]
        rows[i] = (key, b"\xff\xd8 not a jpeg", text, label) if i % 2 else (key, jpg, b"\xff\xfe\x00caption", label)
    return rows


def test_unreadable_samples_are_left_out_and_counted_in_full_batches(tmp_path):
    import shapes

    from synthclip_core.clip_models import create_model
    from synthclip_core.training.data import RankBatches, epoch_loader
    from synthclip_core.training.layout import SourceShards, epoch_layout

    shards = shapes.write_shards(_damaged_rows([3, 8], seed=6), tmp_path / "shards", per_shard=12)
    layout = epoch_layout([SourceShards("data", (0, 1), (12, 12), 1.0, None)], 1, 0, 8, seed=0, epoch=0,
                          samples_per_epoch=None)
    _, preprocess, _, tokenizer = create_model("SynthCLIP-Tiny")
    batches = list(epoch_loader(RankBatches([u for u, _ in shards], layout, 0, 0, 0, 8, 0, 16, preprocess, tokenizer,
                                            [{"name": "data"}]), 0))
    assert [len(images) for images, _, _, _ in batches] == [8, 8, 8]  # full batches: every rank takes the same steps
    assert sum(int(bad.sum()) for _, _, _, bad in batches) == 2


def test_too_many_unreadable_samples_stop_training_once_in_one_line(ray_local, tmp_path):
    import shapes

    from synthclip_core.clip_models import model_config
    from synthclip_core.training import checkpoints
    from synthclip_core.training.config import TrainConfig
    from synthclip_core.training.fit import fit
    from synthclip_core.training.sources import SourceError
    from synthclip_core.training.spec import TrainSpec

    def spec(run_id: str, bad: list[int], share: float) -> TrainSpec:
        shards = shapes.write_shards(_damaged_rows(bad, seed=7), tmp_path / run_id, per_shard=12)
        t = TrainConfig(model="SynthCLIP-Tiny", epochs=1, global_batch_size=12, lr=1e-3, warmup_epochs=0,
                        loader_workers=0, cpus_per_worker=1, max_unreadable_share=share)
        return TrainSpec(ref=RunRef(str(tmp_path), run_id).as_dict(), shards=shards, train=t.model_dump(), seed=0,
                         model_cfg=model_config("SynthCLIP-Tiny"))

    fit(spec("one-bad", [5], share=0.01), "test-one-bad")  # 1 of 24: under 1% of (at least) 1000
    record = RunRef(str(tmp_path), "one-bad").store().record("train", checkpoints.epoch_name(1))
    assert [(s["samples_seen"], s["unreadable"]) for s in record["sources"]] == [(24, 1)]

    with pytest.raises(SourceError, match=r"training source 'data': 6 of the 12 samples read so far are unreadable "
                                          r"\(50.0%.*over train.max_unreadable_share 0.1%"):
        fit(spec("many-bad", list(range(0, 12, 2)) + list(range(13, 24, 2)), share=0.001), "test-many-bad")
    store = RunRef(str(tmp_path), "many-bad").store()
    assert not checkpoints.committed_epochs(store)  # stopped at the first step, not retried max_failures times
    assert "unreadable" in store.failure("train", "unreadable-data")["error"]


# -- 13. what fails every partition the same way is refused up front, or stops the stage at once ---

def test_a_size_no_diffusers_pipeline_takes_is_refused_up_front(tmp_path):
    config = tmp_path / "size.yaml"
    config.write_text((REPO / "configs" / "micro.yaml").read_text().replace("height: 64", "height: 500"))
    one_line_error(synthclip("run", str(config), "--root", str(tmp_path / "runs")), "images: Value error, height 500",
                   "multiples of 8")


@pytest.mark.parametrize("plugin,error", [
    ("AlwaysFails", r"ValueError: cannot render 64x64 with this model"),  # in every call
    ("CannotLoad", r"an actor could not start: RuntimeError: the model needs 40 GiB"),  # in every actor's constructor
])
def test_the_same_error_on_the_first_partitions_stops_the_stage_once(engine, tmp_path, plugin, error):
    import yaml

    from synthclip_core.compute.pool import RepeatedFailure
    from synthclip_core.pipeline import config_from_dict
    from synthclip_core.runs.lifecycle import open_run

    data = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
    data["images"]["backend"] = f"custom_renderers:{plugin}"
    run = open_run(config_from_dict(data), RunRef(str(tmp_path), "same-error"))
    for stage in ("concepts", "captions", "balanced"):
        assert execute(run, stage).ok
    planned = len(run.stage("images").plan(run))
    with pytest.raises(RepeatedFailure, match=rf"images: the first 3 partitions all failed with the same error.*{error}"):
        execute(run, "images")
    failed = run.store.failed("images")
    assert planned >= 5 and len(failed) == 3 and not run.store.committed("images")
    assert all(run.store.failure("images", o)["attempts"] <= 1 for o in failed)  # not every partition, not 3 times each


def test_a_user_error_inside_a_task_fails_the_command_without_tracebacks(engine, tmp_path):
    """Found in a stage's task, not before: Prefect's task and flow runs fail with the line, and no
    traceback reaches the user (a bug keeps its traceback: test_cli's --debug)."""
    import yaml

    data = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
    data["images"]["backend"] = "custom_renderers:AlwaysFails"
    config = tmp_path / "fails.yaml"
    config.write_text(yaml.safe_dump(data))
    result = synthclip("run", str(config), "--run-id", "fails", "--root", str(tmp_path / "runs"))
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "images: the first 3 partitions all failed with the same error" in last, result.stderr[-3000:]


# -- 16. resume-latest: the storage's clock orders runs, not the writer's -------------------------

def test_resume_latest_orders_runs_by_when_the_store_committed_them(tmp_path):
    import json
    import time

    from synthclip_core.pipeline import load_config
    from synthclip_core.runs.lifecycle import open_run, unfinished_runs

    cfg = load_config(REPO / "configs" / "micro.yaml")
    older = open_run(cfg, RunRef(str(tmp_path), "older"))
    time.sleep(0.01)
    open_run(cfg, RunRef(str(tmp_path), "newer"))
    record = older.store.path("_commits", "run", "run.json.json")  # its writer's clock ran a day ahead
    stat, doc = os.stat(record), json.loads(open(record).read())
    from synthclip_core.storage.seals import sealed

    open(record, "w").write(json.dumps(sealed({**doc, "committed_at": doc["committed_at"] + 86_400})))
    os.utime(record, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert unfinished_runs(str(tmp_path)) == ["older", "newer"]


# -- 11. two commands creating one run at once, with different configs ---------------------------

def test_the_command_that_loses_a_race_to_create_a_run_with_another_config_is_refused(tmp_path, monkeypatch):
    import synthclip_core.runs.lifecycle as run_module
    from synthclip_core.errors import RunStateError
    from synthclip_core.pipeline import load_config
    from synthclip_core.runs.lifecycle import open_run

    cfg = load_config(REPO / "configs" / "micro.yaml")
    other = cfg.model_copy(update={"captions": cfg.captions.model_copy(update={"temperature": 0.9})})
    ref = RunRef(str(tmp_path), "raced")
    open_run(other, ref)  # the other command's run.json lands first...
    real, looked = run_module._stored, []

    def looked_too_early(at):  # ...just after this command looked and found no run there
        looked.append(at)
        return None if len(looked) == 1 else real(at)

    monkeypatch.setattr(run_module, "_stored", looked_too_early)
    with pytest.raises(RunStateError, match="raced under .* was just created by another command with another config"):
        open_run(cfg, ref)
    monkeypatch.setattr(run_module, "_stored", real)
    assert run_module.load_run(ref).config.captions.temperature == 0.9  # the winner's run, untouched
