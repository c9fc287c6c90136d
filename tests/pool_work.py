"""What actor-pool tests put in a pool's actors (importable by Ray's workers: tests/ is on their
PYTHONPATH): each is built once per actor and called once per work item, as the stage executor's
``PartitionMaker`` is."""

from __future__ import annotations

import os
import time
from pathlib import Path

from synthclip_core.compute import progress
from synthclip_core.storage.store import RunRef


class DiesOnFirstTry:
    """Kills its own actor process the first time it meets each odd-numbered item (marked by a
    file under ``marks``), as a pre-emption would, then commits it on the next try."""

    def __init__(self, marks: str, ref: dict):
        self.marks, self.store = Path(marks), RunRef(**ref).store()

    def __call__(self, item) -> dict:
        mark = self.marks / item.output
        if int(item.output.rsplit("-", 1)[1]) % 2 and not mark.exists():
            mark.touch()
            os._exit(1)
        return self.store.commit("pool", item.output, item.output.encode(), {"rows": 1})


class InSteps:
    """An item of ``steps`` units, each taking ``seconds``, saying how far it is after each."""

    def __init__(self, steps: int, seconds: float, ref: dict):
        self.steps, self.seconds, self.store = steps, seconds, RunRef(**ref).store()

    def __call__(self, item) -> dict:
        for step in range(self.steps):
            time.sleep(self.seconds)
            progress.within(step + 1, self.steps)
        return self.store.commit("pool", item.output, item.output.encode(), {"rows": self.steps})


class Slow:
    """An item of ``seconds``, committed with the node it ran on and when it began: what the
    pre-emption tests read back."""

    def __init__(self, seconds: float, ref: dict):
        self.seconds, self.store = seconds, RunRef(**ref).store()

    def __call__(self, item) -> dict:
        import ray

        began = time.time()
        time.sleep(self.seconds)
        return self.store.commit("pool", item.output, item.output.encode(),
                                 {"rows": 1, "node": ray.get_runtime_context().get_node_id(), "began": began})
