"""Tiny models built locally, so that offline runs and tests use the real model code paths.

No machine that builds or tests this project can download weights. These builders write tiny
but real checkpoints (a Llama-style LLM, a Stable Diffusion pipeline, a text classifier for the
concept safety screen, an open_clip config) to a
directory; the stages load them with the same ``from_pretrained`` / factory calls as real models.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from ..compute import progress

TINY_PREFIX = "tiny/"
TINY_NAMES = ("llm", "sd", "safety", "sdxl", "sd3", "sd-checked", "clip")
# Bumped when a builder makes another model: a cached build of an older version is rebuilt.
# (Version 1 builds wrote "ok"; llm 2 learned to rewrite captions.)
VERSIONS = {"llm": 2, "sd": 2, "safety": 1, "sdxl": 1, "sd3": 1, "sd-checked": 1, "clip": 1}


PIPELINE_BUILDERS = {"sdxl": "build_tiny_sdxl", "sd3": "build_tiny_sd3", "sd-checked": "build_tiny_sd_checked"}
STEPPED = {"llm", "sd", "safety"}  # builders that train, and say how far they are
_logger = logging.getLogger(__name__)


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


def build_tiny(name: str, force: bool = False, log: Callable[[str], None] | None = None) -> Path:
    """Build one tiny model if missing (idempotent); returns its directory.

    One builder per model at a time, across processes (a file lock): a run's driver and a test may
    both ask for the same model. Progress goes to the core's listeners as ``tiny/NAME`` (a bar in
    the CLI), the builders' few lines to ``log`` (this module's logger by default).
    """
    path = tiny_path(name)
    if is_built(name) and not force:
        return path
    if name not in TINY_NAMES:
        raise ValueError(f"unknown tiny model {name!r} (known: {', '.join(TINY_NAMES)})")
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{path.name}.lock"))):
        if is_built(name) and not force:  # another process built it while this one waited
            return path
        builder = _builder(name, log or _logger.info)
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # its "Writing model shards" bars: ours say how far a build is
        tmp = path.with_name(path.name + ".building")
        if tmp.exists():  # what a killed build left
            shutil.rmtree(tmp)

        def tick(done: float, total: int) -> None:
            progress.report(f"{TINY_PREFIX}{name}", done, total)

        if name in STEPPED:  # a training step at a time
            builder(tmp, progress=tick)
        else:
            tick(0, 1)
            builder(tmp)
            tick(1, 1)
        (tmp / "BUILT").write_text(f"version {VERSIONS[name]}\n")
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    return path


def _builder(name: str, log: Callable[[str], None]) -> Callable[..., Path]:
    if name == "llm":
        from .llm import build_tiny_llm as builder
    elif name == "sd":
        from .diffusion import build_tiny_sd as builder
    elif name == "safety":
        from .safety import build_tiny_safety as builder
    elif name == "clip":
        from .clip import build_tiny_clip as builder
    else:
        from . import pipelines

        builder = getattr(pipelines, PIPELINE_BUILDERS[name])
        if name == "sd-checked":  # the tiny SD pipeline with a checker added
            builder = functools.partial(builder, base=build_tiny("sd", log=log))
    return functools.partial(builder, log=log)


def named_in(config: Any) -> list[str]:
    """The tiny models a config names (``tiny/NAME`` anywhere in it), in the order it names them."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, str) and value.startswith(TINY_PREFIX) and value[len(TINY_PREFIX):] in TINY_NAMES:
            found.append(value[len(TINY_PREFIX):])

    walk(config.model_dump() if hasattr(config, "model_dump") else config)
    return list(dict.fromkeys(found))


def build_many(names: list[str], jobs: int = 2, force: bool = False) -> list[Path]:
    """Build the missing ones of ``names``, ``jobs`` at a time, each in a process of its own (with
    ``force``, all of them one after the other, so that sd-checked copies the rebuilt sd).

    The LLM trains on one thread and the text-to-image model on two (each model depends on its
    count, so neither changes); side by side, with waiting threads asleep, the two took 275 s on 2
    cores where one after the other took 346 s. Their progress is relayed here.
    """
    missing = [name for name in names if force or not is_built(name)]
    if force or jobs <= 1 or len(missing) <= 1:
        return [build_tiny(name, force=force) for name in names]
    import multiprocessing
    import queue as queues
    from concurrent.futures import ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")  # no forked copy of a driver's threads (Ray, Prefect)
    events = context.Queue()
    with ProcessPoolExecutor(min(jobs, len(missing)), mp_context=context, initializer=_relay_progress,
                             initargs=(events,)) as pool:
        futures = [pool.submit(build_tiny, name) for name in missing]
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.2)
            while True:
                try:
                    progress.report(*events.get_nowait())
                except queues.Empty:
                    break
        for future in futures:
            future.result()  # raises here what a build raised there
    return [build_tiny(name) for name in names]


def _relay_progress(events) -> None:
    # Threads that wait for work sleep instead of spinning: the text-to-image build trains on two
    # threads (its model depends on that count), beside another build on a 2-core machine.
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    progress.add_listener(lambda stage, done, total: events.put((stage, done, total)))


def resolve_model(name: str) -> str:
    """Turn ``tiny/llm`` into its local directory (building it if needed); other names pass."""
    if name.startswith(TINY_PREFIX):
        return str(build_tiny(name[len(TINY_PREFIX) :]))
    return name
