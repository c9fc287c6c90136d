"""Shared fixtures: a real S3-protocol server, a real local Ray, a real Prefect server, tiny models,
and one shared offline run for the tests that only read its outputs."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_STATE = Path(tempfile.mkdtemp(prefix="synthclip-tests-"))
os.environ.setdefault("PREFECT_HOME", str(_STATE / "prefect"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2 cores: one thread per process is steadier
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Test plug-ins (tests/custom_renderers.py) load by name in Ray workers too, as a user's own
# modules would from their PYTHONPATH; set before any Ray starts, so workers inherit it.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p)


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1; credentials and endpoint through the usual AWS variables."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(  # unique values, so a test can prove they are never written anywhere
        AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="AKIDSYNTH" + secrets.token_hex(6).upper(),
        AWS_SECRET_ACCESS_KEY="synthclip-secret-" + secrets.token_hex(16), AWS_DEFAULT_REGION="us-east-1",
    )
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_server, request):
    """A fresh bucket per test."""
    import s3fs

    name = ("t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()))[:50].strip("-")
    fs = s3fs.S3FileSystem()
    if not fs.exists(name):
        fs.mkdir(name)
    return name


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """A real local Ray; started after the S3 variables are set so that workers inherit them.

    It declares two logical GPUs, so Ray's real scheduler pins GPU actors to distinct ids; the
    code inside finds no CUDA device and must fall back to the CPU.
    """
    import ray

    from synthclip_core.compute.ray_runtime import ensure_ray

    ensure_ray(num_cpus=2, num_gpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def prefect_server():
    """A real (temporary, SQLite) Prefect server for the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def tiny_models():
    from synthclip_core.tiny_models import build_many

    return dict(zip(("llm", "sd"), build_many(["llm", "sd"])))  # two at a time where both are missing


@pytest.fixture(scope="session")
def engine(ray_local, prefect_server, tiny_models):
    """Everything a flow needs."""
    return True


@pytest.fixture(scope="session")
def offline_run(engine, tmp_path_factory):
    """The offline profile, run once through the end-to-end flow; tests only read it."""
    from flows.pipeline import build_dataset
    from synthclip_core.runs.lifecycle import RunRef, load_run

    root = str(tmp_path_factory.mktemp("offline-root"))
    summaries = build_dataset(config=str(REPO / "configs" / "offline.yaml"), run_id="offline-shared", root=root)
    run = load_run(RunRef(root, "offline-shared"))
    return run, summaries


@pytest.fixture(scope="session")
def micro_reference(engine, tmp_path_factory):
    """An uninterrupted micro run through the CLI, to compare faulty runs with: (store, seconds)."""
    from faults import run_reference

    from synthclip_core.storage.store import RunStore

    root = tmp_path_factory.mktemp("micro-reference")
    seconds = run_reference(REPO / "configs" / "micro.yaml", root, "reference")
    return RunStore(str(root), "reference"), seconds


# What the fast tier (`make test-fast`) leaves out: tests that need a server, a Ray, the tiny
# models or a run, and modules whose tests start the CLI or other processes themselves.
HEAVY_FIXTURES = {"s3_server", "bucket", "ray_local", "prefect_server", "tiny_models", "engine", "offline_run",
                  "micro_reference", "layout_1"}
HEAVY_MODULES = {"test_cli", "test_first_run", "test_ui", "test_deployments", "test_prefect_postgres", "test_ray_job", "test_kill_anywhere",
                 "test_concurrent_resume", "test_object_store_faults", "test_real_data", "test_training", "test_gpu_proof",
                 "test_preemption"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not HEAVY_FIXTURES & set(item.fixturenames) and item.module.__name__.rpartition(".")[2] not in HEAVY_MODULES:
            item.add_marker(pytest.mark.fast)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_STATE, ignore_errors=True)
