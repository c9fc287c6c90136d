"""The run's outputs read by the tools the field already uses: img2dataset's per-shard Parquet,
Hugging Face ``datasets`` (images, not bytes), pandas and DuckDB; and older runs still read."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from synthclip_core.storage.schemas import from_parquet_bytes, table_from_rows, to_parquet_bytes


def _jpeg(shade: int) -> bytes:
    handle = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, 0, 0)).save(handle, "JPEG")
    return handle.getvalue()


def _image_rows(n: int) -> list[dict]:
    return [{"image_id": f"i{k}", "caption_id": f"c{k // 2}", "concept_id": "k", "caption": f"a red square {k}",
             "matched_concept_ids": ["k"], "split": "train", "index": k, "seed": k, "rerendered": False, "model": "m",
             "scheduler": "ddim", "steps": 4, "guidance_scale": 7.5, "jpg": _jpeg(40 * k), "format": "jpg",
             "width": 8, "height": 8, "sha256": "0" * 64} for k in range(n)]


def test_image_tables_store_hugging_face_images_and_read_back_as_bytes(tmp_path):
    rows = _image_rows(4)
    data = to_parquet_bytes(table_from_rows(rows, "images"), "images", group_by="caption_id")
    stored = pq.read_schema(pa.BufferReader(data))
    assert stored.field("jpg").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert json.loads(stored.metadata[b"huggingface"])["info"]["features"]["jpg"]["_type"] == "Image"
    table = from_parquet_bytes(data, "images")
    assert table.schema.field("jpg").type == pa.binary()
    assert table.column("jpg").to_pylist() == [r["jpg"] for r in rows]
    assert from_parquet_bytes(to_parquet_bytes(table_from_rows([], "images"), "images"), "images").num_rows == 0


def test_an_older_run_image_table_still_reads():
    """Schema 2 stored the JPEG bytes as a plain binary column."""
    rows = _image_rows(2)
    table = table_from_rows(rows, "images").replace_schema_metadata({b"synthclip.schema": b"images/2"})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    assert from_parquet_bytes(sink.getvalue().to_pybytes(), "images").column("jpg").to_pylist() == [r["jpg"] for r in rows]
    table = table.replace_schema_metadata({b"synthclip.schema": b"images/1"})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    with pytest.raises(Exception, match="schema 'images/1', expected 'images/4'"):
        from_parquet_bytes(sink.getvalue().to_pybytes(), "images", where="images/part-00000.parquet")


def _image_parts(run) -> list[str]:
    return sorted(run.store.data_path("images", o) for o in run.store.committed("images") if o.startswith("part-"))


def test_datasets_opens_the_image_tables_as_images(offline_run, tmp_path):
    import datasets

    run, _ = offline_run
    parts = _image_parts(run)
    loaded = datasets.load_dataset("parquet", data_files=parts, split="train", cache_dir=str(tmp_path / "hf"))
    assert isinstance(loaded.features["jpg"], datasets.Image)
    first = loaded[0]
    assert first["jpg"].size == (first["width"], first["height"]) and first["caption"]
    assert loaded.num_rows == sum(pq.ParquetFile(p).metadata.num_rows for p in parts)


def test_duckdb_and_pandas_join_images_to_their_captions(offline_run):
    import duckdb
    import pandas as pd

    run, _ = offline_run
    parts, captions = _image_parts(run), sorted(
        run.store.data_path("balanced", o) for o in run.store.committed("balanced") if o.startswith("part-"))
    joined = duckdb.sql(f"""
        select i.image_id, i.jpg.bytes as jpg, i.sha256, b.caption as balanced_caption, i.caption
        from read_parquet({parts!r}) i join read_parquet({captions!r}) b using (caption_id)""").fetchall()
    assert joined and all(hashlib.sha256(jpg).hexdigest() == sha and a == b for _, jpg, sha, a, b in joined)
    frame = pd.read_parquet(parts[0])
    assert frame["jpg"].iloc[0]["bytes"][:2] == b"\xff\xd8"


def test_each_shard_has_img2dataset_parquet_beside_it(offline_run):
    run, _ = offline_run
    store = run.store
    tars = sorted(o for o in store.committed("shards") if o.endswith(".tar"))
    assert tars
    for tar_name in tars:
        meta = pq.read_table(store.data_path("shards", tar_name.replace(".tar", ".parquet")))
        assert meta.column_names[:2] == ["url", "caption"]
        assert {"key", "status", "error_message", "width", "height", "original_width", "original_height",
                "sha256"} <= set(meta.column_names)
        with tarfile.open(fileobj=io.BytesIO(store.read_bytes("shards", tar_name))) as tar:
            jpgs = {m.name[:-4]: tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".jpg")}
            texts = {m.name[:-4]: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.name.endswith(".txt")}
        rows = meta.to_pylist()
        assert [r["key"] for r in rows] == list(jpgs)  # the tar's order
        for row in rows:
            assert row["status"] == "success" and row["error_message"] is None and row["url"] is None
            assert row["caption"] == texts[row["key"]]
            assert row["sha256"] == hashlib.sha256(jpgs[row["key"]]).hexdigest()
            assert Image.open(io.BytesIO(jpgs[row["key"]])).size == (row["width"], row["height"])
        stats = json.loads(store.read_bytes("shards", tar_name.replace(".tar", "_stats.json")))
        assert stats["successes"] == len(rows)


def _clip_benchmark(model_dir: str, command: str, out) -> dict:
    """Run a printed ``clip_benchmark eval`` command as a user would (its own process), on the CPU."""
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    argv = shlex.split(command)
    assert argv[:2] == ["clip_benchmark", "eval"] and f"local-dir:{model_dir}" in argv
    argv[0] = str(Path(sys.executable).parent / "clip_benchmark")
    argv[argv.index("--output") + 1] = str(out)
    done = subprocess.run(argv + ["--num_workers", "0", "--batch_size", "64"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())["metrics"]


def _clip_benchmark_zeroshot(model_dir: str, folder: str) -> tuple[float, float]:
    """CLIP_benchmark's own zero-shot pipeline on an exported set (its model loader, wds reader,
    classifier and classification loop); top-k counted here, because its ``accuracy`` helper fails
    under NumPy 2.4 (``float()`` of a 1-element array: LAION-AI/CLIP_benchmark#147)."""
    import posixpath

    import torch
    from clip_benchmark.datasets.builder import build_dataset
    from clip_benchmark.metrics import zeroshot_classification as zsc
    from clip_benchmark.models import load_clip

    model, transform, tokenizer = load_clip("open_clip", f"local-dir:{model_dir}", "none", None, "cpu")
    model.eval()
    data = build_dataset(f"wds/{posixpath.basename(folder)}", root=folder, transform=transform, split="test")
    loader = torch.utils.data.DataLoader(data.batched(64), batch_size=None, num_workers=0)
    classifier = zsc.zero_shot_classifier(model, tokenizer, data.classes, data.templates, "cpu", amp=False)
    logits, target = zsc.run_classification(model, classifier, loader, "cpu", amp=False)
    top5 = logits.topk(5, dim=1).indices
    return (top5[:, 0] == target).float().mean().item(), (top5 == target[:, None]).any(dim=1).float().mean().item()


def test_clip_benchmark_scores_the_exported_held_out_sets_as_the_report_does(offline_run, tmp_path):
    """The real ``clip_benchmark`` (from PyPI) on the exported sets, through open_clip's
    ``local-dir:``, gives the report's zero-shot accuracy and retrieval recalls to four decimals:
    retrieval through its printed command, zero-shot through its library (see above)."""
    from flows.evaluate import export_clip_benchmark

    run, _ = offline_run
    result = export_clip_benchmark(run_id=run.ref.run_id, out=str(tmp_path / "sets"), root=run.ref.root, per_shard=40)
    sets = result["datasets"]
    assert set(sets) == {"synthetic-heldout-zeroshot", "synthetic-heldout-retrieval"}
    report = {(r["task"], r["metric"]): r for r in json.loads(run.store.read_bytes("eval", "report.json"))["results"]}
    assert sets["synthetic-heldout-zeroshot"]["samples"] == report["zeroshot", "top1"]["samples"]
    shards = -(-sets["synthetic-heldout-zeroshot"]["samples"] // 40)  # 40 samples a shard, the last one short
    assert shards >= 2 and (tmp_path / "sets" / "synthetic-heldout-zeroshot" / "test" / "nshards.txt").read_text().strip() == str(shards)
    model_dir = run.store.uri("train", "model")
    acc1, acc5 = _clip_benchmark_zeroshot(model_dir, sets["synthetic-heldout-zeroshot"]["folder"])
    assert acc1 == pytest.approx(report["zeroshot", "top1"]["value"], abs=5e-5)
    assert acc5 == pytest.approx(report["zeroshot", "top5"]["value"], abs=5e-5)
    retrieval = _clip_benchmark(model_dir, result["commands"][1], tmp_path / "retrieval.json")
    for k in (1, 5, 10):
        assert retrieval[f"image_retrieval_recall@{k}"] == pytest.approx(report["retrieval", f"text_to_image_R@{k}"]["value"], abs=5e-5)
        assert retrieval[f"text_retrieval_recall@{k}"] == pytest.approx(report["retrieval", f"image_to_text_R@{k}"]["value"], abs=5e-5)


def test_a_configured_benchmark_exports_in_the_layout_clip_benchmark_reads(offline_run, tmp_path):
    """A Parquet benchmark of eval.datasets (labels by name) as CLIP_benchmark's library reads it,
    an unreadable image skipped and named; a caption with a line break refused."""
    from clip_benchmark.datasets.builder import build_wds_dataset

    from synthclip_core.evaluation.clip_benchmark import captions_field
    from synthclip_core.evaluation.config import EvalDataset
    from synthclip_core.evaluation.datasets import DatasetError
    from synthclip_core.runs.clip_benchmark_export import export_dataset

    run, _ = offline_run
    images = from_parquet_bytes(run.store.read_bytes("images", sorted(
        o for o in run.store.committed("images") if o.startswith("part-"))[0]), "images").slice(0, 6)
    rows = [{"image": {"bytes": jpg, "path": None}, "label": label}
            for jpg, label in zip(images.column("jpg").to_pylist(), ["cat", "dog", "cat", "dog", "cat", "dog"])]
    rows[3]["image"]["bytes"] = b"\xff\xd8 not a jpeg"
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pets.parquet")
    ds = EvalDataset(name="pets", task="zeroshot", path=str(tmp_path / "pets.parquet"))
    out = export_dataset(ds, "simple", str(tmp_path / "pets"), per_shard=4)
    assert out["samples"] == 5 and out["skipped"] == ["pets.parquet#3"] and out["classes"] == 2
    loaded = build_wds_dataset("pets", transform=None, split="test", data_dir=str(tmp_path / "pets"))
    assert loaded.classes == ["cat", "dog"] and loaded.templates[0] == "itap of a {c}." and len(loaded.templates) == 7
    assert [label for _, label in loaded] == [0, 1, 0, 0, 1]
    with pytest.raises(DatasetError, match="line break"):
        captions_field(["one\ntwo"])
