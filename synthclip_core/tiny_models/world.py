"""The offline world: what the tiny models write and draw, so that a tiny CLIP can learn from it.

Every caption the tiny LLM writes is a scene sentence with its concept verbatim (``SCENES``). Every
word piece of a concept that is not scene filler gets a **glyph**: two cells of a 4x4 grid, each in
one of eight colours, drawn from a hash of the token id. A concept's **signature** is the glyphs of
its tokens on a grey ground, so "tiger shark" shares its "shark" cells with "great white shark";
the tiny text-to-image model learns at build time to draw the signature of the concept its caption
names. The signature is one 4x4 picture per concept: the image tower of a CLIP can see it (the
tiny CLIP's 16-pixel patches are the cells), and only a correct caption-to-image pairing lets the
text tower learn it. It says nothing about real images: it tests the pipeline, not the recipe.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

GRID = 4  # cells per side
# Saturated colours, scaled so that guidance (x2) saturates them rather than flipping them.
PALETTE = 0.7 * np.array([[0.9, -0.8, -0.8], [-0.8, 0.8, -0.8], [-0.8, -0.6, 0.9], [0.9, 0.9, -0.8],
                          [0.9, -0.8, 0.9], [-0.8, 0.9, 0.9], [0.9, 0.2, -0.9], [0.9, 0.9, 0.9]], dtype=np.float32)

# Scenes of the captions the tiny LLM learns to write; "{c}" is the concept, verbatim.
SCENES = [
    "a {c} resting on a mossy rock in a quiet forest.",
    "a close-up photo of a {c} in soft morning light.",
    "a {c} on a wooden table next to a window.",
    "a small {c} in the middle of a busy city street.",
    "an old {c} covered in dust inside a dim attic.",
    "a bright {c} against a clear blue summer sky.",
    "a {c} near a calm lake at sunset.",
    "a child looking at a {c} in a museum hall.",
    "a {c} lying in fresh snow on a cold morning.",
    "a colorful {c} in a crowded market stall.",
    "a {c} photographed from above on a white background.",
    "a blurry {c} in the rain under a street lamp.",
    "the {c} sits alone in an empty room with gray walls.",
    "a large {c} beside a red door in an old village.",
    "a {c} in a green field with mountains behind it.",
    "two people standing next to a {c} on a sunny beach.",
]
FIRST_SPECIAL_TOKEN = 49406  # <|startoftext|>; <|endoftext|> follows


@lru_cache(maxsize=1)
def _tokenizer():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def tokens(text: str) -> list[int]:
    """CLIP BPE token ids (lower-cased), the same ids the tiny pipeline's ``CLIPTokenizer`` gives."""
    return _tokenizer().encode(text)


@lru_cache(maxsize=1)
def filler_tokens() -> frozenset[int]:
    """Tokens of the scene sentences: context, never part of a signature."""
    return frozenset(t for scene in SCENES for t in tokens(scene.replace("{c}", " ")))


def drawn_tokens(concept: str) -> list[int]:
    """The tokens of a concept that have glyphs."""
    return [t for t in tokens(concept) if t not in filler_tokens() and t < FIRST_SPECIAL_TOKEN]


def glyph(token: int) -> list[tuple[int, int]]:
    """(cell, colour) pairs of a token: two distinct cells, from a hash of the token id."""
    digest = hashlib.sha256(f"glyph\x1f{token}".encode()).digest()
    first = digest[0] % GRID**2
    second = (first + 1 + digest[1] % (GRID**2 - 1)) % GRID**2
    return [(first, digest[2] % len(PALETTE)), (second, digest[3] % len(PALETTE))]


def glyph_code(token: int) -> np.ndarray:
    """A token's glyph as 3 x 16 numbers: the part of the tiny text encoder's embedding that names it."""
    code = np.zeros((3, GRID**2), np.float32)
    for cell, colour in glyph(token):
        code[:, cell] = PALETTE[colour]
    return code


def signature(concept: str) -> np.ndarray:
    """The concept's picture as (3, 4, 4) colours in [-1, 1]; where glyphs share a cell, their mean."""
    total = np.zeros((3, GRID**2), np.float32)
    count = np.zeros(GRID**2, np.float32)
    for token in drawn_tokens(concept) if concept else []:
        for cell, colour in glyph(token):
            total[:, cell] += PALETTE[colour]
            count[cell] += 1
    return (total / np.maximum(count, 1)).reshape(3, GRID, GRID)


def latent(concept: str) -> np.ndarray:
    """The tiny pipeline's latent of a concept: its signature plus an empty fourth channel (4, 4, 4)."""
    return np.concatenate([signature(concept), np.zeros((1, GRID, GRID), np.float32)])


def cell_colours(images: np.ndarray) -> np.ndarray:
    """Each image's mean colour per cell, (N, 3, 4, 4) in [-1, 1], from (N, H, W, 3) floats in [0, 1]."""
    n, height, width, _ = images.shape
    cells = images.reshape(n, GRID, height // GRID, GRID, width // GRID, 3).mean((2, 4))
    return cells.transpose(0, 3, 1, 2) * 2 - 1


def nearest_concepts(cells: np.ndarray, concepts: list[str]) -> list[str]:
    """For each image's cell colours, the concept whose signature is nearest by cosine: what a
    render of the world shows, read back."""
    def unit(m: np.ndarray) -> np.ndarray:
        flat = m.reshape(len(m), -1)
        return flat / np.linalg.norm(flat, axis=1, keepdims=True).clip(1e-6)

    signatures = np.stack([signature(c) for c in concepts])
    return [concepts[i] for i in (unit(cells) @ unit(signatures).T).argmax(1)]
