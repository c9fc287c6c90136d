"""What a run fixes when it begins, so that its fingerprints name its inputs and not their names.

A config names its inputs by reference: a concept bank by URI, a hub model by a revision that
moves (``main``). When a run begins, :func:`pin` records in its config (and so in ``run.json``)
the content hash of the bank (``concepts.sha256``), the commit each hub model's revision
resolves to (``<section>.commit``) and the fingerprint scheme. Fingerprints cover the pins; a
resume loads the pinned commit and refuses a bank whose content changed (:func:`check`).

Schemes: 1, the rules before pins (runs made then record none, and keep their fingerprints);
2 adds the prompt template's text, the training data layout (``train.num_workers``,
``loader_workers``), the output-changing vLLM ``engine_options`` and a single-file model's
content (``config.fingerprinted_since``); 3 identifies the models a field names by a string (a
best-of-k scorer, a safety classifier) by content, or by the hub commit pinned in ``model_pins``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ..errors import ConfigError, RunStateError
from ..pipeline import stages_for
from ..planning.sizing import sized

SCHEME = 3
_COMMIT = re.compile(r"[0-9a-f]{40}")


def pin(cfg, like=None):
    """``cfg`` with its inputs pinned: an input it shares with ``like`` (the config of the run it
    continues or forks) keeps ``like``'s pin, which :func:`check` proves still holds; any other is
    pinned now."""
    update: dict = {"fingerprint_scheme": like.fingerprint_scheme if like is not None else SCHEME}
    if getattr(cfg, "target_pairs", None):  # sized once, when the run begins; a continuing run keeps its counts
        if like is not None and (like.target_pairs, like.rates) == (cfg.target_pairs, cfg.rates):
            cfg = cfg.model_copy(update={"concepts": cfg.concepts.model_copy(update={"limit": like.concepts.limit}),
                                         "captions": cfg.captions.model_copy(update={"per_concept": like.captions.per_concept})})
        else:
            cfg = sized(cfg)
    if hasattr(cfg, "concepts"):
        if like is not None and _unpinned(like.concepts) == _unpinned(cfg.concepts) and like.seed == cfg.seed:
            sha = like.concepts.sha256
        else:
            sha = bank_sha256(cfg)
            if cfg.concepts.sha256 and cfg.concepts.sha256 != sha:
                raise ConfigError(f"concepts.sha256: the bank {cfg.concepts.source} has content sha256 {sha}, "
                                  f"not the {cfg.concepts.sha256} the config asks for")
        update["concepts"] = cfg.concepts.model_copy(update={"sha256": sha})
    for stage in stages_for(cfg):  # every hub model a stage loads, at the commit its revision names now
        for name, section in stage.models(cfg).items():
            before = getattr(like, name, None)
            if before is not None and (before.model, before.revision) == (section.model, section.revision):
                commit = before.commit
            else:
                commit = resolve_commit(f"{name}.model", section.model, section.revision)
            update[name] = section.model_copy(update={"commit": commit})
    if hasattr(cfg, "model_pins"):
        update["model_pins"] = _named_model_pins(cfg, like)
    return cfg.model_copy(update=update)


def _named_model_pins(cfg, like) -> dict[str, dict[str, str]]:
    """The hub commit of each model a field names by a string, as ``like`` pinned it when it named
    the same model, else as the hub (or its cache) answers now; local models have none."""
    pins = {}
    for stage in stages_for(cfg):
        for field, model in stage.named_models(cfg).items():
            before = (getattr(like, "model_pins", None) or {}).get(field)
            if before and before.get("model") == model:
                pins[field] = before
            elif (commit := resolve_commit(field, model, None)) is not None:
                pins[field] = {"model": model, "commit": commit}
    return pins


def _unpinned(concepts):
    return concepts.model_copy(update={"sha256": None})


def check(run) -> None:
    """Refuse to continue a run whose pinned concept bank no longer has the content it began with."""
    cfg = run.config
    pinned = getattr(getattr(cfg, "concepts", None), "sha256", None)
    if pinned and (now := bank_sha256(cfg)) != pinned:
        raise RunStateError(
            f"{run.kind} {run.ref.run_id}: the concept bank {cfg.concepts.source} changed since the run began "
            f"(content sha256 {pinned[:12]}… then, {now[:12]}… now); resuming would mix outputs of two banks: "
            f"restore it, or start a new run")


def bank_sha256(cfg) -> str:
    """The sha256 of the concepts the stage will write (after normalisation, sharding and sampling),
    one per line: what the bank means to the run, not its file's bytes or format."""
    from ..curation.concepts import load_bank

    c = cfg.concepts
    bank = load_bank(c.source, c.column, c.limit, cfg.seed, c.num_shards, c.shard_index)
    return hashlib.sha256("\n".join(bank.concepts).encode()).hexdigest()


def resolve_commit(field: str, model: str, revision: str | None) -> str | None:
    """The hub commit a model's revision names now; None for a model that is not on the hub (a
    local path or a built-in tiny model, identified by content instead). Online the hub answers;
    offline (``HF_HUB_OFFLINE``) the local cache's ``refs/`` does."""
    from ..tiny_models import resolve_model

    if os.path.exists(resolve_model(model)) or model.startswith(("/", "./", "../", "~", "file://")):
        return None
    if revision and _COMMIT.fullmatch(revision):
        return revision
    ref = revision or "main"
    if os.environ.get("HF_HUB_OFFLINE", "").upper() not in {"1", "ON", "YES", "TRUE"}:
        try:
            from huggingface_hub import HfApi

            return HfApi().model_info(model, revision=ref, timeout=20).sha
        except Exception as exc:  # no network, no such model or revision: the cache may still know
            online_error = " ".join(str(exc).split())[:200]
    else:
        online_error = "HF_HUB_OFFLINE is set"
    from huggingface_hub.constants import HF_HUB_CACHE

    cached = Path(HF_HUB_CACHE) / f"models--{model.replace('/', '--')}" / "refs" / ref
    if cached.is_file():
        return cached.read_text().strip()
    raise ConfigError(f"{field}: cannot resolve revision {ref!r} of {model!r} to a commit: the hub did not answer "
                      f"({online_error}) and the cache {HF_HUB_CACHE} has no refs/{ref} for it")
