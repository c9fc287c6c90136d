"""Is this file a whole, readable output of its kind? By its name, read to the end.

The store asks before it adopts a placed file it did not write, and ``synthclip verify`` asks of
every committed output. Every check reads the whole file (a truncated tail is damage too) and
none unpickles anything: a checkpoint's zip members are checked against their CRCs.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile


def problem(name: str, data: bytes) -> str | None:
    """Why ``data`` is not a readable output named ``name``, or None when it is (or when the kind
    has no check: then only its sha256 can vouch for it)."""
    check = _CHECKS.get(name.rsplit(".", 1)[-1].lower())
    if check is None:
        return None
    try:
        return check(data)
    except Exception as exc:  # any failure to read is the answer
        return f"unreadable {name.rsplit('.', 1)[-1]} ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"


def _parquet(data: bytes) -> str | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(pa.BufferReader(data))
    if b"synthclip.schema" not in (table.schema.metadata or {}):
        return "a Parquet file without this platform's schema"
    return None


def _tar(data: bytes) -> str | None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = tar.getmembers()
        for member in members:
            if member.isfile():
                tar.extractfile(member).read()
    return None if members else "an empty tar"


def _json(data: bytes) -> str | None:
    json.loads(data)
    return None


def _jsonl(data: bytes) -> str | None:
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            json.loads(line)
    return None


def _png(data: bytes) -> str | None:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
    return None


def _torch(data: bytes) -> str | None:
    """torch.save's zip format: every member there and matching its CRC (nothing unpickled)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        bad = archive.testzip()
    return f"a checkpoint whose member {bad} fails its CRC" if bad else None


def _text(data: bytes) -> str | None:
    data.decode("utf-8")
    return None


_CHECKS = {"parquet": _parquet, "tar": _tar, "json": _json, "jsonl": _jsonl, "png": _png, "pt": _torch, "bin": _torch,
           "md": _text, "txt": _text}
