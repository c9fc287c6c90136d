"""The closed loop (stage ``topup``): its rules against their definitions, a real micro run through
balancing and the loop on the tiny LLM (rounds committed with their round in lineage, resumed
from any point to the same bytes, rendered by the images stage), runs without it unchanged, bad
settings refused before any work, and the offline run's coverage gained per new caption."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from synthclip_core.curation.closed_loop import coverage, report_table, round_requests, verdict
from synthclip_core.errors import ConfigError
from synthclip_core.pipeline import config_from_dict, fingerprints
from synthclip_core.runs.lifecycle import new_run, open_run
from synthclip_core.stages.executor import execute
from synthclip_core.stages.topup import NAME, in_round, kept_part
from synthclip_core.storage.store import RunRef

REPO = Path(__file__).resolve().parents[1]


# -- the rules -----------------------------------------------------------------------------------

def test_requests_fill_each_gap_with_oversampling_and_skip_held_out_concepts():
    kept = np.array([0, 1, 3, 5, 0])
    eligible = np.array([True, True, True, True, False])
    assert round_requests(kept, eligible, target=3, oversample=1.5, budget=None).tolist() == [5, 3, 0, 0, 0]
    assert round_requests(kept, eligible, target=3, oversample=1.0, budget=None).tolist() == [3, 2, 0, 0, 0]


def test_a_budget_serves_the_concepts_with_fewest_kept_captions_first():
    kept = np.array([2, 0, 1, 0])
    eligible = np.ones(4, bool)
    asks = round_requests(kept, eligible, target=3, oversample=1.0, budget=5)
    assert asks.tolist() == [0, 3, 0, 2]  # the two with none first (bank order), the second gets what is left
    assert round_requests(kept, eligible, target=3, oversample=1.0, budget=0).sum() == 0


def test_verdicts_follow_balancing_and_leave_the_evaluation_set_alone():
    ids, probs = ["a", "b", "c"], np.array([1.0, 1.0, 0.0])
    held = np.array([False, True, False])
    args = dict(seen={7}, held_out=held, seed=0, caption_id="x", concept_ids=ids, probs=probs)
    assert verdict("", 0, [], **args) == "rejected"
    assert verdict("a dog", 7, [0], **args) == "duplicate"
    assert verdict("a dog", 8, [], **args) == "no_match"
    assert verdict("a dog", 8, [0, 1], **args) == "held_out"
    assert verdict("a dog", 8, [2], **args) == "sampled_out"  # p = 0: a concept balancing capped
    assert verdict("a dog", 8, [0, 2], **args) == "kept"  # any concept that passes keeps it, as in MetaCLIP
    assert coverage(np.array([0, 1, 3]), 3) == {"at_least_1": 2, "at_least_target": 1, "kept_captions": 4}


# -- a real run ----------------------------------------------------------------------------------

def micro(**topup) -> dict:
    data = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
    data["balanced"]["threshold"] = 3
    data["topup"] = {"target": 3, **topup}
    return data


def _open(root: Path, run_id: str, data: dict):
    return open_run(config_from_dict(data), RunRef(str(root), run_id))


def _through_topup(run):
    for name in ("concepts", "captions", "balanced", "topup"):
        summary = execute(run, name)
    return summary


@pytest.fixture(scope="module")
def looped(engine, tmp_path_factory):
    root = tmp_path_factory.mktemp("topup")
    run = _open(root, "looped", micro(max_rounds=2, per_partition=16))
    return root, run, _through_topup(run)


def test_rounds_top_up_the_concepts_under_target(looped):
    _, run, summary = looped
    notes = summary.notes
    assert summary.ok and notes["rounds"], notes
    first = notes["rounds"][0]
    assert first["before"] == notes["before"] and first["asked"] > 0
    assert notes["after"]["at_least_target"] > notes["before"]["at_least_target"], notes
    assert notes["kept"] == sum(r["kept"] for r in notes["rounds"]) == summary.rows
    store = run.store
    for r in notes["rounds"]:
        plan = store.record(NAME, in_round(r["round"], "plan.parquet"))
        assert plan["round"] == r["round"] and plan["rows"] == r["asked"]
        kept = store.record(NAME, kept_part(r["round"], 0))
        assert kept["round"] == r["round"] and sum(kept["verdicts"].values()) == kept["asked"]
        captions = store.record(NAME, in_round(r["round"], "captions-00000.parquet"))
        assert captions["round"] == r["round"] and captions["template"] == "synthclip-focused@v1"
    assert "topup/histogram.png" in summary.pictures
    table = report_table(notes)
    assert "| after balancing |" in table and f"stopped: {notes['stop']}" in table


def test_new_captions_have_new_seeds_and_ids_and_no_kept_copy(looped):
    import pandas as pd

    _, run, summary = looped
    store = run.store
    captions = pd.concat([pd.read_parquet(store.uri("captions", o)) for o in sorted(store.committed("captions"))
                          if o.startswith("part-")])
    new = pd.concat([pd.read_parquet(store.uri(NAME, o)) for o in sorted(store.committed(NAME)) if "/captions-" in o])
    assert not set(new["caption_id"]) & set(captions["caption_id"]) and not set(new["seed"]) & set(captions["seed"])
    assert new["index"].min() >= run.config.captions.per_concept
    balanced = pd.concat([pd.read_parquet(store.uri("balanced", o)) for o in sorted(store.committed("balanced"))
                          if o.startswith("part-")])
    kept = pd.concat([pd.read_parquet(store.uri(NAME, o)) for o in sorted(store.committed(NAME)) if o.startswith("part-")])
    assert not set(kept["caption"]) & set(balanced["caption"]) and kept["caption"].is_unique
    assert set(kept["split"]) == {"train"}  # the evaluation set stays the one balancing fixed


def test_the_images_stage_renders_the_loops_captions(looped):
    from synthclip_core.stages.images import plan as plan_images

    _, run, summary = looped
    planned = plan_images(run)
    assert any(o.startswith("part-r1-") for o in planned) and any(o.startswith("part-0") for o in planned)


def test_a_resumed_loop_makes_the_same_bytes_from_any_point(looped, engine):
    """The looped run copied, less its loop's outputs from a cut on (a round stopped there), resumed."""
    import shutil

    from synthclip_core.runs.lifecycle import load_run

    root, run, summary = looped
    store = run.store
    outputs = sorted(store.committed(NAME), key=lambda o: store.record(NAME, o)["committed_at"])
    last = summary.notes["rounds"][-1]["round"]
    for cut in (kept_part(last, 0), in_round(last, "captions-00000.parquet"), in_round(1, "coverage.parquet")):
        copy = f"resumed-{cut.replace('/', '-')}"
        shutil.copytree(root / "looped", root / copy)
        (root / copy / "_complete" / f"{NAME}.json").unlink()
        for output in outputs[outputs.index(cut):]:
            (root / copy / "_commits" / NAME / f"{output}.json").unlink()
        resumed = load_run(RunRef(str(root), copy))
        again = execute(resumed, NAME)
        assert again.notes == summary.notes, cut
        assert again.computed > 0 and resumed.store.committed(NAME) == store.committed(NAME)
        for output in outputs:
            if "/captions-" not in output:  # LLM outputs are not promised bit for bit across writers
                assert resumed.store.record(NAME, output)["sha256"] == store.record(NAME, output)["sha256"], (cut, output)


