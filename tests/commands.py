"""The ``synthclip`` command as a user runs it (a process of its own), and what a user-fixable
error must look like: one line, a non-zero exit, no traceback."""

from __future__ import annotations

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


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    """The error line, once it is one line naming every word."""
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.returncode != 0, result.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]
