"""The micro run's data outputs by stage version (``tests/fixtures/stage-outputs.json``): the guard
of the rule that a change to what a stage writes bumps the stage's version.

A tar is known by its bytes (what open_clip reads); a Parquet table by its rows and schema as the
stages read them (image columns as bytes, no file metadata, no derived columns), so a change of
physical layout alone (row groups, compression, the storage layout of an image column, a hash of
a column it has) keeps the stage's version.

The tiny models are built on each machine, and the tiny LLM trained on another CPU has other
weights (its float sums differ), so it writes other captions and every stage after has other
outputs: the file holds one entry per set of tiny models (their content hashes; no builder
writes its own build time into the model, so two builds of the same weights are one entry). After bumping a
version, ``python tests/golden.py ROOT RUN_ID`` on a finished micro run replaces every entry by
this machine's; ``--add`` adds this machine's beside the others (only for unchanged code).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from synthclip_core.pipeline import STAGES
from synthclip_core.storage import image_columns
from synthclip_core.storage.schemas import DERIVED, declared_kind
from synthclip_core.storage.store import RunStore

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
    table = pq.read_table(pa.BufferReader(data))
    derived = DERIVED.get(declared_kind(table.schema) or "", ())
    table = table.drop_columns([c for c in derived if c in table.column_names])  # the same data: schemas.DERIVED
    table = image_columns.as_bytes(table, "jpg").replace_schema_metadata(None).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


MODEL_FREE = ("concepts",)  # stages whose outputs no tiny model shapes


def models_key() -> str:
    """This machine's tiny LLM and SD, by content: which entry of the file holds its outputs."""
    from synthclip_core.fingerprint import model_identity

    return "/".join(model_identity(name, None)["content_sha256"][:16] for name in ("tiny/llm", "tiny/sd"))


def load() -> dict[str, dict]:
    """Per set of tiny models, each data stage's version and outputs."""
    return json.loads(GOLDEN.read_text())["by_models"]


def write(store: RunStore, add: bool) -> None:
    entries = load() if add else {}
    entries[models_key()] = stage_outputs(store)
    GOLDEN.write_text(json.dumps({"by_models": entries}, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    write(RunStore(sys.argv[1], sys.argv[2]), add="--add" in sys.argv[3:])
