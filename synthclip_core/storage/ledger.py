"""The cost ledger: what a run has spent, as a sum over records that each say what they held.

Spend is counted where it happens, once: every output a pool's actor commits says in its record
what the actor held while making it (``held``: seconds, CPUs, GPUs and their type), from the end
of its previous item (or its start, which counts its model load) to this commit; a training
metrics chunk says what the ranks held since the last one. What committed nothing is a *spend
record* under ``_spend/<stage>/``: an attempt that failed (``failed``), the minutes on an actor
whose node died (``lost``), a stage call's own process (``driver``), its Ray tasks (``task``)
and an output set aside as damaged (``set_aside``: its record goes, its cost stays). A resume
makes only what is not committed, so a sum over records counts nothing twice, and a failed
attempt is counted as spent.
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
import uuid
from dataclasses import dataclass, field

from .store import DAMAGED, SPEND, RunStore

log = logging.getLogger("synthclip.ledger")

KINDS = ("outputs", "failed", "lost", "driver", "task", "set_aside")
WASTED = ("failed", "lost", "set_aside")  # spend that committed nothing the run keeps
CPU_ONLY = "cpu"  # the accelerator of work that held no GPU


def held(seconds: float, cpus: float = 1, gpus: float = 0, accelerator: str | None = None) -> dict:
    """What a piece of work held, and for how long: the ``held`` of a record."""
    return {"seconds": round(max(0.0, seconds), 4), "cpus": float(cpus), "gpus": float(gpus),
            "accelerator": accelerator if gpus else CPU_ONLY}


def add_spend(store: RunStore, stage: str, kind: str, held_: dict, **about) -> None:
    """Write one spend record (a new file: records are never rewritten, so writers never race).
    Bookkeeping: a write that fails (the store refusing writes) is logged, and the work's own
    error, if any, is what the caller sees."""
    name = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:10]}.json"
    path = store.path(SPEND, stage, name)
    doc = {"stage": stage, "kind": kind, "held": held_, "at": time.time(), **about}
    try:
        if store.local:
            store.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        store.fs.pipe_file(path, json.dumps(doc, sort_keys=True).encode())
    except Exception as exc:  # noqa: BLE001
        log.warning("could not record what %s of %s spent (%.1f s) under %s: %s", kind, stage, held_.get("seconds", 0),
                    store.uri(SPEND, stage), exc)


def spend_records(store: RunStore, stage: str) -> list[dict]:
    """The spend records of one stage, oldest first."""
    top = store.path(SPEND, stage)
    try:
        paths = sorted(p for p in store.fs.find(top) if p.endswith(".json"))
    except FileNotFoundError:
        return []
    if not paths:
        return []
    blobs = store.fs.cat(paths)
    return [json.loads(blobs[p]) for p in paths]


@dataclass
class Spend:
    """Resources spent: GPU-seconds by accelerator type, CPU-seconds, and the seconds of each kind."""

    gpu_s: dict[str, float] = field(default_factory=dict)
    cpu_s: float = 0.0
    by_kind: dict[str, float] = field(default_factory=dict)  # device-seconds (GPU where held, else CPU) per kind
    records: int = 0

    def add(self, held_: dict, kind: str = "outputs") -> None:
        seconds = float(held_.get("seconds", 0.0))
        gpus, cpus = float(held_.get("gpus", 0.0)), float(held_.get("cpus", 0.0))
        if gpus:
            kind_key = held_.get("accelerator") or "unknown"
            self.gpu_s[kind_key] = self.gpu_s.get(kind_key, 0.0) + seconds * gpus
        self.cpu_s += seconds * cpus
        self.by_kind[kind] = self.by_kind.get(kind, 0.0) + seconds * (gpus or cpus)
        self.records += 1

    def __iadd__(self, other: "Spend") -> "Spend":
        for name, s in other.gpu_s.items():
            self.gpu_s[name] = self.gpu_s.get(name, 0.0) + s
        self.cpu_s += other.cpu_s
        for kind, s in other.by_kind.items():
            self.by_kind[kind] = self.by_kind.get(kind, 0.0) + s
        self.records += other.records
        return self

    @property
    def gpu_hours(self) -> float:
        return sum(self.gpu_s.values()) / 3600

    @property
    def cpu_hours(self) -> float:
        return self.cpu_s / 3600

    def hours(self, unit: str) -> float:
        """``gpu_hours`` or ``cpu_hours`` (a budget's units)."""
        return self.gpu_hours if unit == "gpu_hours" else self.cpu_hours

    @property
    def wasted_share(self) -> float:
        """The share of device-seconds that committed nothing kept (failed, lost, set aside)."""
        total = sum(self.by_kind.values())
        return sum(self.by_kind.get(k, 0.0) for k in WASTED) / total if total else 0.0

    def as_dict(self) -> dict:
        return {"gpu_hours": round(self.gpu_hours, 6), "cpu_hours": round(self.cpu_hours, 6),
                "gpu_hours_by_type": {k: round(v / 3600, 6) for k, v in sorted(self.gpu_s.items())},
                "hours_by_kind": {k: round(v / 3600, 6) for k, v in sorted(self.by_kind.items())},
                "records": self.records}


def stage_spend(store: RunStore, stage: str, records: dict[str, dict] | None = None) -> Spend:
    """What one stage has spent: its commit records' ``held`` and its spend records."""
    spend = Spend()
    for record in (store.records(stage) if records is None else records).values():
        if "held" in record:
            spend.add(record["held"])
    for doc in spend_records(store, stage):
        spend.add(doc["held"], doc["kind"])
    for why in set_aside_notes(store, stage):
        if "held" in (why.get("record") or {}):
            spend.add(why["record"]["held"], "set_aside")
    return spend


def set_aside_notes(store: RunStore, stage: str) -> list[dict]:
    """The notes of this stage's outputs set aside as damaged (``_damaged/*/<stage>/...why.json``):
    each keeps the record it had, and so what making it held."""
    try:
        paths = [p for p in store.fs.find(store.path(DAMAGED)) if p.endswith(".why.json")]
    except FileNotFoundError:
        return []
    notes = [json.loads(blob) for blob in store.fs.cat(paths).values()] if paths else []
    return [n for n in notes if n.get("stage") == stage]


def run_spend(store: RunStore, stages: list[str]) -> dict[str, Spend]:
    """Per stage, what the run has spent (stages in the order given)."""
    return {name: stage_spend(store, name) for name in stages}


def total(spends: dict[str, Spend]) -> Spend:
    out = Spend()
    for spend in spends.values():
        out += spend
    return out
