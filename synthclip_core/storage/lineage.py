"""What a commit record says of where its output came from: the stage's fingerprint and code
version, the inputs (bounded), rows, timings and the worker that made it."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
from functools import lru_cache
from pathlib import Path

from ..version import __version__
from .store import RunStore

MAX_LISTED_INPUTS = 32  # a record names each input up to this many; beyond, one summary per upstream


@lru_cache(maxsize=1)
def _git_commit() -> str | None:
    """The commit of the code this process imported (asked once: every commit record names it)."""
    try:
        repo = Path(__file__).resolve().parents[2]
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5)
        return commit.stdout.strip() if commit.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def code_version(stage_version: int | None = None) -> dict:
    """The package version, the git commit and (in a record) the version of the stage that wrote it."""
    version: dict = {"synthclip": __version__}
    if stage_version is not None:
        version["stage"] = stage_version
    if commit := _git_commit():
        version["git"] = commit
    return version


def worker_info(device: str = "cpu") -> dict:
    """Where an output was made; inside a Ray actor also the GPU ids Ray pinned it to."""
    info = {"host": socket.gethostname(), "pid": os.getpid(), "device": device}
    try:
        import ray

        if ray.is_initialized():
            info["node_id"] = ray.get_runtime_context().get_node_id()
            info["gpu_ids"] = [str(i) for i in ray.get_gpu_ids()]
            info["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    except ImportError:
        pass
    if device != "cpu":
        info["accelerator"] = accelerator_type()
    return info


def accelerator_type() -> str:
    """The GPU type this process runs on, as Ray's node label names it (``A100``, ``H100``), else
    as CUDA does: what the ledger prices a GPU-hour by."""
    try:
        import ray

        if ray.is_initialized():
            label = ray.get_runtime_context().get_node_labels().get("ray.io/accelerator-type")
            if label:
                return str(label)
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return "unknown"


def lineage(fingerprint: str, version: int, inputs: list[dict], started: float, rows: int, **extra) -> dict:
    """The commit record's lineage: the stage's fingerprint and code version, the inputs (bounded:
    see :func:`bounded_inputs`), rows, timings."""
    return {
        "fingerprint": fingerprint,
        "inputs": bounded_inputs(inputs),
        "rows": rows,
        "code_version": code_version(version),
        "timings": {"started": started, "seconds": round(time.time() - started, 4)},
        **extra,
    }


def bounded_inputs(inputs: list[dict]) -> list[dict]:
    """Inputs as a record lists them, in a size that does not grow with the run: each input while
    there are at most ``MAX_LISTED_INPUTS``; beyond, one summary per upstream stage (and run, for
    another run's outputs): how many, the first and last output, and the sha256 of their
    ``"OUTPUT SHA256\n"`` lines in order, which the upstream's commit records reproduce."""
    if len(inputs) <= MAX_LISTED_INPUTS:
        return inputs
    groups: dict[tuple, list[dict]] = {}
    for ref in inputs:
        groups.setdefault((ref.get("run_id"), ref["stage"]), []).append(ref)
    out = []
    for (run_id, stage), refs in groups.items():
        lines = "".join(f"{r['output']} {r['sha256']}\n" for r in refs).encode()
        summary = {"stage": stage, "count": len(refs), "first": refs[0]["output"], "last": refs[-1]["output"],
                   "sha256": hashlib.sha256(lines).hexdigest()}
        out.append({"run_id": run_id, **summary} if run_id else summary)
    return out


def input_ref(store: RunStore, stage: str, output: str, record: dict | None = None) -> dict:
    """A committed output as an input of another: where it is and its checksum."""
    record = record or store.record(stage, output)
    return {"stage": stage, "output": output, "sha256": record["sha256"]}
