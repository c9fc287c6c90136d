"""The cost ledger on the offline run: per-stage spend is the sum over its records, and ``synthclip
cost`` prints it against the plan at a named price table; a budget stops the images stage after
the partitions in flight commit, with one line, and a raised budget finishes it with the same
bytes as the uninterrupted run; bad price tables and budgets are one line each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from commands import one_line_error, synthclip
from faults import copy_run

from synthclip_core.config import Budget
from synthclip_core.errors import BudgetExhausted, ConfigError
from synthclip_core.pipeline import config_from_dict
from synthclip_core.planning.budget import Guard, Limit, budget_of
from synthclip_core.planning.estimates import plan_run
from synthclip_core.planning.prices import PriceTable, load_prices
from synthclip_core.planning.sizing import load_rates, measured_rates
from synthclip_core.runs.lifecycle import load_run, open_run
from synthclip_core.stages.executor import execute
from synthclip_core.storage.ledger import Spend, held, run_spend, spend_records, stage_spend, total
from synthclip_core.storage.store import RunRef

REPO = Path(__file__).resolve().parents[1]


def by_hand(store, stage: str) -> tuple[float, float]:
    """(GPU-seconds, CPU-seconds) of a stage, read from the files themselves: every commit record's
    ``held`` and every spend record's."""
    helds = []
    for path in store.fs.find(store.path("_commits", stage)):
        helds += [json.loads(store.fs.cat_file(path)).get("held")]
    for path in store.fs.find(store.path("_spend", stage)) if store.fs.exists(store.path("_spend", stage)) else []:
        helds += [json.loads(store.fs.cat_file(path))["held"]]
    helds = [h for h in helds if h]
    return sum(h["seconds"] * h["gpus"] for h in helds), sum(h["seconds"] * h["cpus"] for h in helds)


