"""Run configuration as data: pydantic models with a description on every field.

Presets live in ``configs/*.yaml``; a run's sections are named after its stages (each stage names
its section's model; ``pipeline.RunConfig`` puts them together). Unknown keys and invalid values
fail at load time with a message naming the file and the field, before any work starts.

Fields that do not change a stage's outputs (where and how fast it runs) are marked
``operational`` here, on the model; :func:`fingerprinted` leaves them out of the fingerprint.
Fields added after runs existed are marked ``when_set``: they join the fingerprint only when they
differ from their default, so the runs made before them keep their fingerprints; fields that
joined with a fingerprint scheme are marked ``fingerprinted_since`` (``pins``: a run keeps the
scheme it began with).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .ids import RUN_ID_RULE, is_run_id

_FINGERPRINT = "fingerprint"


def operational(default: Any = ..., **kwargs: Any) -> Any:
    """A field that changes where or how fast a stage runs, never what it writes."""
    return Field(default, json_schema_extra={_FINGERPRINT: False}, **kwargs)


def model_reference(default: Any = ..., **kwargs: Any) -> Any:
    """A model's name or revision as written: the stage fingerprints the model's identity instead
    (name and revision, or a local model's content hash; see ``fingerprint.model_identity``)."""
    return Field(default, json_schema_extra={_FINGERPRINT: False}, **kwargs)


def when_set(default: Any = ..., **kwargs: Any) -> Any:
    """A field added after runs existed: fingerprinted only when it differs from its default."""
    return Field(default, json_schema_extra={_FINGERPRINT: "when_set"}, **kwargs)


def fingerprinted_since(scheme: int, default: Any = ..., **kwargs: Any) -> Any:
    """A field that changes outputs but was left out of fingerprints before ``scheme``."""
    return Field(default, json_schema_extra={_FINGERPRINT: scheme}, **kwargs)


def fingerprinted(section: BaseModel, scheme: int = 1) -> dict[str, Any]:
    """The settings of a config section that change outputs under fingerprint ``scheme``, as plain
    data (nested sections too)."""
    out = {}
    for name, info in type(section).model_fields.items():
        mark = info.json_schema_extra.get(_FINGERPRINT, True) if isinstance(info.json_schema_extra, dict) else True
        value = getattr(section, name)
        if mark is False or (mark == "when_set" and value == info.get_default(call_default_factory=True)):
            continue
        if isinstance(mark, int) and not isinstance(mark, bool) and scheme < mark:
            continue
        out[name] = _plain(value, scheme)
    return out


def _plain(value: Any, scheme: int) -> Any:
    if isinstance(value, BaseModel):
        return fingerprinted(value, scheme)
    if isinstance(value, (list, tuple)):
        return [_plain(v, scheme) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, scheme) for k, v in value.items()}
    return value


def differences(before: BaseModel, after: BaseModel, where: str = "") -> list[str]:
    """Each field whose value differs between two configs, as ``path: before -> after``; only the
    fields both have (a run and a training job share their train and eval sections)."""
    out = []
    for name in type(before).model_fields:
        if name not in type(after).model_fields:
            continue
        a, b, path = getattr(before, name), getattr(after, name), f"{where}{name}"
        if isinstance(a, BaseModel) and isinstance(b, BaseModel):
            out += differences(a, b, path + ".")
        elif a != b:
            out.append(f"{path}: {a!r} -> {b!r}")
    return out


_CREDENTIAL = re.compile(r"^(key|secret|token|password|passwd)$|secret|password|token|credential|access_key|account_key|"
                         r"connection_string", re.IGNORECASE)


def credential_keys(options: Any, where: str = "") -> list[str]:
    """The keys of (nested) fsspec options that hold credentials, as dotted paths."""
    if not isinstance(options, dict):
        return []
    found = []
    for name, value in options.items():
        path = f"{where}.{name}" if where else str(name)
        found += [path] if _CREDENTIAL.search(str(name)) else credential_keys(value, path)
    return found


