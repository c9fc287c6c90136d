"""Deployments on a real local Prefect server, run by a real process worker, as the UI drives them.

`synthclip deploy` registers the deployments; the build is triggered through the API with
parameters (what the UI's "Run" button does); a worker runs it to completion on the offline
profile. Then one caption partition is broken (its commit record deleted), `resume` is
triggered, and exactly that partition is recomputed. Every stage's own deployment also runs
alone, in order, on a new run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synthclip_core.pipeline import load_config
from synthclip_core.runs.lifecycle import load_run, open_run
from synthclip_core.storage.store import RunRef

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def api_env(prefect_server, tiny_models, tmp_path_factory):
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PREFECT_API_URL=PREFECT_API_URL.value(), COLUMNS="200",
               SYNTHCLIP_TEST_RENDER_GATE=str(tmp_path_factory.mktemp("gate") / "open"))  # custom_renderers
    return env


@pytest.fixture(scope="module")
def worker(api_env, tmp_path_factory):
    """``prefect worker start`` on the local process pool, in its own process group."""
    deployed = subprocess.run([sys.executable, "-m", "flows.cli", "deploy"], cwd=REPO, env=api_env,
                              capture_output=True, text=True, timeout=300)
    assert deployed.returncode == 0, deployed.stderr[-2000:]
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "synthclip-local",
                                 "--limit", "1"], cwd=tmp_path_factory.mktemp("cwd"), env=api_env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    yield log
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    from flows.automations import ensure_automation

    ensure_automation(0)  # the session's server outlives this module: no automatic resumes after it


def _trigger_and_wait(name: str, parameters: dict, log: Path, timeout: float = 600, completed: bool = True):
    """Create a flow run from a deployment through the API, as the UI does, and wait for its end
    (which must be Completed, unless ``completed`` is False)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
        run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = client.read_flow_run(run.id).state
            if state.is_final():
                assert state.is_completed() or not completed, f"{name}: {state.type} {state.message}\n{log.read_text()[-3000:]}"
                return client.read_flow_run(run.id)
            time.sleep(2)
    raise AssertionError(f"{name} did not finish in {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow  # about 4 minutes: a worker, a build and a resume through deployments (make test-slow)
def test_deploy_trigger_build_then_resume_one_broken_partition(worker, tmp_path):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        names = {d.name for d in client.read_deployments()}
    assert {"build-offline", "resume", "resume-latest", "evaluate-checkpoint", "train", "compare-models", "ladder"} <= names
    assert "build-paper-scale" not in names  # only with --kubernetes

    root = str(tmp_path / "runs")
    run = _trigger_and_wait("build-dataset/build-offline", {"run_id": "deployed", "root": root}, worker)
    assert run.name == "deployed"
    store = RunRef(root, "deployed").store()
    assert "report.json" in store.committed("eval")

    records = {(stage, o): r for stage, outs in store.committed_all().items() for o, r in store.records(stage, sorted(outs)).items()}
    broken = ("captions", "part-00001.parquet")
    os.remove(store.path("_commits", "captions", "part-00001.parquet.json"))
    _trigger_and_wait("resume/resume", {"run_id": "deployed", "root": root}, worker)
    after = {(stage, o): r for stage, outs in store.committed_all().items() for o, r in store.records(stage, sorted(outs)).items()}
    assert set(after) == set(records)
    changed = {key for key in records if after[key]["committed_at"] != records[key]["committed_at"]}
    assert changed == {broken}  # exactly that partition was recomputed
    assert after[broken]["sha256"] == records[broken]["sha256"]  # and came out the same


@pytest.mark.slow  # 100 s; the default suite's deployment test already runs a build from a deployment
def test_scheduled_build_takes_its_run_id_from_the_scheduled_time(worker, tmp_path):
    """No run id given: the run is named after the flow run's scheduled time, so a retried flow run
    continues it; resume-latest then finds nothing unfinished under the root."""
    from datetime import datetime, timezone

    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    root = str(tmp_path / "runs")
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("build-dataset/build-offline")
        flow_run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"root": root, "config": "configs/micro.yaml"}, state=Scheduled(scheduled_time=when))
        deadline = time.time() + 600
        while not (state := client.read_flow_run(flow_run.id).state).is_final() and time.time() < deadline:
            time.sleep(2)
    assert state.is_completed(), worker.read_text()[-3000:]
    assert (tmp_path / "runs" / "micro-20260102-030405" / "eval" / "report.json").is_file()
    run = _trigger_and_wait("resume-latest/resume-latest", {"root": root}, worker)
    assert run.state.is_completed()


