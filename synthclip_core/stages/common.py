"""What several stages share: partition names, the kept-caption partitions, the run's concept table, a
model stage's pool, and the caption work of the captions stage, the closed loop and the rewrites."""

from __future__ import annotations

import os

import pyarrow as pa

from ..captioning.writer import CaptionWriter
from ..compute.resources import PoolSpec
from ..storage.schemas import table_from_rows
from ..storage.store import RunStore
from ..storage.tables import read_table
from .executor import Made, PartitionWork
from .stage import RunView, WorkItem

CAPTION_STAGES = ("balanced", "topup")  # the kept captions: balanced, then the closed loop's (where a run has it)


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def data_parts(outputs: list[str]) -> list[str]:
    """The row partitions (``part-*``) among a stage's outputs, in order."""
    return [o for o in outputs if o.startswith("part-")]


def read_concepts(store: RunStore, parts: list[str], columns: tuple[str, ...] = ("concept_id", "concept")) -> pa.Table:
    """The run's concept table (the global concept index is the row number), in partition order."""
    return pa.concat_tables([read_table(store, "concepts", o).select(list(columns)) for o in parts])


def caption_records(run: RunView) -> dict[tuple[str, str], dict]:
    """The commit records of the kept-caption partitions (what is rendered and rewritten), by
    (stage, output), in order."""
    out: dict[tuple[str, str], dict] = {}
    for stage in CAPTION_STAGES:
        if run.has(stage):
            records = run.store.records(stage, data_parts(run.require(stage).outputs))
            out.update({(stage, part): record for part, record in records.items()})
    return out


def model_pool(cfg, name: str, label: str = "") -> PoolSpec:
    """The actor pool of a model stage's config section: actors, GPUs, node-group resources, and
    the interpreter its actors run under (a backend's own environment)."""
    section = getattr(cfg, name)
    python = getattr(section, "python", None)
    runtime_env = {"py_executable": os.path.abspath(os.path.expanduser(python))} if python else {}
    fields = (f"{name}.num_actors", *([f"{name}.num_gpus"] if section.num_gpus else []),
              *([f"{name}.ray_resources"] if section.ray_resources else []))
    return PoolSpec(count=section.num_actors, num_gpus=section.num_gpus, runtime_env=runtime_env,
                    resources=dict(section.ray_resources), label=label, fields=fields)


class CaptionsWork(PartitionWork):
    """Captions for (concept id, concept, index) requests, by the caption backend an actor loads
    once: what the captions stage and the closed loop share; each says what it requests."""

    writes, deterministic = "captions", False  # LLM sampling on a GPU may differ between two writers

    def setup(self) -> None:
        self.writer = CaptionWriter(self.settings)

    @property
    def device(self) -> str:
        return self.writer.backend.device

    def requests(self, rows: pa.Table, item: WorkItem) -> list[tuple[str, str, int]]:
        raise NotImplementedError

    def process(self, rows: pa.Table, item: WorkItem) -> Made:
        captions, made = self.writer.write(self.requests(rows, item))
        return Made(table_from_rows(captions, "captions"), made)
