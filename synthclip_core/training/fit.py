"""Launch Ray Train's TorchTrainer for a :class:`TrainSpec`, after checks that fail fast.

Everything that can be known before a worker starts is checked here, so a bad batch size, too
little data or a checkpoint of another model is a one-line error rather than a failed worker
group. ``fit`` resumes on its own: the workers start from the latest committed checkpoint, also when
Ray Train restarts a worker group that lost a worker (``train.max_failures`` times).
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import asdict

from ..compute.resources import PoolSpec, ensure_room
from . import checkpoints
from .config import TrainConfig
from .layout import epoch_layout
from .loop import UNREADABLE_DATA
from .metrics import follow_metrics
from .sources import SourceError
from .spec import TrainSpec


class TrainingFailed(RuntimeError):
    """The training job failed; the message is the workers' own error."""


def preflight(spec: TrainSpec) -> None:
    t = spec.config
    if not spec.shards:
        raise ValueError("training has no input shards")
    if t.global_batch_size % t.num_workers:
        raise ValueError(f"train.global_batch_size {t.global_batch_size} is not divisible by train.num_workers {t.num_workers}")
    epoch_layout(spec.layout_sources(), t.num_workers, t.loader_workers, spec.per_worker_batch(), spec.seed, 0, t.samples_per_epoch)
    checkpoints.latest(spec.run_ref.store(), spec.model_cfg, _layout(spec))  # raises CheckpointMismatch


def trainer_pool(t: TrainConfig) -> PoolSpec:
    """What the trainer asks of Ray: its workers, together (a worker group starts as one)."""
    fields = ("train.num_workers", *(["train.use_gpu"] if t.use_gpu else []), "train.cpus_per_worker",
              *(["train.ray_resources"] if t.ray_resources else []))
    return PoolSpec(count=t.num_workers, kind="ranks", num_cpus=t.cpus_per_worker, num_gpus=1 if t.use_gpu else 0,
                    resources=dict(t.ray_resources), label="training", fields=fields)


def fit(spec: TrainSpec, name: str, poll_s: float = 2.0) -> None:
    """Train to the last epoch in the current Ray (local or a cluster), following the metrics."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from .loop import train_loop_per_worker

    t = spec.config
    _before(spec)
    ensure_room("train", [trainer_pool(t)])
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=asdict(spec),
        scaling_config=ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu,
                                     resources_per_worker={"CPU": t.cpus_per_worker, **({"GPU": 1} if t.use_gpu else {}),
                                                           **t.ray_resources}, placement_strategy=t.placement),
        run_config=RunConfig(name=name, storage_path=tempfile.gettempdir() + "/synthclip-ray-train",
                             failure_config=FailureConfig(max_failures=t.max_failures)),
    )
    error: list[BaseException] = []

    def target() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # reported from the calling thread
            error.append(exc)

    thread = threading.Thread(target=target, name="synthclip-train", daemon=True)
    thread.start()
    follow_metrics(spec, lambda: not thread.is_alive(), poll_s)
    thread.join()
    if error:
        raise TrainingFailed(root_message(error[0])) from error[0]
    _after(spec)


def fit_here(spec: TrainSpec) -> None:
    """Train in this process without Ray: alone, or as one of ``torchrun``'s ranks (then
    ``train.num_workers`` must be its WORLD_SIZE). The same steps as :func:`fit`."""
    import os

    from .loop import plain_rank, train

    world = int(os.environ.get("WORLD_SIZE", 1))
    if spec.config.num_workers != world:
        raise ValueError(f"train.num_workers is {spec.config.num_workers} but this process is one of {world} "
                         "(WORLD_SIZE): set train.num_workers to the number of processes")
    import torch.distributed as dist

    me = plain_rank(spec.config.use_gpu)
    try:
        if me.rank == 0:  # the checks and the setting aside of damaged checkpoints, once
            _before(spec)
        if me.world > 1:
            dist.barrier()
        train(asdict(spec), me)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    _after(spec)


def _before(spec: TrainSpec) -> None:
    preflight(spec)
    spec.run_ref.store().clear_failure("train", UNREADABLE_DATA)  # a stop of an earlier attempt: try again
    checkpoints.set_aside_damaged(spec.run_ref.store(), spec.model_cfg, _layout(spec))


def _layout(spec: TrainSpec) -> dict:
    """The layout a rank's mid-epoch position is counted in, as ``loop`` keys its checkpoints."""
    t = spec.config
    return checkpoints.layout_key(t.num_workers, t.loader_workers, spec.per_worker_batch(), spec.data_identity())


def _after(spec: TrainSpec) -> None:
    if (stopped := spec.run_ref.store().failure("train", UNREADABLE_DATA)) is not None:
        raise SourceError(stopped["error"])


def root_message(exc: BaseException) -> str:
    """The workers' own error (the last line of the first failure), not Ray's wrapping."""
    failures = getattr(exc, "worker_failures", None)
    if failures:
        rank, failure = sorted(failures.items())[0]
        lines = [ln for ln in str(failure).strip().splitlines() if ln.strip()]
        return f"training worker {rank} failed: {lines[-1] if lines else failure!r}"
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else repr(exc)
