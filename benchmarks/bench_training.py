"""Training throughput: the training stage against open_clip's own trainer, and the data pipeline
against a plain webdataset loop, on the same shards, model, batch size and thread count.

- Training: samples/s per step in steady state (the first steps of each run left out), from our
  metrics (``samples_per_s_per_worker``: samples / (data wait + compute)) and from
  ``open_clip_train.main``'s log lines (samples / batch time). Both: one worker, fp32, one
  compute thread, the same data-loader process count, the same model (SynthCLIP-Tiny, exported as
  an open_clip ``local-dir:``).
- Data: batches of (image tensor, tokens) per second, our ``RankBatches`` (seeded per-sample
  crops, layout, shuffle buffer) against ``webdataset.WebDataset`` with the same transform and
  tokenizer, both in process.

Usage: ``python -m benchmarks.bench_training [--samples N] [--batch B] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results_file import record

ARCH = "SynthCLIP-Tiny"
WORDS = ["red", "green", "blue", "small", "large", "round", "square", "bright", "dark", "striped"]


def make_shards(directory: Path, samples: int, per_shard: int, side: int = 64) -> list[tuple[str, int]]:
    """Seeded noise images with short captions, as webdataset tars."""
    import numpy as np
    import webdataset as wds
    from PIL import Image

    rng, shards = random.Random(0), []
    directory.mkdir(parents=True, exist_ok=True)
    for index, start in enumerate(range(0, samples, per_shard)):
        path = directory / f"{index:05d}.tar"
        count = min(per_shard, samples - start)
        with wds.TarWriter(str(path)) as sink:
            for i in range(count):
                pixels = np.random.default_rng(start + i).integers(0, 256, (side, side, 3), dtype=np.uint8)
                jpg = io.BytesIO()
                Image.fromarray(pixels).save(jpg, format="JPEG", quality=90)
                sink.write({"__key__": f"s{start + i:07d}", "jpg": jpg.getvalue(),
                            "txt": "a photo of a " + " ".join(rng.sample(WORDS, 3))})
        shards.append((str(path), count))
    return shards


def ours(shards: list, root: str, batch: int, epochs: int, loaders: int, run_id: str) -> list[float]:
    from synthclip_core.clip_models import model_config
    from synthclip_core.storage.store import RunRef
    from synthclip_core.training import metrics
    from synthclip_core.training.config import TrainConfig
    from synthclip_core.training.fit import fit
    from synthclip_core.training.spec import TrainSpec

    t = TrainConfig(model=ARCH, epochs=epochs, global_batch_size=batch, lr=1e-3, weight_decay=0.1, warmup_epochs=0,
                    loader_workers=loaders, cpus_per_worker=1, log_every_steps=1000)
    spec = TrainSpec(ref=RunRef(root, run_id).as_dict(), shards=shards, train=t.model_dump(), seed=0,
                     model_cfg=model_config(ARCH))
    fit(spec, f"bench-{run_id}")
    rows = metrics.history(spec.run_ref.store())
    steps_per_epoch = len(rows) // epochs
    return [r["samples_per_s_per_worker"] for r in rows if (r["step"] - 1) % steps_per_epoch >= 3]


def open_clip_reference(shards: list, workdir: Path, batch: int, epochs: int, loaders: int) -> list[float]:
    import torch

    from synthclip_core.clip_models import create_model, model_config

    model_dir = workdir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_config(ARCH), "preprocess_cfg": {}}))
    torch.save(create_model(ARCH)[0].state_dict(), model_dir / "open_clip_pytorch_model.bin")
    total = sum(n for _, n in shards)
    command = [sys.executable, "-m", "open_clip_train.main", "--dataset-type", "webdataset",
               "--train-data", str(Path(shards[0][0]).parent) + f"/{{00000..{len(shards) - 1:05d}}}.tar",
               "--train-num-samples", str(total), "--model", f"local-dir:{model_dir}", "--device", "cpu",
               "--epochs", str(epochs), "--batch-size", str(batch), "--workers", str(loaders), "--precision", "fp32",
               "--lr", "1e-3", "--wd", "0.1", "--warmup", "0", "--logs", str(workdir / "logs"), "--name", "oc",
               "--log-every-n-steps", "1", "--save-frequency", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run(command, capture_output=True, text=True, timeout=3600, cwd=workdir, env=env)
    if out.returncode:
        raise RuntimeError(f"open_clip_train.main failed: {out.stderr[-2000:]}")
    rates = [float(m.group(1)) for m in re.finditer(r"([\d.]+)/s/gpu", out.stdout + out.stderr)]
    steps_per_epoch = max(1, len(rates) // epochs)
    return [r for i, r in enumerate(rates) if i % steps_per_epoch >= 3]


def data_ours(shards: list, batch: int) -> float:
    from synthclip_core.training.data import RankBatches, epoch_loader
    from synthclip_core.training.layout import epoch_layout, single_source

    preprocess, tokenizer = _transforms()
    layout = epoch_layout(single_source([n for _, n in shards]), 1, 1, batch, 0, 0)
    batches = RankBatches([u for u, _ in shards], layout, 0, 0, 0, batch, 0, 1000, preprocess, tokenizer, [{"name": "data"}])
    start, samples = time.perf_counter(), 0
    for images, _, _, _ in epoch_loader(batches, 0):
        samples += images.shape[0]
    return samples / (time.perf_counter() - start)


def data_webdataset(shards: list, batch: int) -> float:
    import webdataset as wds

    preprocess, tokenizer = _transforms()
    pipeline = (wds.WebDataset([u for u, _ in shards], shardshuffle=False).shuffle(1000).decode("pil")
                .to_tuple("jpg", "txt").map_tuple(preprocess, lambda t: t).batched(batch, partial=False))
    start, samples = time.perf_counter(), 0
    for images, texts in pipeline:
        tokenizer(list(texts))
        samples += len(images)
    return samples / (time.perf_counter() - start)


def _transforms():
    """open_clip's train transform and tokenizer for the model, as the training loop builds them."""
    from synthclip_core.clip_models import create_model

    _, preprocess_train, _, tokenizer = create_model(ARCH)
    return preprocess_train, tokenizer


