"""Fast deterministic backends for the scale rehearsal (``bench_scale.py``) only: they stand in for
the models so that the platform's own work (planning, reading, committing, lineage, whole-run steps)
is what the rehearsal measures. Loaded through the ``package.module:ClassName`` backend hook, as a
user's plug-in would be.
"""

from __future__ import annotations

import io
import random
import re

from PIL import Image

FILLER = ["a", "the", "on", "in", "with", "near", "bright", "small", "photo", "scene", "under", "sky", "old", "red"]
_CONCEPT = re.compile(r"concept is (.+?)\. Output")


class EchoCaptioner:
    """A caption of filler words around the concept the prompt names, drawn from the prompt's seed."""

    device = "cpu"

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def generate(self, messages: list[list[dict]], seeds: list[int], sampling: dict) -> list[dict]:
        out = []
        for conversation, seed in zip(messages, seeds):
            text = conversation[-1]["content"]
            found = _CONCEPT.search(text)
            concept = found.group(1) if found else text[-40:]
            rng = random.Random(seed)
            words = [rng.choice(FILLER) for _ in range(6)]
            if self.names(text, concept, rng):
                words.insert(rng.randrange(7), concept)
            out.append({"text": " ".join(words) + ".", "tokens": len(words) + 1})
        return out

    def names(self, prompt: str, concept: str, rng: random.Random) -> bool:
        """Whether this caption names its concept: always."""
        return True


class PixelRenderer:
    """A tiny flat JPEG of the stored size per prompt, its colour drawn from the seed."""

    device = "cpu"

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.cache: dict[tuple, bytes] = {}

    def render(self, prompts: list[str], seeds: list[int], settings: dict) -> list[dict]:
        side = settings["stored_size"]
        return [{"jpg": self._jpeg(side, seed % 64), "problem": None} for seed in seeds]

    def _jpeg(self, side: int, shade: int) -> bytes:
        key = (side, shade)
        if key not in self.cache:
            out = io.BytesIO()
            Image.new("RGB", (side, side), (shade * 4, 255 - shade * 4, 128)).save(out, format="JPEG", quality=80)
            self.cache[key] = out.getvalue()
        return self.cache[key]


class LeakyCaptioner(EchoCaptioner):
    """A model of an LLM that does not always name its concept (for ``bench_topup.py``): a caption
    names it with probability q, else it is filler that names no concept. q is 0.55 for the paper's
    prompt and 0.8 for the closed loop's concept-focused one ("word for word"), times 0.15 for the
    fifth of concepts that are hard to name (by a hash of the concept): easy concepts fill in the
    first round, hard ones take several. Seeded per prompt."""

    def names(self, prompt: str, concept: str, rng: random.Random) -> bool:
        import zlib

        hard = zlib.crc32(concept.encode()) % 5 == 0
        return rng.random() < (0.8 if "word for word" in prompt else 0.55) * (0.15 if hard else 1.0)
