"""Tiny text-to-image pipelines of other architectures than SD 1.5, so the render stage is tested
through each for real: SDXL (a UNet with two CLIP text encoders and size conditioning) and SD3 (an
MMDiT transformer, flow matching, two CLIP text encoders, no T5); and the tiny SD pipeline with a
tiny safety checker that flags every image, to prove the path of flagged images.

Random weights, seeded: these render noise, not the offline world (``diffusion.py`` is the one
that learns it). Each is saved with ``save_pretrained`` and loaded through the model's own index,
as a hub model is. Seconds to build.
"""

from __future__ import annotations

from pathlib import Path

from .diffusion import write_clip_tokenizer


def _clip_text(projection: bool, hidden: int = 32, projection_dim: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=77, projection_dim=projection_dim,
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _tokenizer():
    import tempfile

    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as folder:
        write_clip_tokenizer(Path(folder))
        return CLIPTokenizer(f"{folder}/vocab.json", f"{folder}/merges.txt", pad_token="<|endoftext|>", model_max_length=77)


def _vae(latent_channels: int = 4, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(16, 16, 16, 16), in_channels=3, out_channels=3, latent_channels=latent_channels,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         layers_per_block=1, norm_num_groups=8, sample_size=64, **extra)


def build_tiny_sdxl(out_dir: Path, seed: int = 0, log=print) -> Path:
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64,
        norm_num_groups=16)
    pipe = StableDiffusionXLPipeline(
        vae=_vae(), text_encoder=_clip_text(False), text_encoder_2=_clip_text(True), tokenizer=_tokenizer(),
        tokenizer_2=_tokenizer(), unet=unet,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                         timestep_spacing="leading", steps_offset=1))
    pipe.save_pretrained(out_dir)
    log(f"  tiny SDXL pipeline: {sum(p.numel() for p in unet.parameters()):,} UNet parameters")
    return out_dir


def build_tiny_sd3(out_dir: Path, seed: int = 0, log=print) -> Path:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=4, out_channels=4, num_layers=2,
                                        attention_head_dim=8, num_attention_heads=4, joint_attention_dim=64,
                                        caption_projection_dim=32, pooled_projection_dim=64)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=_vae(shift_factor=0.0, scaling_factor=1.0),
        text_encoder=_clip_text(True), tokenizer=_tokenizer(), text_encoder_2=_clip_text(True),
        tokenizer_2=_tokenizer(), text_encoder_3=None, tokenizer_3=None)
    pipe.save_pretrained(out_dir)
    log(f"  tiny SD3 pipeline: {sum(p.numel() for p in transformer.parameters()):,} transformer parameters")
    return out_dir


def build_tiny_sd_checked(out_dir: Path, base: Path, seed: int = 0, log=print) -> Path:
    """The tiny SD pipeline (``base``, ``tiny/sd``) with a tiny ``StableDiffusionSafetyChecker`` whose
    thresholds flag every image: the real checker's code path, made certain."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(seed)
    config = CLIPConfig(text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                     "num_attention_heads": 4},
                        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                       "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
                        projection_dim=32)
    checker = StableDiffusionSafetyChecker(config)
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(-2.0)  # cosine - weight > 0 always: every image flagged
        checker.special_care_embeds_weights.fill_(-2.0)
    pipe = StableDiffusionPipeline.from_pretrained(base, safety_checker=checker, requires_safety_checker=True,
                                                   feature_extractor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                                        crop_size={"height": 32, "width": 32}))
    pipe.save_pretrained(out_dir)
    log("  tiny SD pipeline with a safety checker that flags every image")
    return out_dir
