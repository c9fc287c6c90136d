"""A run's evaluation sets for CLIP_benchmark: its held-out split (zero-shot over the run's
concepts, and retrieval), and each benchmark of ``eval.datasets``, in the layout
``clip_benchmark eval --dataset wds/NAME`` reads (:mod:`evaluation.clip_benchmark`).

The held-out sets hold what the run's ``eval`` stage scores: the same images in the same order,
the same class names and templates, each image's caption. Images the eval stage would skip as
unreadable are skipped here too, and listed.
"""

from __future__ import annotations

import posixpath
import shlex
from typing import Callable

from ..evaluation import clip_benchmark as layout
from ..evaluation.config import EvalDataset
from ..evaluation.datasets import load_captioned, load_labelled
from ..evaluation.features import read_image
from ..evaluation.templates import load_templates
from ..stages.common import read_concepts
from ..stages.eval import HELDOUT, held_out_parts, held_out_rows, held_out_templates
from ..stages.stage import RunView
from ..storage.decoding import Unreadable, open_image

Advance = Callable[[str, int, int], None]  # (dataset, done, total): image partitions, or a benchmark's samples


def export_run(run: RunView, out: str, per_shard: int = layout.PER_SHARD, advance: Advance | None = None) -> dict[str, dict]:
    """Write the run's evaluation sets under ``out``, one folder each; returns per dataset its
    folder, CLIP_benchmark task, samples and the images skipped as unreadable."""
    exported: dict[str, dict] = {}
    if run.has("images"):
        exported |= _held_out(run, out, per_shard, advance)
    for ds in run.config.eval.datasets:
        exported[ds.name] = export_dataset(ds, run.config.eval.templates, posixpath.join(out, ds.name), per_shard, advance)
    return exported


def _held_out(run: RunView, out: str, per_shard: int, advance: Advance | None) -> dict[str, dict]:
    parts = held_out_parts(run)
    concepts = read_concepts(run.store, parts["concepts"])
    names = concepts.column("concept").to_pylist()
    index = {cid: i for i, cid in enumerate(concepts.column("concept_id").to_pylist())}
    folders = {task: posixpath.join(out, f"{HELDOUT}-{task}") for task in ("zeroshot", "retrieval")}
    layout.write_classification_info(folders["zeroshot"], names, held_out_templates(run.config.eval, len(names)))
    layout.write_retrieval_info(folders["retrieval"])
    zeroshot, retrieval = (layout.SplitWriter(folders[t], "test", per_shard) for t in ("zeroshot", "retrieval"))
    skipped, image_parts = [], parts["images"]
    for done, part in enumerate(image_parts, start=1):  # progress by partition, as the stages report it
        for rows in held_out_rows(run.store, [part]):
            for row in rows.to_pylist():
                if not _decodes(row["jpg"]):  # the eval stage skips it as unreadable: so does its set here
                    skipped.append(row["image_id"])
                    continue
                zeroshot.add(row["jpg"], {"cls": index[row["concept_id"]]})
                retrieval.add(row["jpg"], {"txt": layout.captions_field([row["caption"]])})
        if advance:
            advance(HELDOUT, done, len(image_parts))
    samples = zeroshot.close()
    retrieval.close()
    return {f"{HELDOUT}-zeroshot": {"folder": folders["zeroshot"], "task": "zeroshot_classification", "samples": samples,
                                    "classes": len(names), "skipped": skipped},
            f"{HELDOUT}-retrieval": {"folder": folders["retrieval"], "task": "zeroshot_retrieval", "samples": samples,
                                     "skipped": skipped}}


def export_dataset(ds: EvalDataset, templates: str, out: str, per_shard: int = layout.PER_SHARD,
                   advance: Advance | None = None) -> dict:
    """One benchmark of ``eval.datasets`` (any layout ``synthclip eval`` reads) in CLIP_benchmark's."""
    if ds.task == "retrieval":
        data = load_captioned(ds.path)
        layout.write_retrieval_info(out)
        samples = [(data.images[i], {"txt": layout.captions_field(c)}) for i, c in enumerate(data.captions)]
        written, skipped = _write(out, "test", samples, data.ids, per_shard, ds.name, advance)
        return {"folder": out, "task": "zeroshot_retrieval", "samples": written, "skipped": skipped}
    splits = {"test": ds.path if ds.task == "zeroshot" or ds.train_path else posixpath.join(ds.path, "test")}
    if ds.task == "linear_probe":
        splits["train"] = ds.train_path or posixpath.join(ds.path, "train")
    written, skipped, classes = 0, [], None
    for split, path in splits.items():
        data = load_labelled(path, ds.classes)
        classes = classes or data.classnames
        count, missed = _write(out, split, [(data.images[i], {"cls": label}) for i, label in enumerate(data.labels)],
                               data.ids, per_shard, ds.name, advance)
        written, skipped = (count, missed) if split == "test" else (written, skipped + missed)
    layout.write_classification_info(out, classes, load_templates(ds.templates or templates))
    task = "zeroshot_classification" if ds.task == "zeroshot" else "linear_probe"
    return {"folder": out, "task": task, "samples": written, "classes": len(classes), "skipped": skipped}


def _write(out: str, split: str, samples: list[tuple], ids: list[str], per_shard: int, name: str,
           advance: Advance | None) -> tuple[int, list[str]]:
    writer, skipped = layout.SplitWriter(out, split, per_shard), []
    for done, ((image, fields), where) in enumerate(zip(samples, ids), start=1):
        data = image if isinstance(image, bytes) else _fetch(image)
        if data is not None and _decodes(data):
            writer.add(data, fields)
        else:
            skipped.append(where)
        if advance and (done % per_shard == 0 or done == len(samples)):
            advance(name, done, len(samples))
    return writer.close(), skipped


def _fetch(uri: str) -> bytes | None:
    try:
        return read_image(uri)
    except OSError:  # a missing or unreadable file: skipped, as the evaluation skips it
        return None


def _decodes(data: bytes) -> bool:
    """Whether the evaluation would read this image (it skips those PIL cannot decode)."""
    try:
        open_image(data)
        return True
    except Unreadable:
        return False


def clip_benchmark_commands(exported: dict[str, dict], model_dir: str) -> list[str]:
    """The ``clip_benchmark eval`` command for each exported set, for the run's own model; any
    open_clip model or checkpoint goes in ``--model``/``--pretrained`` instead."""
    commands = []
    for name, d in exported.items():
        root = d["folder"][: -len(name)].rstrip("/") or "."
        recall = ["--recall_k", "1", "5", "10"] if d["task"] == "zeroshot_retrieval" else []
        commands.append(shlex.join(["clip_benchmark", "eval", "--model", f"local-dir:{model_dir}", "--pretrained", "none",
                                    "--dataset", f"wds/{name}", "--dataset_root", f"{root}/{{dataset}}", "--task",
                                    d["task"], *recall, "--no_amp", "--output", f"{name}.json"]))
    return commands
