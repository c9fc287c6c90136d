"""Reading committed Parquet outputs as tables, and the manifests that index a stage's outputs."""

from __future__ import annotations

import pyarrow as pa

from ..errors import RunStateError
from .schemas import from_parquet_bytes, read_columns, read_where, table_from_rows, to_parquet_bytes
from .store import RunStore

MANIFEST = "manifest.parquet"


def read_table(store: RunStore, stage: str, output: str, kind: str | None = None,
               columns: list[str] | None = None) -> pa.Table:
    """A committed Parquet output of schema ``kind`` (default: the stage's name), optionally only
    ``columns``; a column the file lacks is an error naming the file."""
    table = from_parquet_bytes(store.read_bytes(stage, output), kind or stage, where=f"{stage}/{output}")
    if columns is None:
        return table
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise RunStateError(f"{stage}/{output} has no column {', '.join(missing)} (it has {', '.join(table.column_names)})")
    return table.select(columns)


def read_rows(store: RunStore, stage: str, output: str, column: str, values: set[str], columns: list[str]) -> pa.Table:
    """The rows of a partition whose ``column`` is one of ``values``, reading the row groups that
    hold them only (see :func:`synthclip_core.storage.schemas.read_where`)."""
    with store.open(stage, output) as handle:
        return read_where(handle, stage, column, values, columns, where=f"{stage}/{output}")


def read_narrow(store: RunStore, stage: str, output: str, columns: list[str], kind: str | None = None) -> pa.Table | None:
    """Some columns of a committed Parquet output, reading those columns' bytes only (a run's
    whole-run step over narrow columns of wide image tables); None where the file lacks one."""
    with store.open(stage, output) as handle:
        return read_columns(handle, kind or stage, columns, where=f"{stage}/{output}")


def write_manifest(store: RunStore, stage: str, outputs: list[str], base: dict) -> None:
    """Commit ``<stage>/manifest.parquet``: each output's rows, bytes and sha256 from its commit
    record, so a reader of thousands of outputs reads one file, not every record."""
    records = store.records(stage, outputs)
    rows = [{"output": o, "rows": r.get("rows", 0), "bytes": r["bytes"], "sha256": r["sha256"]} for o, r in records.items()]
    store.commit(stage, MANIFEST, to_parquet_bytes(table_from_rows(rows, "manifest"), "manifest"), base)


def output_index(store: RunStore, stage: str, outputs: list[str], suffix: str = "") -> dict[str, dict]:
    """Per output of a finished stage ending in ``suffix``: ``rows``, ``bytes`` and ``sha256``, from
    its manifest when it wrote one, else from the outputs' commit records."""
    wanted = [o for o in outputs if o.endswith(suffix) and o != MANIFEST]
    if MANIFEST not in outputs:
        return store.records(stage, wanted)
    table = read_table(store, stage, MANIFEST, "manifest")
    index = {row.pop("output"): row for row in table.to_pylist()}
    return {o: index[o] for o in wanted}