class Section(BaseModel):
    """A config section: unknown keys refused, values frozen. A stage's section is named as the stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConceptSafety(Section):
    """Concepts dropped before captioning as unsafe: a blocklist, a text classifier, or both."""

    blocklist: str | None = Field(None, description="An fsspec URI of a text file of blocked terms, one per line ('#' "
                                  "starts a comment); a concept holding one as whole words (any case) is dropped.")
    classifier: str | None = Field(None, description="A transformers text-classification model (hub name, local path, "
                                   "or tiny/safety offline) scoring every concept.")
    unsafe_labels: list[str] = Field(default_factory=lambda: ["unsafe"], description="The classifier's labels that mean "
                                     "unsafe (e.g. toxic, nsfw).")
    threshold: float = Field(0.5, gt=0, le=1, description="A concept is dropped when an unsafe label scores at least this.")
    batch_size: int = operational(256, ge=1, description="Concepts per classifier batch.")

    @property
    def active(self) -> bool:
        return bool(self.blocklist or self.classifier)


class ConceptsConfig(Section):
    """Concept bank."""

    source: str = Field(
        "builtin:imagenet-1k",
        description="Concept bank: 'builtin:imagenet-1k' or an fsspec URI of a .txt/.json/.csv/.parquet file.",
    )
    column: str | None = Field(None, description="Column holding the concepts in a CSV or Parquet bank.")
    limit: int | None = Field(None, ge=1, description="Keep a deterministic sample of this many concepts (None: all).")
    per_partition: int = Field(1000, ge=1, description="Concepts per partition; one partition is one unit of caption work.")
    num_shards: int = Field(1, ge=1, description="Split the bank into this many shards by position (for runs over part of a bank).")
    shard_index: int = Field(0, ge=0, description="Which shard of the bank this run takes (0-based, < num_shards).")
    sha256: str | None = when_set(None, description="The sha256 of the concepts the run takes, one per line; pinned when a "
                                  "run begins (set it to insist on one version of the bank).")
    safety: ConceptSafety = when_set(default_factory=ConceptSafety, description="Drop unsafe concepts before captioning "
                                     "(the paper found 3.15% of MetaCLIP's bank unsafe); dropped ones are listed in the report.")

    @model_validator(mode="after")
    def _shard_in_range(self) -> "ConceptsConfig":
        if self.shard_index >= self.num_shards:
            raise ValueError(f"shard_index {self.shard_index} must be below num_shards {self.num_shards}")
        return self


class ModelSection(Section):
    """What every model stage shares: the model, and the pool of actors that hold it."""

    model: str = model_reference(..., description="Model on the hub, a local path, or 'tiny/NAME' for a built-in tiny model.")
    revision: str | None = model_reference(None, description="Model revision (hub commit, branch or tag; default main).")
    commit: str | None = model_reference(None, description="The hub commit the revision named when the run began; pinned "
                                         "then (pins.py), loaded by every actor, recorded in the lineage.")
    num_actors: int = operational(1, ge=1, description="Ray actors in the stage's pool (each loads the model once).")
    num_gpus: float = operational(1, ge=0, description="GPUs per actor (0 on CPU; a fraction packs small models).")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field("auto", description="Weights dtype; auto is fp16 on GPU, fp32 on CPU.")
    ray_resources: dict[str, float] = operational(
        default_factory=dict, description="Extra Ray resources per actor, to land on a node group (e.g. {caption_gpu: 1}).")

    @property
    def load_revision(self) -> str | None:
        """What the actors load: the pinned commit, else the revision as written."""
        return self.commit or self.revision


class CaptionsConfig(ModelSection):
    """Caption generation."""

    backend: str = Field("vllm", pattern=r"^(vllm|transformers|[\w.]+:\w+)$",
                         description="Caption backend: vllm (production), transformers (CPU, fallback), or a plug-in "
                                     "class as package.module:ClassName.")
    template: str = Field("synthclip", description="Prompt template name (see synthclip_core.captioning.prompts).")
    per_concept: int = Field(1, ge=1, description="Captions written per concept, each with its own seed.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature (paper: 0.7).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass (paper: 0.95).")
    presence_penalty: float = Field(1.0, description="OpenAI-style presence penalty on generated tokens (paper: 1.0).")
    frequency_penalty: float = Field(1.0, description="OpenAI-style frequency penalty on generated tokens (paper: 1.0).")
    max_tokens: int = Field(48, ge=1, description="Upper bound on generated tokens per caption.")
    max_words: int = Field(30, ge=1, description="Captions longer than this many words are rejected as overlong (the prompt asks for 15).")
    batch_size: int = operational(32, ge=1, description="Prompts per generate call (transformers); vLLM takes a whole partition at once.")
    tensor_parallel_size: int = operational(1, ge=1, description="vLLM tensor parallelism inside one actor (set num_gpus to match).")
    python: str | None = operational(
        None, description="Interpreter of the caption actors, e.g. the vLLM environment's bin/python (default: this one).")
    engine_options: dict[str, Any] = operational(default_factory=dict, description="Extra keyword arguments for vllm.LLM "
                                                 "(those that change outputs, such as dtype or quantization, are fingerprinted).")

    def sampling(self) -> dict[str, float]:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "max_tokens": self.max_tokens,
        }


class BalancedConfig(Section):
    """MetaCLIP-style balancing."""

    threshold: int = Field(..., ge=1, description="MetaCLIP's t: the cap on captions kept per concept.")
    case_sensitive: bool = Field(True, description="Match concepts case-sensitively, as MetaCLIP does.")
    num_workers: int = operational(2, ge=1, description="Ray actors matching and sampling caption partitions in parallel (1 CPU each).")
    eval_fraction: float = Field(0.05, ge=0, lt=1, description="Share of samples held out for evaluation (by hash of the sample id).")
    holdout_concepts: int = Field(0, ge=0, description="Concepts kept out of training on purpose (split 'holdout': "
                                  "captions written for or matching them); evaluation measures out-of-bank accuracy on them.")


class TopupConfig(Section):
    """Closed-loop captioning: concepts balancing left under a target get new captions, in rounds."""

    target: int = Field(0, ge=0, description="Kept captions every concept should reach (0: off, and the run has no "
                        "topup stage); at most balanced.threshold, which balancing caps every concept at.")
    max_rounds: int = Field(3, ge=1, description="Rounds of new captions at most (the loop also ends when every concept "
                            "reached the target, a round kept nothing new, or the budget is spent).")
    budget: int | None = Field(None, ge=1, description="New captions asked for over all rounds at most (None: no cap); "
                               "the concepts with the fewest kept captions are served first.")
    oversample: float = Field(1.5, ge=1, description="Captions asked per missing one (some come back rejected, duplicate "
                              "or naming another concept).")
    template: str | None = Field("synthclip-focused", description="Prompt template of the new captions (None: the "
                                 "captions stage's); the default asks for the concept word for word.")
    per_partition: int = operational(4096, ge=1, description="New captions per partition (one unit of LLM work); the "
                                     "caption pool of the captions section writes them.")


class ImagesConfig(ModelSection):
    """Text-to-image rendering."""

    backend: str = Field("diffusers", pattern=r"^(diffusers|[\w.]+:\w+)$",
                         description="Render backend: diffusers, or a plug-in class as package.module:ClassName.")
    preset: str | None = operational(None, description="Recommended settings of a model family, filling the fields "
                                     "left unset: sd15, sd2, sdxl, sd3, pixart, flux-schnell, flux-dev (rendering/presets.py).")
    pipeline: str = when_set("auto", description="The diffusers pipeline: 'auto' (the class the model's index names), "
                             "'text2image' (AutoPipelineForText2Image) or a class name (e.g. StableDiffusionXLPipeline).")
    scheduler: Literal["ddim", "pndm", "euler", "dpmsolver", "default"] = Field(
        "ddim", description="Sampler (paper: DDIM); 'default' keeps the model's own (flow matching for SD3 and FLUX).")
    offload: Literal["none", "model", "sequential"] = operational(
        "none", description="CPU offload on a GPU for models larger than its memory: 'model' (whole components, "
        "little slower) or 'sequential' (layer by layer, least memory, slowest).")
    device_map: str | None = operational(None, description="Spread one pipeline's components over the actor's GPUs "
                                         "(diffusers' 'balanced'; set num_gpus to the GPUs each actor holds).")
    steps: int = Field(50, ge=1, description="Denoising steps (paper: 50).")
    guidance_scale: float = Field(2.0, ge=0, description="Classifier-free guidance scale (paper: 2.0).")
    eta: float = Field(0.0, ge=0, description="DDIM eta (paper: 0).")
    height: int = Field(512, ge=8, description="Rendered image height in pixels.")
    width: int = Field(512, ge=8, description="Rendered image width in pixels.")
    stored_size: int = Field(256, ge=8, description="Side of the stored JPEG (resized from the rendered image).")
    jpeg_quality: int = Field(95, ge=1, le=100, description="JPEG quality of stored images.")
    images_per_caption: int = Field(1, ge=1, description="Images rendered per balanced caption.")
    best_of: int = when_set(1, ge=1, description="Render this many candidates per image and keep the one the scorer "
                            "ranks highest (CLIP score); the scores and the other seeds go to the lineage (paper: 1).")
    scorer: str = when_set("ViT-B-32:openai", description="The best-of-k scorer, an open_clip model: ARCH:PRETRAINED "
                           "(a tag or a checkpoint), local-dir:PATH (e.g. a run's train/model), or tiny/clip offline.")
    batch_size: int = operational(8, ge=1, description="Prompts rendered per forward pass.")
    compile: bool = operational(False, description="torch.compile the UNet (worth it on GPUs for long runs).")
    safety_checker: bool = Field(False, description="Run the model's safety checker and drop flagged images (paper: off).")
    captions_per_partition: int = operational(
        256, ge=1, description="Balanced captions per render partition (a slice of one balanced partition).")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        from .rendering.presets import with_preset

        return with_preset(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _latent_sizes(self) -> "ImagesConfig":
        """Every diffusers text-to-image pipeline downsamples by 8 into its latents: other sizes fail
        in every partition, so they are refused here."""
        bad = [f"{side} {value}" for side, value in (("height", self.height), ("width", self.width)) if value % 8]
        if self.backend == "diffusers" and bad:
            raise ValueError(f"{' and '.join(bad)}: diffusers pipelines render sizes that are multiples of 8")
        return self


class ShardsConfig(Section):
    """Webdataset export."""

    samples_per_shard: int = Field(10000, ge=1, description="Samples per webdataset tar shard.")
    num_workers: int = operational(1, ge=1, description="Ray tasks writing groups of shards in parallel (1 CPU each; "
                                   "1: in the flow's own process).")


class DataSource(Section):
    """One webdataset source of training pairs, sampled by weight (docs/training.md, "Real data")."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Short name, used in lineage and reports.")
    uri: str = Field(..., description="'run' (this run's shards), 'run:RUN_ID' (another run's shards under the same root), or "
                     "webdataset tars: a folder, a glob or a brace pattern on any fsspec root (e.g. s3://bucket/cc12m/{00000..01242}.tar).")
    weight: float = Field(1.0, ge=0, description="Share of each epoch's samples drawn from this source (weights are normalised).")
    limit: int | None = Field(None, ge=1, description="Use only a deterministic subset of this many samples (e.g. 500000 of CC12M).")
    image_key: str = Field("jpg", description="The image's extension inside the tars (img2dataset writes jpg).")
    text_key: str = Field("txt", description="The caption's extension inside the tars.")
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


