"""The GPU proof's render part: our backend against a plain diffusers call, then the speed options."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from .timing import WORDS, Budget, peak_gib, timed


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

    from synthclip_core.rendering.diffusers_backend import DiffusersRenderer

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
        ours_s, rendered = timed(device, lambda: run_ours(prompts, seeds))
        plain_s, _ = timed(device, lambda: run_plain(prompts, seeds))
        problems = sum(r["problem"] is not None for r in rendered)
        out["batches"][str(batch)] = {
            "ours_images_per_s": round(batch / ours_s, 3), "plain_images_per_s": round(batch / plain_s, 3),
            "ratio": round(plain_s / ours_s, 3), "ours_s": round(ours_s, 2), "plain_s": round(plain_s, 2),
            "image_problems": problems,  # random weights: noise, but never NaN or black
            "peak_gpu_gib": peak_gib(device),
        }
    return out


def render_options(shapes: dict, device: str, work: Path, budget: Budget) -> dict:
    """Speed options on our backend's pipeline, each against the backend as it ships, at fewer
    steps (per-step speed is what they change), on the same seeds: speed-up and pixel change.
    Last of the parts: compiling takes minutes, and the budget gives what is left."""
    import numpy as np
    import torch
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from synthclip_core.rendering.diffusers_backend import DiffusersRenderer

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
        seconds, rendered = timed(device, lambda: ours.render(prompts, seeds, settings))
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
