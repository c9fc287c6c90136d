"""Who is writing a run now: a lease in the run's store that automation checks before it resumes.

The commit rule already makes two writers of one run safe (they race on outputs and the first
commit wins), but not cheap: a second resume of a live build doubles the GPU bill, and one started
on another machine may lack the first one's cluster and secrets. So every whole-run execution holds
a lease, ``_live/lease.json`` (who: flow run, host, process; renewed every ``RENEW_S``), and what
acts without a person (``resume-latest``, the auto-resume automation) leaves a run alone while its
lease is live. A lease not renewed for ``STALE_S`` is a stopped writer's (a killed process, a lost
node), as is one whose flow run the caller knows has ended.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from ..storage.store import RunStore

NAME = "lease"  # _live/lease.json
RENEW_S = 60.0
STALE_S = 300.0


def holder() -> dict:
    """This process, and the Prefect flow run it serves if any."""
    flow_run_id = None
    try:
        from prefect.runtime import flow_run

        flow_run_id = str(flow_run.id) if flow_run.id else None
    except Exception:  # noqa: BLE001 (no Prefect: a script or a notebook)
        pass
    return {"flow_run_id": flow_run_id, "host": socket.gethostname(), "pid": os.getpid()}


@contextmanager
def holding(store: RunStore, who: dict | None = None, renew_s: float = RENEW_S) -> Iterator[dict]:
    """Hold the run's lease while the block runs: written now, renewed every ``renew_s`` from a
    background thread, released at the end (also when the block raises)."""
    who = dict(who or holder())
    stop = threading.Event()

    def write() -> None:
        store.heartbeat(NAME, {**who, "renewed_at": time.time()})

    def renew() -> None:
        while not stop.wait(renew_s):
            write()

    write()
    thread = threading.Thread(target=renew, name="run-lease", daemon=True)
    thread.start()
    try:
        yield who
    finally:
        stop.set()
        thread.join(timeout=5)
        store.heartbeat(NAME, {**who, "renewed_at": time.time(), "released_at": time.time()})


def live_holder(store: RunStore, ended_flow_run: str | None = None, stale_s: float = STALE_S) -> dict | None:
    """Who holds the run's lease now, or None: never held, released, not renewed for ``stale_s``,
    or held by ``ended_flow_run`` (a flow run the caller knows has ended)."""
    doc = store.live(NAME)
    if not doc or doc.get("released_at") or time.time() - float(doc.get("renewed_at", 0)) > stale_s:
        return None
    if ended_flow_run is not None and doc.get("flow_run_id") == str(ended_flow_run):
        return None
    return doc


def describe(doc: dict) -> str:
    who = f"flow run {doc['flow_run_id']}" if doc.get("flow_run_id") else "a process"
    return f"{who} on {doc.get('host')} (pid {doc.get('pid')}), renewed {time.time() - float(doc['renewed_at']):.0f} s ago"
