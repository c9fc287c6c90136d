"""Trust, round two: each hole a review found, proven closed by a test that failed before the fix
(docs/reliability.md, "Trust"; the numbers are the issue's)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from synthclip_core.errors import StorageError
from synthclip_core.runs.verify import verify
from synthclip_core.storage.store import Completion, RunRef, RunStore


@pytest.fixture
def store(tmp_path) -> RunStore:
    """A run with one finished stage: two committed outputs with rows and splits, marked complete."""
    store = RunStore(str(tmp_path), "r1")
    for name, rows in (("a.json", 3), ("b.json", 5)):
        store.commit("s", name, json.dumps({"rows": rows}).encode(), {"rows": rows, "splits": {"train": rows},
                                                                       "fingerprint": "f" * 16})
    store.mark_complete("s", Completion(["a.json", "b.json"], rows=8), {"fingerprint": "f" * 16})
    return store


def _edit(path: Path, **changes) -> None:
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, **changes}, indent=1, sort_keys=True))


# -- 1. a damaged completion marker is set aside; the stage reads unfinished and is marked again --

def test_a_torn_marker_is_set_aside_by_repair_and_the_stage_is_marked_again(store):
    marker = Path(store.path("_complete", "s.json"))
    torn = marker.read_bytes()[:40]
    marker.write_bytes(torn)  # torn by a bad disk
    assert store.completion("s") is None  # unfinished, not JSONDecodeError

    found = verify(store, repair=True)
    assert [f.problem for f in found.damaged] == ["unreadable completion marker (JSONDecodeError)"]
    [aside] = found.repaired
    assert "/_damaged/" in aside and Path(aside).read_bytes() == torn
    assert json.loads(Path(aside + ".why.json").read_text())["reason"].startswith("verify: unreadable")
    assert not marker.exists() and not store.temporaries()

    store.mark_complete("s", Completion(["a.json", "b.json"], rows=8))  # what the next call of the stage does
    assert store.completion("s").rows == 8 and verify(store).ok


def test_a_torn_marker_left_in_place_is_replaced_when_the_stage_finishes_again(store):
    marker = Path(store.path("_complete", "s.json"))
    marker.write_bytes(b'{"outputs": ["a.js')
    store.mark_complete("s", Completion(["a.json", "b.json"], rows=8))
    assert store.completion("s").rows == 8
    [aside] = Path(store.path("_damaged")).glob("*/_complete/s.json")
    assert aside.read_bytes() == b'{"outputs": ["a.js'  # kept


# -- 2. records and markers carry checksums: verify reports any changed value -----------------------

@pytest.mark.parametrize("field,value", [("rows", 4), ("splits", {"train": 2, "held_out": 1}), ("fingerprint", "0" * 16)])
def test_an_edited_commit_record_is_damage_and_stops_its_readers(store, field, value):
    _edit(Path(store.path("_commits", "s", "a.json.json")), **{field: value})
    found = verify(store)
    assert [(f.output, f.problem) for f in found.damaged] == [
        ("a.json", "its commit record: its checksum does not hold: it was changed after it was written")]
    with pytest.raises(StorageError, match=r"a.json.json: its checksum does not hold.*synthclip verify r1 --repair"):
        store.records("s")
    found = verify(store, repair=True)
    assert "a.json" not in store.committed("s") and store.completion("s") is None  # made again on resume


def test_an_edited_marker_is_damage_and_reads_unfinished(store):
    _edit(Path(store.path("_complete", "s.json")), outputs=["a.json"], rows=3)  # one output dropped, rows changed
    assert store.completion("s") is None
    found = verify(store)
    assert [f.problem for f in found.damaged] == ["completion marker: its checksum does not hold: it was changed after it was written"]


def test_a_marker_naming_an_output_without_record_is_damage(store):
    os.remove(store.path("_commits", "s", "b.json.json"))
    marker = Path(store.path("_complete", "s.json"))
    doc = json.loads(marker.read_text())
    assert store.completion("s") is None  # unfinished: b.json is made again
    found = verify(store)
    assert [f.problem for f in found.damaged][-1] == "completion marker names 1 output(s) with no commit record, e.g. b.json"
    assert doc["checksum"]


def test_records_written_before_seals_read_and_are_counted(store):
    path = Path(store.path("_commits", "s", "a.json.json"))
    doc = json.loads(path.read_text())
    del doc["checksum"]
    path.write_text(json.dumps(doc))
    found = verify(store)
    assert found.ok and found.unsealed == 1 and store.record("s", "a.json")["rows"] == 3


# -- 4. verify --repair beside a live writer: only stale temporaries go; retire and fail survive --

def test_repair_removes_only_temporaries_no_live_writer_holds(store):
    live, stale = Path(store.path("s", ".c.json" + "." + "a" * 32 + ".tmp")), Path(store.path("s", ".d.json." + "b" * 32 + ".tmp"))
    live.write_bytes(b"a writer between its fsync and its link")
    stale.write_bytes(b"a killed writer's")
    os.utime(stale, (time.time() - 7200,) * 2)
    found = verify(store, repair=True)
    assert found.kept_temporaries == [str(live)] and live.exists() and not stale.exists()


def test_retire_and_fail_survive_a_repair_removing_their_temporaries(store, monkeypatch):
    fs = store.fs
    moved = fs.mv

    def mv_then_repair_removes(src, dst, **kw):  # the repair runs between retire's move and its removal
        moved(src, dst, **kw)
        os.remove(dst)

    monkeypatch.setattr(fs, "mv", mv_then_repair_removes)
    store.retire("s", "a.json")
    assert "a.json" not in store.committed("s")
    monkeypatch.undo()

    piped, first = fs.pipe_file, []

    def pipe_then_repair_removes(path, data, **kw):
        piped(path, data, **kw)
        if ".tmp" in path and not first:
            first.append(path)
            os.remove(path)

    monkeypatch.setattr(fs, "pipe_file", pipe_then_repair_removes)
    store.fail("s", "c.json", "boom")
    assert store.failure("s", "c.json")["error"] == "boom"


# -- 9. each set-aside copy is kept: a second repair of the same output never replaces the first --

def test_setting_the_same_output_aside_twice_keeps_both_copies(store):
    first = store.quarantine("s", "a.json", "first")
    store.commit("s", "a.json", b'{"rows": 3}', {"rows": 3})
    second = store.quarantine("s", "a.json", "second")
    assert first != second
    assert [json.loads(Path(p + ".why.json").read_text())["reason"] for p in (first, second)] == ["first", "second"]
    assert Path(first).is_file() and Path(second).is_file()


# -- 5. every way a sample fails to decode is counted as unreadable, never raised through training --

def _png_chunk(kind: bytes, body: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _broken_images() -> dict[str, bytes]:
    """A corpus of files that are not readable images, one per way a decoder fails."""
    import io
    import struct
    import zlib

    from PIL import Image

    def encoded(fmt: str, mode: str = "RGB", size=(32, 32), **kw) -> bytes:
        out = io.BytesIO()
        Image.new(mode, size, 128).save(out, fmt, **kw)
        return out.getvalue()

    png, jpg = encoded("PNG"), encoded("JPEG")
    signature, ihdr_end = png[:8], 8 + 8 + 13 + 4
    iccp = signature + png[8:ihdr_end] + _png_chunk(b"iCCP", b"p\x00\x00" + zlib.compress(b"\x00" * (4 << 20))) + png[ihdr_end:]
    def with_header(width: int, height: int, depth: int, colour: int) -> bytes:
        return signature + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)) + png[ihdr_end:]

    return {
        "truncated jpeg": jpg[: len(jpg) // 2],
        "truncated png": png[: len(png) // 2],
        "bad header": b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        "jpeg header, no image": b"\xff\xd8\xff\xe0" + b"\x00" * 32,
        "decompression bomb (30000 x 30000 in a few bytes)": with_header(30000, 30000, 8, 2),
        "ICC profile that inflates past its limit": iccp,
        "a mode no decoder has (16-bit palette)": with_header(32, 32, 16, 3),
        "zero width and height": with_header(0, 0, 8, 2),
        "zero bytes": b"",
        "not an image": b"a caption, not a picture\n",
        "gif without frames": b"GIF89a" + struct.pack("<HH", 32, 32) + b"\x00\x00\x00;",
        "truncated webp": encoded("WEBP")[:40],
        "tiff with a lying strip": encoded("TIFF")[:-200],
    }


@pytest.mark.parametrize("name", list(_broken_images()))
def test_every_broken_image_of_the_corpus_is_unreadable(name):
    from synthclip_core.storage.decoding import Unreadable, open_image

    with pytest.raises(Unreadable):
        open_image(_broken_images()[name])


def test_the_training_loader_leaves_out_and_counts_every_broken_image(tmp_path):
    import shapes

    from synthclip_core.clip_models import create_model
    from synthclip_core.training.data import RankBatches, epoch_loader
    from synthclip_core.training.layout import SourceShards, epoch_layout

    corpus = list(_broken_images().values())
    rows = shapes.samples(4, seed=3)  # 48
    for i, data in enumerate(corpus):
        key, _, text, label = rows[i * 3]
        rows[i * 3] = (key, data, text, label)
    shards = shapes.write_shards(rows, tmp_path / "shards", per_shard=24)
    layout = epoch_layout([SourceShards("data", (0, 1), (24, 24), 1.0, None)], 1, 0, 8, seed=0, epoch=0,
                          samples_per_epoch=None)
    _, preprocess, _, tokenizer = create_model("SynthCLIP-Tiny")
    batches = list(epoch_loader(RankBatches([u for u, _ in shards], layout, 0, 0, 0, 8, 0, 16, preprocess, tokenizer,
                                            [{"name": "data"}]), 0))
    assert [len(images) for images, _, _, _ in batches] == [8] * 6
    assert sum(int(bad.sum()) for _, _, _, bad in batches) == len(corpus)


# -- 8. evaluation set names follow the id rule; printed commands are quoted --------------------------

@pytest.mark.parametrize("name", ["../../outside", "/abs", ".hidden", "a'; touch pwned; '", "a b"])
def test_an_evaluation_dataset_name_is_one_path_component(name):
    from synthclip_core.errors import ConfigError
    from synthclip_core.evaluation.config import EvalConfig
    from synthclip_core.pipeline import config_from_dict, load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "micro.yaml").model_dump(mode="json")
    cfg["eval"]["datasets"] = [{"name": name, "task": "zeroshot", "path": "x"}]
    with pytest.raises(ConfigError, match=r"eval.datasets.0.name"):
        config_from_dict(cfg, "job.yaml")
    assert EvalConfig.model_fields  # the section itself carries the rule


def test_printed_clip_benchmark_commands_are_quoted(tmp_path):
    import shlex

    from synthclip_core.runs.clip_benchmark_export import clip_benchmark_commands

    out = tmp_path / "it's a dir; touch pwned"
    [command] = clip_benchmark_commands({"coco": {"folder": f"{out}/coco", "task": "zeroshot_retrieval"}}, f"{out}/model")
    argv = shlex.split(command)
    assert argv[argv.index("--dataset_root") + 1] == f"{out}/{{dataset}}"
    assert argv[argv.index("--model") + 1] == f"local-dir:{out}/model" and "touch" not in argv


# -- 12. one damaged run.json never stops resume-latest for the whole root ----------------------------

@pytest.mark.parametrize("damage", ["torn", "edited"])
def test_a_damaged_run_is_listed_and_the_others_still_resume(tmp_path, damage):
    from synthclip_core.pipeline import load_config
    from synthclip_core.runs.lifecycle import open_run, runs_under, unfinished_runs
    from synthclip_core.storage.store import RunRef

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "micro.yaml")
    for run_id in ("first", "broken", "last"):
        open_run(cfg, RunRef(str(tmp_path), run_id))
        time.sleep(0.01)
    run_json = tmp_path / "broken" / "run.json"
    if damage == "torn":
        run_json.write_bytes(run_json.read_bytes()[:100])
    else:  # valid JSON, other bytes than committed
        run_json.write_text(run_json.read_text().replace('"seed": 0', '"seed": 1'))
    runs = runs_under(str(tmp_path))
    assert runs.unfinished == ["first", "last"] and unfinished_runs(str(tmp_path)) == ["first", "last"]
    assert list(runs.damaged) == ["broken"]
    assert "run.json is damaged (its sha256 is not its commit record's)" in runs.damaged["broken"]


# -- 11. automation never resumes a run a live writer holds ------------------------------------------

def test_resume_latest_leaves_a_run_alone_while_its_lease_is_live(tmp_path):
    from synthclip_core.pipeline import load_config
    from synthclip_core.runs import lease
    from synthclip_core.runs.lifecycle import open_run, runs_under

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "micro.yaml")
    older = open_run(cfg, RunRef(str(tmp_path), "older"))
    time.sleep(0.01)
    newer = open_run(cfg, RunRef(str(tmp_path), "newer"))
    assert runs_under(str(tmp_path)).free == ["older", "newer"]
    with lease.holding(newer.store, {"flow_run_id": "f-123", "host": "gpu-7", "pid": 42}):
        runs = runs_under(str(tmp_path))
        assert runs.free == ["older"] and runs.held["newer"].startswith("flow run f-123 on gpu-7 (pid 42)")
        assert lease.live_holder(newer.store, ended_flow_run="f-123") is None  # its flow run ended (auto-resume knows)
    assert runs_under(str(tmp_path)).free == ["older", "newer"]  # released
    newer.store.heartbeat(lease.NAME, {"flow_run_id": "f-9", "renewed_at": time.time() - lease.STALE_S - 1})
    assert runs_under(str(tmp_path)).free == ["older", "newer"]  # a killed writer's lease goes stale
    assert older.store.live(lease.NAME) is None


# -- 13. a mid-epoch position is only resumed on the data it counts ----------------------------------

def test_a_mid_epoch_checkpoint_made_on_other_data_is_passed_over_for_its_epochs_start(tmp_path):
    from synthclip_core.training import checkpoints
    from synthclip_core.training.config import TrainConfig
    from synthclip_core.training.spec import TrainSpec

    t = TrainConfig(model="SynthCLIP-Tiny", epochs=2, global_batch_size=8, loader_workers=0)
    shards = [(f"{tmp_path}/{i:05d}.tar", 24) for i in range(3)]
    spec = TrainSpec(ref=RunRef(str(tmp_path), "t").as_dict(), shards=shards, train=t.model_dump(), seed=0, model_cfg={"m": 1})
    fewer = TrainSpec(ref=spec.ref, shards=shards[:2], train=t.model_dump(), seed=0, model_cfg={"m": 1})  # one shard unreadable since
    assert spec.data_identity() != fewer.data_identity()
    assert spec.data_identity() == TrainSpec.from_dict(json.loads(spec.to_json())).data_identity()

    before = checkpoints.layout_key(1, 0, 8, spec.data_identity())
    now = checkpoints.layout_key(1, 0, 8, fewer.data_identity())
    store = RunRef(str(tmp_path), "t").store()
    for name, step in (("checkpoints/epoch_1.pt", 9), ("checkpoints/step_000000012.pt", 12)):
        store.commit("train", name, checkpoints.to_bytes({"step": step}), {"step": step, "model_cfg": {"m": 1}, "layout": before})
    assert checkpoints.latest(store, {"m": 1}, before)[0] == "checkpoints/step_000000012.pt"
    assert checkpoints.latest(store, {"m": 1}, now)[0] == "checkpoints/epoch_1.pt"  # the epoch's start, not a shifted position
    assert checkpoints.other_layout(store, {"m": 1}, now) == [("checkpoints/step_000000012.pt", before)]


# -- 14. settings that choose code are taken from a stored config only where the machine allows them --

def test_a_stored_config_may_choose_code_only_where_the_machine_allows_it(tmp_path, monkeypatch):
    import yaml

    from synthclip_core.errors import RunStateError
    from synthclip_core.pipeline import config_from_dict
    from synthclip_core.runs.lifecycle import load_run, open_run
    from synthclip_core.stages import code_settings
    from synthclip_core.stages.executor import execute
    from synthclip_core.stages.stage import StageBlocked

    monkeypatch.setenv(code_settings.ALLOW_ENV, "")  # restored after the test
    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "micro.yaml").read_text())
    data["images"]["backend"] = "custom_renderers:SomeUnreadable"
    data["captions"]["engine_options"] = {"trust_remote_code": True}
    cfg = config_from_dict(data)
    assert code_settings.chosen_code(cfg.images, "images") == {"images.backend": "custom_renderers:SomeUnreadable"}
    assert code_settings.chosen_code(cfg.captions, "captions") == {"captions.engine_options.trust_remote_code": "True"}

    given = open_run(cfg, RunRef(str(tmp_path), "plugged"))  # a person gave the file: allowed in this process
    with pytest.raises(StageBlocked):
        execute(given, "images")  # past the check: blocked on its upstream, as any stage would be

    monkeypatch.setenv(code_settings.ALLOW_ENV, "")  # another machine: a resume, auto-resume, a stage deployment
    stored = load_run(RunRef(str(tmp_path), "plugged"))
    with pytest.raises(RunStateError, match=r"^images.backend: 'custom_renderers:SomeUnreadable' chooses code.*set "
                                            r"SYNTHCLIP_ALLOW_CODE='images.backend=custom_renderers:SomeUnreadable'"):
        execute(stored, "images")
    with pytest.raises(RunStateError, match=r"^captions.engine_options.trust_remote_code: 'True' chooses code"):
        execute(stored, "captions")
    assert execute(stored, "concepts").ok  # a stage that chooses no code runs as before

    monkeypatch.setenv(code_settings.ALLOW_ENV, "images.backend=custom_renderers:SomeUnreadable")
    with pytest.raises(StageBlocked):
        execute(stored, "images")