def test_the_ledger_is_the_sum_of_the_records_and_cost_prints_it_against_the_plan(offline_run):
    run, _ = offline_run
    store = run.store
    for stage in run.names:
        gpu_s, cpu_s = by_hand(store, stage)
        spend = stage_spend(store, stage)
        assert sum(spend.gpu_s.values()) == pytest.approx(gpu_s, abs=1e-6) and spend.cpu_s == pytest.approx(cpu_s, abs=1e-6)
        assert spend.by_kind.get("driver", 0) > 0  # every stage call's own process is counted
    images = store.records("images")
    parts = [r for o, r in images.items() if o.startswith("part-")]
    assert parts and all(r["held"]["seconds"] > 0 and r["held"]["cpus"] == 1 and r["held"]["gpus"] == 0 for r in parts)
    # one actor's partitions, held back to back: together no longer than the pool ran
    started = min(r["timings"]["started"] for r in parts)
    assert sum(r["held"]["seconds"] for r in parts) <= max(r["committed_at"] for r in parts) - started + 60
    assert any(o.startswith("metrics/") and r["held"]["seconds"] > 0 for o, r in store.records("train").items())
    measured = measured_rates(run).throughput  # what `synthclip plan --rates-from` plans with
    assert measured.images_per_gpu_s == pytest.approx(sum(r["rows"] for r in parts) / sum(r["held"]["seconds"] for r in parts))
    source = measured.sources["images_per_gpu_s"]
    assert "measured on run offline-shared" in source and "CPU-seconds" in source

    shown = synthclip("cost", run.ref.run_id, "--root", run.ref.root, "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    figures = json.loads(shown.stdout)
    assert figures["prices"] == "list-2026-12" and figures["kept_pairs"] == run.completion("shards").rows
    for stage in run.names:
        assert figures["stages"][stage]["cpu_hours"] == pytest.approx(stage_spend(store, stage).cpu_hours, abs=1e-5)
        assert figures["stages"][stage]["planned_gpu_hours"] == 0  # a CPU run: the plan prices no GPU
    spent = total(run_spend(store, run.names))
    assert figures["money"] == pytest.approx(spent.cpu_hours * load_prices().cpu_hour, rel=1e-3)
    table = synthclip("cost", run.ref.run_id, "--root", run.ref.root)
    assert "list-2026-12" in table.stdout and "kept pairs" in table.stdout and "images" in table.stdout


def test_a_budget_stops_the_images_stage_and_a_raised_one_finishes_it_with_the_same_bytes(offline_run, tmp_path):
    run, _ = offline_run
    copy = copy_run(run.store, tmp_path, forget=("images", "shards", "train", "eval", "card"))
    ref = RunRef(str(tmp_path), run.ref.run_id)
    spent = total(run_spend(copy, run.names)).cpu_hours
    root = ("--root", str(tmp_path))

    one_line_error(synthclip("budget", ref.run_id, *root, "--cpu-hours", "0"), "budget.cpu_hours", "greater than 0")
    one_line_error(synthclip("budget", ref.run_id, *root, "--cpu-hours", f"{spent / 2:.8f}"), "budget.cpu_hours",
                   "below what", "already spent")
    assert synthclip("budget", ref.run_id, *root, "--cpu-hours", f"{spent + 1 / 3600:.8f}").returncode == 0

    stopped = synthclip("resume", ref.run_id, *root, timeout=600)
    assert stopped.returncode != 0
    line = next(ln for ln in (stopped.stdout + stopped.stderr).splitlines() if "budget: run" in ln)
    assert "budget.cpu_hours" in line and "images stopped handing out partitions" in line and "synthclip budget" in line
    planned = [o for o in run.require("images").outputs if o.startswith("part-")]
    made = {o for o in copy.committed("images") if o.startswith("part-")}
    assert 0 < len(made) < len(planned)  # what was in flight committed, the rest waits
    before = copy.records("images", sorted(made))

    per_stage = synthclip("budget", ref.run_id, *root, "--cpu-hours", "5", "--stage", "images")
    shown = per_stage.stdout + per_stage.stderr  # the run's own limit is passed: raising a stage's is still allowed
    assert per_stage.returncode == 0 and "stage images:" in shown and "of 5 CPU-hours" in shown and "run: " in shown
    # raised the other way: `synthclip run CONFIG` again with the config's budget raised (never below what is spent)
    with pytest.raises(ConfigError, match="budget.cpu_hours 1e-06 is below what"):
        open_run(run.config.model_copy(update={"budget": Budget(cpu_hours=1e-6)}), ref)
    raised = open_run(run.config.model_copy(update={"budget": Budget(cpu_hours=10)}), ref)
    assert budget_of(raised).cpu_hours == 10 and not raised.ignored
    assert execute(load_run(ref), "images").ok
    original = run.store.records("images", planned)
    assert {o: r["sha256"] for o, r in copy.records("images", planned).items()} == {o: r["sha256"] for o, r in original.items()}
    assert copy.records("images", sorted(made)) == before  # what the first call made is neither made nor counted again
    counted = [o for o, r in copy.records("images").items() if "held" in r]
    assert sorted(counted) == sorted(planned)  # each partition counted once, over the two calls
    assert [d["kind"] for d in spend_records(copy, "images")] == ["driver", "driver"]  # the stopped call, the finishing one


def test_bad_price_tables_are_one_line(tmp_path):
    unversioned = tmp_path / "unversioned.json"
    unversioned.write_text(json.dumps({"gpu_hour": {"A100": 1.0}, "cpu_hour": 0.05}))
    negative = tmp_path / "negative.json"
    negative.write_text(json.dumps({"version": "mine-1", "gpu_hour": {"A100": -1.0}}))
    for path, words in ((unversioned, ("version", "Field required")), (negative, ("gpu_hour", "cannot be negative", "A100 (-1)"))):
        with pytest.raises(ConfigError) as caught:
            load_prices(str(path))
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)
        assert all(w in str(caught.value) for w in words), caught.value


