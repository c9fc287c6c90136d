"""Progress events from long work, to whoever listens (rich bars in the CLI, Prefect artifacts).

The core reports; the application decides how to show it. Listeners are called in the reporting
thread and must be quick. Work inside a pool's actor (one partition: a vLLM call of 60,000
prompts, a render of thousands of images) says how far it is with :func:`within`; the pool
sends that to its driver, which reports the stage's partitions done with a fraction for those
in flight (``done`` may be a float).
"""

from __future__ import annotations

from typing import Callable

Listener = Callable[[str, float, int], None]  # (stage, done, total)
_listeners: list[Listener] = []
_within: Callable[[int, int], None] | None = None  # set in a pool's actor: where `within` goes


def add_listener(listener: Listener) -> None:
    _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def within(done: int, total: int) -> None:
    """``done`` of ``total`` units of the partition this process works on (no-op outside a pool)."""
    if _within is not None and total:
        _within(done, total)


def send_within_to(sink: Callable[[int, int], None] | None) -> None:
    global _within
    _within = sink


def report(stage: str, done: float, total: int) -> None:
    for listener in list(_listeners):
        listener(stage, done, total)
