"""Run configuration as data: pydantic models with a description on every field.

Presets live in ``configs/*.yaml``. Each stage declares its own section's model in its module
(``pipeline.RunConfig`` puts them together, named as the stages are); this module holds what the
sections share: the base models, the field markers, the run's own settings, and reading YAML.
Unknown keys and invalid values fail at load time with a message naming the file and the field,
before any work starts.

Fields that do not change a stage's outputs (where and how fast it runs) are marked
``operational`` on the models; :func:`fingerprinted` leaves them out of the fingerprint.
Fields added after runs existed are marked ``when_set``: they join the fingerprint only when they
differ from their default, so the runs made before them keep their fingerprints; fields that
joined with a fingerprint scheme are marked ``fingerprinted_since`` (``runs/pins.py``: a run keeps
the scheme it began with).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .ids import NAME_PATTERN

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


def scheme_of(cfg) -> int:
    """The fingerprint scheme a config's fingerprints follow (1: unpinned, or made before schemes)."""
    return getattr(cfg, "fingerprint_scheme", None) or 1


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


class Limits(Section):
    """Hours a run (or one stage of it) may spend, as its ledger counts them (``storage/ledger.py``)."""

    gpu_hours: float | None = Field(None, gt=0, description="GPU-hours, all accelerator types together.")
    cpu_hours: float | None = Field(None, gt=0, description="CPU-hours (held by actors, tasks and the stage calls).")

    def set(self) -> dict[str, float]:
        return {unit: value for unit, value in (("gpu_hours", self.gpu_hours), ("cpu_hours", self.cpu_hours)) if value}


class Budget(Limits):
    """What a run may spend in all, and optionally per stage; a pool that would go over stops
    handing out partitions. Operational: raise it and resume, and the run goes on where it stopped."""

    stages: dict[str, Limits] = Field(default_factory=dict, description="Per-stage limits, by stage name.")


class RunSettings(Section):
    """What a synthetic run has besides its stages' sections; ``pipeline.RunConfig`` adds one
    section per stage, named as the stage is, from the stage's own definition."""

    name: str = Field(..., pattern=NAME_PATTERN, description="Preset name; the default run id starts with it.")
    seed: int = Field(0, ge=0, description="The run seed: every id, seed and sampling draw derives from it and the content.")
    root: str = Field("runs", description="Default storage root (any fsspec URI); --root overrides it.")
    fingerprint_scheme: int | None = Field(None, description="How this run's fingerprints are computed; pinned when it "
                                           "begins (runs/pins.py).")
    model_pins: dict[str, dict[str, str]] = Field(default_factory=dict, description="Hub commits of the models a field "
                                                  "names by a string (a best-of-k scorer, a safety classifier): "
                                                  "{field: {model, commit}}, pinned when the run begins (runs/pins.py).")
    target_pairs: int | None = Field(None, ge=1, description="Size the run for about this many training pairs: when it begins, "
                                     "concepts.limit and captions.per_concept are set from the recorded rates (planning/sizing.py).")
    rates: str = Field("offline", description="Recorded shares kept per step, throughputs and sizes, for target_pairs and "
                       "`synthclip plan`: 'offline' (measured on the offline run) or a JSON file of the same form.")
    budget: Budget = Field(default_factory=Budget, description="What the run may spend (GPU- and CPU-hours, in all and "
                           "per stage); the run's `_budget.json` (`synthclip budget`) replaces it once set.")

    @field_validator("root")
    @classmethod
    def _root_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


def read_yaml(path: str | Path) -> tuple[Any, str]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text()), str(path)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None


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


# Plug-ins named ``package.module:ClassName`` in a config (a backend of a user's own).

def is_plugin(name: str) -> bool:
    return ":" in name


def plugin_class(name: str, field: str) -> type:
    """The class ``name`` names; a config error naming ``field`` when it cannot be imported."""
    module, _, attr = name.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{field} {name!r}: cannot import it ({exc})") from None
