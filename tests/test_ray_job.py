"""Training as a Ray job on a separate Ray cluster (``ray start --head``, token auth on).

The CLI runs the micro profile with ``RAY_ADDRESS`` naming the cluster: stages run there, and the
train stage submits a Ray job, streams its logs into the flow run and reports the outcome. A
second ``ensure_job`` for a running job follows it instead of starting another.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from servers import free_port, ray_cluster_env, start_ray_node

from synthclip_core.training import ray_jobs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """A real Ray head with its dashboard (the job API) on 127.0.0.1, in its own process group."""
    from ray.job_submission import JobSubmissionClient

    token, port, dashboard = secrets.token_hex(32), free_port(), free_port()
    env = ray_cluster_env(token)
    head = start_ray_node(env, f"--port={port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                          "--num-cpus=2", "--num-gpus=0", f"--temp-dir={tempfile.mkdtemp(prefix='rc-', dir='/tmp')}",
                          head=True)
    url = f"http://127.0.0.1:{dashboard}"
    client, deadline = None, time.time() + 120
    while client is None:
        try:
            client = JobSubmissionClient(url, headers={"Authorization": f"Bearer {token}"})
        except Exception:
            if time.time() > deadline or head.poll() is not None:
                os.killpg(head.pid, signal.SIGKILL)
                raise
            time.sleep(1)
    yield {"address": f"127.0.0.1:{port}", "url": url, "token": token, "client": client, "env": env}
    os.killpg(head.pid, signal.SIGKILL)  # the head and everything it started: a throwaway cluster
    head.wait()


def test_train_stage_submits_and_follows_a_ray_job(ray_local, ray_cluster, micro_reference, tmp_path):
    """``ray_local`` first: the cluster must coexist with the session's own local Ray. A finished micro
    run whose training and evaluation are undone is resumed on the cluster: its training is a Ray job."""
    from faults import copy_run

    env = {**ray_cluster["env"], "RAY_ADDRESS": ray_cluster["address"], "COLUMNS": "200"}
    run_id = copy_run(micro_reference[0], tmp_path, forget=("train", "eval")).run_id
    result = subprocess.run([sys.executable, "-m", "flows.cli", "resume", run_id, "--root", str(tmp_path)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = [j for j in ray_cluster["client"].list_jobs() if (j.submission_id or "").startswith(f"synthclip-train-{run_id}-")]
    assert [str(j.status.value) for j in jobs] == ["SUCCEEDED"]
    submission_id = jobs[0].submission_id
    assert submission_id.endswith("-1")
    out = result.stdout + result.stderr
    assert f"[{submission_id}]" in out  # the job's own log lines, streamed into the flow run
    assert "step " in out and "loss" in out
    summary = json.loads((tmp_path / run_id / "train" / "summary.json").read_text())
    assert summary["checkpoint"] == "checkpoints/epoch_1.pt"
    assert ray_cluster["token"] not in out  # the cluster's credential never reaches the logs


def test_a_running_job_is_followed_not_started_twice(ray_cluster):
    client = ray_cluster["client"]
    command = f"{sys.executable} -c 'import time; time.sleep(60)'"
    first = ray_jobs.ensure_job(client, "twice", "f" * 64, command)
    second = ray_jobs.ensure_job(client, "twice", "f" * 64, command)
    assert first == second == ray_jobs.submission_prefix("twice", "f" * 64) + "-1"
    mine = [j for j in client.list_jobs() if (j.submission_id or "").startswith(ray_jobs.submission_prefix("twice", "f" * 64))]
    assert len(mine) == 1
    client.stop_job(first)
    follower = ray_jobs.JobFollower(client, first)
    assert follower.wait(poll_s=0.5) == "STOPPED"
    third = ray_jobs.ensure_job(client, "twice", "f" * 64, f"{sys.executable} -c 'raise SystemExit(\"no data here\")'")
    assert third.endswith("-2")  # a stopped attempt is followed by the next number, never reused
    follower = ray_jobs.JobFollower(client, third)
    assert follower.wait(poll_s=0.5) == "FAILED"
    assert "no data here" in follower.failure()
