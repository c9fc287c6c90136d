"""The per-worker training loop: plain torch, one process per rank, launched by whoever has ranks.

:func:`train` knows nothing of Ray: it is given a :class:`Rank` (its rank and world, its device,
how to wrap the model for data parallelism, where its node is). Ray Train's TorchTrainer runs it
on every worker (:func:`train_loop_per_worker`: gloo on CPU, NCCL on GPU, DDP from
``prepare_model``), so one process, several workers on one machine or many nodes run the same
steps; :func:`plain_rank` runs it in this process alone (or under ``torchrun``), so the step loop
can be measured and tested without Ray. Rank 0 commits the metrics and a checkpoint at every
epoch end and every ``checkpoint_every_steps``; a restarted worker group continues from the latest
checkpoint, at the same point of the learning-rate schedule and of the data.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..storage.ledger import held
from ..storage.lineage import accelerator_type
from .spec import TrainSpec


@dataclass
class Rank:
    """One training process: who it is, where it computes, and how its model joins the others."""

    rank: int
    world: int
    device: Any  # torch.device
    node: str  # where it runs (the Ray node id, else the host name), for the lineage
    wrap: Callable[[Any], Any]  # the model for data-parallel training (DDP), or as it is
    epoch_done: Callable[[dict], None] = lambda metrics: None
    notice: Callable[[], Any] = lambda: None  # a pre-emption notice (deadline_ms), asked by every rank at once


def train_loop_per_worker(spec_dict: dict) -> None:
    """Ray Train's entry on each worker."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    train(spec_dict, Rank(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device(),
                          ray.get_runtime_context().get_node_id(), ray.train.torch.prepare_model, ray.train.report,
                          getattr(ray.train, "get_preemption_info", lambda: None)))


def plain_rank(use_gpu: bool = False) -> Rank:
    """This process as a rank without Ray: alone, or one of ``torchrun``'s (RANK, WORLD_SIZE and
    LOCAL_RANK set), with a process group and DDP as Ray Train would set them up."""
    import torch

    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    cuda = use_gpu and torch.cuda.is_available()
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    wrap: Callable[[Any], Any] = lambda model: model.to(device)  # noqa: E731
    if world > 1:
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
        wrap = lambda model: torch.nn.parallel.DistributedDataParallel(  # noqa: E731
            model.to(device), device_ids=[device.index] if cuda else None)
    return Rank(rank, world, device, socket.gethostname(), wrap)


