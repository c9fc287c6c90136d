"""User-fixable errors: one line, non-zero exit, no traceback, committed data untouched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from commands import one_line_error, synthclip

REPO = Path(__file__).resolve().parents[1]


def _snapshot(root: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def committed_root(offline_run, tmp_path):
    run, _ = offline_run
    return Path(run.ref.root), run.ref.run_id


def test_bad_config(committed_root, tmp_path):
    root, run_id = committed_root
    before = _snapshot(root)
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "configs" / "micro.yaml").read_text().replace("epochs: 1", "epochs: zero"))
    result = synthclip("run", str(bad), "--run-id", run_id, "--root", str(root))
    one_line_error(result, "bad.yaml", "train.epochs")
    assert _snapshot(root) == before


def test_missing_concept_file(committed_root, tmp_path):
    root, run_id = committed_root
    before = _snapshot(root)
    cfg = tmp_path / "missing.yaml"
    cfg.write_text((REPO / "configs" / "micro.yaml").read_text().replace(
        "source: builtin:imagenet-1k", f"source: {tmp_path}/absent.txt"))
    result = synthclip("run", str(cfg), "--run-id", run_id, "--root", str(root))
    one_line_error(result, "concept bank not found", "absent.txt")
    assert _snapshot(root) == before


def test_unreachable_storage_root(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = synthclip("run", "configs/micro.yaml", "--root", str(blocker / "runs"))
    one_line_error(result, "storage root", "not writable")


def test_unknown_run_and_status(committed_root):
    root, run_id = committed_root
    one_line_error(synthclip("resume", "no-such-run", "--root", str(root)), "no run 'no-such-run'")
    result = synthclip("status", run_id, "--root", str(root))
    assert result.returncode == 0, result.stderr
    for stage in ("concepts", "captions", "balanced", "images", "shards", "train", "eval"):
        assert stage in result.stdout


def _variant(tmp_path: Path, name: str, old: str, new: str, base: str = "micro.yaml") -> Path:
    text = (REPO / "configs" / base).read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("old,new,words", [
    ("per_concept: 2", "per_concept: -2", ("captions.per_concept", "greater than or equal to 1")),
    ("model: tiny/sd", "model: /no/such/sd-model", ("images.model", "'/no/such/sd-model' does not exist")),
    ("model: tiny/llm", "model: ./missing-llm", ("captions.model", "does not exist")),
    ("backend: transformers", "backend: hugging", ("captions.backend",)),
])
def test_bad_config_values_are_one_line_errors(tmp_path, old, new, words):
    result = synthclip("run", str(_variant(tmp_path, "bad.yaml", old, new)), "--root", str(tmp_path / "runs"))
    one_line_error(result, *words)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_root_without_permission_is_one_line(tmp_path):
    """A root the user may not write. Root may write anywhere, so as root the CLI runs without the
    capability that lets it ignore file modes, against a directory that belongs to nobody."""
    import shutil

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o755)
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("as root, needs setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
        os.chown(locked, 65534, 65534)
        drop = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"]
    else:
        locked.chmod(0o555)
    result = subprocess.run([*prefix, sys.executable, "-m", "flows.cli", "run", "configs/micro.yaml",
                             "--root", str(locked / "runs")], cwd=REPO, env={**os.environ, "COLUMNS": "200"},
                            capture_output=True, text=True, timeout=300)
    one_line_error(result, "storage root", "not writable", "Permission denied")
    assert list(locked.iterdir()) == []


def test_a_run_id_with_another_config_is_refused_unless_forked(committed_root, tmp_path):
    from synthclip_core.pipeline import load_config
    from synthclip_core.runs.lifecycle import open_run
    from synthclip_core.storage.store import RunRef

    root, run_id = committed_root
    before = _snapshot(root)
    other = _variant(tmp_path, "other.yaml", "templates: simple", "templates: openai", base="offline.yaml")
    result = synthclip("run", str(other), "--run-id", run_id, "--root", str(root))
    one_line_error(result, f"run {run_id}", "stages changed: eval", "--fork")
    assert _snapshot(root) == before

    fork = open_run(load_config(other), RunRef(str(root), run_id), fork=True).ref
    assert fork.run_id.startswith(f"{run_id}-fork-")
    source, copy = RunRef(str(root), run_id).store(), fork.store()
    for stage in ("concepts", "captions", "balanced", "images", "shards", "train"):
        assert ({o: r["sha256"] for o, r in copy.records(stage).items()}
                == {o: r["sha256"] for o, r in source.records(stage).items()}), stage
        assert all(r["forked_from"] == run_id for r in copy.records(stage).values())
    assert "eval" not in copy.committed_all()
    assert {p: h for p, h in _snapshot(root).items() if fork.run_id not in str(p)} == before
    assert open_run(load_config(other), fork, fork=True).ref == fork  # the fork has this config: continue it
