"""The GPU proof's training part: our step against open_clip's ``train_one_epoch`` on the same batches."""

from __future__ import annotations

from .timing import Budget, free, peak_gib, reset_peak, timed


def train_part(shapes: dict, device: str, budget: Budget) -> dict:
    import torch

    out: dict = {"model": shapes["clip"], "precision": shapes["precision"], "batches": {}}
    for batch in shapes["train_batches"]:
        if not budget.allows(40 if device == "cuda" else 5):
            out["batches"][str(batch)] = {"skipped": f"{budget.left():.0f} s of the budget left"}
            continue
        try:
            ours = _train_ours(shapes, device, batch)
            free(device)
            reference = _train_open_clip(shapes, device, batch)
            free(device)
        except torch.cuda.OutOfMemoryError as exc:
            out["batches"][str(batch)] = {"failed": f"out of memory: {' '.join(str(exc).split())[:200]}"}
            free(device)
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
    reset_peak(device)
    for images, texts in data[:2]:  # warm-up
        train_step(model, model, loss_fn, optimizer, scaler, images, texts, autocast)
    seconds, _ = timed(device, lambda: [train_step(model, model, loss_fn, optimizer, scaler, i, t, autocast)
                                         for i, t in data[2:]])
    # as the loop runs it: the loss read back every step (its metrics), which waits for the GPU
    synced_s, _ = timed(device, lambda: [train_step(model, model, loss_fn, optimizer, scaler, i, t, autocast).item()
                                          for i, t in data[2:]])
    samples = batch * (len(data) - 2)
    return {"samples_per_s": round(samples / seconds, 1), "synced_samples_per_s": round(samples / synced_s, 1),
            "peak_gib": peak_gib(device)}


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
    reset_peak(device)
    seconds, _ = timed(device, lambda: train_one_epoch(model, {"train": info}, loss, 1, optimizer, None, None, None, args))
    return {"samples_per_s": round(batch * (len(data) - 2) / seconds, 1), "peak_gib": peak_gib(device)}
