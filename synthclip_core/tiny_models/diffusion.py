"""A tiny Stable Diffusion pipeline that draws the offline world's signatures (``world.py``).

It is a real ``StableDiffusionPipeline`` (CLIP tokenizer from open_clip's BPE merges, so the same
token ids as Stable Diffusion's), saved with ``save_pretrained`` and trained when it is built, in
two bounded, seeded parts on 2 CPU threads:

- the VAE (5 levels: a 64x64 image is a 4x4x4 latent) learns that a latent's first three channels
  are the colours of the 4x4 cells;
- the UNet, through DDIM's x0 ("sample") objective, learns to draw from a caption the signature of
  the concept in it. Each token embedding of the text encoder starts with the token's glyph code,
  so the UNet learns one rule (paint the glyphs of the non-filler tokens) instead of a lookup per
  concept; its levels go down to 1x1, where a caption's content is global, and the way back up is
  where a cell knows its place.

The build ends by rendering captions of 200 concepts and reporting how many draw the nearest
signature (``fidelity`` in ``world.json``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from .world import FIRST_SPECIAL_TOKEN, GRID, SCENES, cell_colours, filler_tokens, glyph_code, latent, nearest_concepts


def write_clip_tokenizer(out_dir: Path) -> None:
    """vocab.json and merges.txt for ``CLIPTokenizer``, from open_clip's BPE file."""
    import open_clip.tokenizer as oc_tok

    merges_path = Path(oc_tok.__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.open(merges_path).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    chars = list(oc_tok.bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


VAE_STEPS = 300
VAE_NOISE = 0.15
UNET_STEPS = 400
UNET_LR = 1.5e-3
BATCH = 64
FIDELITY_PROBES = 200


def build_tiny_sd(out_dir: Path, seed: int = 0, log=print, progress=lambda done, total: None) -> Path:
    import random
    import time

    import numpy as np
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    out_dir = Path(out_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    start = time.time()
    try:
        tok_dir = out_dir / "_tokenizer_src"
        write_clip_tokenizer(tok_dir)
        tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
        concepts = list(IMAGENET_CLASSNAMES)
        latents = torch.tensor(np.stack([latent("")] + [latent(c) for c in concepts]))
        total = VAE_STEPS + UNET_STEPS + 1  # the last: the fidelity check
        vae = _train_vae(latents, log, lambda done: progress(done, total))
        captions = [""] + [scene.replace("{c}", c) for c in concepts for scene in SCENES]
        targets = torch.cat([latents[:1], latents[1:].repeat_interleave(len(SCENES), 0)])
        ids = tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=49408, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=77, projection_dim=64,
            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
        ))
        _write_glyph_codes(text_encoder)
        unet = UNet2DConditionModel(
            sample_size=GRID, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(64, 64, 64), down_block_types=("CrossAttnDownBlock2D",) * 3,
            up_block_types=("CrossAttnUpBlock2D",) * 3, cross_attention_dim=64, attention_head_dim=16,
            norm_num_groups=8,
        )
        scheduler = DDIMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
            set_alpha_to_one=False, steps_offset=1, prediction_type="sample",
        )
        _train_unet(unet, text_encoder, scheduler, ids, targets, rng, log, lambda done: progress(VAE_STEPS + done, total))
        pipe = StableDiffusionPipeline(
            unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
        fidelity = _fidelity(pipe, rng.sample(concepts, FIDELITY_PROBES), rng)
        progress(total, total)
        pipe.save_pretrained(out_dir, safe_serialization=True)
        (out_dir / "world.json").write_text(json.dumps({
            "world": "signatures of concept tokens on a 4x4 grid (synthclip_core/tiny_models/world.py)",
            "fidelity": fidelity, "probes": FIDELITY_PROBES,  # no build time: the model's identity is its bytes
        }, indent=1) + "\n")
        import shutil

        shutil.rmtree(tok_dir)
    finally:
        torch.set_num_threads(threads)
    log(f"tiny Stable Diffusion pipeline written to {out_dir}: draws the right signature for "
        f"{fidelity:.0%} of {FIDELITY_PROBES} captions ({time.time() - start:.0f}s)")
    return out_dir


def _train_vae(latents, log, progress):
    """A VAE whose decoder paints a latent's first three channels as 16x16-pixel cells."""
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 16, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 5, up_block_types=("UpDecoderBlock2D",) * 5,
        layers_per_block=1, norm_num_groups=8, sample_size=64, scaling_factor=1.0,
    )
    optim = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=1e-3, total_steps=VAE_STEPS, pct_start=0.1)
    for step in range(VAE_STEPS):
        z = latents[torch.randint(0, len(latents), (16,))]
        # guidance scales what the UNet draws, and its output is never exact
        z = z * torch.empty(len(z), 1, 1, 1).uniform_(0.5, 2.2) + VAE_NOISE * torch.randn_like(z)
        image = torch.nn.functional.interpolate(z[:, :3], scale_factor=16, mode="nearest").clamp(-1, 1)
        loss = (torch.nn.functional.mse_loss(vae.decode(z).sample, image)
                + torch.nn.functional.mse_loss(vae.encode(image).latent_dist.mean, z))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        progress(step + 1)
        if step % 100 == 0 or step == VAE_STEPS - 1:
            log(f"tiny VAE step {step + 1}/{VAE_STEPS} loss {loss.item():.4f}")
    return vae.eval().requires_grad_(False)


