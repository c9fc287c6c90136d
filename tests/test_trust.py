"""Holes in the commit rule, the fingerprints and the ids, each proven closed (docs/reliability.md,
"Trust"): every test here failed before its fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from synthclip_core.errors import ConfigError
from synthclip_core.store import RunRef, RunStore

REPO = Path(__file__).resolve().parents[1]


def synthclip(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, env={**os.environ, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=300)


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# -- 9. ids reach storage paths only as one name under the root -----------------------------------

@pytest.mark.parametrize("bad", ["../escape", "/etc", "a/b", ".hidden", "_commits", "", "x" * 201, "run\nid"])
def test_a_run_id_is_one_name_under_the_root(bad, tmp_path):
    with pytest.raises(ConfigError, match="is not a name under the root"):
        RunRef(str(tmp_path), bad)
    with pytest.raises(ConfigError, match="is not a name under the root"):
        RunStore(str(tmp_path), bad)
    assert RunRef(str(tmp_path), "offline-20261126-020259.fork-1a2b_3").run_id


def test_run_ids_inside_configs_are_checked_where_they_are_read():
    from synthclip_core.config import job_config_from_dict

    def job(source: str, init_from: str | None = None) -> dict:
        return {"name": "j", "train": {"model": "SynthCLIP-Tiny", "epochs": 1, "global_batch_size": 8,
                                       "init_from": init_from, "sources": [{"name": "a", "uri": source}]}}

    with pytest.raises(ConfigError, match=r"job.yaml: train.sources.0.uri: .*'run:../x': the run id after 'run:'"):
        job_config_from_dict(job("run:../x"), source="job.yaml")
    with pytest.raises(ConfigError, match=r"train.init_from: .*'run:/etc'"):
        job_config_from_dict(job("s3://bucket/tars", init_from="run:/etc"))


def test_the_cli_refuses_an_escaping_run_id_before_writing(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    for bad in ("../escape", "/etc"):
        one_line_error(synthclip("run", "configs/micro.yaml", "--run-id", bad, "--root", str(root)), repr(bad), "not a name")
        one_line_error(synthclip("resume", bad, "--root", str(root)), "not a name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"] and not any(root.iterdir())
