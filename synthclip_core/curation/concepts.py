"""Concept banks: load, normalise, de-duplicate, identify.

A bank is a list of visual concepts (MetaCLIP's ``metadata.json`` holds ~500k). Loading keeps the
original order, normalises each entry (Unicode NFC, collapsed whitespace), drops (and counts)
empties, exact duplicates, entries with control characters and entries too long to be a concept,
and gives every concept an id derived from its text alone.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator

import fsspec
import pyarrow as pa

from ..errors import ConceptBankError
from ..ids import concept_id, unit_draw

BUILTIN_PREFIX = "builtin:"
MAX_CONCEPT_CHARS = 200  # MetaCLIP's longest entries (Wikipedia titles) stay well below this


@dataclass
class ConceptBank:
    concepts: list[str]
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count

    def table(self) -> pa.Table:
        return pa.table({
            "concept_id": [concept_id(c) for c in self.concepts],
            "concept": self.concepts,
            "bank_index": list(range(len(self.concepts))),
        })


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def load_bank(source: str, column: str | None = None, limit: int | None = None, seed: int = 0,
              num_shards: int = 1, shard_index: int = 0) -> ConceptBank:
    """Read a bank from ``builtin:NAME`` or an fsspec URI (.txt, .json, .csv, .parquet).

    ``num_shards``/``shard_index`` keep every n-th concept (by position after de-duplication), and
    ``limit`` then keeps a deterministic sample of that many.
    """
    raw = _read_raw(source, column)
    seen: set[str] = set()
    kept: list[str] = []
    dropped = {"empty": 0, "duplicate": 0, "control_characters": 0, "too_long": 0}
    for entry in raw:
        text = normalise(entry)
        if not text:
            dropped["empty"] += 1
        elif any(unicodedata.category(ch) == "Cc" for ch in text):  # NUL, ESC...: a broken export, not a concept
            dropped["control_characters"] += 1
        elif len(text) > MAX_CONCEPT_CHARS:  # a paragraph, not a concept; it would swamp every prompt
            dropped["too_long"] += 1
        elif text in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(text)
            kept.append(text)
    dropped = {reason: n for reason, n in dropped.items() if n}
    if not kept:
        raise ConceptBankError(f"concept bank {source}: no concepts left after normalisation (dropped: {dropped})")
    if num_shards > 1:
        dropped["other_shards"] = len(kept) - len(kept[shard_index::num_shards])
        kept = kept[shard_index::num_shards]
    if limit is not None and limit < len(kept):
        chosen = set(sorted(kept, key=lambda c: unit_draw(seed, "bank-sample", c))[:limit])
        dropped["not_sampled"] = len(kept) - limit
        kept = [c for c in kept if c in chosen]
    return ConceptBank(kept, dropped)


_read_once: ContextVar[dict | None] = ContextVar("bank_reads", default=None)


@contextmanager
def reading_banks_once() -> Iterator[None]:
    """Within the block each bank file is read once, however often it is loaded (opening a run
    pins, sizes and checks its bank); outside it every load reads the file again."""
    token = _read_once.set({})
    try:
        yield
    finally:
        _read_once.reset(token)


def _read_raw(source: str, column: str | None) -> list[str]:
    cache = _read_once.get()
    if cache is None:
        return _read_entries(source, column)
    if (source, column) not in cache:
        cache[(source, column)] = _read_entries(source, column)
    return cache[(source, column)]


def _read_entries(source: str, column: str | None) -> list[str]:
    if source.startswith(BUILTIN_PREFIX):
        return _builtin(source[len(BUILTIN_PREFIX):])
    suffix = source.rsplit(".", 1)[-1].lower() if "." in source.rsplit("/", 1)[-1] else ""
    if suffix not in {"txt", "json", "csv", "parquet"}:
        raise ConceptBankError(f"concept bank {source}: unsupported file type (use .txt, .json, .csv or .parquet)")
    try:
        with fsspec.open(source, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ConceptBankError(f"concept bank not found: {source}") from None
    except OSError as exc:
        raise ConceptBankError(f"concept bank {source}: cannot be read ({exc})") from None
    if suffix == "parquet":
        return _parquet(source, data, column)
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark would glue itself to the first concept
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConceptBankError(f"concept bank {source}: not UTF-8 (line {line}, byte {exc.start})") from None
    if suffix == "txt":
        # one concept per line: split at line feeds only (str.splitlines also splits at \x1c-\x1e,
        # \x85 and U+2028/9, which may sit inside an entry); a \r before one is white space, and the
        # last line feed ends the last line
        return text.removesuffix("\n").split("\n")
    if suffix == "json":
        return _json(source, text)
    return _csv(source, text, column)


def _json(source: str, text: str) -> list[str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConceptBankError(f"concept bank {source}: invalid JSON at line {exc.lineno}, column {exc.colno}") from None
    if not isinstance(data, list):
        raise ConceptBankError(f"concept bank {source}: expected a JSON list of strings, got {type(data).__name__}")
    for i, item in enumerate(data):
        if not isinstance(item, str):
            raise ConceptBankError(f"concept bank {source}: entry {i} is {type(item).__name__}, expected a string")
    return data


def _csv(source: str, text: str, column: str | None) -> list[str]:
    reader = csv.DictReader(io.StringIO(text))
    name = column or "concept"
    if reader.fieldnames is None or name not in reader.fieldnames:
        raise ConceptBankError(f"concept bank {source}: no column {name!r} (columns: {reader.fieldnames})")
    return [row[name] or "" for row in reader]


def _parquet(source: str, data: bytes, column: str | None) -> list[str]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except pa.ArrowInvalid as exc:
        raise ConceptBankError(f"concept bank {source}: not a Parquet file ({exc})") from None
    name = column or "concept"
    if name not in table.column_names:
        raise ConceptBankError(f"concept bank {source}: no column {name!r} (columns: {table.column_names})")
    if not pa.types.is_string(table.schema.field(name).type) and not pa.types.is_large_string(table.schema.field(name).type):
        raise ConceptBankError(f"concept bank {source}: column {name!r} is {table.schema.field(name).type}, expected strings")
    return [v or "" for v in table.column(name).to_pylist()]


def _builtin(name: str) -> list[str]:
    if name == "imagenet-1k":
        from open_clip.zero_shot_metadata import (
            IMAGENET_CLASSNAMES,  # shipped with open_clip
        )

        return list(IMAGENET_CLASSNAMES)
    raise ConceptBankError(f"unknown built-in concept bank {name!r} (known: imagenet-1k)")
