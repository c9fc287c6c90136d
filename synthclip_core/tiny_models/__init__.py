"""Tiny models built locally, so that offline runs and tests use the real model code paths.

No machine that builds or tests this project can download weights. These builders write tiny
but real checkpoints (a Llama-style LLM, a Stable Diffusion pipeline, a text classifier for the
concept safety screen, an open_clip config) to a
directory; the stages load them with the same ``from_pretrained`` / factory calls as real models.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

TINY_PREFIX = "tiny/"
TINY_NAMES = ("llm", "sd", "safety", "sdxl", "sd3", "sd-checked", "clip")
# Bumped when a builder makes another model: a cached build of an older version is rebuilt.
# (Version 1 builds wrote "ok"; llm 2 learned to rewrite captions.)
VERSIONS = {"llm": 2, "sd": 2, "safety": 1, "sdxl": 1, "sd3": 1, "sd-checked": 1, "clip": 1}


PIPELINE_BUILDERS = {"sdxl": "build_tiny_sdxl", "sd3": "build_tiny_sd3", "sd-checked": "build_tiny_sd_checked"}


def models_dir() -> Path:
    """Where tiny models live: ``$SYNTHCLIP_MODELS_DIR`` or ``~/.cache/synthclip/models``."""
    env = os.environ.get("SYNTHCLIP_MODELS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "synthclip" / "models"


def tiny_path(name: str) -> Path:
    return models_dir() / f"tiny-{name}"


def is_built(name: str) -> bool:
    marker = tiny_path(name) / "BUILT"
    return marker.exists() and _version(marker.read_text()) == VERSIONS.get(name)


def _version(marker: str) -> int:
    """The builder version a ``BUILT`` marker names (0: not one this code wrote)."""
    text = marker.strip()
    if text == "ok":
        return 1
    return int(text.removeprefix("version ")) if text.startswith("version ") else 0


def build_tiny(name: str, force: bool = False, log=print) -> Path:
    """Build one tiny model if missing (idempotent); returns its directory."""
    path = tiny_path(name)
    if is_built(name) and not force:
        return path
    if name == "llm":
        from .llm import build_tiny_llm as builder
    elif name == "sd":
        from .diffusion import build_tiny_sd as builder
    elif name == "safety":
        from .safety import build_tiny_safety as builder
    elif name == "clip":
        from .clip import build_tiny_clip as builder
    elif name in PIPELINE_BUILDERS:
        from . import pipelines

        builder = getattr(pipelines, PIPELINE_BUILDERS[name])
        if name == "sd-checked":  # the tiny SD pipeline with a checker added
            builder = functools.partial(builder, base=build_tiny("sd", log=log))
    else:
        raise ValueError(f"unknown tiny model {name!r} (known: {', '.join(TINY_NAMES)})")
    tmp = path.with_name(path.name + ".building")
    builder(tmp, log=log)
    (tmp / "BUILT").write_text(f"version {VERSIONS[name]}\n")
    if path.exists():
        import shutil

        shutil.rmtree(path)
    tmp.rename(path)
    return path


def resolve_model(name: str) -> str:
    """Turn ``tiny/llm`` into its local directory (building it if needed); other names pass."""
    if name.startswith(TINY_PREFIX):
        return str(build_tiny(name[len(TINY_PREFIX) :]))
    return name
