"""The scaling ladder: nested rungs, one recipe, the same data for every model, a study that
resumes without training a rung twice, and one line for each kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthclip_core.studies.ladder import SYNTHETIC, LadderSpec, rungs
from synthclip_core.training.layout import SourceShards, subset

REPO = Path(__file__).resolve().parents[1]
RECIPE = {"model": "SynthCLIP-Tiny", "epochs": 3, "global_batch_size": 8}


def _spec(**kw) -> LadderSpec:
    return LadderSpec(**{"run_id": "r", "pairs": 400, "seed": 3, "train": RECIPE, "eval": {}, **kw})


def _samples(pieces) -> set[tuple[int, int]]:
    return {(p.shard, p.start + i) for p in pieces for i in range(p.count)}


def test_rungs_are_nested_subsets_of_one_seeded_order_with_one_recipe():
    spec = _spec()
    ladder = rungs(spec, "ladder-r-x", "/tmp/root")
    assert [r.pairs for r in ladder] == [50, 100, 200, 400]
    for rung in ladder:
        (source,) = rung.config.train.sources
        assert (source.name, source.uri, source.limit) == (SYNTHETIC, "run:r", rung.pairs)
        assert rung.config.seed == 3 and rung.config.train.epochs == 3 and rung.config.eval.held_out_of == "run:r"
    sizes = (37, 60, 3, 100, 200)  # the run's shards
    kept = [_samples(subset(SourceShards(SYNTHETIC, tuple(range(5)), sizes, 1.0, r.pairs), seed=3)) for r in ladder]
    assert [len(k) for k in kept] == [50, 100, 200, 400]
    assert all(small < large for small, large in zip(kept, kept[1:]))  # each rung holds the smaller rungs' pairs


def test_a_source_set_against_the_run_climbs_the_sizes_it_holds():
    spec = _spec(against={"real": "/data/real/{00000..00003}.tar"}, against_pairs={"real": 150})
    ladder = rungs(spec, "ladder-r-x", "/tmp/root")
    assert [(r.source, r.pairs) for r in ladder] == [(SYNTHETIC, 50), (SYNTHETIC, 100), (SYNTHETIC, 200), (SYNTHETIC, 400),
                                                     ("real", 50), ("real", 100)]
    assert ladder[-1].job_id.startswith("rung-r-real-100-")
    again = rungs(_spec(), "ladder-other", "/tmp/root")  # a ladder without the other source shares its rungs
    assert [r.job_id for r in again] == [r.job_id for r in ladder if r.source == SYNTHETIC]


@pytest.mark.parametrize("fractions, message", [((0.0, 0.5), "each must be in \\(0, 1\\], got 0"),
                                                ((0.5, 1.5), "each must be in \\(0, 1\\], got 1.5"),
                                                ((), "name at least one fraction")])
def test_fractions_outside_zero_to_one_are_one_line(fractions, message):
    with pytest.raises(ValueError, match=message):
        _spec(fractions=fractions)


def test_the_spec_names_the_ladder_so_the_same_command_continues_it():
    assert _spec().ladder_id() == _spec().ladder_id() != _spec(fractions=(0.5, 1.0)).ladder_id()
    assert json.loads(_spec().model_dump_json())["fractions"] == [0.125, 0.25, 0.5, 1.0]
    with pytest.raises(ValueError, match="not 'synthetic'"):
        _spec(against={SYNTHETIC: "x"})


# --- on the offline run: a ladder killed while it trains, finished by the same command -----------


def _rung_jobs(root: str, run_id: str) -> list[str]:
    return sorted(p.name for p in Path(root).iterdir() if p.name.startswith(f"rung-{run_id}-"))


def _evaluated(root: str, job_id: str) -> bool:
    return (Path(root) / job_id / "_complete" / "eval.json").exists()


@pytest.mark.slow  # 5 minutes: three rungs trained and evaluated, then the same command again
def test_a_small_ladder_writes_its_study_and_the_same_command_trains_nothing_again(offline_run):
    from commands import synthclip

    from synthclip_core.storage.store import RunRef
    from synthclip_core.studies.ladder import FIT, STUDY

    run, _ = offline_run
    root = run.ref.root
    args = ("ladder", run.ref.run_id, "--root", root, "--fractions", "0.125,0.25,0.5")
    first = synthclip(*args, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "3 rungs, 3 to train" in first.stderr and "study:" in first.stderr, first.stderr[-2000:]
    jobs = _rung_jobs(root, run.ref.run_id)
    records = {job: RunRef(root, job).store().record("train", "summary.json") for job in jobs}
    (ladder_id,) = {p.name for p in Path(root).iterdir() if p.name.startswith("ladder-")}
    store = RunRef(root, ladder_id).store()
    fit = json.loads(store.read_bytes(STUDY, FIT))
    metric = next(m for m in fit["metrics"] if m.startswith("heldout:") and m.endswith("/zeroshot/top1"))
    assert [p for p, _ in fit["metrics"][metric]["points"]["synthetic"]] == sorted(
        int(job.split("-")[-2]) for job in jobs)
    (said,) = fit["verdicts"]
    assert said["interval"][0] <= said["predicted"] <= said["interval"][1]
    record = store.record(STUDY, FIT)  # the study names every rung's report and checkpoint
    assert {i["run_id"] for i in record["inputs"]} == set(jobs)
    assert (Path(root) / ladder_id / STUDY / "report.md").read_text().count("![") >= len(fit["metrics"])

    status = synthclip("ladder", "status", ladder_id, "--root", root)
    assert status.returncode == 0 and status.stdout.count("evaluated") == 3 and "report.md" in status.stderr, status

    again = synthclip(*args, timeout=600)
    assert again.returncode == 0 and "3 rungs, 0 to train" in again.stderr, again.stderr[-2000:]
    assert {job: RunRef(root, job).store().record("train", "summary.json") for job in jobs} == records


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_a_ladder_killed_while_it_trains_finishes_with_every_rung_trained_once(offline_run, tmp_path):
    import shutil
    import time

    from commands import synthclip
    from faults import _kill_session
    from faults import synthclip as started

    from synthclip_core.storage.store import RunRef
    from synthclip_core.studies.ladder import FIT, STUDY

    run, _ = offline_run
    root = str(tmp_path / "root")  # a copy of the run: no rung of another test's ladder is there
    shutil.copytree(Path(run.ref.root) / run.ref.run_id, Path(root) / run.ref.run_id)
    args = ("ladder", run.ref.run_id, "--root", root, "--parallel", "1", "--ladder-id", "killed")
    first = started(*args)
    deadline = time.time() + 600
    while time.time() < deadline and first.poll() is None:  # kill it once its first rung is evaluated
        if any(_evaluated(root, job) for job in _rung_jobs(root, run.ref.run_id)):
            break
        time.sleep(1)
    assert first.poll() is None, first.stdout.read()[-3000:]
    _kill_session(first.pid)
    first.wait(30)
    finished = {job: RunRef(root, job).store().record("train", "summary.json") for job in _rung_jobs(root, run.ref.run_id)
                if _evaluated(root, job)}
    assert finished, "the first rung was evaluated before the kill"
    ladder_id = "killed"

    second = synthclip(*args, timeout=1500)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"4 rungs, {4 - len(finished)} to train" in second.stderr, second.stderr[-2000:]
    for job, record in finished.items():  # read, never trained again
        assert RunRef(root, job).store().record("train", "summary.json") == record
    store = RunRef(root, ladder_id).store()
    fit = json.loads(store.read_bytes(STUDY, FIT))
    metric = next(m for m in fit["metrics"] if m.endswith("/zeroshot/top1") and m.startswith("heldout:"))
    points = fit["metrics"][metric]["points"]["synthetic"]
    assert len(points) == 4 and points[-1][1] > points[0][1], points  # accuracy rises with pairs
    test = fit["back_test"]
    assert test["pairs"] == points[-1][0] and test["measured"] == points[-1][1]
    print(f"ladder top-1 by pairs: {points}; back test: predicted {test['predicted']:.4f} "
          f"({test['interval'][0]:.4f} to {test['interval'][1]:.4f}), measured {test['measured']:.4f}")
    report = store.read_bytes(STUDY, "report.md").decode()
    assert "The largest rung" in report and "most frequent confusions" in report


def test_bad_ladder_input_is_one_line_each(offline_run, tmp_path):
    from commands import one_line_error, synthclip

    run, _ = offline_run
    root = run.ref.root
    one_line_error(synthclip("ladder", run.ref.run_id, "--root", root, "--fractions", "0,0.5"), "--fractions",
                   "(0, 1]", "got 0")
    one_line_error(synthclip("ladder", run.ref.run_id, "--root", root, "--fractions", "0.5,1.5"), "got 1.5")
    one_line_error(synthclip("ladder", run.ref.run_id, "--root", root, "--against", f"real={tmp_path}/nothing"),
                   "--against real=", "no .tar files")
    one_line_error(synthclip("ladder", "no-such-run", "--root", root), "no run no-such-run")
    from synthclip_core.pipeline import load_config
    from synthclip_core.runs.lifecycle import open_run
    from synthclip_core.storage.store import RunRef

    open_run(load_config(REPO / "configs" / "micro.yaml"), RunRef(str(tmp_path / "root"), "nothing-yet"))
    one_line_error(synthclip("ladder", "nothing-yet", "--root", str(tmp_path / "root")), "no exported shards yet",
                   "no committed images")
    csv = tmp_path / "two.csv"
    csv.write_text("pairs,value\n10,1\n20,2\n")
    one_line_error(synthclip("ladder", "fit", str(csv)), "at least 3 points")
    csv.write_text("pairs,value\n10,1\n-20,2\n40,3\n")
    one_line_error(synthclip("ladder", "fit", str(csv)), "two.csv:3", "positive")


# --- an early verdict: a run stopped part-way through its images, then finished ------------------


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_an_early_verdict_on_a_run_still_rendering_is_set_against_what_the_finished_run_measures(offline_run, tmp_path):
    import shutil

    from commands import synthclip

    from synthclip_core.evaluation.predictions import PREDICTIONS
    from synthclip_core.storage.store import RunRef

    run, _ = offline_run
    root = tmp_path / "root"
    shutil.copytree(Path(run.ref.root) / run.ref.run_id, root / run.ref.run_id)
    store = RunRef(str(root), run.ref.run_id).store()
    # stopped part-way: the last half of the image partitions not committed, nothing after images made
    parts = sorted(o for o in store.committed("images") if o.startswith("part-"))
    for part in parts[len(parts) // 2:]:
        (root / run.ref.run_id / "_commits" / "images" / f"{part}.json").unlink()
    for stage in ("images", "shards", "train", "eval", "card"):
        (root / run.ref.run_id / "_complete" / f"{stage}.json").unlink(missing_ok=True)
    for stage in ("shards", "train", "eval", "card"):
        shutil.rmtree(root / run.ref.run_id / stage, ignore_errors=True)
        shutil.rmtree(root / run.ref.run_id / "_commits" / stage, ignore_errors=True)

    early = synthclip("ladder", run.ref.run_id, "--root", str(root), "--fractions", "0.25,0.5,1", timeout=1500)
    assert early.returncode == 0, early.stderr[-3000:]
    (said,) = [json.loads(store.read_bytes(PREDICTIONS, o)) for o in store.committed(PREDICTIONS)]
    assert said["from_pairs"] < said["pairs"] and said["metric"] == "zeroshot/top1"
    lo, hi = said["interval"]
    assert lo <= said["predicted"] <= hi

    finished = synthclip("resume", run.ref.run_id, "--root", str(root), timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads(store.read_bytes("eval", "report.json"))
    (compared,) = report["predictions"]
    measured = next(r["value"] for r in report["results"] if r["dataset"] == "synthetic-heldout"
                    and r["task"] == "zeroshot" and r["metric"] == "top1")
    assert compared["measured"] == measured and compared["error"] == pytest.approx(measured - said["predicted"])
    assert "Predicted by ladder" in store.read_bytes("eval", "report.md").decode()
    print(f"early verdict from {said['from_pairs']} pairs: {said['predicted']:.4f} ({lo:.4f} to {hi:.4f}) at "
          f"{said['pairs']} pairs; measured {measured:.4f}")
