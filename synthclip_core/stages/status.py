"""What a run holds: per stage, outputs committed / pending / failed, rows and lineage."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fingerprint import STAGES
from ..run import Run
from .common import StageBlocked, data_parts
from .images import render_parts

MANIFESTS = {"concepts": "manifest.json", "balanced": "stats.parquet", "shards": "sizes.json",
             "train": "summary.json", "eval": "report.json"}
# Partitioned stages whose planned outputs are known once another stage is complete.


@dataclass
class StageStatus:
    stage: str
    committed: int = 0
    planned: int | None = None  # None: not known until the stage's inputs exist
    failed: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    complete: bool = False
    lineage: str = ""  # model identity and input count of the stage's first output

    @property
    def pending(self) -> int | None:
        return None if self.planned is None else max(0, self.planned - self.committed)


def run_status(run: Run) -> list[StageStatus]:
    store = run.store
    committed = store.committed()
    failed = store.failed()
    statuses = []
    for stage in STAGES:
        outputs = committed.get(stage, set())
        status = StageStatus(stage)
        planned = _planned(run, stage, committed)
        data_outputs = outputs if planned is None else outputs & set(planned)
        status.committed = len(data_outputs)
        status.planned = None if planned is None else len(planned)
        status.complete = planned is not None and status.pending == 0
        if data_outputs:
            records = store.records(stage, sorted(data_outputs))
            status.rows = sum(r.get("rows", 0) for o, r in records.items() if _holds_rows(o))
            status.lineage = _lineage_line(next(iter(records.values())))
        for output in sorted(failed.get(stage, set()) - outputs):
            record = store.failure(stage, output) or {}
            status.failed[output] = record.get("error", "unknown error")
        statuses.append(status)
    return statuses


def _lineage_line(record: dict) -> str:
    parts = []
    model = record.get("model")
    if model:
        version = model.get("revision") or model.get("content_sha256", "")[:8]
        parts.append(f"{model['name']}@{version}")
    if record.get("source"):
        parts.append(f"<- {record['source']}")
    if record.get("inputs"):
        parts.append(f"<- {record['inputs'][0]['stage']} x{len(record['inputs'])}")
    return " ".join(parts)


def _holds_rows(output: str) -> bool:
    """Outputs whose ``rows`` count samples (not manifests, stats or exports)."""
    return output.endswith((".parquet", ".tar", ".pt")) and output != "stats.parquet" or output == "report.json"


def _planned(run: Run, stage: str, committed: dict[str, set[str]]) -> list[str] | None:
    store = run.store
    if stage == "captions":
        if MANIFESTS["concepts"] not in committed.get("concepts", set()):
            return None
        return data_parts(store.record("concepts", MANIFESTS["concepts"]).get("outputs", []))
    if stage == "images":
        try:
            return [p["output"] for p in render_parts(run)]
        except StageBlocked:
            return None
    manifest = MANIFESTS[stage]
    if manifest not in committed.get(stage, set()):
        return None
    return [manifest] + list(store.record(stage, manifest).get("outputs", []))


def partition_table(run: Run, stage: str, limit: int = 500) -> list[dict]:
    """One row per output of a stage (failed first, then pending, then committed), for the UI."""
    store = run.store
    committed = store.committed(stage)
    done = committed.get(stage, set())
    planned = _planned(run, stage, {**store.committed("concepts"), **store.committed("balanced"), **committed}) or sorted(done)
    failed = store.failed(stage).get(stage, set()) - done
    rows = [{"output": o, "state": "failed", "rows": 0, "throughput": "",
             "error": (store.failure(stage, o) or {}).get("error", "")[:300]} for o in sorted(failed)[:limit]]
    rows += [{"output": o, "state": "pending", "rows": 0, "throughput": "", "error": ""}
             for o in planned if o not in done and o not in failed][: max(0, limit - len(rows))]
    shown = [o for o in planned if o in done][: max(0, limit - len(rows))]
    for output, record in store.records(stage, shown).items():
        speed = record.get("throughput") or {}
        rows.append({"output": output, "state": "committed", "rows": record.get("rows", 0),
                     "throughput": ", ".join(f"{k} {v}" for k, v in speed.items()), "error": ""})
    return rows
