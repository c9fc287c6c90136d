"""One optimisation step of CLIP training, alone: what the loop repeats and the GPU proof measures.

No data, no checkpoints, no Ray: a batch of images and tokens in, one update of the model out, so
the step can be timed against open_clip's own ``train_one_epoch`` on the same batches.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

AUTOCAST = {"amp_bf16": "bfloat16", "amp_fp16": "float16"}


def autocast_for(precision: str, device):
    """Mixed precision as ``train.precision`` names it (a context manager to enter each step)."""
    import torch

    return torch.autocast(device.type, dtype=getattr(torch, AUTOCAST[precision])) if precision in AUTOCAST else nullcontext()


def train_step(model, core, loss_fn, optimizer, scaler, images, texts, autocast):
    """Forward, contrastive loss, backward and update on one batch (``core``: the model inside
    DDP, whose temperature is clamped as CLIP's is); the loss, left on the device."""
    import torch

    device = core.logit_scale.device
    with autocast:
        out = model(images.to(device, non_blocking=True), texts.to(device, non_blocking=True))
        loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    with torch.no_grad():
        core.logit_scale.clamp_(0, math.log(100))
    return loss
