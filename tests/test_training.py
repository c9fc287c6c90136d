"""Training on Ray Train: it learns, data-parallel equals one worker, a killed job resumes exactly.

The models are tiny (``SynthCLIP-Tiny``) and the data procedural (``shapes.py``), so every claim
is checked on a CPU with the real Ray Train, open_clip and webdataset code.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import shapes
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from synthclip_core.clip_models import create_model, model_config
from synthclip_core.evaluation.features import encode_images, zero_shot_classifier
from synthclip_core.evaluation.metrics import topk_accuracy
from synthclip_core.pipeline import config_from_dict
from synthclip_core.runs.lifecycle import open_run
from synthclip_core.stages.executor import complete, execute
from synthclip_core.stages.stage import StageSummary
from synthclip_core.storage.store import RunRef
from synthclip_core.training import checkpoints, metrics
from synthclip_core.training.config import TrainConfig
from synthclip_core.training.data import RankBatches, epoch_loader
from synthclip_core.training.fit import fit, fit_here, preflight
from synthclip_core.training.layout import batches_before, epoch_layout, single_source, steps_per_epoch
from synthclip_core.training.spec import TrainSpec

REPO = Path(__file__).resolve().parents[1]
TINY = "SynthCLIP-Tiny"


def make_spec(root: Path, run_id: str, shards: list, **train) -> TrainSpec:
    t = TrainConfig(**{"model": TINY, "epochs": 1, "global_batch_size": 16, "lr": 1e-3, "weight_decay": 0.1,
                       "warmup_epochs": 0, "loader_workers": 0, "cpus_per_worker": 1, **train})
    return TrainSpec(ref=RunRef(str(root), run_id).as_dict(), shards=shards, train=t.model_dump(), seed=0,
                     model_cfg=model_config(TINY))


def final_weights(spec: TrainSpec) -> dict:
    return checkpoints.load(spec.run_ref.store(), checkpoints.epoch_name(spec.config.epochs))["state_dict"]


def max_difference(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


# -- the data layout (pure) ---------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), min_size=1, max_size=9), world=st.integers(1, 4),
       loaders=st.integers(0, 3), batch=st.integers(1, 8), epoch=st.integers(0, 3))
def test_layout_reads_each_sample_at_most_once_and_ranks_step_equally(sizes, world, loaders, batch, epoch):
    slots = world * max(1, loaders)
    if (sum(sizes) // slots) // batch == 0:
        with pytest.raises(ValueError, match="fewer than one batch"):
            epoch_layout(single_source(sizes), world, loaders, batch, seed=3, epoch=epoch)
        return
    layout = epoch_layout(single_source(sizes), world, loaders, batch, seed=3, epoch=epoch)
    read = [(p.shard, p.start + i) for slot in layout.slots for p in slot[0] for i in range(p.count)]
    assert len(read) == len(set(read))  # no sample twice in an epoch
    assert all(0 <= i < sizes[s] for s, i in read)
    assert {sum(p.count for p in slot[0]) for slot in layout.slots} == {layout.batches_per_slot * batch}
    assert layout.steps == steps_per_epoch(sum(sizes), world, loaders, batch)
    assert sum(sizes) - len(read) < slots * (batch + 1)  # only the remainder is left for this epoch


def test_fewer_shards_than_slots_is_split_inside_shards():
    layout = epoch_layout(single_source([40]), world=2, loader_workers=2, per_worker=5, seed=0, epoch=0)
    assert [p.start for slot in layout.slots for p in slot[0]] == [0, 10, 20, 30]
    assert layout.steps == 4


def test_round_robin_bookkeeping():
    assert [batches_before(5, w, 2) for w in range(2)] == [3, 2]
    assert [batches_before(0, w, 3) for w in range(3)] == [0, 0, 0]


def test_resumed_epoch_yields_the_rest_of_the_same_batches(tmp_path):
    """Two loader processes: batches k.. of a resumed epoch equal those of an uninterrupted one."""
    shards = shapes.write_shards(shapes.samples(4, seed=5), tmp_path, per_shard=12)  # 48 samples
    _, preprocess, _, tokenizer = create_model(TINY)
    layout = epoch_layout(single_source([n for _, n in shards]), world=1, loader_workers=2, per_worker=4, seed=0, epoch=1)

    def epoch_from(step: int) -> list:
        batches = RankBatches([u for u, _ in shards], layout, 0, 1, step, 4, 0, 8, preprocess, tokenizer, [{"name": "data"}])
        return [(images, texts) for images, texts, _, _ in epoch_loader(batches, loader_workers=2)]

    full = epoch_from(0)
    assert len(full) == layout.steps == 12
    for k in (3, 4):
        rest = epoch_from(k)
        assert len(rest) == len(full) - k
        for (a_img, a_txt), (b_img, b_txt) in zip(full[k:], rest):
            assert torch.equal(a_txt, b_txt) and torch.equal(a_img, b_img)


# -- learning, equivalence, resume --------------------------------------------------------------

def test_tiny_clip_learns_coloured_shapes(ray_local, tmp_path):
    """480 training images of 12 classes, 10 epochs: zero-shot top-1 on 120 held-out images."""
    shards = shapes.write_shards(shapes.samples(40, seed=1), tmp_path / "shards", per_shard=96)
    spec = make_spec(tmp_path, "shapes", shards, epochs=10, global_batch_size=32, lr=3e-3, warmup_epochs=1,
                     cpus_per_worker=2)
    fit(spec, "test-learns")
    ckpt = spec.run_ref.store().data_path("train", checkpoints.epoch_name(10))
    model, _, preprocess, tokenizer = create_model(TINY, pretrained=ckpt)  # open_clip's own loading
    model.eval()
    held_out = shapes.samples(10, seed=99)
    images, _, _ = encode_images(model, preprocess, [r[1] for r in held_out], 64)
    classifier = zero_shot_classifier(model, tokenizer, shapes.CLASSES, ["a photo of a {} ."], 64)
    top1 = topk_accuracy(images @ classifier, torch.tensor([r[3] for r in held_out]))["top1"]
    chance = 1 / len(shapes.CLASSES)  # 0.083; this run reaches about 0.55
    assert top1 >= 4 * chance, top1
    rows = metrics.history(spec.run_ref.store())
    assert [r["step"] for r in rows] == list(range(1, 151))
    assert sum(r["loss"] for r in rows[-15:]) < 0.7 * sum(r["loss"] for r in rows[:15])


def test_two_workers_match_one_worker(ray_local, tmp_path):
    """Same data, seed and global batch (the whole set, so both see the same samples per step):
    DDP over gloo with local loss and gathered gradients follows the single worker's trajectory."""
    shards = shapes.write_shards(shapes.samples(2, seed=2), tmp_path / "shards", per_shard=12)  # 24 samples
    one = make_spec(tmp_path, "one", shards, epochs=3, global_batch_size=24)
    two = make_spec(tmp_path, "two", shards, epochs=3, global_batch_size=24, num_workers=2)
    for spec in (one, two):
        fit(spec, f"test-{spec.run_ref.run_id}")
    losses = [[r["loss"] for r in metrics.history(s.run_ref.store())] for s in (one, two)]
    assert len(losses[0]) == len(losses[1]) == 3
    assert max(abs(a - b) for a, b in zip(*losses)) < 1e-4, losses
    assert max_difference(final_weights(one), final_weights(two)) < 1e-4


