"""The Prefect UI, in a real headless Chromium, after an offline run: what a user sees.

A Prefect server with its UI on 127.0.0.1, the offline profile run through the CLI against it,
then the browser opens the run: the flow run is Completed, and the evaluation's artifacts (the
report with its picture) are there. The screenshot is the one in ``docs/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from servers import prefect_server

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def ui_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    with prefect_server(env) as api:
        yield {**env, "PREFECT_API_URL": api}, api.rsplit("/api", 1)[0]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_ui_shows_the_completed_run_and_its_report(ui_server, micro_reference, tmp_path):
    """A finished micro run, resumed against this UI's own server (every stage's flow runs and shows
    its summary and report; no stage is made again), seen in the browser."""
    from faults import copy_run
    from playwright.sync_api import sync_playwright

    env, ui = ui_server
    run_id = copy_run(micro_reference[0], tmp_path / "runs").run_id
    run = subprocess.run([sys.executable, "-m", "flows.cli", "resume", run_id, "--root", str(tmp_path / "runs")],
                         cwd=REPO, env={**env, "RAY_USAGE_STATS_ENABLED": "0"}, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(env["PREFECT_API_URL"]) as client:
        runs = {r.name: r for r in client.read_flow_runs()}
    build, evaluate = runs[run_id], runs[f"{run_id}: eval"]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{ui}/runs/flow-run/{build.id}", wait_until="networkidle")
        page.get_by_text("Completed").first.wait_for(timeout=30_000)
        assert run_id in page.inner_text("body")
        page.goto(f"{ui}/runs/flow-run/{evaluate.id}", wait_until="networkidle")
        page.get_by_text("Artifacts", exact=True).first.click()
        page.get_by_text("eval report").first.wait_for(timeout=30_000)
        body = page.inner_text("body")
        assert "eval summary" in body and "eval report" in body
        shot = tmp_path / "ui-evaluation-artifacts.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("SYNTHCLIP_UPDATE_SCREENSHOTS"):
        shutil.copy(shot, REPO / "docs" / shot.name)
