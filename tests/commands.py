"""The commands a user runs (``synthclip``, open_clip's trainer), each in a process of its own, and
what a user-fixable error must look like: one line, a non-zero exit, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def synthclip(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess:
    """``synthclip ARGS`` in a process of its own, with this process's environment less any
    ``RAY_ADDRESS`` (the command starts its own Ray unless ``env`` names one) plus ``env``."""
    inherited = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd,
                          env={**inherited, "COLUMNS": "200", **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def open_clip_train(store, logs: Path) -> Path:
    """open_clip's own trainer for one epoch on a run's shards, as its docs run it on img2dataset
    output, starting from the run's trained model; returns the checkpoint it saved."""
    sizes = json.loads(store.read_bytes("shards", "sizes.json"))
    batch = min(16, sum(sizes.values()))  # open_clip makes samples // batch batches: none from a smaller set
    command = [
        sys.executable, "-m", "open_clip_train.main", "--dataset-type", "webdataset",
        "--train-data", store.uri("shards") + f"/{{00000..{len(sizes) - 1:05d}}}.tar",
        "--train-num-samples", str(sum(sizes.values())), "--model", "local-dir:" + store.uri("train", "model"),
        "--device", "cpu", "--epochs", "1", "--batch-size", str(batch), "--workers", "0", "--precision", "fp32",
        "--lr", "1e-4", "--warmup", "1", "--logs", str(logs), "--name", "oc", "--save-frequency", "1",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=logs,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = logs / "oc" / "checkpoints" / "epoch_1.pt"
    assert checkpoint.exists()
    return checkpoint


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    """The error line, once it is one line naming every word."""
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.returncode != 0, result.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]