def data_only(samples: int = 2048, batch: int = 32, repeats: int = 3) -> dict:
    """Only the data pipelines (quick): recorded as the ``data_loading`` section."""
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        shards = make_shards(Path(tmp) / "shards", samples, per_shard=256)
        ours_rates = [data_ours(shards, batch) for _ in range(repeats)]
        wds_rates = [data_webdataset(shards, batch) for _ in range(repeats)]
    result = {"samples": samples, "batch": batch, "ours": _summary(ours_rates), "webdataset": _summary(wds_rates),
              "ratio": round(statistics.median(ours_rates) / statistics.median(wds_rates), 3)}
    print(f"data: ours {result['ours']['median']} samples/s, webdataset {result['webdataset']['median']} samples/s, "
          f"ratio {result['ratio']}")
    record("data_loading", result)
    return result


def main(samples: int = 2048, batch: int = 32, epochs: int = 2, repeats: int = 3) -> dict:
    import torch

    from synthclip_core.compute.ray_runtime import ensure_ray

    torch.set_num_threads(1)
    ensure_ray(num_cpus=2)
    with tempfile.TemporaryDirectory() as tmp:
        shards = make_shards(Path(tmp) / "shards", samples, per_shard=256)
        ours_rates, ref_rates, data_rates, wds_rates = [], [], [], []
        for r in range(repeats):
            ours_rates.append(statistics.median(ours(shards, tmp, batch, epochs, 1, f"ours-{r}")))
            ref_rates.append(statistics.median(open_clip_reference(shards, Path(tmp) / f"oc-{r}", batch, epochs, 1)))
            data_rates.append(data_ours(shards, batch))
            wds_rates.append(data_webdataset(shards, batch))
    result = {
        "setup": {"samples": samples, "batch": batch, "epochs": epochs, "model": ARCH, "workers": 1,
                  "loader_processes": 1, "threads": 1, "precision": "fp32"},
        "training_samples_per_s": {"ours": _summary(ours_rates), "open_clip_train": _summary(ref_rates),
                                   "ratio": round(statistics.median(ours_rates) / statistics.median(ref_rates), 3)},
        "data_samples_per_s": {"ours": _summary(data_rates), "webdataset": _summary(wds_rates),
                               "ratio": round(statistics.median(data_rates) / statistics.median(wds_rates), 3)},
    }
    tr, dr = result["training_samples_per_s"], result["data_samples_per_s"]
    print(f"training: ours {tr['ours']['median']} samples/s, open_clip_train {tr['open_clip_train']['median']} samples/s, "
          f"ratio {tr['ratio']}")
    print(f"data:     ours {dr['ours']['median']} samples/s, webdataset {dr['webdataset']['median']} samples/s, ratio {dr['ratio']}")
    record("training", result)
    return result


def _summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 1), "runs": [round(v, 1) for v in values]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-only", action="store_true", help="Only the data pipelines (seconds).")
    args = parser.parse_args()
    if args.data_only:
        data_only(args.samples, args.batch, args.repeats)
    else:
        main(args.samples, args.batch, args.epochs, args.repeats)
