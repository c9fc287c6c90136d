"""The micro run's data outputs by stage version (``tests/fixtures/stage-outputs.json``): the guard
of the rule that a change to what a stage writes bumps the stage's version.

A tar is known by its bytes (what open_clip reads); a Parquet table by its rows and schema, so a
change of physical layout alone (row groups, compression) keeps the stage's version.

Refresh after bumping a version: ``python tests/golden.py ROOT RUN_ID`` on a finished micro run.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from synthclip_core.pipeline import STAGES
from synthclip_core.store import RunStore

GOLDEN = Path(__file__).parent / "fixtures" / "stage-outputs.json"
DATA_STAGES = ("concepts", "captions", "balanced", "images", "shards")


def stage_outputs(store: RunStore) -> dict[str, dict]:
    """Each data stage's version and the sha256 of each tar it committed and of each Parquet table's rows."""
    return {stage: {"version": STAGES[stage].version,
                    "outputs": {o: rows_sha256(store.read_bytes(stage, o)) if o.endswith(".parquet") else r["sha256"]
                                for o, r in sorted(store.records(stage).items()) if o.endswith((".parquet", ".tar"))}}
            for stage in DATA_STAGES}


def rows_sha256(data: bytes) -> str:
    """The sha256 of a Parquet file's schema and rows, whatever its row groups and compression."""
    table = pq.read_table(pa.BufferReader(data)).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(stage_outputs(RunStore(sys.argv[1], sys.argv[2])), indent=1, sort_keys=True) + "\n")
