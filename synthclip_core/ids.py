"""Deterministic ids, seeds and draws derived only from content and the run seed.

Everything here is a pure function of its arguments, so two runs of the same config (under any
run id, on any hardware, with any partitioning) agree on every id, seed and sampling decision.
"""

from __future__ import annotations

import hashlib
import re

from .errors import ConfigError

_SEP = "\x1f"  # unit separator: cannot occur in normalised text parts


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(_SEP.join(str(p) for p in parts).encode("utf-8")).digest()


def stable_id(*parts: object) -> str:
    """A 16-hex-digit id (64 bits) for the given parts."""
    return _digest(*parts).hex()[:16]


def derive_seed(*parts: object) -> int:
    """A seed in [0, 2**31) for the given parts; small enough for every RNG API we feed."""
    return int.from_bytes(_digest("seed", *parts)[:4], "big") & 0x7FFFFFFF


def unit_draw(*parts: object) -> float:
    """A uniform number in [0, 1) for the given parts (53 bits of the hash)."""
    return (int.from_bytes(_digest("draw", *parts)[:8], "big") >> 11) / float(1 << 53)


def concept_id(concept: str) -> str:
    return stable_id("concept", concept)


def caption_id(concept_id_: str, template: str, index: int, seed: int) -> str:
    return stable_id("caption", concept_id_, template, index, seed)


def rewrite_id(caption_id_: str, template: str, k: int, seed: int) -> str:
    return stable_id("rewrite", caption_id_, template, k, seed)


def image_id(caption_id_: str, index: int, seed: int) -> str:
    return stable_id("image", caption_id_, index, seed)


# One rule for every run and job id, wherever it comes from (the CLI, deployment parameters,
# ``run:ID`` in a config): one path component under the root, never "..", absolute or hidden.
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
RUN_ID_RULE = "up to 200 letters, digits, '.', '_' and '-', starting with a letter or digit"


# The rule for every other name a config gives that becomes part of a path or a command (a preset,
# a training source, an evaluation dataset): one path component, never "..", absolute or hidden.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


def is_run_id(value: object) -> bool:
    return isinstance(value, str) and RUN_ID.fullmatch(value) is not None


def check_run_id(run_id: object) -> str:
    if not is_run_id(run_id):
        raise ConfigError(f"run id {run_id!r} is not a name under the root: use {RUN_ID_RULE}")
    return run_id