class EvalDataset(Section):
    name: str = Field(..., description="The dataset's name in the report (e.g. imagenet-val, coco-5k).")
    task: Literal["zeroshot", "retrieval", "linear_probe"] = Field(..., description="What to measure on it.")
    path: str = Field(..., description="Test data: a class-folder tree, Parquet or webdataset tars (docs/evaluation.md).")
    train_path: str | None = Field(None, description="Linear probe training data (default: <path>/train, tested on <path>/test).")
    classes: str | None = Field(None, description="Class names: a file, 'imagenet' (open_clip's names), or the folder names.")
    templates: str | None = Field(None, description="Zero-shot templates for this dataset (default: eval.templates).")


class EvalConfig(Section):
    """Evaluation."""

    templates: str = Field("simple", description="Zero-shot prompt templates: 'openai', 'simple' (open_clip's) or a file.")
    batch_size: int = operational(64, ge=1, description="Evaluation batch size.")
    num_gpus: float = operational(0, ge=0, description="GPUs for the evaluation task (on a cluster; 0 on the CPU).")
    datasets: list[EvalDataset] = Field(default_factory=list, description="External benchmarks evaluated after training.")


# Section names before sections were named after their stages (runs made then store these).
LEGACY_SECTIONS = {"balance": "balanced", "render": "images", "export": "shards"}


