"""Training metrics: the per-step rows rank 0 commits with every checkpoint, read back in order.

``train/metrics/step_N.jsonl`` holds the rows since the previous checkpoint; a resumed training
recomputes only rows that were never committed, so the concatenation is the run's one history.
Following a job means watching for new chunks: the same code follows a local Ray Train run and a
Ray job on a cluster.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Callable

from ..compute import progress
from ..storage.store import RunStore

log = logging.getLogger("synthclip.train")
_CHUNK = re.compile(r"^metrics/step_(\d+)\.jsonl$")


def chunks(store: RunStore) -> list[str]:
    return sorted(o for o in store.committed("train") if _CHUNK.match(o))


def history(store: RunStore, names: list[str] | None = None) -> list[dict]:
    """All committed metric rows in step order (later chunks win for a step written twice)."""
    by_step: dict[int, dict] = {}
    for name in chunks(store) if names is None else names:
        for line in store.read_bytes("train", name).decode().splitlines():
            row = json.loads(line)
            by_step[row["step"]] = row
    return [by_step[s] for s in sorted(by_step)]


def follow_metrics(spec, finished: Callable[[], bool], poll_s: float = 2.0) -> None:
    """Report progress at each logged step (the workers' heartbeat) and log each newly committed
    chunk's last row, until ``finished()``."""
    from .layout import steps_per_epoch

    store = spec.run_ref.store()
    t = spec.config
    total = steps_per_epoch(spec.epoch_samples, t.num_workers, t.loader_workers, spec.per_worker_batch()) * t.epochs
    seen, step = set(chunks(store)), 0
    while True:
        done = finished()
        live = store.live("train") or {}
        if live.get("step", 0) > step:
            step = live["step"]
            progress.report("train", step, live.get("total") or total)
        fresh = [c for c in chunks(store) if c not in seen]
        for name in fresh:
            rows = history(store, [name])
            if rows:
                last = rows[-1]
                log.info("step %d/%d epoch %d loss %.4f lr %.2e logit scale %.2f, %.1f samples/s per worker",
                         last["step"], total, last["epoch"], last["loss"], last["lr"], last["logit_scale"],
                         last["samples_per_s_per_worker"])
                progress.report("train", last["step"], total)
        seen.update(fresh)
        if done:
            return
        time.sleep(poll_s)


def per_epoch(rows: list[dict]) -> list[dict]:
    """Mean loss, throughput and data wait of each epoch, from the step rows."""
    epochs: dict[int, list[dict]] = {}
    for row in rows:
        epochs.setdefault(row["epoch"], []).append(row)
    return [{"epoch": e, "steps": len(r), "loss": sum(x["loss"] for x in r) / len(r),
             "samples_per_s_per_worker": sum(x["samples_per_s_per_worker"] for x in r) / len(r),
             "data_wait_s": sum(x["data_wait_s"] for x in r) / len(r), "last_lr": r[-1]["lr"]}
            for e, r in sorted(epochs.items())]
