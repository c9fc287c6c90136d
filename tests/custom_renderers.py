"""Render backend plug-ins that break the contract, loaded by name as a user's own would be."""

from __future__ import annotations

import io

from PIL import Image


def _jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, format="JPEG")
    return out.getvalue()


class _Base:
    device = "cpu"

    def __init__(self, **kwargs):
        self.kwargs = kwargs


class WrongSize(_Base):
    def render(self, prompts, seeds, settings):
        return [{"jpg": _jpeg(48, 40), "problem": None} for _ in prompts]


class SomeUnreadable(_Base):
    def render(self, prompts, seeds, settings):
        side = settings["stored_size"]
        return [{"jpg": b"\xff\xd8 not really a jpeg" if seed % 2 else _jpeg(side, side), "problem": None}
                for seed in seeds]


class TooFew(_Base):
    def render(self, prompts, seeds, settings):
        return [{"jpg": _jpeg(settings["stored_size"], settings["stored_size"]), "problem": None}][: len(prompts) - 1]


class AlwaysFails(_Base):
    """A setting every partition trips over (here: a size the model cannot take)."""

    def render(self, prompts, seeds, settings):
        raise ValueError(f"cannot render {settings['height']}x{settings['width']} with this model")


class CannotLoad(_Base):
    """A model that cannot be built where the actors run."""

    def __init__(self, **kwargs):
        raise RuntimeError("the model needs 40 GiB of GPU memory, this actor has none")


class FailsUntilAllowed(_Base):
    """A GPU that is lost until the test says otherwise (a file at $SYNTHCLIP_TEST_RENDER_GATE):
    the build fails, and a resume after the gate opens renders."""

    def render(self, prompts, seeds, settings):
        import os

        if not os.path.exists(os.environ.get("SYNTHCLIP_TEST_RENDER_GATE", "")):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return [{"jpg": _jpeg(settings["stored_size"], settings["stored_size"]), "problem": None} for _ in prompts]
