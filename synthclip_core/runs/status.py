"""What a run holds: per stage, outputs committed / pending / failed, rows and lineage.

Every stage is read the same way: a finished stage is its completion (what it wrote), an
unfinished one its plan where the plan is known (its inputs are complete), else only what is
committed so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..stages.common import data_parts
from ..stages.stage import RunView, Stage, StageBlocked


@dataclass
class StageStatus:
    stage: str
    committed: int = 0
    planned: int | None = None  # None: not known until the stage's inputs exist (or it has run)
    failed: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    complete: bool = False
    lineage: str = ""  # model identity and input count of the stage's first output

    @property
    def pending(self) -> int | None:
        return None if self.planned is None else max(0, self.planned - self.committed)


def run_status(run: RunView) -> list[StageStatus]:
    store = run.store
    committed, failed = store.committed_all(), store.failed_all()
    statuses = []
    for stage in run.stages:
        outputs = committed.get(stage.name, set())
        done = run.completion(stage.name, outputs)
        planned = done.outputs if done else _plan(run, stage)
        data_outputs = outputs if planned is None else outputs & set(planned)
        status = StageStatus(stage.name, committed=len(data_outputs), planned=None if planned is None else len(planned),
                             complete=done is not None)
        parts = data_parts(sorted(data_outputs))
        if done is not None:
            status.rows = done.rows
        elif parts:
            status.rows = store.committed_rows(stage.name, parts)
        if data_outputs:  # a row partition's lineage says most (model, inputs), else the first output's
            status.lineage = _lineage_line(store.record(stage.name, (parts or sorted(data_outputs))[0]))
        for output in sorted(failed.get(stage.name, set()) - outputs):
            status.failed[output] = (store.failure(stage.name, output) or {}).get("error", "unknown error")
        statuses.append(status)
    return statuses


def _plan(run: RunView, stage: Stage) -> list[str] | None:
    """The outputs an unfinished stage will write, if its inputs are complete and it can say."""
    if stage.plan is None:
        return None
    try:
        return stage.plan(run)
    except StageBlocked:
        return None


def _lineage_line(record: dict) -> str:
    parts = []
    model = record.get("model")
    if model:
        version = model.get("revision") or model.get("content_sha256", "")[:8]
        parts.append(f"{model['name']}@{version}")
    if record.get("source"):
        parts.append(f"<- {record['source']}")
    if record.get("inputs"):
        parts.append(f"<- {record['inputs'][0]['stage']} x{sum(r.get('count', 1) for r in record['inputs'])}")
    return " ".join(parts)


def partition_table(run: RunView, stage: str, limit: int = 500) -> list[dict]:
    """One row per output of a stage (failed first, then pending, then committed), for the UI."""
    store = run.store
    done = store.committed(stage)
    completion = run.completion(stage)
    planned = completion.outputs if completion else _plan(run, run.stage(stage)) or sorted(done)
    failed = store.failed(stage) - done
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
