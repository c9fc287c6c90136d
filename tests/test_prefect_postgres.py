"""A Prefect server on a real PostgreSQL (Debian's packages) on 127.0.0.1, running one of our flows.

SQLite stays the zero-set-up default; this is the production database, tested the same way.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from servers import free_port, prefect_server, wait_until

REPO = Path(__file__).resolve().parents[1]


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture
def postgres():
    initdb = shutil.which("initdb") or "/usr/lib/postgresql/15/bin/initdb"
    if not Path(initdb).exists():
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    data = Path(tempfile.mkdtemp(prefix="pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(_as_postgres([initdb, "-D", str(data), "-A", "trust", "-U", "prefect"]), check=True,
                   capture_output=True)
    port = free_port()
    server = subprocess.Popen(_as_postgres([str(Path(initdb).with_name("postgres")), "-D", str(data), "-p", str(port),
                                            "-k", str(data), "-h", "127.0.0.1"]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def ready() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_until(ready, "PostgreSQL")
    yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/postgres", port
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)
    shutil.rmtree(data, ignore_errors=True)


def test_prefect_server_on_postgres_runs_a_flow(postgres, tmp_path):
    url, pg_port = postgres
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_API_DATABASE_CONNECTION_URL=url,
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false")
    with prefect_server(env) as api:
        script = (
            "import yaml\n"
            "from synthclip_core.pipeline import config_from_dict\n"
            "from synthclip_core.runs.lifecycle import open_run\n"
            "from synthclip_core.storage.store import RunRef\n"
            "from flows.stages import concepts_flow\n"
            f"cfg = config_from_dict(yaml.safe_load(open('configs/micro.yaml')))\n"
            f"open_run(cfg, RunRef({str(tmp_path / 'runs')!r}, 'on-postgres'))\n"
            f"print(concepts_flow('on-postgres', {str(tmp_path / 'runs')!r}))\n"
        )
        result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env={**env, "PREFECT_API_URL": api},
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        rows = subprocess.run(_as_postgres(["psql", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "prefect", "-d", "postgres",
                                            "-At", "-c", "select name, state_type from flow_run"]),
                              capture_output=True, text=True, check=True).stdout
        assert "on-postgres: concepts|COMPLETED" in rows, rows