def test_the_step_loop_runs_without_ray_and_equals_ray_train(ray_local, tmp_path):
    """The loop is plain torch: in this process alone it takes exactly Ray Train's steps on one
    worker; two ``torchrun`` ranks (gloo, DDP, local loss) follow the single process, as two Ray
    Train workers do (``test_two_workers_match_one_worker``)."""
    shards = shapes.write_shards(shapes.samples(2, seed=2), tmp_path / "shards", per_shard=12)  # 24 samples
    under_ray = make_spec(tmp_path, "ray", shards, epochs=2, global_batch_size=8)
    plain = make_spec(tmp_path, "plain", shards, epochs=2, global_batch_size=8)
    fit(under_ray, "test-under-ray")
    fit_here(plain)
    losses = [[r["loss"] for r in metrics.history(s.run_ref.store())] for s in (under_ray, plain)]
    assert len(losses[0]) == 6 and losses[0] == losses[1], losses
    assert max_difference(final_weights(under_ray), final_weights(plain)) == 0
    # the whole set per step, so one process and two ranks see the same samples in each step
    whole = make_spec(tmp_path, "whole", shards, epochs=3, global_batch_size=24)
    fit_here(whole)
    torchrun_two = make_spec(tmp_path, "torchrun-two", shards, epochs=3, global_batch_size=24, num_workers=2)
    spec_file = tmp_path / "torchrun-two.json"
    spec_file.write_text(torchrun_two.to_json())
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                    "-m", "synthclip_core.training.entrypoint", "--no-ray", "--spec", str(spec_file)],
                   check=True, env=env, timeout=300, cwd=REPO)
    losses = [[r["loss"] for r in metrics.history(s.run_ref.store())] for s in (whole, torchrun_two)]
    assert len(losses[1]) == 3 and max(abs(a - b) for a, b in zip(*losses)) < 1e-4, losses
    assert max_difference(final_weights(whole), final_weights(torchrun_two)) < 1e-4
    with pytest.raises(ValueError, match="train.num_workers is 2 but this process is one of 1"):
        fit_here(make_spec(tmp_path, "mismatch", shards, num_workers=2))


