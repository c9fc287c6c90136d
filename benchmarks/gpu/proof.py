"""The GPU proof: our model code on one GPU at real sizes, each part against its plain baseline.

One command, on a bare one-GPU machine that has torch and transformers and nothing else
(``benchmarks/gpu/run.sh`` installs the carried wheels first). With random weights at the
architectures' real sizes (no hub, no network), in the same process:

1. **render**: our render backend (``DiffusersRenderer``: per-image seeded generators, image
   checks, JPEG encoding) against a plain ``StableDiffusionPipeline`` call, on the SD1.5
   architecture at the paper's settings (512x512, DDIM 50 steps, guidance 2, fp16), batches of
   16 and 32: images/s and the ratio. Last (``render_options``, since compiling takes
   minutes): the speed options that keep the recipe's outputs (channels_last, attention kernels,
   ``torch.compile``, CUDA graphs), each on the same seeds at fewer steps: seconds per image, the
   speed-up over our backend as it ships, and how far its pixels move (the outputs it keeps).
2. **train**: our training step (``training.step.train_step``, what the loop repeats) against
   open_clip's ``train_one_epoch`` on ViT-B/16, bf16, local batches of 256 and 512 with local
   loss, the same batches held in memory: samples/s, the ratio, peak GPU memory.
3. **captions**: the transformers caption backend (``TransformersCaptioner``, seeded per-row
   sampling) on a Llama/Mistral-shaped model, the largest the time left allows: prompts/s and
   generated tokens/s.

A time budget (``--budget-s``, 420 by default) is kept: a part that would overrun it is skipped
and says so. ``--cpu`` runs every part end to end with tiny shapes on the CPU (in the default test
suite). Results go to ``benchmarks/results/`` (section ``gpu_proof``) and, with ``--out``, to a
copy there.

Usage: ``python -m benchmarks.gpu.proof [--cpu] [--budget-s S] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results_file import record

from .captions import caption_part
from .render import render_options, render_part
from .timing import Budget, free
from .training import train_part

# The paper's render settings, and the SD1.5 architecture (its published model index's configs).
PAPER_RENDER = {"steps": 50, "guidance_scale": 2.0, "eta": 0.0, "height": 512, "width": 512, "stored_size": 256,
                "jpeg_quality": 95}
SHAPES = {
    "gpu": {
        "unet": {"sample_size": 64, "cross_attention_dim": 768, "attention_head_dim": 8,
                 "block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2},
        "vae": {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "sample_size": 512,
                "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4},
        "text": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
                 "projection_dim": 768},
        "render": PAPER_RENDER, "render_batches": (16, 32), "option_steps": 20, "option_batch": 16,
        "clip": "ViT-B-16", "precision": "amp_bf16", "train_batches": (256, 512), "train_steps": 20,
        # (name, Llama config) from the largest down; the first that fits the time left is measured
        "llms": (("mistral-7b-shape", {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                                       "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128}),
                 ("llama-1b-shape", {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                                     "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64})),
        "llm_seconds": (200, 70), "llm_batch": 64, "max_tokens": 48, "dtype": "float16",
    },
    "cpu": {
        "unet": {"sample_size": 8, "cross_attention_dim": 32, "attention_head_dim": 8, "block_out_channels": (32, 64),
                 "layers_per_block": 1, "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
                 "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"), "norm_num_groups": 8},
        "vae": {"block_out_channels": (16, 32), "layers_per_block": 1, "sample_size": 64, "norm_num_groups": 8,
                "down_block_types": ("DownEncoderBlock2D",) * 2, "up_block_types": ("UpDecoderBlock2D",) * 2},
        "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "projection_dim": 32},
        "render": {**PAPER_RENDER, "steps": 2, "height": 32, "width": 32, "stored_size": 32},
        "render_batches": (2,), "option_steps": 2, "option_batch": 2,
        "clip": "SynthCLIP-Tiny", "precision": "fp32", "train_batches": (8,), "train_steps": 3,
        "llms": (("tiny-llama-shape", {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                                       "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 32}),),
        "llm_seconds": (0,), "llm_batch": 4, "max_tokens": 8, "dtype": "float32",
    },
}


PARTS = ("render", "train", "captions", "render_options")


def main(cpu: bool = False, budget_s: float = 420.0, out: Path | None = None, parts: tuple[str, ...] = PARTS,
         keep: bool = True) -> dict:
    """Run the parts; ``keep``: record the results in ``benchmarks/results/`` (a test does not)."""
    import torch

    device = "cpu" if cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --cpu for the tiny-shape check")
    shapes = SHAPES[device]
    budget = Budget(budget_s)
    started = time.perf_counter()
    results: dict = {"mode": device, "budget_s": budget_s,
                     "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None, "torch": torch.__version__}
    work = Path(tempfile.mkdtemp(prefix="gpu-proof-"))
    try:
        for part, run in (("render", lambda: render_part(shapes, device, work, budget)),
                          ("train", lambda: train_part(shapes, device, budget)),
                          ("captions", lambda: caption_part(shapes, device, work, budget)),
                          ("render_options", lambda: render_options(shapes, device, work, budget))):
            if part not in parts:
                continue
            part_started = time.perf_counter()
            try:
                results[part] = run()
            except Exception as exc:  # one part's failure is a figure too; the others still run
                results[part] = {"failed": f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"}
            results[part]["seconds"] = round(time.perf_counter() - part_started, 1)
            print(f"{part}: {json.dumps(results[part])}", flush=True)
            free(device)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    path = record("gpu_proof" if device == "cuda" else "gpu_proof_cpu_mode", results) if keep else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if path is not None:
            shutil.copy(path, out / path.name)
        (out / "gpu_proof.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {path or out}", flush=True)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="tiny shapes on the CPU (the default suite runs this)")
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--parts", default=",".join(PARTS))
    args = parser.parse_args()
    main(args.cpu, args.budget_s, args.out, tuple(args.parts.split(",")))
    sys.exit(0)
