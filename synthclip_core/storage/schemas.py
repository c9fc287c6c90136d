"""Each stage's Parquet schema, declared once, versioned in the file metadata, checked on read."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import RunStateError
from . import image_columns

_KEY = b"synthclip.schema"

# The per-sample Parquet beside each shard, as img2dataset writes NNNNN.parquet beside NNNNN.tar.
SHARD_METADATA = [
    ("url", pa.string()),  # null: no image of a synthetic run was fetched from anywhere
    ("caption", pa.string()),
    ("image_id", pa.string()),  # the sample's own columns, as img2dataset's save_additional_columns
    ("caption_id", pa.string()),
    ("concept_id", pa.string()),
    ("seed", pa.int64()),
    ("model", pa.string()),
    ("key", pa.string()),
    ("status", pa.string()),  # "success": a sample that failed to render never reaches a shard
    ("error_message", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("original_width", pa.int32()),  # as rendered: synthetic images are stored at their own size
    ("original_height", pa.int32()),
    ("sha256", pa.string()),  # of the jpg bytes in the tar
]

SCHEMAS: dict[str, tuple[int, pa.Schema]] = {
    "concepts": (1, pa.schema([
        ("concept_id", pa.string()),
        ("concept", pa.string()),
        ("bank_index", pa.int64()),  # position in the normalised bank, for stable order
    ])),
    "unsafe_concepts": (1, pa.schema([  # concepts the safety screen dropped before captioning
        ("concept", pa.string()),
        ("reason", pa.string()),  # "blocklist: TERM" or "classifier: LABEL SCORE"
    ])),
    "captions": (2, pa.schema([
        ("caption_id", pa.string()),
        ("concept_id", pa.string()),
        ("concept", pa.string()),
        ("template", pa.string()),
        ("index", pa.int32()),
        ("seed", pa.int64()),
        ("model", pa.string()),  # name@revision (or @content hash for a local model)
        ("backend", pa.string()),
        ("raw", pa.string()),  # the model's whole answer, kept for audits
        ("tokens", pa.int32()),  # generated tokens
        ("caption", pa.string()),  # "" when rejected (dropped by balancing)
        ("reject_reason", pa.string()),  # null when kept; see synthclip_core.captioning.cleaning
        ("fixes", pa.list_(pa.string())),
    ])),
    "rewrites": (1, pa.schema([  # the rewrites stage's rows: k per train caption, dropped ones with their reason
        ("rewrite_id", pa.string()),
        ("caption_id", pa.string()),
        ("concept_id", pa.string()),
        ("concept", pa.string()),
        ("template", pa.string()),
        ("k", pa.int32()),
        ("seed", pa.int64()),
        ("model", pa.string()),
        ("backend", pa.string()),
        ("raw", pa.string()),
        ("tokens", pa.int32()),
        ("rewrite", pa.string()),  # "" when dropped
        ("reject_reason", pa.string()),  # null when it counts; cleaning's reasons, "not_naming" or "duplicate"
        ("fixes", pa.list_(pa.string())),
    ])),
    "caption_coverage": (1, pa.schema([
        ("concept_id", pa.string()),
        ("concept", pa.string()),
        ("written", pa.int64()),
        ("kept", pa.int64()),  # not rejected by cleaning
        ("naming", pa.int64()),  # kept and containing the concept (MetaCLIP matching)
    ])),
    "balanced": (1, pa.schema([
        ("caption_id", pa.string()),
        ("concept_id", pa.string()),  # the concept the caption was written for
        ("caption", pa.string()),
        ("matched_concept_ids", pa.list_(pa.string())),
        ("split", pa.string()),  # "train", "eval" or "holdout" (held-out concepts), fixed here, before export
    ])),
    "balanced_matches": (1, pa.schema([  # balancing's first pass, one per caption partition
        ("caption_id", pa.string()),
        ("concept_id", pa.string()),
        ("caption", pa.string()),
        ("empty", pa.bool_()),  # rejected by caption cleaning
        ("text_hash", pa.int64()),
        ("matched", pa.list_(pa.int32())),  # indices into the run's concept table
    ])),
    "balanced_counts": (1, pa.schema([
        ("concept_id", pa.string()),
        ("count_before", pa.int64()),
        ("keep_probability", pa.float64()),
    ])),
    "balanced_duplicates": (1, pa.schema([
        ("partition", pa.int32()),  # index of the caption partition
        ("row", pa.int32()),
    ])),
    "balanced_stats": (2, pa.schema([
        ("concept_id", pa.string()),
        ("concept", pa.string()),
        ("count_before", pa.int64()),
        ("expected_after", pa.float64()),
        ("count_after", pa.int64()),
        ("keep_probability", pa.float64()),
    ])),
    "topup_requests": (1, pa.schema([  # the captions a closed-loop round asks for, in the order they are kept
        ("concept_id", pa.string()),
        ("concept", pa.string()),
        ("index", pa.int32()),  # continues after the captions the concept had (new seeds)
    ])),
    "topup_coverage": (1, pa.schema([  # per concept after a closed-loop round
        ("concept_id", pa.string()),
        ("kept", pa.int64()),  # kept captions naming it (balanced and every round so far)
        ("asked", pa.int64()),  # captions written for it so far (the next index)
    ])),
    "images": (4, pa.schema([  # 3: jpg stored in Hugging Face's Image layout (image_columns); 4: phash
        ("image_id", pa.string()),
        ("caption_id", pa.string()),
        ("concept_id", pa.string()),
        ("caption", pa.string()),
        ("matched_concept_ids", pa.list_(pa.string())),
        ("split", pa.string()),
        ("index", pa.int32()),
        ("seed", pa.int64()),  # the seed the stored pixels came from (a re-render's, if one was needed)
        ("rerendered", pa.bool_()),
        ("model", pa.string()),  # name@revision (or @content hash for a local model)
        ("scheduler", pa.string()),
        ("steps", pa.int32()),
        ("guidance_scale", pa.float32()),
        ("jpg", pa.binary()),
        ("format", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("sha256", pa.string()),
        ("phash", pa.int64()),  # 64-bit DCT perceptual hash of the stored JPEG: near-duplicates without reading images
    ])),
    "shard_metadata": (1, pa.schema(SHARD_METADATA)),
    "shard_metadata_texts": (1, pa.schema([  # the same, for a run with rewrites: each sample's other texts
        *SHARD_METADATA,
        ("rewrites", pa.list_(pa.string())),  # the caption's rewrites that count (rewrites/part-*.parquet), k order
    ])),
    "manifest": (1, pa.schema([  # a stage's outputs as their records say, for readers that need them all
        ("output", pa.string()),
        ("rows", pa.int64()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
    ])),
    "eval_coverage": (2, pa.schema([  # per concept with held-out images: training exposure vs accuracy
        ("concept_id", pa.string()),
        ("concept", pa.string()),
        ("train_captions", pa.int64()),
        ("eval_images", pa.int64()),
        ("top1", pa.float64()),
        ("held_out", pa.bool_()),
        ("words_trained", pa.float64()),  # share of its words that trained concepts have (2: added)
    ])),
    "card_sample": (1, pa.schema([  # the dataset card's sample of one image partition, embedded by its scorer
        ("image_id", pa.string()),
        ("concept_id", pa.string()),
        ("split", pa.string()),
        ("caption", pa.string()),
        ("image_embedding", pa.list_(pa.float32())),  # unit vectors
        ("text_embedding", pa.list_(pa.float32())),
        ("thumbnail", pa.binary()),  # a small JPEG, for the card's contact sheets
    ])),
    "card_concepts": (1, pa.schema([  # per sampled concept: what the card measured
        ("concept_id", pa.string()),
        ("concept", pa.string()),
        ("count_before", pa.int64()),  # captions matching it before balancing (its frequency)
        ("count_after", pa.int64()),
        ("images", pa.int64()),  # sampled
        ("image_vendi", pa.float64()),
        ("caption_vendi", pa.float64()),
        ("alignment", pa.float64()),  # mean CLIP score with its own captions
        ("shuffled", pa.float64()),  # mean CLIP score with other concepts' captions: the floor
        ("held_out", pa.bool_()),
    ])),
}
# What files of a schema may name besides its current name and version: an older version that
# differs in its storage layout only, or the schema's name before the stage was renamed.
READABLE = {"images": ("images/2", "images/3"), "balanced_matches": ("balance_matches/1",), "balanced_counts": ("balance_counts/1",),
            "balanced_duplicates": ("balance_duplicates/1",), "balanced_stats": ("balance_stats/2",)}
# Columns computed from other columns of the same row (a hash of the JPEG): adding one adds no data, so a
# stage that starts writing one keeps its version, and runs that began without it continue (its readers
# compute it where a file has not got it).
DERIVED = {"images": ("phash",)}
# Binary image columns stored as Hugging Face Image structs, and the column each file's name comes from.
IMAGES = {"images": ("jpg", "image_id", "format")}


def table_from_rows(rows: list[dict], kind: str) -> pa.Table:
    """Rows as a table of ``kind``'s schema (an empty list gives an empty table, not a schemaless one)."""
    return pa.Table.from_pylist(rows, schema=SCHEMAS[kind][1])


