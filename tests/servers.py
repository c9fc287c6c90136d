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


def ray_cluster_env(token: str, **extra: str) -> dict:
    """The environment of a throwaway token-auth Ray cluster and of the clients that join it."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def start_ray_node(env: dict, *args: str, head: bool = False, address: str = "") -> subprocess.Popen:
    """``ray start --block`` (a head, or a node joining ``address``) in its own session, on agent
    ports of its own (the session's local Ray already holds the defaults, and a node whose agent
    cannot bind answers every job submission "No available agent")."""
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    ports = [f"--{flag}={free_port()}" for flag in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                    "runtime-env-agent-port", "metrics-export-port")]
    where = ["--head", f"--ray-client-server-port={free_port()}"] if head else \
        [f"--address={address}", f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}"]
    return subprocess.Popen([ray, "start", "--block", "--disable-usage-stats", *where, *ports, *args], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (Ray's workers lead process groups of their own, so a
    node is stopped by killing its tree, not its group)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        for task in os.listdir(f"/proc/{current}/task") if os.path.isdir(f"/proc/{current}/task") else []:
            try:
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    todo += [int(child) for child in handle.read().split()]
            except OSError:
                pass
    return tree


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process and everything below it, as a node that loses power."""
    for pid in reversed(process_tree(proc.pid)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
