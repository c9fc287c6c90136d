"""A run: its id, its storage root, its resolved config and fingerprints (``run.json``)."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import subprocess
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import fsspec

from . import __version__
from .config import RunConfig, config_from_dict
from .errors import RunStateError
from .fingerprint import STAGE_VERSIONS, STAGES, stage_fingerprints
from .store import RunStore

DEFAULT_ROOT_ENV = "SYNTHCLIP_ROOT"


def default_root() -> str:
    return os.environ.get(DEFAULT_ROOT_ENV, "runs")


@dataclass(frozen=True)
class RunRef:
    """Where a run lives; plain data, so it crosses process and actor boundaries."""

    root: str
    run_id: str
    storage_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Workers run in other directories (Ray Train changes into its own), so a local root
        # must be absolute before it crosses a process boundary.
        if "://" not in self.root:
            object.__setattr__(self, "root", os.path.abspath(os.path.expanduser(self.root)))

    def store(self) -> RunStore:
        return RunStore(self.root, self.run_id, self.storage_options)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Run:
    ref: RunRef
    config: RunConfig
    fingerprints: dict[str, str]

    @property
    def store(self) -> RunStore:
        return self.ref.store()


@lru_cache(maxsize=1)
def _git_commit() -> str | None:
    """The commit of the code this process imported (asked once: every commit record names it)."""
    try:
        repo = Path(__file__).resolve().parent.parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5)
        return commit.stdout.strip() if commit.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def code_version() -> dict:
    version = {"synthclip": __version__, "stages": STAGE_VERSIONS}
    if commit := _git_commit():
        version["git"] = commit
    return version


def default_run_id(cfg: RunConfig) -> str:
    return f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def check_same_config(cfg: RunConfig, ref: RunRef) -> Run | None:
    """The run at ``ref`` if it exists with ``cfg``'s fingerprints, None if there is none; refused
    (naming the changed stages) if it was made with another config or code."""
    if not ref.store().committed("run").get("run"):
        return None
    existing, fingerprints = load_run(ref), stage_fingerprints(cfg)
    if existing.fingerprints != fingerprints:
        changed = [s for s in fingerprints if existing.fingerprints.get(s) != fingerprints[s]]
        raise RunStateError(
            f"run {ref.run_id} under {ref.root} was made with another config or code (stages changed: "
            f"{', '.join(changed)}); start a new run (--run-id NEW), or --fork to reuse its unchanged stages"
        )
    return existing


def create_or_open(cfg: RunConfig, ref: RunRef) -> Run:
    """Start a run, or continue it when ``run.json`` exists with the same fingerprints."""
    fingerprints = stage_fingerprints(cfg)
    if (existing := check_same_config(cfg, ref)) is not None:
        return existing
    doc = {
        "run_id": ref.run_id,
        "config": cfg.model_dump(mode="json"),
        "fingerprints": fingerprints,
        "code_version": code_version(),
        "created_at": time.time(),
    }
    ref.store().commit("run", "run.json", json.dumps(doc, indent=1, sort_keys=True).encode())
    return Run(ref, cfg, fingerprints)


def fork_run(cfg: RunConfig, ref: RunRef) -> RunRef:
    """Where to run ``cfg`` when ``ref`` may hold a run of another config: ``ref`` itself if it is
    free or has this config, else a new run ``<id>-fork-<hash>`` that starts with copies of the
    committed outputs of every stage whose fingerprint is unchanged (fingerprints chain, so those
    are the leading stages), each record naming the run it came from."""
    store = ref.store()
    if "run.json" not in store.committed("run").get("run", set()):
        return ref
    existing, fingerprints = load_run(ref), stage_fingerprints(cfg)
    if existing.fingerprints == fingerprints:
        return ref
    digest = hashlib.sha256(json.dumps(fingerprints, sort_keys=True).encode()).hexdigest()[:8]
    fork = RunRef(ref.root, f"{ref.run_id}-fork-{digest}", ref.storage_options)
    create_or_open(cfg, fork)
    target = fork.store()
    for stage in STAGES:
        if existing.fingerprints.get(stage) != fingerprints[stage]:
            break
        for output, record in store.records(stage).items():
            lineage = {k: v for k, v in record.items() if k not in _OWN_FIELDS}
            target.commit(stage, output, store.read_bytes(stage, output), {**lineage, "forked_from": ref.run_id})
    return fork


_OWN_FIELDS = {"stage", "output", "path", "sha256", "bytes", "committed_at", "adopted"}


def load_run(ref: RunRef, verify: bool = False) -> Run:
    """Open a run from its ``run.json``; with ``verify``, refuse if the code changed its fingerprints."""
    store = ref.store()
    if "run.json" not in store.committed("run").get("run", set()):
        raise RunStateError(f"no run {ref.run_id!r} under {ref.root} (a run stopped before it started has nothing to "
                            f"resume: run 'synthclip run CONFIG --run-id {ref.run_id}' again)")
    doc = json.loads(store.read_bytes("run", "run.json"))
    cfg = config_from_dict(doc["config"], source=f"{ref.run_id}/run/run.json")
    run = Run(ref, cfg, doc["fingerprints"])
    if verify:
        current = stage_fingerprints(cfg)
        changed = [s for s in current if current[s] != run.fingerprints.get(s)]
        if changed:
            raise RunStateError(
                f"run {ref.run_id}: the code or models changed since it started (stages: "
                f"{', '.join(changed)}); resuming would mix outputs, start a new run instead"
            )
    return run


def unfinished_runs(root: str) -> list[str]:
    """Run ids under ``root`` (oldest first, by ``run.json`` commit time) whose last stage is not done."""
    fs, base = fsspec.core.url_to_fs(root)
    if not fs.exists(base):
        return []
    found = []
    for entry in fs.ls(base, detail=False):
        run_id = posixpath.basename(entry.rstrip("/"))
        store = RunStore(root, run_id)
        if "run.json" not in store.committed("run").get("run", set()):
            continue
        if "report.json" not in store.committed("eval").get("eval", set()):
            found.append((store.record("run", "run.json").get("committed_at", 0), run_id))
    return [run_id for _, run_id in sorted(found)]