class RunSettings(Section):
    """What a synthetic run has besides its stages' sections; ``pipeline.RunConfig`` adds one
    section per stage, named as the stage is, from the stage's own definition."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Preset name; the default run id starts with it.")
    seed: int = Field(0, ge=0, description="The run seed: every id, seed and sampling draw derives from it and the content.")
    root: str = Field("runs", description="Default storage root (any fsspec URI); --root overrides it.")
    fingerprint_scheme: int | None = Field(None, description="How this run's fingerprints are computed; pinned when it begins (pins.py).")
    target_pairs: int | None = Field(None, ge=1, description="Size the run for about this many training pairs: when it begins, "
                                     "concepts.limit and captions.per_concept are set from the recorded rates (sizing.py).")
    rates: str = Field("offline", description="Recorded shares kept per step, throughputs and sizes, for target_pairs and "
                       "`synthclip plan`: 'offline' (measured on the offline run) or a JSON file of the same form.")

    @model_validator(mode="before")
    @classmethod
    def _legacy_section_names(cls, data: Any) -> Any:
        """Configs and run.json files written before the rename keep loading."""
        if not isinstance(data, dict) or not any(old in data for old in LEGACY_SECTIONS):
            return data
        data = dict(data)
        for old, new in LEGACY_SECTIONS.items():
            if old in data:
                if new in data:
                    raise ValueError(f"sections {old!r} and {new!r} are the same section (its old and new name): keep {new!r}")
                data[new] = data.pop(old)
        return data

    @field_validator("root")
    @classmethod
    def _root_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class JobConfig(Section):
    """A training job outside a synthetic run: fine-tuning, or training on mixed or real sources."""

    stages: ClassVar[tuple[str, ...]] = ("train", "eval")  # a job has these stages of the pipeline only

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Preset name; the default job id starts with it.")
    seed: int = Field(0, ge=0, description="Seeds the data order, crops and (without init_from) the initial weights.")
    root: str = Field("runs", description="Storage root (any fsspec URI); the job lives in ROOT/JOB_ID beside the runs.")
    fingerprint_scheme: int | None = Field(None, description="How this job's fingerprints are computed; pinned when it begins (pins.py).")
    train: TrainConfig = Field(..., description="Training; train.sources must name at least one source.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Benchmarks evaluated on the final checkpoint.")

    @model_validator(mode="after")
    def _has_sources(self) -> "JobConfig":
        if not self.train.sources:
            raise ValueError("train.sources: a training job needs at least one source")
        if any(s.uri == "run" for s in self.train.sources):
            raise ValueError("train.sources: 'run' means a run's own shards; in a job name the run: run:RUN_ID")
        return self


def read_yaml(path: str | Path) -> tuple[Any, str]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text()), str(path)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None


def load_job_config(path: str | Path) -> JobConfig:
    """Read and validate a training job's YAML (see configs/finetune-*.yaml)."""
    return job_config_from_dict(*read_yaml(path))


def job_config_from_dict(data: Any, source: str = "<config>") -> JobConfig:
    return validate(JobConfig, data, source)


def validate(model: type[BaseModel], data: Any, source: str):
    """``data`` as ``model``; any problem is one ConfigError naming the source and every field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "<top>"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{where}: {msg}")
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None
