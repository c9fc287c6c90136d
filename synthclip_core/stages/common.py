"""Helpers shared by the stages: partition names, lineage, summaries, input reading."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

import pyarrow as pa

from ..run import Run, code_version
from ..schemas import from_parquet_bytes
from ..store import RunStore


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def data_parts(outputs: list[str]) -> list[str]:
    """The row partitions (``part-*``) among a stage's outputs, in order."""
    return [o for o in outputs if o.startswith("part-")]


@dataclass
class StageSummary:
    stage: str
    total: int = 0
    skipped: int = 0  # already committed before this call
    computed: int = 0
    rows: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    pictures: list[str] = field(default_factory=list)  # "stage/output" of PNGs worth showing
    reports: list[str] = field(default_factory=list)  # "stage/output" of markdown reports to attach as they are

    @property
    def ok(self) -> bool:
        return not self.failures

    def line(self) -> str:
        text = f"{self.stage}: {self.computed} computed, {self.skipped} already committed"
        if self.failures:
            text += f", {len(self.failures)} failed"
        return text


class StageBlocked(RuntimeError):
    """A stage cannot run because its inputs are not all committed."""


def worker_info(device: str = "cpu") -> dict:
    """Where an output was made; inside a Ray actor also the GPU ids Ray pinned it to."""
    info = {"host": socket.gethostname(), "pid": os.getpid(), "device": device}
    try:
        import ray

        if ray.is_initialized():
            info["gpu_ids"] = [str(i) for i in ray.get_gpu_ids()]
            info["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    except ImportError:
        pass
    return info


def lineage(run_fingerprint: str, inputs: list[dict], started: float, rows: int, **extra) -> dict:
    return {
        "fingerprint": run_fingerprint,
        "inputs": inputs,
        "rows": rows,
        "code_version": code_version(),
        "timings": {"started": started, "seconds": round(time.time() - started, 4)},
        **extra,
    }


def input_ref(store: RunStore, stage: str, output: str, record: dict | None = None) -> dict:
    record = record or store.record(stage, output)
    return {"stage": stage, "output": output, "sha256": record["sha256"]}


def read_table(store: RunStore, stage: str, output: str, kind: str | None = None) -> pa.Table:
    return from_parquet_bytes(store.read_bytes(stage, output), kind or stage, where=f"{stage}/{output}")


def stage_outputs_done(store: RunStore, stage: str, manifest: str) -> list[str] | None:
    """The outputs a whole-run stage wrote, if its manifest and all of them are committed."""
    committed = store.committed(stage).get(stage, set())
    if manifest not in committed:
        return None
    outputs = store.record(stage, manifest).get("outputs", [])
    return outputs if all(o in committed for o in outputs) else None


def read_concepts(store: RunStore, parts: list[str], columns: tuple[str, ...] = ("concept_id", "concept")) -> pa.Table:
    """The run's concept table (the global concept index is the row number), in partition order."""
    return pa.concat_tables([read_table(store, "concepts", o).select(list(columns)) for o in parts])


def finished_summary(store: RunStore, stage: str, manifest: str) -> StageSummary | None:
    """The summary of a whole-run stage that is already complete, else None."""
    outputs = stage_outputs_done(store, stage, manifest)
    if outputs is None:
        return None
    return StageSummary(stage, total=len(outputs), skipped=len(outputs))


def plan_mirrored(run: Run, stage: str, source: str, manifest: str) -> tuple[list[dict], int]:
    """Pending jobs of a stage whose partition i is made from ``source``'s partition i."""
    store = run.store
    inputs = data_parts(require_done(run, source, manifest))
    committed = store.committed(stage).get(stage, set())
    pending = [o for o in inputs if o not in committed]
    records = store.records(source, pending)
    jobs = [{"output": o, "inputs": [input_ref(store, source, o, records[o])],
             "fingerprint": run.fingerprints[stage]} for o in pending]
    return jobs, len(inputs)


def require_done(run: Run, stage: str, manifest: str) -> list[str]:
    outputs = stage_outputs_done(run.store, stage, manifest)
    if outputs is None:
        raise StageBlocked(f"stage {stage!r} of run {run.ref.run_id} is not complete; run or resume it first")
    return outputs