def test_killed_job_resumes_where_it_stopped(ray_local, tmp_path):
    """SIGKILL the whole training process tree after a step checkpoint; resume; the end matches an
    uninterrupted run. Two loader processes, so the resumed epoch's round robin is exercised."""
    shards = shapes.write_shards(shapes.samples(8, seed=3), tmp_path / "shards", per_shard=24)  # 96 samples
    knobs = dict(epochs=2, global_batch_size=8, loader_workers=2, checkpoint_every_steps=4, warmup_epochs=0.5)
    reference = make_spec(tmp_path, "reference", shards, **knobs)
    fit(reference, "test-reference")

    killed = make_spec(tmp_path, "killed", shards, **knobs)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(killed.to_json())
    store = killed.run_ref.store()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-m", "synthclip_core.training.entrypoint", "--spec", str(spec_file)],
                            cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not checkpoints.committed(store) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the trainer, its local Ray and all its workers
        proc.wait()
    at_kill = checkpoints.committed(store)
    assert at_kill and checkpoints.epoch_name(2) not in at_kill, "the job was not killed mid-training"

    fit(killed, "test-resumed")
    assert max_difference(final_weights(reference), final_weights(killed)) < 1e-5
    steps = [r["step"] for r in metrics.history(store)]
    assert steps == list(range(1, 25))  # every step's metrics once, none lost or doubled
    ref_loss = [r["loss"] for r in metrics.history(reference.run_ref.store())]
    assert max(abs(a - b) for a, b in zip(ref_loss, [r["loss"] for r in metrics.history(store)])) < 1e-5
    assert not any(n.startswith("checkpoints/step_") for n in checkpoints.committed(store))  # pruned at epoch ends


def test_preflight_errors_are_clear(tmp_path):
    shards = shapes.write_shards(shapes.samples(1, seed=4), tmp_path / "shards", per_shard=12)  # 12 samples
    with pytest.raises(ValueError, match="not divisible by train.num_workers"):
        preflight(make_spec(tmp_path, "a", shards, global_batch_size=5, num_workers=2))
    with pytest.raises(ValueError, match="fewer than one batch of 16"):
        preflight(make_spec(tmp_path, "b", shards, global_batch_size=16))


