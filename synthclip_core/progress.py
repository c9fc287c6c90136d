"""Progress events from long work, to whoever listens (rich bars in the CLI, Prefect artifacts).

The core reports; the application decides how to show it. Listeners are called in the reporting
thread and must be quick.
"""

from __future__ import annotations

from typing import Callable

Listener = Callable[[str, int, int], None]  # (stage, done, total)
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def report(stage: str, done: int, total: int) -> None:
    for listener in list(_listeners):
        listener(stage, done, total)
