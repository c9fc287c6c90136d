"""User-fixable errors: one line, non-zero exit, no traceback, committed data untouched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def synthclip(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _snapshot(root: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def committed_root(offline_run, tmp_path):
    run, _ = offline_run
    return Path(run.ref.root), run.ref.run_id


def _one_line_error(result, *words):
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_bad_config(committed_root, tmp_path):
    root, run_id = committed_root
    before = _snapshot(root)
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "configs" / "micro.yaml").read_text().replace("epochs: 1", "epochs: zero"))
    result = synthclip("run", str(bad), "--run-id", run_id, "--root", str(root))
    _one_line_error(result, "bad.yaml", "train.epochs")
    assert _snapshot(root) == before


def test_missing_concept_file(committed_root, tmp_path):
    root, run_id = committed_root
    before = _snapshot(root)
    cfg = tmp_path / "missing.yaml"
    cfg.write_text((REPO / "configs" / "micro.yaml").read_text().replace(
        "source: builtin:imagenet-1k", f"source: {tmp_path}/absent.txt"))
    result = synthclip("run", str(cfg), "--run-id", run_id, "--root", str(root))
    _one_line_error(result, "concept bank not found", "absent.txt")
    assert _snapshot(root) == before


def test_unreachable_storage_root(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = synthclip("run", "configs/micro.yaml", "--root", str(blocker / "runs"))
    _one_line_error(result, "storage root", "not writable")


def test_unknown_run_and_status(committed_root):
    root, run_id = committed_root
    _one_line_error(synthclip("resume", "no-such-run", "--root", str(root)), "no run 'no-such-run'")
    result = synthclip("status", run_id, "--root", str(root))
    assert result.returncode == 0, result.stderr
    for stage in ("concepts", "captions", "balanced", "images", "shards", "train", "eval"):
        assert stage in result.stdout