def test_a_run_without_the_loop_has_no_topup_stage_and_its_fingerprints(looped):
    _, run, _ = looped
    from synthclip_core.stages.topup import TopupConfig

    off = run.config.model_copy(update={"topup": TopupConfig()})  # the same pinned config, the loop off
    plain = config_from_dict(yaml.safe_load((REPO / "configs" / "micro.yaml").read_text()))
    assert "topup" not in fingerprints(off) and "topup" not in fingerprints(plain)
    on = fingerprints(run.config)
    assert [k for k in on if on[k] != fingerprints(off).get(k)] == ["topup", "images", "shards", "train", "eval"]
    assert "topup" in new_run(run.config, RunRef("unused", "x")).names


def test_a_fork_with_the_loop_on_reuses_the_run_before_it(looped):
    root, run, _ = looped
    base = _open(root, "base", {**micro(), "topup": {"target": 0}})
    for name in ("concepts", "captions", "balanced"):
        execute(base, name)
    fork = open_run(config_from_dict(micro(max_rounds=1, per_partition=16)), RunRef(str(root), "base"), fork=True)
    assert fork.ref.run_id.startswith("base-fork-")
    assert all(fork.completion(name) is not None for name in ("concepts", "captions", "balanced"))
    assert fork.completion(NAME) is None


@pytest.mark.parametrize("topup, words", [
    ({"target": 4}, ["topup.target (4)", "balanced.threshold (3)"]),
    ({"target": 2, "template": "nope"}, ["unknown prompt template 'nope'"]),
])
def test_bad_loop_settings_are_refused_before_any_work(tmp_path, topup, words):
    data = micro()
    data["topup"] = topup
    with pytest.raises(ConfigError) as caught:
        _open(tmp_path, "bad", data)
    for word in words:
        assert word in str(caught.value)
    assert not (tmp_path / "bad").exists()


def test_the_offline_run_gains_coverage_per_new_caption(offline_run):
    """A fork of the shared offline run with the loop on, to the end of the loop."""
    run, _ = offline_run
    data = yaml.safe_load((REPO / "configs" / "offline.yaml").read_text())
    data["topup"] = {"target": 6}
    fork = open_run(config_from_dict(data), run.ref, fork=True)
    summary = execute(fork, NAME)
    notes = summary.notes
    print("offline closed loop:", {k: notes[k] for k in ("before", "after", "asked", "kept", "stop",
                                                          "concepts_reaching_target_per_1000_captions")})
    assert notes["after"]["at_least_target"] > notes["before"]["at_least_target"]
    assert notes["concepts_reaching_target_per_1000_captions"] > 0
