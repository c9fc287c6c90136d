"""The concept safety screen before captioning: a blocklist of whole-word terms and a text
classifier by name (a tiny one trained to call weapons unsafe), the dropped concepts counted,
kept with their reasons and listed for the report; runs without it keep their fingerprints; a bad
blocklist or classifier is refused before any work."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from synthclip_core.curation.safety import read_blocklist, screen
from synthclip_core.errors import ConfigError
from synthclip_core.pipeline import config_from_dict, fingerprints
from synthclip_core.runs.lifecycle import open_run
from synthclip_core.stages.concepts import UNSAFE, ConceptSafety
from synthclip_core.stages.executor import execute
from synthclip_core.storage.store import RunRef


def _blocklist(tmp_path: Path, text: str) -> str:
    path = tmp_path / "blocklist.txt"
    path.write_text(text)
    return str(path)


def test_blocked_terms_match_whole_words_in_any_case(tmp_path):
    uri = _blocklist(tmp_path, "# weapons\ngun\n  Assault   Rifle  # two words\n\ngun\n")
    assert read_blocklist(uri) == ["gun", "Assault Rifle"]
    concepts = ["gun dog", "gunwale", "GUN", "assault rifle", "rifle", "a big gun, loaded", "shotgun"]
    assert screen(concepts, ConceptSafety(blocklist=uri)) == {
        0: "blocklist: gun", 2: "blocklist: gun", 3: "blocklist: Assault Rifle", 5: "blocklist: gun"}


def test_the_tiny_classifier_flags_the_weapons_of_the_bank():
    concepts = ["assault rifle", "revolver", "tabby cat", "goldfish", "cannon", "daisy"]
    flagged = screen(concepts, ConceptSafety(classifier="tiny/safety"))
    assert sorted(flagged) == [0, 1, 4] and all(r.startswith("classifier: unsafe 0.") for r in flagged.values())


def _config(**safety) -> dict:
    return {"name": "safety", "concepts": {"source": "builtin:imagenet-1k", "per_partition": 400,
                                           **({"safety": safety} if safety else {})},
            "captions": {"model": "tiny/llm"}, "balanced": {"threshold": 5}, "images": {"model": "tiny/sd"},
            "train": {"model": "SynthCLIP-Tiny", "epochs": 1, "global_batch_size": 4}}


def test_the_concepts_stage_drops_lists_and_counts_unsafe_concepts(tmp_path):
    uri = _blocklist(tmp_path, "rifle\nrevolver\n")
    run = open_run(config_from_dict(_config(blocklist=uri, classifier="tiny/safety")), RunRef(str(tmp_path), "screened"))
    summary = execute(run, "concepts")
    unsafe = pq.read_table(run.store.uri("concepts", UNSAFE)).to_pylist()
    dropped = {u["concept"]: u["reason"] for u in unsafe}
    assert dropped["assault rifle"] == "blocklist: rifle" and dropped["revolver"] == "blocklist: revolver"
    assert dropped["cannon"].startswith("classifier: unsafe")
    assert summary.notes["dropped"]["unsafe"] == len(unsafe) == summary.notes["unsafe"]["dropped"]
    assert summary.rows == 1000 - len(unsafe) - summary.notes["dropped"].get("duplicate", 0)
    kept = {r["concept"] for o in run.store.committed("concepts") if o.startswith("part-")
            for r in pq.read_table(run.store.uri("concepts", o)).to_pylist()}
    assert not kept & set(dropped)
    print(f"tiny screen on ImageNet-1k: {len(unsafe)} of 1000 dropped:", sorted(dropped))


def test_a_run_without_the_screen_keeps_its_fingerprints(tmp_path):
    plain = fingerprints(config_from_dict(_config()))
    screened = fingerprints(config_from_dict(_config(blocklist=_blocklist(tmp_path, "rifle\n"))))
    assert plain != screened and plain == fingerprints(config_from_dict(_config(threshold=0.5)))


@pytest.mark.parametrize("safety, words", [
    ({"blocklist": "/nowhere/blocklist.txt"}, ["concepts.safety.blocklist", "/nowhere/blocklist.txt"]),
    ({"blocklist": "EMPTY"}, ["holds no terms"]),
    ({"classifier": "tiny/safety", "unsafe_labels": ["toxic"]}, ["unsafe_labels ['toxic']", "['safe', 'unsafe']"]),
])
def test_a_bad_screen_is_refused_before_anything_is_written(tmp_path, safety, words):
    if safety.get("blocklist") == "EMPTY":
        safety = {"blocklist": _blocklist(tmp_path, "# nothing\n\n")}
    with pytest.raises(ConfigError) as caught:
        run = open_run(config_from_dict(_config(**safety)), RunRef(str(tmp_path), "bad"))
        execute(run, "concepts")
    for word in words:
        assert word in str(caught.value)
    assert not list((tmp_path / "bad").glob("concepts/part-*"))
