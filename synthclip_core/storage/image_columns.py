"""Image columns as Hugging Face ``datasets`` stores them, so its readers show images, not bytes.

On disk an image column is ``struct<bytes: binary, path: string>`` (the layout of ``datasets``'
``Image`` feature), and the file's ``huggingface`` metadata names the column an ``Image``:
``datasets.load_dataset("parquet", ...)`` then decodes it to pictures, while pyarrow, pandas and
DuckDB read a plain struct (``jpg.bytes``). In memory, every stage works with the bytes alone:
:func:`as_bytes` turns either layout (this one, or the plain binary column of older runs) back.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

HF_KEY = b"huggingface"
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def as_struct(table: pa.Table, column: str, names: pa.ChunkedArray) -> pa.Table:
    """``table`` with its binary ``column`` stored as an Image struct whose path is ``names``."""
    position = table.schema.get_field_index(column)
    images = pa.chunked_array([
        pa.StructArray.from_arrays([data, path], fields=list(IMAGE_TYPE))
        for data, path in zip(table.column(column).chunks, names.chunks)
    ] if table.num_rows else [], type=IMAGE_TYPE)
    return table.set_column(position, pa.field(column, IMAGE_TYPE), images)


def as_bytes(table: pa.Table, column: str) -> pa.Table:
    """``table`` with ``column`` as plain binary, whether it was stored as an Image struct or not."""
    position = table.schema.get_field_index(column)
    if position < 0 or not pa.types.is_struct(table.schema.field(position).type):
        return table
    data = pc.struct_field(table.column(column), "bytes") if table.num_rows else pa.chunked_array([], pa.binary())
    return table.set_column(position, pa.field(column, pa.binary()), data)


def features_metadata(columns: list[str]) -> dict[bytes, bytes]:
    """The ``huggingface`` schema metadata naming ``columns`` as images (other columns are
    inferred by ``datasets`` from their Arrow types)."""
    features = {name: {"_type": "Image"} for name in columns}
    return {HF_KEY: json.dumps({"info": {"features": features}}).encode()}
