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
WORDS = ["a red fox", "a lighthouse", "a bowl of ramen", "a violin", "a steam locomotive", "an owl", "a glacier",
         "a bicycle", "a cathedral", "a koi pond", "a typewriter", "a snow leopard", "a sailboat", "a cactus"]


class Budget:
    """Seconds left of the run's budget; a part asks before it starts."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def allows(self, seconds: float) -> bool:
        return self.left() >= seconds


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _timed(device: str, call) -> tuple[float, object]:
    _sync(device)
    started = time.perf_counter()
    out = call()
    _sync(device)
    return time.perf_counter() - started, out


# -- 1. rendering ---------------------------------------------------------------------------------
def build_sd(shapes: dict, out_dir: Path, dtype) -> Path:
    """A Stable Diffusion pipeline of the given architecture with random weights, saved as the
    hub's layout (the real CLIP tokenizer, from open_clip's BPE file), so it loads by path."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from synthclip_core.tiny_models.diffusion import write_clip_tokenizer

    torch.manual_seed(0)
    write_clip_tokenizer(out_dir / "_tokenizer_src")
    tokenizer = CLIPTokenizer(str(out_dir / "_tokenizer_src" / "vocab.json"), str(out_dir / "_tokenizer_src" / "merges.txt"),
                              model_max_length=77)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                                        pad_token_id=49407, **shapes["text"]))
    unet = UNet2DConditionModel(in_channels=4, out_channels=4, **shapes["unet"])
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, **shapes["vae"])
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.to(dtype=dtype).save_pretrained(out_dir, safe_serialization=True)
    shutil.rmtree(out_dir / "_tokenizer_src")
    return out_dir


def render_part(shapes: dict, device: str, work: Path, budget: Budget) -> dict:
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from synthclip_core.renderers.diffusers_backend import DiffusersRenderer

    dtype = getattr(torch, shapes["dtype"])
    started = time.perf_counter()
    model_dir = build_sd(shapes, work / "sd", dtype)
    built_s = time.perf_counter() - started
    ours = DiffusersRenderer(str(model_dir), scheduler="ddim", device=device, dtype=shapes["dtype"])
    plain = StableDiffusionPipeline.from_pretrained(str(model_dir), dtype=dtype, safety_checker=None,
                                                    requires_safety_checker=False)
    plain.scheduler = DDIMScheduler.from_config(plain.scheduler.config)
    plain.set_progress_bar_config(disable=True)
    plain = plain.to(device)
    settings = shapes["render"]
    out: dict = {"architecture": "SD1.5 (random weights)" if device == "cuda" else "tiny SD", "settings": settings,
                 "dtype": shapes["dtype"], "build_s": round(built_s, 1), "batches": {}}

    def run_ours(prompts, seeds, s=settings):
        return ours.render(prompts, seeds, s)

    def run_plain(prompts, seeds, s=settings):
        generators = [torch.Generator(device="cpu").manual_seed(int(x)) for x in seeds]
        with torch.inference_mode():
            return plain(prompts, num_inference_steps=s["steps"], guidance_scale=s["guidance_scale"], eta=s["eta"],
                         height=s["height"], width=s["width"], generator=generators, output_type="np").images

    for batch in shapes["render_batches"]:
        prompts = [f"{WORDS[i % len(WORDS)]}, a photograph" for i in range(batch)]
        seeds = list(range(batch))
        if not budget.allows(60 if device == "cuda" else 5):
            out["batches"][str(batch)] = {"skipped": f"{budget.left():.0f} s of the budget left"}
            continue
        run_ours(prompts, seeds)  # warm-up: kernels chosen, memory pooled
        run_plain(prompts, seeds)
        ours_s, rendered = _timed(device, lambda: run_ours(prompts, seeds))
        plain_s, _ = _timed(device, lambda: run_plain(prompts, seeds))
        problems = sum(r["problem"] is not None for r in rendered)
        out["batches"][str(batch)] = {
            "ours_images_per_s": round(batch / ours_s, 3), "plain_images_per_s": round(batch / plain_s, 3),
            "ratio": round(plain_s / ours_s, 3), "ours_s": round(ours_s, 2), "plain_s": round(plain_s, 2),
            "image_problems": problems,  # random weights: noise, but never NaN or black
            "peak_gpu_gib": _peak_gib(device),
        }
    return out