def to_parquet_bytes(table: pa.Table, kind: str, group_by: str | None = None) -> bytes:
    """Serialise ``table`` under the declared schema of ``kind`` (columns cast, order enforced).

    With ``group_by``, each run of equal values of that column is a row group of its own, so a
    reader that wants some values only (:func:`read_where`) never reads the other rows' bytes.
    """
    version, schema = SCHEMAS[kind]
    table = table.select(schema.names).cast(schema)
    metadata = {_KEY: f"{kind}/{version}".encode()}
    if kind in IMAGES:
        column, name, suffix = IMAGES[kind]
        table = image_columns.as_struct(table, column, pc.binary_join_element_wise(table[name], table[suffix], "."))
        metadata |= image_columns.features_metadata([column])
    table = table.replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    if group_by is None:
        pq.write_table(table, sink, compression="zstd")
    else:
        with pq.ParquetWriter(sink, table.schema, compression="zstd") as writer:
            for start, stop in _runs(table, group_by):
                writer.write_table(table.slice(start, stop - start), row_group_size=max(stop - start, 1))
    return sink.getvalue().to_pybytes()


def _runs(table: pa.Table, column: str) -> list[tuple[int, int]]:
    """[start, stop) of each run of equal values of ``column``, in row order."""
    values = table.column(column).to_pylist()
    starts = [0] + [i for i in range(1, len(values)) if values[i] != values[i - 1]]
    return list(zip(starts, starts[1:] + [len(values)])) if values else [(0, 0)]


