"""Evaluation sets in CLIP_benchmark's webdataset layout, so that ``clip_benchmark eval --dataset
wds/NAME --dataset_root DIR`` scores any checkpoint on exactly the data a run's report used.

One folder per dataset: ``test/0.tar ... test/nshards.txt`` (and ``train/`` for a linear probe),
each sample ``{key}.jpg`` (or ``.png``/``.webp``, the image's own bytes, never re-encoded) with a
``.cls`` (the class index, zero-shot and linear probe) or a ``.txt`` (the image's captions, one a
line, retrieval); beside them ``classnames.txt`` and ``zeroshot_classification_templates.txt``
(``{c}`` for the class name), or ``dataset_type.txt`` holding ``retrieval``. Shards are written as
the samples come, so a large held-out split never sits in memory.
"""

from __future__ import annotations

import io
import posixpath
from typing import Iterable

import fsspec
import webdataset as wds

from .datasets import DatasetError

PER_SHARD = 1000


def extension(image: bytes) -> str:
    """The webdataset extension CLIP_benchmark decodes for these bytes (it reads jpg, png, webp)."""
    if image[:2] == b"\xff\xd8":
        return "jpg"
    if image[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return "webp"
    raise DatasetError(f"an image that is not a JPEG, PNG or WebP (starts {image[:8]!r}): CLIP_benchmark cannot read it")


def template_lines(templates: list) -> list[str]:
    """Zero-shot templates as CLIP_benchmark formats them: ``{c}`` for the class name (open_clip's
    named sets are functions; a file's lines hold ``{}``)."""
    return [t("{c}") if callable(t) else t.replace("{}", "{c}") for t in templates]


class SplitWriter:
    """Writes ``(image, fields)`` samples as ``out/split/N.tar`` shards of ``per_shard`` as they
    come, then ``nshards.txt`` on :meth:`close`. ``fields`` maps an extension (``cls``, ``txt``)
    to its value."""

    def __init__(self, out: str, split: str, per_shard: int = PER_SHARD):
        self.out, self.split, self.per_shard = out, split, per_shard
        self.fs, base = fsspec.core.url_to_fs(out)
        self.folder = posixpath.join(base, split)
        self.fs.makedirs(self.folder, exist_ok=True)
        self.samples, self.shards, self._pending = 0, 0, []

    def add(self, image: bytes, fields: dict) -> None:
        self._pending.append({"__key__": f"s{self.samples:08d}", extension(image): image, **fields})
        self.samples += 1
        if len(self._pending) == self.per_shard:
            self._flush()

    def close(self) -> int:
        """Write the last shard and ``nshards.txt``; returns the samples written."""
        self._flush()
        if not self.samples:
            raise DatasetError(f"{self.out}: no samples to write for the {self.split} split")
        self.fs.pipe_file(posixpath.join(self.folder, "nshards.txt"), f"{self.shards}\n".encode())
        return self.samples

    def _flush(self) -> None:
        if not self._pending:
            return
        handle = io.BytesIO()
        with wds.TarWriter(handle, mtime=0.0) as writer:
            for sample in self._pending:
                writer.write(sample)
        self.fs.pipe_file(posixpath.join(self.folder, f"{self.shards}.tar"), handle.getvalue())
        self.shards, self._pending = self.shards + 1, []


def write_split(out: str, split: str, samples: Iterable[tuple[bytes, dict]], per_shard: int = PER_SHARD) -> int:
    """All of ``samples`` as one split (see :class:`SplitWriter`); returns how many."""
    writer = SplitWriter(out, split, per_shard)
    for image, fields in samples:
        writer.add(image, fields)
    return writer.close()


def write_classification_info(out: str, classnames: list[str], templates: list) -> None:
    """``classnames.txt`` and ``zeroshot_classification_templates.txt``, one a line."""
    bad = [c for c in classnames if "\n" in c or not c.strip()]
    if bad:
        raise DatasetError(f"{out}: class names must be one non-empty line each (e.g. {bad[0]!r})")
    fs, base = fsspec.core.url_to_fs(out)
    fs.makedirs(base, exist_ok=True)
    fs.pipe_file(posixpath.join(base, "classnames.txt"), "".join(f"{c}\n" for c in classnames).encode())
    fs.pipe_file(posixpath.join(base, "zeroshot_classification_templates.txt"),
                 "".join(f"{t}\n" for t in template_lines(templates)).encode())


def write_retrieval_info(out: str) -> None:
    fs, base = fsspec.core.url_to_fs(out)
    fs.makedirs(base, exist_ok=True)
    fs.pipe_file(posixpath.join(base, "dataset_type.txt"), b"retrieval\n")


def captions_field(captions: list[str]) -> str:
    """An image's captions as its ``.txt``, one a line; a caption with a line break would read as two."""
    broken = next((c for c in captions if "\n" in c), None)
    if broken is not None:
        raise DatasetError(f"a caption with a line break ({broken!r}): CLIP_benchmark reads one caption a line")
    return "\n".join(captions)
