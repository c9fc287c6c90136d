"""From "I want N pairs" to a run's counts: concepts and captions per concept, by recorded rates.

Captions are lost on the way to training pairs: the clean-up drops duplicates and refusals,
balancing samples frequent concepts down, and the held-out split keeps a share back. A
:class:`Rates` file records those shares as a run measured them (``offline``: the offline run's;
``synthclip plan --rates-from RUN_ID`` reads a run's own), and the throughputs and sizes that
``synthclip plan`` prices a run with. When a run with ``target_pairs`` begins, :func:`sized` sets
``captions.per_concept`` and ``concepts.limit`` so that the run ends with about that many pairs;
a run that continues keeps what it was sized to (``pins.pin``).
"""

from __future__ import annotations

import json
import math
from importlib import resources as package_files
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError


class Throughput(BaseModel):
    """Work per GPU-second, with where each figure comes from."""

    model_config = ConfigDict(extra="forbid")
    captions_per_gpu_s: float = Field(..., gt=0)
    images_per_gpu_s: float = Field(..., gt=0)
    train_samples_per_gpu_s: float = Field(..., gt=0)
    sources: dict[str, str] = Field(default_factory=dict)


class Rates(BaseModel):
    """Shares kept by each step (measured), throughputs, and bytes per stored row."""

    model_config = ConfigDict(extra="forbid")
    name: str
    measured_on: str  # the run (and models) the shares were measured on
    caption_keep: float = Field(..., gt=0, le=1, description="Captions kept by the clean-up, of those written.")
    balance_keep: float = Field(..., gt=0, le=1, description="Captions kept by balancing, of those cleaned.")
    image_keep: float = Field(1.0, gt=0, le=1, description="Images kept by the quality guards, of those rendered.")
    throughput: Throughput
    bytes_per_caption_row: float = Field(..., gt=0)
    bytes_per_image_pixel: float = Field(..., gt=0, description="Stored JPEG bytes per pixel of the stored side squared.")
    sources: dict[str, str] = Field(default_factory=dict, description="Where a figure other than a measured share comes from.")
    groups: dict[str, Throughput] = Field(default_factory=dict, description="Throughputs of a node group, by the Ray "
                                          "resource a section's ray_resources names it with (accelerator_type:A100, a "
                                          "group's own resource): a stage asking for it is priced by these.")

    def rate(self, name: str, ray_resources: dict | None = None) -> tuple[float, str]:
        """Work per GPU-second ``name`` for a stage asking ``ray_resources``: the named group's, where
        the rates have it, else the default; with the group it came from ('' for the default)."""
        for resource in ray_resources or {}:
            if resource in self.groups:
                return getattr(self.groups[resource], name), resource
        return getattr(self.throughput, name), ""

    def pairs_per_caption(self, cfg) -> float:
        """Training pairs one written caption of a concept that trains becomes, under ``cfg``'s
        ``eval_fraction`` and images per caption (held-out concepts' captions train nothing: see
        :func:`counts_for`)."""
        return (self.caption_keep * self.balance_keep * self.image_keep * (1 - cfg.balanced.eval_fraction)
                * cfg.images.images_per_caption)


def on_group(group: str) -> str:
    """How a plan's basis names the node group whose throughput priced it ('' for the default)."""
    return f" on {group}" if group else ""


def train_share(cfg, concepts: int | None = None) -> float:
    """The share of balanced rows that train: the held-out concepts' rows leave first (their share of
    the ``concepts`` in the bank), then ``eval_fraction`` of the rest."""
    count = concepts or cfg.concepts.limit
    held = min(cfg.balanced.held_out_count / count, 1.0) if count else 0.0
    return (1 - held) * (1 - cfg.balanced.eval_fraction)


BUILTIN = ("offline",)


def load_rates(name: str) -> Rates:
    """A built-in rates file by name, or a JSON file."""
    if name in BUILTIN:
        text = package_files.files("synthclip_core.planning").joinpath("rates", f"{name}.json").read_text()
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(f"rates: {name!r} is neither a built-in rates file ({', '.join(BUILTIN)}) nor a JSON file")
        text = path.read_text()
    try:
        return Rates.model_validate(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"rates {name!r}: not a rates file ({' '.join(str(exc).split())[:300]})") from None


def counts_for(target_pairs: int, bank_size: int, pairs_per_caption: float, limit: int | None = None,
               held_out: int = 0) -> tuple[int, int]:
    """(concepts, captions per concept) for about ``target_pairs``: every concept of the bank (up
    to ``limit``) with as few captions each as reach the target; fewer concepts when one caption
    each is already more than enough. ``held_out`` concepts (``balanced.holdout_concepts``) come on
    top of those that train, whether or not a limit is set."""
    available = min(bank_size, limit or bank_size)
    training = available - held_out
    if training <= 0:
        raise ConfigError(f"balanced.holdout_concepts ({held_out}) leaves no concept to train: the run has "
                          f"{available} concept(s){' (concepts.limit)' if limit and limit < bank_size else ''}; "
                          f"hold out fewer, or use more concepts")
    captions = math.ceil(target_pairs / pairs_per_caption)
    per_concept = max(1, math.ceil(captions / training))
    concepts = min(available, held_out + math.ceil(captions / per_concept))
    return concepts, per_concept


