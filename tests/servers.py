"""Starting real servers for tests: free ports, waiting until they answer, a Prefect server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from typing import Callable, Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what} did not come up in {timeout} s")


def answers(url: str) -> bool:
    return urllib.request.urlopen(url, timeout=2).status == 200


@contextmanager
def prefect_server(env: dict) -> Iterator[str]:
    """``prefect server start`` on a free port with ``env``; yields the API URL."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env={**env, "PREFECT_UI_API_URL": api}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: answers(f"{api}/health"), "the Prefect server", timeout=180)
        yield api
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