def test_a_gpu_hour_is_priced_by_the_type_its_name_contains():
    prices = PriceTable(version="t-1", gpu_hour={"A100": 2.0, "H100": 3.0, "default": 5.0}, cpu_hour=0.1)
    spend = Spend()
    spend.add(held(3600, cpus=8, gpus=2, accelerator="NVIDIA H100 80GB HBM3"))  # 2 H100-hours, 8 CPU-hours
    spend.add(held(1800, cpus=1, gpus=1, accelerator="A100"))
    spend.add(held(3600, cpus=1, gpus=1, accelerator="MI300X"))  # not listed: the default
    spend.add(held(7200, cpus=2), kind="failed")  # CPU only: 4 CPU-hours
    assert spend.gpu_s == {"NVIDIA H100 80GB HBM3": 7200, "A100": 1800, "MI300X": 3600}
    assert spend.cpu_hours == pytest.approx(8 + 0.5 + 1 + 4)
    assert prices.money(spend) == pytest.approx(2 * 3.0 + 0.5 * 2.0 + 5.0 + 13.5 * 0.1)
    assert spend.wasted_share == pytest.approx(4 * 3600 / (7200 + 1800 + 3600 + 4 * 3600))
    with pytest.raises(ConfigError, match="t-2.*no price for the accelerator 'NVIDIA H100 80GB HBM3' and no 'default'"):
        PriceTable(version="t-2", gpu_hour={"A100": 2.0}).money(spend)


def test_a_stage_asking_for_a_node_group_is_planned_at_that_groups_throughput():
    """Mixed accelerators: the rates name an H100 group four times as fast at rendering; a config
    whose images ask for that group (by Ray's accelerator resource) is planned at its rate."""
    data = yaml.safe_load((REPO / "configs" / "offline.yaml").read_text())
    data["images"]["num_gpus"] = 1
    plain = config_from_dict(data)
    data["images"]["ray_resources"] = {"accelerator_type:H100": 0.001}
    grouped = config_from_dict(data)
    rates = load_rates("offline")
    h100 = rates.throughput.model_copy(update={"images_per_gpu_s": rates.throughput.images_per_gpu_s * 4})
    rates = rates.model_copy(update={"groups": {"accelerator_type:H100": h100}})
    before = {s.stage: s for s in plan_run(plain, 1000, rates, parameters=1_000_000).stages}["images"]
    after = {s.stage: s for s in plan_run(grouped, 1000, rates, parameters=1_000_000).stages}["images"]
    assert after.gpu_hours == pytest.approx(before.gpu_hours / 4) and after.gpu_hours > 0
    assert "on accelerator_type:H100" in after.basis and "on accelerator_type" not in before.basis


def test_a_guard_stops_at_the_first_limit_one_more_partition_would_pass():
    guard = Guard("r", "images", (Limit("budget.gpu_hours", "gpu_hours", 10.0, 9.0),
                                  Limit("budget.stages.images.cpu_hours", "cpu_hours", 2.0, 0.5)))
    guard.check_start()  # nothing reached yet
    assert guard.stops(gpu_s=0.5 * 3600, cpu_s=1.0 * 3600) is None
    limit, reached = guard.stops(gpu_s=1.5 * 3600, cpu_s=0)
    assert limit.field == "budget.gpu_hours" and reached == pytest.approx(10.5)
    line = str(guard.stopped((limit, reached), left=7, planned=20))
    assert "budget.gpu_hours" in line and "7 of 20 still to do" in line and "synthclip budget r --gpu-hours N" in line
    limit, _ = guard.stops(gpu_s=0, cpu_s=1.6 * 3600)
    assert "--stage images" in str(guard.stopped((limit, 2.1), 1, 2))
    with pytest.raises(BudgetExhausted, match="spent 10.0000 of its 10 GPU-hours.*images does not start"):
        Guard("r", "images", (Limit("budget.gpu_hours", "gpu_hours", 10.0, 10.0),)).check_start()
