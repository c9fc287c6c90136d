"""The per-worker training loop run by Ray Train's TorchTrainer (one process per rank).

The same function runs as one worker, several workers on one machine, or many nodes: Ray Train
sets up the process group (gloo on CPU, NCCL on GPU) and ``prepare_model`` wraps the model in DDP.
Rank 0 commits a checkpoint after every epoch; a restarted job resumes from the latest one.
"""

from __future__ import annotations

import math
import time


def train_loop_per_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch
    import torch
    from open_clip.loss import ClipLoss

    from ..clip_models import create_model
    from ..run import RunRef
    from . import checkpoints
    from .data import batches, rank_samples, shuffled
    from .schedule import cosine_lr, param_groups

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])
    store = RunRef(**config["ref"]).store()
    device = ray.train.torch.get_device()

    model, preprocess_train, _, tokenizer = create_model(config["arch"], device=str(device))
    per_worker = config["global_batch_size"] // world
    steps_per_epoch = (config["total_samples"] // world) // per_worker
    if steps_per_epoch == 0:
        raise ValueError(f"{config['total_samples']} samples are fewer than one global batch of {config['global_batch_size']}")
    total_steps = steps_per_epoch * config["epochs"]
    warmup_steps = int(config["warmup_epochs"] * steps_per_epoch)

    optimizer = torch.optim.AdamW(param_groups(model, config["weight_decay"]), lr=config["lr"],
                                  betas=(config["beta1"], config["beta2"]), eps=config["eps"])
    done_epochs = checkpoints.committed_epochs(store)
    start_epoch = done_epochs[-1] if done_epochs else 0
    history: list[dict] = []
    if start_epoch:
        state = checkpoints.load(store, start_epoch)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        history = state.get("history", [])
    model = ray.train.torch.prepare_model(model)
    loss_fn = ClipLoss(local_loss=config["local_loss"], gather_with_grad=config["gather_with_grad"],
                       cache_labels=True, rank=rank, world_size=world)
    core = model.module if hasattr(model, "module") else model

    for epoch in range(start_epoch, config["epochs"]):
        model.train()
        started, losses = time.time(), []
        samples = shuffled(rank_samples(config["shards"], config["total_samples"], rank, world, config["storage_options"]),
                           buffer_size=config["shuffle_buffer"], seed=config["seed"] * 1000 + epoch * 97 + rank)
        for step_in_epoch, (images, texts) in enumerate(batches(samples, per_worker, preprocess_train, tokenizer)):
            if step_in_epoch == steps_per_epoch:
                break
            step = epoch * steps_per_epoch + step_in_epoch
            lr = cosine_lr(step, total_steps, warmup_steps, config["lr"], config["min_lr"])
            for group in optimizer.param_groups:
                group["lr"] = lr
            out = model(images.to(device), texts.to(device))
            loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                core.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            history.append({"epoch": epoch + 1, "step": step + 1, "loss": round(loss.item(), 5), "lr": lr})
        seconds = time.time() - started
        metrics = {"epoch": epoch + 1, "loss": sum(losses) / max(1, len(losses)),
                   "samples_per_s": len(losses) * per_worker * world / max(seconds, 1e-9)}
        if rank == 0:
            state = {"epoch": epoch + 1, "name": config["arch"], "state_dict": core.state_dict(),
                     "optimizer": optimizer.state_dict(), "history": history}
            store.commit("train", checkpoints.checkpoint_name(epoch + 1), checkpoints.to_bytes(state), {
                **config["lineage"], "epoch": epoch + 1, "metrics": metrics, "rows": len(losses) * per_worker * world,
                "worker": {"device": str(device), "world_size": world},
            })
        ray.train.report(metrics)
