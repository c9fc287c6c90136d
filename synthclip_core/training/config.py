"""The training library's config: the ``train`` section of a run or training job, and its data sources."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config import Section, credential_keys, fingerprinted_since, operational, when_set
from ..ids import NAME_PATTERN, RUN_ID_RULE, is_run_id


class DataSource(Section):
    """One webdataset source of training pairs, sampled by weight (docs/training.md, "Real data")."""

    name: str = Field(..., pattern=NAME_PATTERN, description="Short name, used in lineage and reports.")
    uri: str = Field(..., description="'run' (this run's shards), 'run:RUN_ID' (another run's shards under the same root), or "
                     "webdataset tars: a folder, a glob or a brace pattern on any fsspec root (e.g. s3://bucket/cc12m/{00000..01242}.tar).")
    weight: float = Field(1.0, ge=0, description="Share of each epoch's samples drawn from this source (weights are normalised).")
    limit: int | None = Field(None, ge=1, description="Use only a deterministic subset of this many samples (e.g. 500000 of CC12M).")
    image_key: str = Field("jpg", description="The image's extension inside the tars (img2dataset writes jpg).")
    text_key: str = Field("txt", description="The caption's extension inside the tars.")
    texts_field: str = when_set("rewrites", description="The field of a sample's .json that lists its other texts (a run's "
                                "rewrites; the several captions of a real set), drawn from with train.texts: any.")
    storage_options: dict[str, Any] = operational(default_factory=dict, description="fsspec options for this source (e.g. an S3 endpoint).")

    @field_validator("storage_options")
    @classmethod
    def _no_credentials(cls, value: dict[str, Any]) -> dict[str, Any]:
        if found := credential_keys(value):
            raise ValueError(f"{', '.join(found)}: credentials would be written into run.json and the training job's "
                             f"arguments; set them in the environment instead (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
                             f"AWS_SESSION_TOKEN for S3, or the filesystem's own variables)")
        return value

    @field_validator("uri")
    @classmethod
    def _run_id_is_a_name(cls, value: str) -> str:
        if value.startswith("run:") and not is_run_id(value[4:]):
            raise ValueError(f"{value!r}: the run id after 'run:' must be {RUN_ID_RULE}")
        return value


class TrainConfig(Section):
    """CLIP training."""

    model: str = Field(..., description="open_clip architecture name (e.g. ViT-B-16, SynthCLIP-Tiny).")
    epochs: int = Field(..., ge=1, description="Training epochs.")
    global_batch_size: int = Field(..., ge=1, description="Batch size summed over all workers.")
    lr: float = Field(5e-4, gt=0, description="Peak learning rate.")
    min_lr: float = Field(1e-5, ge=0, description="Learning rate at the end of the cosine decay.")
    weight_decay: float = Field(0.5, ge=0, description="AdamW weight decay (not applied to gains, biases, logit scale).")
    beta1: float = Field(0.9, description="AdamW beta1.")
    beta2: float = Field(0.98, description="AdamW beta2.")
    eps: float = Field(1e-6, description="AdamW epsilon.")
    warmup_epochs: float = Field(1.0, ge=0, description="Linear warm-up length in epochs.")
    num_workers: int = fingerprinted_since(2, 1, ge=1, description="Ray Train workers (data-parallel ranks; they split the "
                                           "shards, so they define the data order).")
    use_gpu: bool = operational(False, description="Train on GPUs (NCCL) instead of CPUs (gloo).")
    cpus_per_worker: float = operational(1, gt=0, description="CPUs reserved per training worker.")
    ray_resources: dict[str, float] = operational(
        default_factory=dict, description="Extra Ray resources per training worker, to land on a node group (e.g. {train_gpu: 1}).")
    precision: Literal["fp32", "amp_bf16", "amp_fp16"] = Field(
        "fp32", description="fp32, or mixed precision with bf16 / fp16 autocast (fp16 adds a gradient scaler).")
    grad_checkpointing: bool = operational(False, description="Recompute activations in the backward pass to save memory.")
    local_loss: bool = Field(True, description="Each rank scores its own rows against all gathered features (open_clip).")
    gather_with_grad: bool = Field(True, description="Gather features with gradients, so local loss equals the global loss.")
    loader_workers: int = fingerprinted_since(2, 2, ge=0, description="Data-loader processes per training worker (0: decode in "
                                              "the training process; they split each rank's shards, so they define the data order).")
    texts: Literal["original", "any"] = when_set(
        "original", description="Which text a sample trains on: its caption (original), or one drawn per epoch from its "
        "caption and the other texts its .json lists (any: a run's rewrites), the same draw on a resume.")
    shuffle_buffer: int = Field(1000, ge=1, description="Samples held by each loader's shuffle buffer.")
    checkpoint_every_steps: int = operational(0, ge=0, description="Also checkpoint every N steps (0: only at epoch ends).")
    log_every_steps: int = operational(10, ge=1, description="Print a metrics line every N steps (shows in the job logs).")
    placement: Literal["PACK", "SPREAD"] = operational(
        "PACK", description="Where Ray places the training workers: PACK fills a node first (fast collectives), SPREAD "
                            "puts them on as many nodes as it can (a group that survives losing one).")
    max_failures: int = operational(
        2, ge=0, description="Worker-group restarts after a worker dies or fails (each from the latest checkpoint).")
    max_unreadable_share: float = operational(
        0.01, ge=0, le=1, description="Stop training once a source's unreadable samples (a corrupt image, a caption that is "
        "not UTF-8) exceed this share of what was read from it, counted over at least 1000 samples; fewer are left out and counted.")
    sources: list[DataSource] = when_set(
        default_factory=list, description="Training data sources with weights (empty: the run's own shards only).")
    samples_per_epoch: int | None = when_set(
        None, ge=1, description="Samples per epoch over all sources (default: the sum of the sources' sizes).")
    init_from: str | None = when_set(
        None, description="Start from these weights (fine-tuning): a checkpoint path or URI (this platform's or open_clip's), "
                          "'local-dir:PATH' (an open_clip model folder), or 'run:RUN_ID' (that run's final checkpoint, same root).")

    @field_validator("init_from")
    @classmethod
    def _init_run_id_is_a_name(cls, value: str | None) -> str | None:
        if value and value.startswith("run:") and not is_run_id(value[4:]):
            raise ValueError(f"{value!r}: the run id after 'run:' must be {RUN_ID_RULE}")
        return value

    @model_validator(mode="after")
    def _sources_valid(self) -> "TrainConfig":
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"sources: names must be unique, got {names}")
        if self.sources and not sum(s.weight for s in self.sources) > 0:
            raise ValueError(f"sources: the weights {[s.weight for s in self.sources]} do not sum to a positive number")
        return self