def read_where(source, kind: str, column: str, values: set, columns: list[str], where: str = "") -> pa.Table:
    """The rows of a Parquet file (a file object open for ranged reads) whose ``column`` is one of
    ``values``, with ``columns`` only. A row group whose statistics rule the values out is skipped
    unread; of the others ``column`` is read, and the rest only where it holds wanted rows. Files
    written with ``group_by`` on that column (:func:`to_parquet_bytes`) hold no others in them."""
    try:
        parquet = pq.ParquetFile(source)
        _check_kind(parquet.schema_arrow, kind, where)
        position = parquet.schema_arrow.names.index(column)
        wanted = pa.array(sorted(values), parquet.schema_arrow.field(column).type)
        pieces = []
        for group in range(parquet.num_row_groups):
            stats = parquet.metadata.row_group(group).column(position).statistics
            if stats is not None and stats.has_min_max and not any(stats.min <= v <= stats.max for v in values):
                continue
            keys = parquet.read_row_group(group, columns=[column]).column(column)
            mask = pc.is_in(keys, value_set=wanted)
            if pc.any(mask).as_py():
                pieces.append(parquet.read_row_group(group, columns=columns).filter(mask))
    except (pa.ArrowInvalid, OSError) as exc:
        raise RunStateError(f"{where or kind}: not a readable Parquet file ({exc})") from None
    schema = pa.schema([parquet.schema_arrow.field(c) for c in columns])
    return _in_memory(pa.concat_tables(pieces) if pieces else schema.empty_table(), kind)


def read_columns(source, kind: str, columns: list[str], where: str = "") -> pa.Table | None:
    """Only ``columns`` of a Parquet file (a file object open for ranged reads): the other columns'
    bytes are never read. None where the file has not got them all (made before they existed)."""
    try:
        parquet = pq.ParquetFile(source)
        _check_kind(parquet.schema_arrow, kind, where)
        if not set(columns) <= set(parquet.schema_arrow.names):
            return None
        return _in_memory(parquet.read(columns=columns), kind)
    except (pa.ArrowInvalid, OSError) as exc:
        raise RunStateError(f"{where or kind}: not a readable Parquet file ({exc})") from None


def from_parquet_bytes(data: bytes, kind: str, where: str = "") -> pa.Table:
    """Read a Parquet file written by :func:`to_parquet_bytes`, refusing any other schema."""
    try:
        table = pq.read_table(pa.BufferReader(data))
    except pa.ArrowInvalid as exc:
        raise RunStateError(f"{where or kind}: not a readable Parquet file ({exc})") from None
    _check_kind(table.schema, kind, where)
    return _in_memory(table, kind)


def _in_memory(table: pa.Table, kind: str) -> pa.Table:
    """A table as read, in the layout stages work with: no file metadata, image columns as bytes."""
    table = table.replace_schema_metadata(None)
    return image_columns.as_bytes(table, IMAGES[kind][0]) if kind in IMAGES else table


def declared_kind(schema: pa.Schema) -> str | None:
    """The schema a file of this platform declares, by its current name (None: not one of ours)."""
    found = (schema.metadata or {}).get(_KEY, b"").decode()
    return next((kind for kind, (version, _) in SCHEMAS.items() if found == f"{kind}/{version}" or found in READABLE.get(kind, ())),
                None)


def _check_kind(schema: pa.Schema, kind: str, where: str) -> None:
    """Refuse a file whose metadata names another schema (or a version not read) than ``kind``'s."""
    expected = f"{kind}/{SCHEMAS[kind][0]}"
    found = (schema.metadata or {}).get(_KEY, b"").decode()
    if found != expected and found not in READABLE.get(kind, ()):
        raise RunStateError(f"{where or kind}: schema {found or 'unknown'!r}, expected {expected!r}")