def render_options(shapes: dict, device: str, work: Path, budget: Budget) -> dict:
    """Speed options on our backend's pipeline, each against the backend as it ships, at fewer
    steps (per-step speed is what they change), on the same seeds: speed-up and pixel change.
    Last of the parts: compiling takes minutes, and the budget gives what is left."""
    import numpy as np
    import torch
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from synthclip_core.renderers.diffusers_backend import DiffusersRenderer

    if not (work / "sd").is_dir():
        return {"skipped": "the render part built no model"}
    ours = DiffusersRenderer(str(work / "sd"), scheduler="ddim", device=device, dtype=shapes["dtype"])

    batch, steps = shapes["option_batch"], shapes["option_steps"]
    settings = {**shapes["render"], "steps": steps}
    prompts = [f"{WORDS[i % len(WORDS)]}, a photograph" for i in range(batch)]
    seeds = list(range(batch))
    pipe = ours.pipe
    unet = pipe.unet

    def measure() -> tuple[float, list]:
        ours.render(prompts, seeds, settings)  # warm-up (and compile, for the compiled options)
        seconds, rendered = _timed(device, lambda: ours.render(prompts, seeds, settings))
        return seconds, [_pixels(r["jpg"]) for r in rendered]

    base_s, base_pixels = measure()
    results: dict = {"steps": steps, "batch": batch, "as_shipped_s_per_image": round(base_s / batch, 4)}

    def option(name: str, apply, undo, needs_s: float, gpu_only: bool = False) -> None:
        if gpu_only and device != "cuda":
            results[name] = {"skipped": "GPU only"}
            return
        if not budget.allows(needs_s):
            results[name] = {"skipped": f"{budget.left():.0f} s of the budget left, {needs_s:.0f} s needed"}
            return
        try:
            apply()
            seconds, pixels = measure()
            change = max(float(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) for a, b in zip(pixels, base_pixels))
            results[name] = {"speedup": round(base_s / seconds, 3), "s_per_image": round(seconds / batch, 4),
                             "max_pixel_change": change}
        except Exception as exc:  # an option this stack cannot do: recorded, the others go on
            results[name] = {"failed": " ".join(str(exc).split())[:300]}
        finally:
            undo()

    sdpa = AttnProcessor2_0()
    option("classic_attention", lambda: unet.set_attn_processor(AttnProcessor()), lambda: unet.set_attn_processor(sdpa), 30)

    flash: list = []

    def enter_flash() -> None:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        flash.append(sdpa_kernel([SDPBackend.FLASH_ATTENTION]))
        flash[0].__enter__()

    option("sdpa_flash_only", enter_flash, lambda: flash and flash.pop().__exit__(None, None, None), 20, gpu_only=True)
    option("channels_last", lambda: (unet.to(memory_format=torch.channels_last), pipe.vae.to(memory_format=torch.channels_last)),
           lambda: (unet.to(memory_format=torch.contiguous_format), pipe.vae.to(memory_format=torch.contiguous_format)), 20)
    option("torch_compile", lambda: setattr(pipe, "unet", torch.compile(unet)), lambda: setattr(pipe, "unet", unet),
           150, gpu_only=True)
    option("cuda_graphs", lambda: setattr(pipe, "unet", torch.compile(unet, mode="reduce-overhead")),
           lambda: setattr(pipe, "unet", unet), 150, gpu_only=True)
    return results


def _pixels(jpg: bytes | None):
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(jpg)).convert("RGB")) if jpg else np.zeros((1, 1, 3), np.uint8)