def bank_concepts(cfg) -> int:
    """The concepts a config's bank holds for its shard, before ``concepts.limit`` (read whole)."""
    from ..curation.concepts import load_bank

    c = cfg.concepts
    return len(load_bank(c.source, c.column, None, cfg.seed, c.num_shards, c.shard_index).concepts)


def sized(cfg, bank_size: int | None = None, rates: Rates | None = None):
    """``cfg`` with ``concepts.limit`` and ``captions.per_concept`` set for its ``target_pairs``
    (as it is without one), by ``rates`` (default: the config's own). ``bank_size``: read from the
    bank when not given."""
    target = getattr(cfg, "target_pairs", None)
    if not target:
        return cfg
    bank_size = bank_concepts(cfg) if bank_size is None else bank_size
    rates = rates or load_rates(cfg.rates)
    concepts, per_concept = counts_for(target, bank_size, rates.pairs_per_caption(cfg), cfg.concepts.limit,
                                       cfg.balanced.held_out_count)
    return cfg.model_copy(update={"concepts": cfg.concepts.model_copy(update={"limit": concepts}),
                                  "captions": cfg.captions.model_copy(update={"per_concept": per_concept})})


def measured_throughput(run) -> tuple[Throughput, dict[str, Throughput]]:
    """Work per device-second as the run's ledger measured it (GPU-seconds where its stages held
    GPUs, else CPU-seconds), the stage's committed outputs only, and the same per GPU type (as
    ``accelerator_type:TYPE`` groups); a stage without ledger records (a run from before the
    ledger, or one without training) keeps the built-in figure."""
    builtin = load_rates("offline").throughput
    figures, sources = builtin.model_dump(exclude={"sources"}), dict(builtin.sources)
    by_type: dict[str, dict[str, float]] = {}
    for key, stage, what in (("captions_per_gpu_s", "captions", "captions"), ("images_per_gpu_s", "images", "images"),
                             ("train_samples_per_gpu_s", "train", "samples")):
        if not run.has(stage):
            continue
        work: dict[str, float] = {}  # device kind -> [work, seconds]
        seconds: dict[str, float] = {}
        for output, record in run.store.records(stage).items():
            held = record.get("held")
            if not held or not output.startswith("metrics/" if stage == "train" else "part-"):
                continue
            kind = held["accelerator"] if held.get("gpus") else "CPU"
            rows = record.get("rows", 0) * (run.config.train.global_batch_size if stage == "train" else 1)  # a chunk's rows are steps
            work[kind] = work.get(kind, 0) + rows
            seconds[kind] = seconds.get(kind, 0.0) + held["seconds"] * (held.get("gpus") or held.get("cpus") or 1)
        if sum(seconds.values()) > 0 and sum(work.values()) > 0:
            figures[key] = sum(work.values()) / sum(seconds.values())
            sources[key] = (f"measured on run {run.ref.run_id}: {sum(work.values()):,.0f} {what} in {sum(seconds.values()):,.1f} "
                            f"{'/'.join(sorted(seconds))}-seconds")
        for kind in (k for k in seconds if k != "CPU" and seconds[k] > 0):
            by_type.setdefault(f"accelerator_type:{kind}", {})[key] = work[kind] / seconds[kind]
    groups = {name: Throughput(**{**figures, **rates}, sources={"measured on": f"run {run.ref.run_id}"})
              for name, rates in by_type.items()}
    return Throughput(**figures, sources=sources), groups


def measured_rates(run, throughput: Throughput | None = None) -> Rates:
    """The shares kept, bytes per row and throughputs of a run whose balancing and rendering are
    complete (for ``synthclip plan --rates-from``); throughputs from ``throughput`` when given,
    else its ledger's (:func:`measured_throughput`)."""
    done = run.require("balanced").notes
    measured = (None, {}) if throughput else measured_throughput(run)
    survived = done["captions_in"] - done["empty"] - done["duplicates"] - done["no_match"]
    captions = [r for o, r in run.store.records("captions").items() if o.startswith("part-")]
    images = [r for o, r in run.store.records("images").items() if o.startswith("part-")]
    rendered = sum(r["rows"] for r in images)
    side = run.config.images.stored_size
    return Rates(
        name=f"run:{run.ref.run_id}", measured_on=f"run {run.ref.run_id} ({run.config.captions.model}, {run.config.images.model})",
        caption_keep=survived / done["captions_in"], balance_keep=done["kept"] / survived,
        image_keep=min(1.0, rendered / max(1, done["kept"] * run.config.images.images_per_caption)),
        throughput=throughput or measured[0], groups={} if throughput else measured[1],
        bytes_per_caption_row=sum(r["bytes"] for r in captions) / max(1, sum(r["rows"] for r in captions)),
        bytes_per_image_pixel=sum(r["bytes"] for r in images) / max(1, rendered) / side ** 2,
    )
