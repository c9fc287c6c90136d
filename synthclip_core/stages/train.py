"""Training: a Ray Train job over the run's shards; checkpoints committed per epoch.

With the default local Ray the job runs inside the run's own Ray; a killed run resumes from the
latest committed checkpoint. ``summary.json`` (the metrics history and the checkpoints) is written
last, with an open_clip ``local-dir`` export of the final model in ``train/model/``.
"""

from __future__ import annotations

import json
import tempfile
import time

from ..clip_models import model_config
from ..run import Run
from ..training import checkpoints
from .common import StageSummary, finished_summary, input_ref, lineage
from .shards import SIZES, shard_uris

SUMMARY = "summary.json"


def run_train(run: Run) -> StageSummary:
    from ray.train import RunConfig as RayRunConfig
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    from ..training.loop import train_loop_per_worker

    store, t = run.store, run.config.train
    if (finished := finished_summary(store, "train", SUMMARY)) is not None:
        return finished
    summary = StageSummary("train")
    started = time.time()
    shards = shard_uris(run)  # refuses unless the export is complete
    sizes = json.loads(store.read_bytes("shards", SIZES))
    inputs = [input_ref(store, "shards", o) for o in sorted(sizes)]
    base = lineage(run.fingerprints["train"], inputs, started, 0, arch=t.model)
    config = {
        "ref": run.ref.as_dict(), "storage_options": run.ref.storage_options, "arch": t.model,
        "shards": shards, "total_samples": sum(sizes.values()), "epochs": t.epochs,
        "global_batch_size": t.global_batch_size, "lr": t.lr, "min_lr": t.min_lr,
        "weight_decay": t.weight_decay, "beta1": t.beta1, "beta2": t.beta2, "eps": t.eps,
        "warmup_epochs": t.warmup_epochs, "seed": run.config.seed, "threads": max(1, int(t.cpus_per_worker)),
        "shuffle_buffer": 1000, "local_loss": t.num_workers > 1, "gather_with_grad": t.num_workers > 1,
        "lineage": base,
    }
    before = set(checkpoints.committed_epochs(store))
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu,
                                     resources_per_worker={"CPU": t.cpus_per_worker}),
        run_config=RayRunConfig(name=f"synthclip-{run.ref.run_id}",
                                storage_path=tempfile.gettempdir() + "/synthclip-ray-train"),
    )
    trainer.fit()
    epochs = checkpoints.committed_epochs(store)
    if not epochs or epochs[-1] != t.epochs:
        raise RuntimeError(f"training finished but the store holds checkpoints of epochs {epochs}, expected up to {t.epochs}")
    final = checkpoints.load(store, epochs[-1])
    model_dir = _export_local_dir(run, final, base)
    outputs = [checkpoints.checkpoint_name(e) for e in epochs] + model_dir
    store.commit("train", SUMMARY, json.dumps({
        "arch": t.model, "epochs": epochs, "history": final.get("history", []),
        "checkpoint": checkpoints.checkpoint_name(epochs[-1]),
    }, indent=1).encode(), {**base, "outputs": outputs, "rows": len(epochs)})
    summary.total, summary.computed = len(epochs), len(set(epochs) - before)
    summary.skipped = len(before)
    return summary


def _export_local_dir(run: Run, state: dict, base: dict) -> list[str]:
    """The final weights as an open_clip ``local-dir:`` model (config + weights)."""
    store = run.store
    cfg = {"model_cfg": model_config(state["name"]), "preprocess_cfg": {}}
    store.commit("train", "model/open_clip_config.json", json.dumps(cfg, indent=1).encode(), base)
    store.commit("train", "model/open_clip_pytorch_model.bin", checkpoints.to_bytes(state["state_dict"]), base)
    return ["model/open_clip_config.json", "model/open_clip_pytorch_model.bin"]