# -- 2. training ----------------------------------------------------------------------------------
def train_part(shapes: dict, device: str, budget: Budget) -> dict:
    import torch

    out: dict = {"model": shapes["clip"], "precision": shapes["precision"], "batches": {}}
    for batch in shapes["train_batches"]:
        if not budget.allows(40 if device == "cuda" else 5):
            out["batches"][str(batch)] = {"skipped": f"{budget.left():.0f} s of the budget left"}
            continue
        try:
            ours = _train_ours(shapes, device, batch)
            _free(device)
            reference = _train_open_clip(shapes, device, batch)
            _free(device)
        except torch.cuda.OutOfMemoryError as exc:
            out["batches"][str(batch)] = {"failed": f"out of memory: {' '.join(str(exc).split())[:200]}"}
            _free(device)
            continue
        out["batches"][str(batch)] = {"ours_samples_per_s": ours["samples_per_s"], "open_clip_samples_per_s": reference["samples_per_s"],
                                      "ratio": round(ours["samples_per_s"] / reference["samples_per_s"], 3),
                                      "ours_loss_read_every_step_samples_per_s": ours["synced_samples_per_s"],
                                      "ratio_loss_read_every_step": round(ours["synced_samples_per_s"] / reference["samples_per_s"], 3),
                                      "ours_peak_gpu_gib": ours["peak_gib"], "open_clip_peak_gpu_gib": reference["peak_gib"]}
    return out


def _batches(shapes: dict, batch: int, model) -> list:
    """The same batches for both loops: images at the model's input size, tokens of its context."""
    import torch

    generator = torch.Generator().manual_seed(0)
    size = model.visual.image_size
    size = size if isinstance(size, int) else size[0]
    context = model.context_length
    vocab = model.vocab_size
    return [(torch.randn(batch, 3, size, size, generator=generator),
             torch.randint(0, vocab, (batch, context), generator=generator)) for _ in range(shapes["train_steps"] + 2)]


def _fresh_model(shapes: dict, device: str):
    import torch

    from synthclip_core.clip_models import create_model

    torch.manual_seed(0)
    return create_model(shapes["clip"], device=device)[0]


def _train_ours(shapes: dict, device: str, batch: int) -> dict:
    import torch
    from open_clip.loss import ClipLoss

    from synthclip_core.training.schedule import param_groups
    from synthclip_core.training.step import autocast_for, train_step

    model = _fresh_model(shapes, device)
    data = [(i.pin_memory() if device == "cuda" else i, t) for i, t in _batches(shapes, batch, model)]
    optimizer = torch.optim.AdamW(param_groups(model, 0.2), lr=5e-4, betas=(0.9, 0.98), eps=1e-6)
    scaler = torch.amp.GradScaler(device, enabled=shapes["precision"] == "amp_fp16")
    loss_fn = ClipLoss(local_loss=True, gather_with_grad=True, cache_labels=True, rank=0, world_size=1)
    autocast = autocast_for(shapes["precision"], torch.device(device))
    model.train()
    _reset_peak(device)
    for images, texts in data[:2]:  # warm-up
        train_step(model, model, loss_fn, optimizer, scaler, images, texts, autocast)
    seconds, _ = _timed(device, lambda: [train_step(model, model, loss_fn, optimizer, scaler, i, t, autocast)
                                         for i, t in data[2:]])
    # as the loop runs it: the loss read back every step (its metrics), which waits for the GPU
    synced_s, _ = _timed(device, lambda: [train_step(model, model, loss_fn, optimizer, scaler, i, t, autocast).item()
                                          for i, t in data[2:]])
    samples = batch * (len(data) - 2)
    return {"samples_per_s": round(samples / seconds, 1), "synced_samples_per_s": round(samples / synced_s, 1),
            "peak_gib": _peak_gib(device)}


