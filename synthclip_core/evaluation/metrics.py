"""The numbers: top-k accuracy (overall and per class), retrieval recall both ways, linear probe."""

from __future__ import annotations

import numpy as np


def topk_accuracy(logits, labels, ks=(1, 5)) -> dict[str, float]:
    result = {}
    for k in ks:
        k_eff = min(k, logits.shape[1])
        hits = (logits.topk(k_eff, dim=1).indices == labels[:, None]).any(dim=1).float()
        result[f"top{k}"] = hits.mean().item()
    return result


def topk_hits(top, labels, ks=(1, 5)) -> dict[str, float]:
    """Top-k accuracy from each sample's best classes (``top``: samples x k indices, best first)."""
    return {f"top{k}": (top[:, :k] == labels[:, None]).any(dim=1).float().mean().item() for k in ks}


def per_class_accuracy(logits, labels, n_classes: int) -> list[float | None]:
    """Top-1 accuracy of each class (None for a class without samples), from logits or from each
    sample's predicted class."""
    predicted = logits.argmax(dim=1) if logits.dim() == 2 else logits
    out: list[float | None] = []
    for c in range(n_classes):
        mask = labels == c
        out.append((predicted[mask] == c).float().mean().item() if mask.any() else None)
    return out


def retrieval_recall(image_feats, text_feats, text_to_image: list[int], ks=(1, 5, 10)) -> dict[str, float]:
    """Recall@k both ways; ``text_to_image[j]`` is the image of caption ``j`` (several captions
    may share an image: image-to-text counts a hit when any of its captions is in the top k)."""
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


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0), val_fraction: float = 0.2,
                 seed: int = 0) -> dict:
    """Logistic regression on frozen features: C chosen on a held-out part of the training split,
    then refit on all of it and scored on the test split."""
    from sklearn.linear_model import LogisticRegression

    order = np.random.default_rng(seed).permutation(len(train_y))
    n_val = max(1, int(len(order) * val_fraction)) if len(order) > 1 else 0
    val, fit = order[:n_val], order[n_val:]
    scores = {}
    for c in cs:
        model = LogisticRegression(C=c, max_iter=2000).fit(train_x[fit], train_y[fit])
        scores[c] = float((model.predict(train_x[val]) == train_y[val]).mean()) if n_val else 0.0
    best = max(cs, key=lambda c: (scores[c], -abs(np.log10(c))))
    final = LogisticRegression(C=best, max_iter=2000).fit(train_x, train_y)
    return {"accuracy": float((final.predict(test_x) == test_y).mean()), "C": best, "val_accuracy": scores[best],
            "train_samples": int(len(train_y)), "test_samples": int(len(test_y))}
