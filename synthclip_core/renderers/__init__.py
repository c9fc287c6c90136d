"""Render backends: prompts and seeds in, encoded images out (plain Python data both ways)."""

from __future__ import annotations

from typing import Protocol, TypedDict


class Rendered(TypedDict):
    jpg: bytes | None  # None when the image failed a quality guard
    problem: str | None  # "nan", "black", "constant" or "nsfw"


class RenderBackend(Protocol):
    device: str

    def render(self, prompts: list[str], seeds: list[int], settings: dict) -> list[Rendered]:
        """One JPEG per prompt, each from its own seeded noise, or the reason it was refused."""
        ...


def create_render_backend(name: str, **kwargs) -> RenderBackend:
    if name == "diffusers":
        from .diffusers_backend import DiffusersRenderer

        return DiffusersRenderer(**kwargs)
    raise ValueError(f"unknown render backend {name!r} (known: diffusers)")
