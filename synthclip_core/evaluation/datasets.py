"""Evaluation datasets from disk or an object store, in the layouts people already have.

Labelled images (zero-shot, linear probe): an ImageNet-style folder (``PATH/<class>/<image>``), a
Parquet file or folder (an image-bytes column and a ``label`` column), or webdataset tars (an image
and ``cls``). Captioned images (retrieval): a folder with ``captions.jsonl`` (``{"image": ...,
"captions": [...]}`` per line), Parquet (image and ``caption``/``captions``), or webdataset tars
(an image and ``txt``). Images from folders are read lazily; broken ones are skipped at encoding
and listed in the report.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

import fsspec

from ..errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
_IMAGE_COLUMNS = ("image", "jpg", "png", "image_bytes", "webp")
_IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")


class DatasetError(UserError, ValueError):
    """An evaluation dataset that cannot be used as given; the message says why and where."""


@dataclass
class LabelledImages:
    name: str
    images: list  # bytes, or a path / URI read lazily
    labels: list[int]
    classnames: list[str]
    ids: list[str]  # where each image came from, for the list of skipped ones


@dataclass
class CaptionedImages:
    name: str
    images: list
    captions: list[list[str]]
    ids: list[str]


def _fs(path: str):
    return fsspec.core.url_to_fs(path)


def _kind(path: str) -> str:
    fs, p = _fs(path)
    if not fs.exists(p):
        raise DatasetError(f"evaluation data not found: {path}")
    if fs.isfile(p):
        for suffix, kind in ((".parquet", "parquet"), (".tar", "webdataset")):
            if p.endswith(suffix):
                return kind
        raise DatasetError(f"{path}: expected a folder, a .parquet or a .tar file")
    names = [posixpath.basename(e) for e in fs.ls(p, detail=False)]
    if any(n.endswith(".tar") for n in names):
        return "webdataset"
    if any(n.endswith(".parquet") for n in names):
        return "parquet"
    return "folder"


def check(path: str, task: str, classes: str | None = None) -> None:
    """Cheap checks before any model loads: the data exists and has the layout the task needs
    (folders are listed; Parquet and tars are read only by the task itself)."""
    kind = _kind(path)
    if kind != "folder":
        return
    if task == "retrieval":
        fs, p = _fs(path)
        if not fs.exists(posixpath.join(p, "captions.jsonl")):
            raise DatasetError(f"{path}: a retrieval folder needs captions.jsonl ({{\"image\": ..., \"captions\": [...]}} per line)")
    else:
        _labelled_folder(path, classes)


def load_labelled(path: str, classes: str | None = None) -> LabelledImages:
    kind = _kind(path)
    if kind == "folder":
        return _labelled_folder(path, classes)
    rows = _parquet_rows(path) if kind == "parquet" else _tar_rows(path)
    key = "label" if kind == "parquet" else "cls"
    if not rows or key not in rows[0]:
        raise DatasetError(f"{path}: no '{key}' labels in the {kind} samples")
    raw = [r[key] for r in rows]
    if all(isinstance(v, str) for v in raw) and classes is None:
        names = sorted(set(raw))
        labels = [names.index(v) for v in raw]
    else:
        labels = [int(v) for v in raw]
        names = _classnames(classes, path, n=max(labels) + 1)
    return LabelledImages(_name(path), [r["image"] for r in rows], labels, names, [r["id"] for r in rows])


def load_captioned(path: str) -> CaptionedImages:
    kind = _kind(path)
    if kind == "folder":
        fs, p = _fs(path)
        index = posixpath.join(p, "captions.jsonl")
        if not fs.exists(index):
            raise DatasetError(f"{path}: a retrieval folder needs captions.jsonl ({{\"image\": ..., \"captions\": [...]}} per line)")
        images, captions, ids = [], [], []
        for n, line in enumerate(fs.cat_file(index).decode().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                texts = entry.get("captions") or [entry["caption"]]
                image = entry["image"]
            except (ValueError, KeyError) as exc:
                raise DatasetError(f"{path}/captions.jsonl line {n}: expected image and caption(s) ({exc})") from None
            images.append(_uri(fs, posixpath.join(p, image)))
            captions.append([str(t) for t in (texts if isinstance(texts, list) else [texts])])
            ids.append(image)
        return CaptionedImages(_name(path), images, captions, ids)
    rows = _parquet_rows(path) if kind == "parquet" else _tar_rows(path)
    out = CaptionedImages(_name(path), [], [], [])
    for r in rows:
        texts = r.get("captions") or r.get("caption") or r.get("txt")
        if texts is None:
            raise DatasetError(f"{path}: sample {r['id']} has no caption")
        out.images.append(r["image"])
        out.captions.append([str(t) for t in texts] if isinstance(texts, list) else [str(texts)])
        out.ids.append(r["id"])
    return out


def _uri(fs, path: str) -> str:
    from fsspec.implementations.local import LocalFileSystem

    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


def _name(path: str) -> str:
    return posixpath.basename(path.rstrip("/")) or path


def _labelled_folder(path: str, classes: str | None) -> LabelledImages:
    fs, p = _fs(path)
    folders = sorted(e["name"] for e in fs.ls(p, detail=True) if e["type"] == "directory")
    if not folders:
        raise DatasetError(f"{path}: no class folders (expected {path}/<class>/<image>)")
    images, labels, ids = [], [], []
    for label, folder in enumerate(folders):
        for file in sorted(fs.find(folder)):
            if file.lower().endswith(IMAGE_EXTENSIONS):
                images.append(_uri(fs, file))
                labels.append(label)
                ids.append(posixpath.relpath(file, p))
    if not images:
        raise DatasetError(f"{path}: the class folders hold no images ({', '.join(IMAGE_EXTENSIONS)})")
    names = [posixpath.basename(f) for f in folders]
    return LabelledImages(_name(path), images, labels, _classnames(classes, path, n=len(names), folders=names), ids)


def _classnames(classes: str | None, path: str, n: int, folders: list[str] | None = None) -> list[str]:
    """Class names: the folder names, open_clip's ImageNet names, or a file (lines, a JSON list, or a
    JSON mapping from folder name to class name)."""
    if classes is None:
        if folders is None:
            raise DatasetError(f"{path}: integer labels need class names (--classes FILE or imagenet)")
        return [f.replace("_", " ") for f in folders]
    if classes == "imagenet":
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        names = list(IMAGENET_CLASSNAMES)
    else:
        fs, p = _fs(classes)
        if not fs.exists(p):
            raise DatasetError(f"class names file not found: {classes}")
        text = fs.cat_file(p).decode()
        data = json.loads(text) if classes.endswith(".json") else [ln.strip() for ln in text.splitlines() if ln.strip()]
        if isinstance(data, dict):
            if folders is None:
                raise DatasetError(f"{classes}: a mapping of folder names needs a folder dataset")
            missing = [f for f in folders if f not in data]
            if missing:
                raise DatasetError(f"{classes}: no name for class folder(s) {missing[:5]}")
            return [str(data[f]) for f in folders]
        names = [str(x) for x in data]
    if len(names) < n:
        raise DatasetError(f"{path}: {n} classes but only {len(names)} class names in {classes}")
    return names[:n] if folders is not None else names


def _parquet_rows(path: str) -> list[dict]:
    import pyarrow.parquet as pq

    fs, p = _fs(path)
    files = [p] if fs.isfile(p) else sorted(f for f in fs.find(p) if f.endswith(".parquet"))
    rows = []
    for file in files:
        table = pq.read_table(file, filesystem=fs)
        column = next((c for c in _IMAGE_COLUMNS if c in table.column_names), None)
        if column is None:
            raise DatasetError(f"{file}: no image column (one of {', '.join(_IMAGE_COLUMNS)})")
        for i, row in enumerate(table.to_pylist()):
            image = row.pop(column)
            if isinstance(image, dict):  # HF datasets' {"bytes": ..., "path": ...}
                image = image.get("bytes")
            rows.append({**row, "image": image or b"", "id": f"{posixpath.basename(file)}#{i}"})
    return rows


def _tar_rows(path: str) -> list[dict]:
    from ..training.data import iter_shard_samples

    fs, p = _fs(path)
    files = [p] if fs.isfile(p) else sorted(f for f in fs.find(p) if f.endswith(".tar"))
    rows = []
    for sample in iter_shard_samples([_uri(fs, f) for f in files]):
        key = next((k for k in _IMAGE_KEYS if k in sample), None)
        row = {"id": sample["__key__"], "image": sample.get(key, b"") if key else b""}
        if "cls" in sample:
            row["cls"] = int(sample["cls"].decode().strip())
        if "txt" in sample:
            row["txt"] = sample["txt"].decode("utf-8")
        rows.append(row)
    return rows
