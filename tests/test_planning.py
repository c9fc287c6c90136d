"""Sizing by target pairs and the plan of a run: counts, Ray asks, GPU-hours and bytes before any work."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from synthclip_core.errors import ConfigError
from synthclip_core.pipeline import config_from_dict, load_config
from synthclip_core.planning.estimates import plan_run
from synthclip_core.planning.sizing import counts_for, load_rates, measured_rates, sized

REPO = Path(__file__).resolve().parents[1]


def _config(name: str, **top):
    data = yaml.safe_load((REPO / "configs" / name).read_text())
    data.update(top)
    return config_from_dict(data)


def test_counts_for_a_target_use_the_bank_then_captions_per_concept():
    assert counts_for(1_000_000, 500_000, 0.72) == (462_963, 3)  # 1.39M captions: 3 per concept over most of the bank
    assert counts_for(1_000, 500_000, 0.5) == (2_000, 1)  # one caption each is plenty: fewer concepts
    assert counts_for(30_000_000, 500_000, 0.5, limit=100_000) == (100_000, 600)  # a limit caps the concepts
    concepts, per_concept = counts_for(123_457, 1_000, 0.7)
    assert concepts * per_concept * 0.7 >= 123_457 > (concepts * per_concept - concepts) * 0.7


def test_held_out_concepts_are_sized_the_same_with_or_without_a_limit():
    """Trust round two, 10: 100,000 pairs with 500 of 1,000 concepts held out were sized for
    49,913 train pairs without a limit and 99,826 with ``limit: 1000``; a hold-out of every
    concept divided by zero."""
    cfg = _config("synthci-1node.yaml", target_pairs=100_000)
    cfg = cfg.model_copy(update={"balanced": cfg.balanced.model_copy(update={"holdout_concepts": 500})})
    ppc = load_rates(cfg.rates).pairs_per_caption(cfg)
    without = sized(cfg, bank_size=1_000)
    with_limit = sized(cfg.model_copy(update={"concepts": cfg.concepts.model_copy(update={"limit": 1_000})}), bank_size=1_000)
    for run in (without, with_limit):
        assert (run.concepts.limit, run.captions.per_concept) == (without.concepts.limit, without.captions.per_concept)
        trained = (run.concepts.limit - 500) * run.captions.per_concept * ppc
        assert 100_000 <= trained < 100_000 * 1.01, trained
    limited = cfg.model_copy(update={"concepts": cfg.concepts.model_copy(update={"limit": 500})})
    with pytest.raises(ConfigError, match=r"balanced.holdout_concepts \(500\) leaves no concept to train: the run has "
                                          r"500 concept\(s\) \(concepts.limit\)"):
        sized(limited, bank_size=1_000)


def test_a_sized_config_reaches_its_target_and_sizing_is_idempotent():
    cfg = _config("synthci-1node.yaml")
    rates = load_rates(cfg.rates)
    once = sized(cfg, bank_size=500_000)
    pairs = once.concepts.limit * once.captions.per_concept * rates.pairs_per_caption(cfg)
    assert cfg.target_pairs <= pairs < cfg.target_pairs * 1.01
    assert sized(once, bank_size=500_000) == once
    assert sized(_config("micro.yaml"), bank_size=10) == _config("micro.yaml")  # no target: unchanged


def test_a_plan_priced_by_other_rates_is_also_sized_by_them():
    """``plan --rates-from RUN``: the run's shares both size the target and price the plan."""
    cfg = _config("synthci-1node.yaml")
    halved = load_rates(cfg.rates).model_copy(update={"balance_keep": load_rates(cfg.rates).balance_keep / 2})
    plan = plan_run(cfg, bank_size=500_000, rates=halved, parameters=149_620_737)
    assert cfg.target_pairs <= plan.train_pairs < cfg.target_pairs * 1.01, plan.train_pairs


def test_unknown_rates_are_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="rates: 'nowhere.json' is neither a built-in"):
        load_rates("nowhere.json")
    bad = tmp_path / "rates.json"
    bad.write_text('{"name": "x"}')
    with pytest.raises(ConfigError, match=r"rates .*rates.json.*not a rates file"):
        load_rates(str(bad))


