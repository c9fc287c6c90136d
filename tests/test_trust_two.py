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
from synthclip_core.storage.store import Completion, RunStore


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