def _train_open_clip(shapes: dict, device: str, batch: int) -> dict:
    """open_clip's own epoch loop over the same batches (a DataLoader of them, as its data has)."""
    import types

    import torch
    from open_clip.loss import ClipLoss
    from open_clip_train.train import train_one_epoch

    model = _fresh_model(shapes, device)
    data = _batches(shapes, batch, model)

    class Batches(torch.utils.data.DataLoader):
        def __init__(self, items):
            super().__init__(items, batch_size=None, pin_memory=device == "cuda")
            self.num_batches, self.num_samples = len(items), len(items) * batch

    info = types.SimpleNamespace(set_epoch=lambda epoch: None)
    params = [{"params": [p for n, p in model.named_parameters() if p.ndim < 2 or "logit_scale" in n], "weight_decay": 0.0},
              {"params": [p for n, p in model.named_parameters() if not (p.ndim < 2 or "logit_scale" in n)], "weight_decay": 0.2}]
    optimizer = torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.98), eps=1e-6)
    loss = ClipLoss(local_loss=True, gather_with_grad=True, cache_labels=True, rank=0, world_size=1)
    args = types.SimpleNamespace(device=device, precision=shapes["precision"], distill=False,
                                 accum_freq=1, skip_scheduler=True, horovod=False, grad_clip_norm=None, batch_size=batch,
                                 world_size=1, rank=0, local_rank=0, log_every_n_steps=10_000, wandb=False, save_logs=False,
                                 distributed=False, delete_previous_checkpoint=False)
    warm = Batches(data[:2])
    info.dataloader = warm
    train_one_epoch(model, {"train": info}, loss, 0, optimizer, None, None, None, args)
    info.dataloader = Batches(data[2:])
    _reset_peak(device)
    seconds, _ = _timed(device, lambda: train_one_epoch(model, {"train": info}, loss, 1, optimizer, None, None, None, args))
    return {"samples_per_s": round(batch * (len(data) - 2) / seconds, 1), "peak_gib": _peak_gib(device)}


# -- 3. captions ----------------------------------------------------------------------------------
def caption_part(shapes: dict, device: str, work: Path, budget: Budget) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from synthclip_core.captioners.transformers_backend import TransformersCaptioner
    from synthclip_core.prompts import get_template
    from synthclip_core.tiny_models.llm import CHAT_TEMPLATE, _train_tokenizer

    choice = next(((name, cfg) for (name, cfg), need in zip(shapes["llms"], shapes["llm_seconds"]) if budget.allows(need)), None)
    if choice is None:
        return {"skipped": f"{budget.left():.0f} s of the budget left"}
    name, shape = choice
    template = get_template("synthclip")
    concepts = [w.removeprefix("a ").removeprefix("an ") for w in WORDS]
    tokenizer = _train_tokenizer([template.render(c) + " " + c for c in concepts * 20], vocab_size=4096)
    tokenizer.chat_template = CHAT_TEMPLATE
    started = time.perf_counter()
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **shape)
    dtype = getattr(torch, shapes["dtype"])
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    folder = work / "llm"
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    parameters = sum(p.numel() for p in model.parameters())
    del model
    _free(device)
    batch = shapes["llm_batch"]
    captioner = TransformersCaptioner(str(folder), device=device, dtype=shapes["dtype"], batch_size=batch)
    built_s = time.perf_counter() - started
    messages = [template.messages(concepts[i % len(concepts)]) for i in range(batch)]
    sampling = {"temperature": 0.7, "top_p": 0.95, "presence_penalty": 1.0, "frequency_penalty": 1.0,
                "max_tokens": shapes["max_tokens"]}
    captioner.generate(messages, list(range(batch)), sampling)  # warm-up
    seconds, completions = _timed(device, lambda: captioner.generate(messages, list(range(batch, 2 * batch)), sampling))
    tokens = sum(c["tokens"] for c in completions)
    return {"model": name, "parameters": parameters, "dtype": shapes["dtype"], "batch": batch, "build_s": round(built_s, 1),
            "prompts_per_s": round(batch / seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "tokens_per_prompt": round(tokens / batch, 1), "peak_gpu_gib": _peak_gib(device)}


# -- the run --------------------------------------------------------------------------------------
def _peak_gib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


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
            _free(device)
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