def test_the_plan_of_the_paper_preset_states_its_asks_and_costs():
    cfg = load_config(REPO / "configs" / "synthci-30m.yaml")
    plan = plan_run(cfg, bank_size=500_000, parameters=149_620_737)
    stages = {s.stage: s for s in plan.stages}
    assert list(stages) == ["concepts", "captions", "balanced", "images", "shards", "train", "eval", "card"]
    assert stages["captions"].rows == 30_000_000 and stages["captions"].outputs == 500
    assert stages["captions"].pools == ["8 x {CPU: 1, GPU: 1, caption_gpu: 1}"]
    assert stages["train"].pools == ["32 x {CPU: 8, GPU: 1, train_gpu: 1} (training)"]
    assert stages["images"].outputs == 500 * math.ceil(stages["balanced"].rows / 500 / 512)
    # the render's GPU-hours: its images at the paper's 1.1 images/s per A100
    assert stages["images"].gpu_hours == pytest.approx(stages["images"].rows / 1.1 / 3600)
    assert stages["balanced"].gpu_hours == 0 and plan.gpu_hours > stages["images"].gpu_hours
    assert stages["train"].stored_bytes == 41 * 149_620_737 * 12  # 40 epoch checkpoints and one step checkpoint


def test_a_plan_with_a_runs_own_rates_predicts_its_counts(offline_run):
    """Priced by its own measured shares, the plan of the offline config counts what the run made."""
    run, _ = offline_run
    rates = measured_rates(run)
    assert 0 < rates.caption_keep <= 1 and 0 < rates.balance_keep < 1 and rates.bytes_per_image_pixel > 0
    plan = {s.stage: s for s in plan_run(run.config, bank_size=1000, rates=rates).stages}
    store = run.store
    parts = {stage: len([o for o in store.committed(stage) if o.startswith("part-")]) for stage in ("captions", "images")}
    assert plan["captions"].outputs == parts["captions"]
    assert abs(plan["images"].outputs - parts["images"]) <= parts["captions"]  # slices of each balanced partition
    assert plan["balanced"].rows == run.completion("balanced").rows
    shards = len([o for o in store.committed("shards") if o.endswith(".tar")])
    assert abs(plan["shards"].outputs - shards) <= 1
    # the eval split is drawn by hash: the train count is binomial around the plan's
    spread = math.sqrt(plan["balanced"].rows * run.config.balanced.eval_fraction * (1 - run.config.balanced.eval_fraction))
    assert abs(plan["shards"].rows - run.completion("shards").rows) <= 3 * spread


def test_a_run_sized_by_target_keeps_its_counts_when_it_continues(tiny_models, tmp_path):
    from synthclip_core.runs.lifecycle import load_run, open_run
    from synthclip_core.storage.store import RunRef

    cfg = _config("micro.yaml", target_pairs=40)
    run = open_run(cfg, RunRef(str(tmp_path), "sized"))
    per_concept, limit = run.config.captions.per_concept, run.config.concepts.limit
    assert per_concept * (limit - cfg.balanced.held_out_count) * load_rates("offline").pairs_per_caption(cfg) >= 40
    stored = load_run(RunRef(str(tmp_path), "sized")).config
    assert (stored.captions.per_concept, stored.concepts.limit, stored.target_pairs) == (per_concept, limit, 40)
    again = open_run(cfg, RunRef(str(tmp_path), "sized"))  # the same config continues the run: the same counts
    assert again.fingerprints == run.fingerprints


def test_the_plan_counts_the_rewrites_captions_and_gpu_hours():
    data = yaml.safe_load((REPO / "configs" / "synthci-30m.yaml").read_text())
    data["rewrites"] = {"per_caption": 3}
    cfg = config_from_dict(data)
    plan = plan_run(cfg, bank_size=500_000, parameters=149_620_737)
    stages = {s.stage: s for s in plan.stages}
    assert list(stages)[3:6] == ["images", "rewrites", "shards"]
    rewrites, shards = stages["rewrites"], stages["shards"]
    assert rewrites.pools == stages["captions"].pools  # the caption pool writes them
    assert rewrites.rows == pytest.approx(3 * shards.rows, rel=0.01)  # three per train caption
    per_s = rewrites.rows / rewrites.gpu_hours / 3600
    assert per_s == pytest.approx(stages["captions"].rows / stages["captions"].gpu_hours / 3600)  # at the caption rate
    assert rewrites.gpu_hours < stages["images"].gpu_hours / 5  # text-side compute: a fraction of the render's