@pytest.mark.slow  # 3.5 minutes; two stage deployments alone are in the default suite (the test below)
def test_every_stage_deployment_runs_alone(worker, tmp_path):
    """Each stage's deployment, triggered on its own (a process of its own, as the worker starts
    it) on a run whose earlier stages are committed: every stage that needs Ray starts it."""
    root = str(tmp_path / "runs")
    run = open_run(load_config(REPO / "configs" / "micro.yaml"), RunRef(root, "stage-by-stage"))
    for stage in run.stages:  # the stages of this run: the closed loop is off
        assert run.completion(stage.name) is None
        flow_run = _trigger_and_wait(f"{stage.name}/{stage.name}", {"run_id": "stage-by-stage", "root": root}, worker)
        assert flow_run.name == f"stage-by-stage: {stage.name}"
        assert run.completion(stage.name) is not None, stage.name
    assert load_run(run.ref, verify=True).completion("eval").notes  # the report's numbers


def test_a_stage_deployment_checks_the_run_as_resume_does_and_fails_in_one_line(worker, tmp_path):
    """Triggered on its own, a stage refuses a run whose bank changed since it began, and a stage
    whose upstream is not complete fails: each run Failed with the one-line reason, no traceback."""
    bank = tmp_path / "bank.txt"
    bank.write_text("tench\ngoldfish\nsea lion\n")
    cfg = load_config(REPO / "configs" / "micro.yaml")
    cfg = cfg.model_copy(update={"concepts": cfg.concepts.model_copy(update={"source": str(bank), "limit": None})})
    root = str(tmp_path / "runs")
    run = open_run(cfg, RunRef(root, "checked"))
    bank.write_text("tench\ngoldfish\nsea otter\n")
    start = len(worker.read_text())
    failed = _trigger_and_wait("concepts/concepts", {"run_id": "checked", "root": root}, worker, completed=False)
    assert failed.state.is_failed() and "the concept bank" in failed.state.message
    assert "changed since the run began" in failed.state.message and run.completion("concepts") is None
    bank.write_text("tench\ngoldfish\nsea lion\n")
    blocked = _trigger_and_wait("images/images", {"run_id": "checked", "root": root}, worker, completed=False)
    assert blocked.state.is_failed() and "stage 'balanced' of run checked is not complete" in blocked.state.message
    assert "Traceback" not in worker.read_text()[start:], worker.read_text()[start:]


def test_a_failed_build_is_resumed_by_the_automation_and_completes(worker, api_env, tmp_path):
    """`synthclip deploy` registers the automation: the build fails (its renderer's GPU is lost),
    the server runs the auto-resume deployment for it, and the resumed run completes."""
    import yaml
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    from flows.automations import AUTOMATION

    with get_client(sync_client=True) as client:
        assert client.read_automations_by_name(AUTOMATION)
    data = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
    data["images"]["backend"] = "custom_renderers:FailsUntilAllowed"
    config = tmp_path / "flaky.yaml"
    config.write_text(yaml.safe_dump(data))
    root = str(tmp_path / "runs")
    build = _trigger_and_wait("build-dataset/build-offline", {"config": str(config), "run_id": "flaky", "root": root},
                              worker, completed=False)
    assert build.state.is_failed() and "run:flaky" in build.tags
    Path(api_env["SYNTHCLIP_TEST_RENDER_GATE"]).touch()  # the GPU is back
    deadline, done = time.time() + 600, None
    with get_client(sync_client=True) as client:
        while done is None and time.time() < deadline:
            runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["build-dataset"])))
            done = next((r for r in runs if "run:flaky" in r.tags and "auto-resume:1" in r.tags and r.state.is_completed()),
                        None)
            time.sleep(3)
        trigger = next(r for r in client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["auto-resume"])))
                       if "run:flaky" in r.tags)
    assert done is not None, worker.read_text()[-3000:]
    # resumed where it was built: a flow run of the build's own deployment (its pool and limits), not of auto-resume's
    assert done.deployment_id == build.deployment_id and done.id != build.id and trigger.state.is_completed()
    assert done.parameters["config"] == str(config) and done.parameters["run_id"] == "flaky"
    assert "report.json" in RunRef(root, "flaky").store().committed("eval")