def train(spec_dict: dict, me: Rank) -> None:
    """Train ``spec_dict``'s model as rank ``me``, from its latest checkpoint, to the last epoch."""
    import torch
    from open_clip.loss import ClipLoss

    from ..clip_models import create_model
    from . import checkpoints
    from .data import RankBatches, epoch_loader
    from .init_weights import load_init
    from .layout import epoch_layout, steps_per_epoch
    from .schedule import cosine_lr, param_groups
    from .step import autocast_for, train_step

    spec = TrainSpec.from_dict(spec_dict)
    t = spec.config
    since = [time.time()]  # the ranks hold their resources from here: each metrics chunk's record says how long
    rank, world, device = me.rank, me.world, me.device
    torch.set_num_threads(max(1, int(t.cpus_per_worker)))
    torch.manual_seed(spec.seed)  # the same initial weights on every rank and every attempt
    store = spec.run_ref.store()
    nodes = [me.node] * world  # the node of each rank, for the lineage
    if world > 1:
        torch.distributed.all_gather_object(nodes, nodes[0])

    model, preprocess_train, _, tokenizer = create_model(t.model, device=str(device))
    if t.grad_checkpointing:
        model.set_grad_checkpointing(True)
    per_worker = t.global_batch_size // world
    spe = steps_per_epoch(spec.epoch_samples, world, t.loader_workers, per_worker)
    total_steps, warmup_steps = spe * t.epochs, int(t.warmup_epochs * spe)
    layout_key = checkpoints.layout_key(world, t.loader_workers, per_worker, spec.data_identity())

    optimizer = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.lr, betas=(t.beta1, t.beta2), eps=t.eps)
    scaler = torch.amp.GradScaler(device.type, enabled=t.precision == "amp_fp16")
    done_steps = 0
    sources = spec.source_specs()
    described = spec.lineage.get("sources") or sources_lineage(sources)  # as the lineage names them
    seen = [0] * len(sources)  # samples trained on from each source, all ranks
    unreadable = [0] * len(sources)  # samples left out of each source's batches, all ranks
    if rank == 0 and (passed := checkpoints.other_layout(store, spec.model_cfg, layout_key)):
        name, other = passed[0]
        changed = sorted(k for k in {*other, *layout_key} if other.get(k) != layout_key.get(k))
        print(f"train/{name} was made on another data layout ({', '.join(changed)} differ: "
              f"{ {k: other.get(k) for k in changed} } then, { {k: layout_key.get(k) for k in changed} } now); "
              f"its position would mean other samples, so training resumes from the start of its epoch", flush=True)
    if (found := checkpoints.resume_point(store, spec.model_cfg, layout_key)) is not None:
        state = found[2]
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        done_steps = state["epoch"] * spe if found[0].startswith("checkpoints/epoch_") else state["step"]
        seen = list(state.get("seen", seen))
        unreadable = list(state.get("unreadable", unreadable))
        if rank == 0:
            print(f"resuming from train/{found[0]} at step {done_steps} of {total_steps}", flush=True)
    elif spec.init:  # fine-tuning: start from the given weights (checked by the driver, loaded strictly)
        model.load_state_dict(load_init(spec.init, spec.run_ref.storage_options))
        if rank == 0:
            print(f"starting from {spec.init['uri']} (sha256 {spec.init['sha256'][:12]})", flush=True)
    model = me.wrap(model)
    core = model.module if hasattr(model, "module") else model
    loss_fn = ClipLoss(local_loss=t.local_loss, gather_with_grad=t.gather_with_grad, cache_labels=True,
                       rank=rank, world_size=world)
    autocast = autocast_for(t.precision, device)
    urls = [url for url, _ in spec.shards]
    rows: list[dict] = []
    checkpoint_s = [0.0]  # how long the last checkpoint took to commit: does one fit before a notice's deadline?
    saved_at_notice = [False]

    def at_notice(epoch: int, step: int) -> None:
        """On a pre-emption notice (all ranks ask together, every ``log_every_steps``): a step
        checkpoint now, if one can commit before the deadline, so the restart loses no step."""
        notice = me.notice()
        if notice is None or saved_at_notice[0]:
            return
        left = (notice.deadline_ms / 1000 - time.time()) if getattr(notice, "deadline_ms", None) else float("inf")
        if left > 2 * checkpoint_s[0]:
            commit(checkpoints.step_name(step), epoch, step)
            saved_at_notice[0] = True
            if rank == 0:
                print(f"pre-emption notice: checkpoint at step {step} ({left:.0f} s before the deadline)", flush=True)

    def commit(name: str, epoch: int, step: int) -> None:
        """Metrics since the last checkpoint, then the checkpoint (rank 0 only)."""
        if rank != 0:
            return
        began = time.time()
        base = {**spec.lineage, "step": step, "epoch": epoch,
                "sources": [{**d, "samples_seen": n, "unreadable": u} for d, n, u in zip(described, seen, unreadable)]}
        metrics = "".join(json.dumps(r) + "\n" for r in rows).encode()
        # timings in the metrics, GPU arithmetic in the weights: bytes may differ between attempts
        now = time.time()
        spent = held(now - since[0], t.cpus_per_worker * world, world if t.use_gpu else 0,
                     accelerator_type() if t.use_gpu else None)  # every rank's, as rank 0 saw the interval
        since[0] = now
        store.commit("train", f"metrics/step_{step:09d}.jsonl", metrics, {**base, "rows": len(rows), "held": spent},
                     deterministic=False)
        state = {"epoch": epoch, "step": step, "name": t.model, "model_cfg": spec.model_cfg, "seen": seen,
                 "unreadable": unreadable,
                 "state_dict": core.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict()}
        store.commit("train", name, checkpoints.to_bytes(state), {
            **base, "model_cfg": spec.model_cfg, "layout": layout_key, "rows": step * t.global_batch_size,
            "metrics": rows[-1] if rows else {}, "worker": {"device": str(device), "world_size": world, "nodes": nodes},
        }, deterministic=False)
        rows.clear()
        if name.startswith("checkpoints/epoch_"):
            checkpoints.prune_steps(store, step)
        checkpoint_s[0] = time.time() - began

    for epoch in range(done_steps // spe, t.epochs):
        first = done_steps - epoch * spe if epoch == done_steps // spe else 0
        model.train()
        layout = epoch_layout(spec.layout_sources(), world, t.loader_workers, per_worker, spec.seed, epoch, t.samples_per_epoch)
        batches = RankBatches(urls, layout, rank, epoch, first, per_worker, spec.seed, t.shuffle_buffer,
                              preprocess_train, tokenizer, sources, t.texts)
        waited_from = time.perf_counter()
        for step_in_epoch, (images, texts, counts, bad) in enumerate(epoch_loader(batches, t.loader_workers, t.use_gpu),
                                                                     start=first):
            started = time.perf_counter()
            step = epoch * spe + step_in_epoch
            lr = cosine_lr(step, total_steps, warmup_steps, t.lr, t.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = train_step(model, core, loss_fn, optimizer, scaler, images, texts, autocast)
            # one collective per step: the global loss (the mean of the ranks' local losses), timings, samples per source
            stats = torch.tensor([loss.item(), started - waited_from, time.perf_counter() - started, *counts.tolist(),
                                  *bad.tolist()], device=device)
            if world > 1:
                torch.distributed.all_reduce(stats)
                stats[:3] /= world
            mean_loss, data_wait, compute, *step_counts = stats.tolist()
            seen = [n + round(c) for n, c in zip(seen, step_counts[:len(sources)])]
            unreadable = [n + round(c) for n, c in zip(unreadable, step_counts[len(sources):])]
            if (why := too_many_unreadable(described, seen, unreadable, t.max_unreadable_share)) is not None:
                if rank == 0:  # every rank counts the same totals, so all stop at this step; the driver raises
                    store.fail("train", UNREADABLE_DATA, why)
                return
            rows.append({"step": step + 1, "epoch": epoch + 1, "loss": mean_loss, "lr": lr,
                         "logit_scale": core.logit_scale.exp().item(),
                         "samples_per_s_per_worker": per_worker / max(data_wait + compute, 1e-9), "data_wait_s": data_wait})
            if rank == 0 and ((step + 1) % t.log_every_steps == 0 or step + 1 == total_steps):
                store.heartbeat("train", {"step": step + 1, "total": total_steps, "epoch": epoch + 1, "loss": mean_loss,
                                          "samples_per_s_per_worker": rows[-1]["samples_per_s_per_worker"]})
                print(f"step {step + 1}/{total_steps} epoch {epoch + 1} loss {mean_loss:.4f} lr {lr:.2e} "
                      f"logit_scale {rows[-1]['logit_scale']:.2f} {rows[-1]['samples_per_s_per_worker']:.1f} samples/s/worker "
                      f"data wait {data_wait * 1000:.0f} ms", flush=True)
            if step_in_epoch + 1 == spe:
                commit(checkpoints.epoch_name(epoch + 1), epoch + 1, step + 1)
            elif t.checkpoint_every_steps and (step + 1) % t.checkpoint_every_steps == 0:
                commit(checkpoints.step_name(step + 1), epoch, step + 1)
            elif (step + 1) % t.log_every_steps == 0:
                at_notice(epoch, step + 1)
            waited_from = time.perf_counter()
        me.epoch_done({"epoch": epoch + 1, "step": (epoch + 1) * spe})


UNREADABLE_DATA = "unreadable-data"  # the failure record a stop for unreadable samples leaves
MIN_SAMPLES_FOR_SHARE = 1000


def too_many_unreadable(described: list[dict], seen: list[int], unreadable: list[int], share: float) -> str | None:
    """Why training must stop (a source whose unreadable share is over ``share``), or None."""
    for source, read, bad in zip(described, seen, unreadable):  # a batch's unreadable samples are replaced: read = seen
        if bad and bad > share * max(read, MIN_SAMPLES_FOR_SHARE):
            return (f"training source {source.get('name')!r}: {bad} of the {read} samples read so far are unreadable "
                    f"({bad / max(read, 1):.1%}; a corrupt image or a caption that is not UTF-8), over "
                    f"train.max_unreadable_share {share:.1%} (counted over at least {MIN_SAMPLES_FOR_SHARE} samples): "
                    f"repair or drop the source, or raise the share")
    return None


def sources_lineage(sources: list[dict]) -> list[dict]:
    return [{"name": s["name"], "uri": s["uri"], "weight": s["weight"], "limit": s["limit"]} for s in sources]
