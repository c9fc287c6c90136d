"""The ``synthclip`` command as a user runs it (a process of its own), and what a user-fixable
error must look like: one line, a non-zero exit, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def synthclip(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, env={**os.environ, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=300)


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    """The error line, once it is one line naming every word."""
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.returncode != 0, result.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]
