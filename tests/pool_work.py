"""Work classes for actor-pool tests (importable by Ray's workers: tests/ is on their PYTHONPATH)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from synthclip_core.compute import progress
from synthclip_core.storage.store import RunStore


class DiesOnFirstTry:
    """Kills its own actor process the first time it meets each odd-numbered partition (marked by a
    file under ``marks``), as a pre-emption would, then commits it on the next try."""

    def __init__(self, marks: str):
        self.marks = Path(marks)

    def __call__(self, store: RunStore, job: dict) -> dict:
        mark = self.marks / job["output"]
        if int(job["output"].rsplit("-", 1)[1]) % 2 and not mark.exists():
            mark.touch()
            os._exit(1)
        return store.commit("pool", job["output"], job["output"].encode(), {"rows": 1})


class InSteps:
    """A partition of ``steps`` units, each taking ``seconds``, saying how far it is after each."""

    def __init__(self, steps: int, seconds: float):
        self.steps, self.seconds = steps, seconds

    def __call__(self, store: RunStore, job: dict) -> dict:
        for step in range(self.steps):
            time.sleep(self.seconds)
            progress.within(step + 1, self.steps)
        return store.commit("pool", job["output"], job["output"].encode(), {"rows": self.steps})