def test_checkpoint_of_another_model_is_refused(ray_local, tmp_path):
    shards = shapes.write_shards(shapes.samples(2, seed=6), tmp_path / "shards", per_shard=24)
    spec = make_spec(tmp_path, "arch", shards, global_batch_size=8)
    fit(spec, "test-arch")
    other = make_spec(tmp_path, "arch", shards, global_batch_size=8)
    other.model_cfg = {**other.model_cfg, "embed_dim": 32}
    with pytest.raises(checkpoints.CheckpointMismatch, match="trained with model config"):
        fit(other, "test-arch-2")


# -- inside the pipeline ------------------------------------------------------------------------

def test_two_workers_train_the_micro_run_with_amp_and_checkpointing(micro_reference, tmp_path):
    """The train stage of a real run: two gloo workers, bf16 autocast, gradient checkpointing (a fork
    of the finished micro run: its data stages are copied, only training runs)."""
    from faults import copy_run

    data = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
    data["train"].update(num_workers=2, cpus_per_worker=0.5, global_batch_size=4, precision="amp_bf16",
                         grad_checkpointing=True)
    reference = copy_run(micro_reference[0], tmp_path)
    run = open_run(config_from_dict(data), RunRef(str(tmp_path), reference.run_id), fork=True)
    assert run.ref.run_id != reference.run_id and run.completion("shards") is not None  # shared, not made again
    summary = execute(run, "train")
    assert summary.ok
    assert summary.pictures == ["train/curves.png"]
    record = run.store.record("train", "checkpoints/epoch_1.pt")
    assert record["worker"]["world_size"] == 2 and record["model_cfg"] == model_config(TINY)
    assert math.isfinite(record["metrics"]["loss"]) and record["rows"] > 0
    done = json.loads(run.store.read_bytes("train", "summary.json"))
    assert done["checkpoint"] == "checkpoints/epoch_1.pt" and done["steps"] > 0
    assert run.store.read_bytes("train", "curves.png").startswith(b"\x89PNG")


def test_a_truncated_shard_is_skipped_with_a_warning_and_counted(ray_local, tmp_path, caplog):
    """A shard cut short after the export (a bad disk, a partial copy) is left out of training,
    with a warning and its samples counted in the summary; the rest trains."""
    import logging

    from synthclip_core.pipeline import load_config

    cfg = load_config(REPO / "configs" / "micro.yaml")
    run = open_run(cfg, RunRef(str(tmp_path), "truncated"))
    store = run.store
    written = shapes.write_shards(shapes.samples(2, seed=9), tmp_path / "tars", per_shard=8)  # 3 shards of 8
    sizes = {Path(path).name: count for path, count in written}
    for name in sizes:
        store.commit("shards", name, (tmp_path / "tars" / name).read_bytes(), {"rows": sizes[name]})
    store.commit("shards", "sizes.json", json.dumps(sizes).encode())
    complete(run, StageSummary("shards", rows=sum(sizes.values()), outputs=[*sorted(sizes), "sizes.json"]))
    damaged = store.data_path("shards", "00001.tar")
    with open(damaged, "r+b") as handle:  # behind the store's back
        handle.truncate(os.path.getsize(damaged) // 2)

    with caplog.at_level(logging.WARNING, logger="synthclip.train"):
        summary = execute(run, "train")
    assert summary.ok and summary.notes["skipped_shards"] == 1 and summary.notes["skipped_samples"] == 8
    assert any("skips shard" in r.message and "00001.tar" in r.message and "truncated" in r.message for r in caplog.records)
    done = json.loads(store.read_bytes("train", "summary.json"))
    assert list(done["skipped_shards"]) == ["00001.tar"] and done["skipped_samples"] == 8
    assert done["steps"] == 16 // 4  # the 16 samples of the two good shards, batch 4
