"""Zero-shot classification and image-text retrieval metrics for open_clip models."""

from __future__ import annotations

import io


def encode_images(model, preprocess, jpgs: list[bytes], batch_size: int, device: str = "cpu"):
    import torch
    from PIL import Image

    feats = []
    with torch.inference_mode():
        for start in range(0, len(jpgs), batch_size):
            batch = torch.stack([preprocess(Image.open(io.BytesIO(b)).convert("RGB")) for b in jpgs[start:start + batch_size]])
            feats.append(torch.nn.functional.normalize(model.encode_image(batch.to(device)), dim=-1))
    return torch.cat(feats)


def encode_texts(model, tokenizer, texts: list[str], batch_size: int, device: str = "cpu"):
    import torch

    feats = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            tokens = tokenizer(texts[start:start + batch_size]).to(device)
            feats.append(torch.nn.functional.normalize(model.encode_text(tokens), dim=-1))
    return torch.cat(feats)


def zero_shot_classifier(model, tokenizer, classnames: list[str], templates, batch_size: int, device: str = "cpu"):
    """One normalised text embedding per class: the mean over the prompt templates."""
    import torch

    weights = []
    for name in classnames:
        prompts = [t(name) if callable(t) else t.format(name) for t in templates]
        emb = encode_texts(model, tokenizer, prompts, batch_size, device).mean(dim=0)
        weights.append(torch.nn.functional.normalize(emb, dim=-1))
    return torch.stack(weights, dim=1)


def topk_accuracy(logits, labels, ks=(1, 5)) -> dict[str, float]:
    result = {}
    for k in ks:
        k_eff = min(k, logits.shape[1])
        hits = (logits.topk(k_eff, dim=1).indices == labels[:, None]).any(dim=1).float()
        result[f"top{k}"] = hits.mean().item()
    return result


def retrieval_recall(image_feats, text_feats, text_to_image: list[int], ks=(1, 5, 10)) -> dict[str, float]:
    """Recall@k both ways; ``text_to_image[j]`` is the image index of caption ``j``."""
    import torch

    sims = image_feats @ text_feats.T  # images x texts
    owner = torch.tensor(text_to_image)
    result = {}
    for k in ks:
        k_t = min(k, sims.shape[1])
        top_texts = sims.topk(k_t, dim=1).indices  # per image
        i2t = (owner[top_texts] == torch.arange(sims.shape[0])[:, None]).any(dim=1).float().mean().item()
        k_i = min(k, sims.shape[0])
        top_images = sims.T.topk(k_i, dim=1).indices  # per text
        t2i = (top_images == owner[:, None]).any(dim=1).float().mean().item()
        result[f"image_to_text_R@{k}"], result[f"text_to_image_R@{k}"] = i2t, t2i
    return result
