"""Near-duplicate images over a whole run, from the 64-bit perceptual hash each image got where it
was rendered (``images.phash``), so finding them reads one narrow column, never the images.

Two images are near-duplicates when their hashes differ in at most ``distance`` bits. Identical
hashes are grouped first (flat and black images share one); among the distinct hashes, any two
within ``distance`` bits agree exactly on at least one of ``distance + 1`` bands of the 64 bits
(pigeonhole), so candidates are the hashes that share a band, and only those are compared.
Memory: the hashes and their group labels, 16 bytes an image (480 MB at 30M)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BITS = 64


def phash(jpg: bytes) -> int:
    """The 64-bit DCT perceptual hash of a JPEG, as a signed int64 (a Parquet ``int64``)."""
    import io

    import imagehash
    from PIL import Image

    value = int(str(imagehash.phash(Image.open(io.BytesIO(jpg)))), 16)
    return value - (1 << 64) if value >= 1 << 63 else value


def hamming(a: int, b: int) -> int:
    return int(np.bitwise_count(np.uint64(a & (2**64 - 1)) ^ np.uint64(b & (2**64 - 1))))


@dataclass
class Groups:
    """Near-duplicate groups: ``labels[i]`` is image i's group (-1: it has no near-duplicate)."""

    labels: np.ndarray
    count: int  # groups of two or more images

    @property
    def images(self) -> int:
        """Images in some group."""
        return int((self.labels >= 0).sum())

    @property
    def surplus(self) -> int:
        """Images beyond the first of their group: what de-duplication would remove."""
        return self.images - self.count

    def members(self, limit: int | None = None) -> list[np.ndarray]:
        """Each group's image indices, the largest groups first (ties: by first index)."""
        order = np.argsort(self.labels, kind="stable")
        labels = self.labels[order]
        keep = labels >= 0
        order, labels = order[keep], labels[keep]
        cuts = np.flatnonzero(np.diff(labels)) + 1
        groups = np.split(order, cuts) if len(order) else []
        groups.sort(key=lambda g: (-len(g), int(g[0])))
        return groups[:limit]


def near_duplicates(hashes: np.ndarray, distance: int = 2) -> Groups:
    """Group images whose 64-bit hashes (int64 or uint64) differ in at most ``distance`` bits."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not 0 <= distance < 16:
        raise ValueError(f"distance must be in [0, 16), got {distance}")
    values = np.asarray(hashes).astype(np.int64).view(np.uint64)
    if len(values) == 0:
        return Groups(np.empty(0, np.int64), 0)
    distinct, image_of = np.unique(values, return_inverse=True)
    edges = [_close_pairs(distinct, distance, band) for band in _bands(distance)] if distance else []
    pairs = np.concatenate(edges, axis=1) if edges else np.empty((2, 0), np.int64)
    n = len(distinct)
    graph = coo_matrix((np.ones(pairs.shape[1], np.int8), (pairs[0], pairs[1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    labels = component[image_of]
    sizes = np.bincount(labels)
    labels = np.where(sizes[labels] >= 2, labels, -1)
    kept = np.unique(labels[labels >= 0])
    renumbered = np.full(len(sizes), -1, np.int64)
    renumbered[kept] = np.arange(len(kept))
    return Groups(np.where(labels >= 0, renumbered[np.maximum(labels, 0)], -1), len(kept))


def _bands(distance: int) -> list[tuple[int, int]]:
    """``distance + 1`` (shift, width) bands covering the 64 bits."""
    count = distance + 1
    widths = [BITS // count + (1 if i < BITS % count else 0) for i in range(count)]
    shifts = np.concatenate([[0], np.cumsum(widths)[:-1]])
    return [(int(s), int(w)) for s, w in zip(shifts, widths)]


def _close_pairs(distinct: np.ndarray, distance: int, band: tuple[int, int]) -> np.ndarray:
    """Index pairs of distinct hashes that share ``band`` and differ in at most ``distance`` bits."""
    shift, width = band
    keys = (distinct >> np.uint64(shift)) & np.uint64((1 << width) - 1)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    found = []
    for size in np.unique(sizes[sizes > 1]):  # buckets of one size at once: a matrix of their members
        members = order[starts[sizes == size][:, None] + np.arange(size)]
        i, j = np.triu_indices(int(size), k=1)
        left, right = members[:, i].ravel(), members[:, j].ravel()
        close = np.bitwise_count(distinct[left] ^ distinct[right]) <= distance
        found.append(np.stack([left[close], right[close]]))
    return np.concatenate(found, axis=1) if found else np.empty((2, 0), np.int64)
