"""Diversity as the Vendi score (Friedman and Dieng, 2023): the exponential of the entropy of the
eigenvalues of the samples' similarity matrix, an effective number of distinct samples. k copies
of one sample score 1, k mutually orthogonal samples score k, whatever the embedding."""

from __future__ import annotations

import numpy as np


def vendi_score(embeddings: np.ndarray) -> float:
    """Vendi score of n embeddings (rows) under cosine similarity; 0 for no rows.

    The nonzero eigenvalues of K/n = X Xᵀ/n (X's rows unit vectors) are those of Xᵀ X/n, so the
    cost is that of the smaller of the two matrices: a few dozen samples per concept is instant."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        return 0.0
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    n = len(x)
    gram = x @ x.T if n <= x.shape[1] else x.T @ x
    eigenvalues = np.clip(np.linalg.eigvalsh(gram / n), 0.0, None)
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    return float(np.exp(-np.sum(eigenvalues * np.log(eigenvalues))))