def _write_glyph_codes(text_encoder) -> None:
    """Token embeddings start small, with each drawn token's glyph code in its first 48 numbers;
    they stay fixed while the rest of the text encoder and the UNet learn."""
    import torch

    with torch.no_grad():
        weight = text_encoder.get_input_embeddings().weight
        weight.mul_(0.1)
        weight[:, : 3 * GRID**2] = 0
        filler = filler_tokens()
        for token in range(FIRST_SPECIAL_TOKEN):
            if token not in filler:
                weight[token, : 3 * GRID**2] = torch.from_numpy(glyph_code(token).reshape(-1))
    text_encoder.get_input_embeddings().weight.requires_grad_(False)


def _train_unet(unet, text_encoder, scheduler, ids, targets, rng, log, progress) -> None:
    """x0 prediction on (caption, signature latent) pairs; one in ten captions empty (the
    unconditional branch of guidance draws the bare grey ground). Most steps at high noise,
    where the caption alone has to say what to draw."""
    import torch

    params = [p for p in [*unet.parameters(), *text_encoder.parameters()] if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=UNET_LR, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=UNET_LR, total_steps=UNET_STEPS, pct_start=0.05)
    alphas = scheduler.alphas_cumprod
    generator = torch.Generator().manual_seed(rng.randrange(2**31))
    for step in range(UNET_STEPS):
        pick = torch.randint(1, len(ids), (BATCH,), generator=generator)
        pick[torch.rand(BATCH, generator=generator) < 0.1] = 0
        x0 = targets[pick]
        t = torch.randint(0, 1000, (BATCH,), generator=generator)
        high = torch.rand(BATCH, generator=generator) < 0.7
        t[high] = torch.randint(600, 1000, (int(high.sum()),), generator=generator)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=generator)
        predicted = unet(noisy, t, encoder_hidden_states=text_encoder(ids[pick])[0]).sample
        loss = torch.nn.functional.mse_loss(predicted, x0)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        sched.step()
        progress(step + 1)
        if step % 100 == 0 or step == UNET_STEPS - 1:
            log(f"tiny UNet step {step + 1}/{UNET_STEPS} loss {loss.item():.4f}")
    unet.eval().requires_grad_(False)
    text_encoder.eval().requires_grad_(False)


def _fidelity(pipe, concepts: list[str], rng) -> float:
    """The share of captions (4 DDIM steps, guidance 2) whose image is nearest its own concept's
    signature among all 1,000, by the cosine of the 4x4 cell colours."""
    import numpy as np
    import torch
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    pipe.set_progress_bar_config(disable=True)
    captions = [rng.choice(SCENES).replace("{c}", c) for c in concepts]
    with torch.inference_mode():
        images = pipe(captions, num_inference_steps=4, guidance_scale=2.0, height=64, width=64, output_type="np",
                      generator=[torch.Generator().manual_seed(i) for i in range(len(captions))]).images
    seen = nearest_concepts(cell_colours(images), list(IMAGENET_CLASSNAMES))
    return round(float(np.mean([s == c for s, c in zip(seen, concepts)])), 3)
