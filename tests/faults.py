"""Fault injection: run a whole pipeline through the CLI, SIGKILL one part of it at a moment drawn
from a seed, resume, and compare every committed output with an uninterrupted reference run.

Targets:
- ``caption-actor`` / ``render-actor``: a Ray actor busy with a partition of that stage;
- ``flow``: the ``synthclip run`` process itself, then (as when its node dies) everything it started;
- ``training``: a Ray Train worker process.

Only processes of the run's own session are touched, never the test session's Ray.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from synthclip_core.storage.store import RunStore
from synthclip_core.training import metrics

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("caption-actor", "render-actor", "flow", "training")
DATA_STAGES = ("concepts", "captions", "balanced", "images", "shards")
# What a busy process of each target has in its command line (Ray sets the process title).
_MARKERS = {"caption-actor": b"PoolActor.process", "render-actor": b"PoolActor.process",
            "training": b"RayTrainWorker"}


@dataclass(frozen=True)
class Fault:
    seed: int
    target: str
    delay_s: float  # after the target is first seen busy (for "flow": after the run starts)

    @classmethod
    def draw(cls, seed: int, run_seconds: float, target: str | None = None) -> Fault:
        rng = random.Random(seed)
        target = target or rng.choice(TARGETS)
        delay = rng.uniform(1.0, 0.9 * run_seconds) if target == "flow" else rng.uniform(0.0, 1.5)
        return cls(seed, target, round(delay, 3))


@dataclass
class Trial:
    fault: Fault
    hit: bool = False  # a process was killed
    killed_during: str = ""  # the stage that was running when it was
    first_exit: int | None = None
    resumed: bool = False
    resume_seconds: float = 0.0
    recomputed: dict = field(default_factory=dict)  # stage -> outputs committed by the resume
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def synthclip(*args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_reference(config: Path, root: Path, run_id: str) -> float:
    """An uninterrupted run; returns its wall time."""
    started = time.time()
    proc = synthclip("run", str(config), "--run-id", run_id, "--root", str(root))
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out
    return time.time() - started


def copy_run(store: RunStore, root: Path, forget: tuple[str, ...] = ()) -> RunStore:
    """A copy of a finished run under ``root`` (same run id), with the stages in ``forget`` made
    never to have run (their data, commit records and completion gone): a test that needs a whole
    run to resume, or its last stages to run again, need not make one of its own."""
    import shutil

    shutil.copytree(store.base, Path(root) / store.run_id)
    copy = RunStore(str(root), store.run_id)
    for stage in forget:
        for where in (copy.path(stage), copy.path("_commits", stage), copy.path("_complete", stage + ".json"),
                      copy.path("_spend", stage)):
            if copy.fs.exists(where):
                copy.fs.rm(where, recursive=True)
    return copy


def run_trial(config: Path, root: Path, run_id: str, fault: Fault, timeout: float = 900) -> Trial:
    """Run with one injected fault, resume if the run did not finish, and report what happened."""
    trial = Trial(fault)
    store = RunStore(str(root), run_id)
    proc = synthclip("run", str(config), "--run-id", run_id, "--root", str(root))
    try:
        _inject(proc, store, fault, trial, deadline=time.time() + timeout)
        proc.communicate(timeout=timeout)
    finally:
        _kill_session(proc.pid)
    trial.first_exit = proc.returncode
    before = _committed(store)
    if trial.first_exit != 0 or "report.json" not in before.get("eval", set()):
        started = time.time()
        if "run.json" in before.get("run", set()):
            resume = synthclip("resume", run_id, "--root", str(root))
        else:  # killed before the run existed: the same command again is the retry
            resume = synthclip("run", str(config), "--run-id", run_id, "--root", str(root))
        out, _ = resume.communicate(timeout=timeout)
        _kill_session(resume.pid)
        trial.resumed, trial.resume_seconds = True, round(time.time() - started, 1)
        if resume.returncode != 0:
            trial.problems.append(f"resume failed (exit {resume.returncode}): {out[-2000:]}")
    after = _committed(store)
    trial.recomputed = {s: len(after.get(s, set()) - before.get(s, set())) for s in after
                        if after.get(s, set()) - before.get(s, set())}
    return trial


def _inject(proc: subprocess.Popen, store: RunStore, fault: Fault, trial: Trial, deadline: float) -> None:
    if fault.target == "flow":
        end = time.time() + fault.delay_s
        while time.time() < end and proc.poll() is None:
            time.sleep(0.02)
        if proc.poll() is None:
            trial.killed_during = _running_stage(store)
            os.kill(proc.pid, signal.SIGKILL)
            trial.hit = True
            time.sleep(1.0)  # strays of the dead flow (actors, Ray) may still commit meanwhile
            _kill_session(proc.pid)
        return
    wanted = {"caption-actor": "captions", "render-actor": "images", "training": "train"}[fault.target]
    while proc.poll() is None and time.time() < deadline and _running_stage(store) != wanted:
        time.sleep(0.02)
    time.sleep(fault.delay_s)
    while proc.poll() is None and time.time() < deadline and _running_stage(store) == wanted:
        busy = _session_processes(proc.pid, _MARKERS[fault.target])
        if busy:
            os.kill(busy[0], signal.SIGKILL)
            trial.hit, trial.killed_during = True, wanted
            return
        time.sleep(0.01)


def _running_stage(store: RunStore) -> str:
    """The stage in progress: the first of the run's stages (an optional stage that is off is not
    one) without its completion marker."""
    names = _stage_names(store)
    for name in names or ["concepts"]:
        try:
            if store.completion_marker(name) is None:
                return name
        except json.JSONDecodeError:  # being written
            return name
    return "done"


_NAMES: dict[tuple[str, str], list[str]] = {}


def _stage_names(store: RunStore) -> list[str]:
    """The run's stages, from its run.json once it is written (empty before)."""
    from synthclip_core.runs.lifecycle import load_run
    from synthclip_core.storage.store import RunRef

    key = (store.root, store.run_id)
    if key not in _NAMES:
        try:
            _NAMES[key] = load_run(RunRef(store.root, store.run_id)).names
        except Exception:  # not written yet (or being written)
            return []
    return _NAMES[key]


