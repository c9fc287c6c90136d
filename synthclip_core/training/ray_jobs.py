"""Training as a Ray job on a cluster: submitted once per run, followed until it ends.

When ``RAY_ADDRESS`` names a cluster, the flow process should not hold the training: a Ray job
outlives it, and a re-triggered flow finds the job and follows it instead of starting another.
Submission ids are deterministic (``synthclip-train-<run>-<fingerprint>-<attempt>``): a finished
or failed attempt is followed by the next number, and two flows racing to submit the same id
are told apart by Ray itself, so the loser follows the winner's job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
import threading
import time
from collections import deque

log = logging.getLogger("synthclip.train")
ACTIVE = {"PENDING", "RUNNING"}
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def submit_as_job() -> bool:
    """Whether training should be a Ray job: ``RAY_ADDRESS`` names a cluster, and this process is
    not already a Ray job's driver there (a KubeRay ``RayJob`` running ``synthclip resume``)."""
    return bool(os.environ.get("RAY_ADDRESS")) and "RAY_JOB_CONFIG_JSON_ENV_VAR" not in os.environ


def job_client():
    """A client for the cluster's job API: ``RAY_API_SERVER_ADDRESS`` (Ray's own variable for it),
    else the dashboard of the cluster this process is connected to."""
    import ray
    from ray.job_submission import JobSubmissionClient

    address = os.environ.get("RAY_API_SERVER_ADDRESS")
    if not address:
        url = ray._private.worker.global_worker.node.address_info.get("webui_url") if ray.is_initialized() else None
        if not url:
            raise RuntimeError("cannot find the Ray cluster's job API: start its dashboard or set RAY_API_SERVER_ADDRESS")
        address = url if "://" in url else f"http://{url}"
    return JobSubmissionClient(address)


def submission_prefix(run_id: str, fingerprint: str) -> str:
    return f"synthclip-train-{run_id}-{fingerprint[:12]}"


def python_command(*args: str) -> str:
    """A job's command: this interpreter with ``args`` (the cluster runs the same image, so the
    flow's interpreter path is the cluster's; ``SYNTHCLIP_JOB_PYTHON`` overrides it)."""
    python = os.environ.get("SYNTHCLIP_JOB_PYTHON") or sys.executable
    return shlex.join([python, *args])


def ensure_job(client, run_id: str, fingerprint: str, command: str, patience_s: float = 120.0) -> str:
    """The submission id of this run's training job: a pending or running one, else a new attempt.

    A cluster whose job agent is not up yet ("try again later", as right after it starts) is
    retried with backoff for ``patience_s``.
    """
    prefix = submission_prefix(run_id, fingerprint)
    deadline, wait = time.monotonic() + patience_s, 1.0
    for _ in range(1000):
        mine = [j for j in client.list_jobs() if (j.submission_id or "").startswith(prefix + "-")]
        active = sorted(j.submission_id for j in mine if str(j.status.value) in ACTIVE)
        if active:
            log.info("following Ray job %s, already running for run %s", active[-1], run_id)
            return active[-1]
        submission_id = f"{prefix}-{len(mine) + 1}"
        try:
            client.submit_job(entrypoint=command, submission_id=submission_id,
                              metadata={"synthclip_run": run_id, "stage": "train"})
        except RuntimeError as exc:
            if "already exists" in str(exc) or "already been submitted" in str(exc):
                continue  # another flow won the race: follow its job
            if "try again later" in str(exc) and time.monotonic() < deadline:
                log.info("Ray job API not ready (%s); retrying in %.0f s", str(exc).strip().splitlines()[-1][:200], wait)
                time.sleep(wait)
                wait = min(wait * 2, 15.0)
                continue
            raise
        log.info("submitted Ray job %s for run %s", submission_id, run_id)
        return submission_id
    raise RuntimeError(f"could not submit or find the training job {prefix}-N")


class JobFollower:
    """Streams a job's log lines to the ``synthclip.train`` logger as the cluster sends them (one
    websocket held by a thread: no download of the whole log, however long the job has run);
    ``done()`` asks the job's status only."""

    def __init__(self, client, submission_id: str):
        self.client, self.submission_id, self.status = client, submission_id, "PENDING"
        self.last_lines: deque[str] = deque(maxlen=20)
        self._tail = threading.Thread(target=self._follow, name=f"logs-{submission_id}", daemon=True)
        self._tail.start()

    def _follow(self) -> None:
        async def tail() -> None:
            rest = ""
            async for chunk in self.client.tail_job_logs(self.submission_id):
                *lines, rest = (rest + chunk).split("\n")
                for line in lines:
                    self._show(line)
            self._show(rest)

        try:
            asyncio.run(tail())
        except Exception as exc:  # the status is still followed; only the log lines stop
            log.warning("stopped following the logs of Ray job %s: %s", self.submission_id, exc)

    def _show(self, line: str) -> None:
        if line.strip():
            self.last_lines.append(line)
            log.info("[%s] %s", self.submission_id, line)

    def done(self) -> bool:
        self.status = str(self.client.get_job_status(self.submission_id).value)
        if self.status in TERMINAL:
            self._tail.join(timeout=10)  # the server closes the stream once the job has ended
            return True
        return False

    def wait(self, poll_s: float = 2.0) -> str:
        while not self.done():
            time.sleep(poll_s)
        return self.status

    def failure(self) -> str:
        info = self.client.get_job_info(self.submission_id)
        last = self.last_lines[-1] if self.last_lines else ""
        return f"Ray job {self.submission_id} {self.status}: {info.message or ''} {last}".strip()
