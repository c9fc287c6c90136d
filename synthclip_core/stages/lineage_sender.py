"""Lineage events sent off the stage's path: one background thread per process, a bounded queue.

A lineage backend is someone else's service: slow, down, or misconfigured, it must cost a stage
nothing. ``submit`` never blocks: it drops the event when the queue is full. The thread sends each
event through the OpenLineage client (HTTP: at most ``TIMEOUT_S`` per try, one retry); after
``FAILURES_TO_PAUSE`` failures in a row the backend counts as down and events are dropped unsent for
``PAUSE_S`` (a dead endpoint costs one timeout per pause, not one per event). Every event that is
dropped or fails is counted against the stage call that made it, which shows the count in its
summary; ``flush`` waits a bounded time for a call's events before the call returns (what is
still queued then counts as unsent: a process that exits takes it along).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger("synthclip.lineage")
QUEUE = 2048  # events waiting; beyond this they are dropped (a stage commits faster than any backend takes events)
TIMEOUT_S = 2.0
FAILURES_TO_PAUSE = 3
PAUSE_S = 60.0
FLUSH_S = 3.0  # the most a stage call waits for its events at its end


@dataclass
class Tally:
    """One stage call's events: how many were handed over, sent, and not sent (dropped or failed)."""

    submitted: int = 0
    sent: int = 0
    unsent: int = 0
    done: threading.Condition = field(default_factory=threading.Condition, repr=False)

    @property
    def pending(self) -> int:
        return self.submitted - self.sent - self.unsent


class Sender:
    """The background thread and queue in front of one OpenLineage client."""

    def __init__(self, emit: Callable[[Any], Any]):
        self._emit = emit
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE)
        self._failures_in_a_row = 0
        self._paused_until = 0.0
        threading.Thread(target=self._loop, name="openlineage-sender", daemon=True).start()

    def submit(self, event: Any, tally: Tally) -> None:
        """Hand ``event`` over; never blocks (a full queue drops it, counted)."""
        with tally.done:
            tally.submitted += 1
        try:
            self._queue.put_nowait((event, tally))
        except queue.Full:
            self._settle(tally, sent=False)

    def flush(self, tally: Tally, timeout_s: float = FLUSH_S) -> None:
        """Wait until every event of ``tally`` is settled, or ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        with tally.done:
            while tally.pending and (left := deadline - time.monotonic()) > 0:
                tally.done.wait(left)

    def _loop(self) -> None:
        while True:
            event, tally = self._queue.get()
            if time.monotonic() < self._paused_until:
                self._settle(tally, sent=False)
                continue
            try:
                self._emit(event)
            except Exception as exc:  # noqa: BLE001 (a backend's error is counted, never raised)
                self._failures_in_a_row += 1
                if self._failures_in_a_row == FAILURES_TO_PAUSE:
                    self._paused_until = time.monotonic() + PAUSE_S
                    log.warning("OpenLineage: the backend failed %d events in a row (last: %s: %s); events are "
                                "dropped for %.0f s, then tried again", FAILURES_TO_PAUSE, type(exc).__name__,
                                " ".join(str(exc).split())[:200], PAUSE_S)
                    self._failures_in_a_row = 0
                self._settle(tally, sent=False)
            else:
                self._failures_in_a_row = 0
                self._settle(tally, sent=True)

    @staticmethod
    def _settle(tally: Tally, sent: bool) -> None:
        with tally.done:
            if sent:
                tally.sent += 1
            else:
                tally.unsent += 1
            tally.done.notify_all()


def with_short_timeouts(client: Any) -> Any:
    """An OpenLineage client whose HTTP transport gives up quickly: at most ``TIMEOUT_S`` per try
    and one retry (the client's defaults, 5 s and 5 retries, held one event 39 s on a dead
    endpoint). Other transports are left as they are."""
    transport = getattr(client, "transport", None)
    if transport is not None and hasattr(transport, "timeout") and hasattr(transport, "config"):
        transport.timeout = min(float(transport.timeout), TIMEOUT_S)
        retry = dict(getattr(transport.config, "retry", None) or {})
        transport.config.retry = {**retry, "total": min(int(retry.get("total", 1)), 1), "backoff_factor": 0.1}
        transport.session = None  # made again on first use, with the retry above
    return client