def _committed(store: RunStore) -> dict[str, set[str]]:
    try:
        return store.committed_all()
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _session_processes(session: int, marker: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if _session_of(entry) == session and marker in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return sorted(found)


def _session_of(entry: Path) -> int:
    stat = (entry / "stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[3])  # fields after the command: state ppid pgrp session


def _kill_session(session: int) -> None:
    """SIGKILL every process of a session (a run and the Ray it started), as a lost node would."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if _session_of(entry) == session:
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                continue


def compare(reference: RunStore, store: RunStore) -> list[str]:
    """Everything a reader could see that differs from the reference run, or is inconsistent."""
    problems = []
    ref, got = _committed(reference), _committed(store)
    for stage in DATA_STAGES:
        want = {o: r["sha256"] for o, r in reference.records(stage).items()}
        have = {o: r["sha256"] for o, r in store.records(stage).items()}
        if want != have:
            missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
            changed = sorted(o for o in set(want) & set(have) if want[o] != have[o])
            problems.append(f"{stage}: missing {missing[:5]}, extra {extra[:5]}, changed {changed[:5]}")
    for stage, outputs in got.items():  # every record names a file with exactly its bytes
        for output, record in store.records(stage, sorted(outputs)).items():
            try:
                data = store.read_bytes(stage, output)
            except FileNotFoundError:
                problems.append(f"{stage}/{output}: committed but its file is missing")
                continue
            if hashlib.sha256(data).hexdigest() != record["sha256"]:
                problems.append(f"{stage}/{output}: file does not match its commit record")
    if _checkpoints(got) != _checkpoints(ref):
        problems.append(f"train checkpoints {_checkpoints(got)} != reference {_checkpoints(ref)}")
    steps, ref_steps = [r["step"] for r in metrics.history(store)], [r["step"] for r in metrics.history(reference)]
    if steps != ref_steps:
        problems.append(f"training metrics steps {steps} != reference {ref_steps}")
    if "report.json" not in got.get("eval", set()):
        problems.append("eval report not committed")
    problems += _weights_differ(reference, store)
    return problems


def _checkpoints(committed: dict) -> list[str]:
    return sorted(o for o in committed.get("train", set()) if o.startswith("checkpoints/epoch_"))


def _weights_differ(reference: RunStore, store: RunStore, tolerance: float = 1e-5) -> list[str]:
    import io

    import torch

    last = _checkpoints(_committed(reference))[-1:]
    if not last or last[0] not in _committed(store).get("train", set()):
        return []
    a, b = (torch.load(io.BytesIO(s.read_bytes("train", last[0])), weights_only=True)["state_dict"] for s in (reference, store))
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    return [f"final weights differ from the reference by {worst:.2e}"] if worst > tolerance else []

