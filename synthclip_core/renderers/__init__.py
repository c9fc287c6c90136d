"""Render backends: prompts and seeds in, encoded images out (plain Python data both ways)."""

from __future__ import annotations

from typing import Protocol


class RenderBackend(Protocol):
    def render(self, prompts: list[str], seeds: list[int], settings: dict) -> list[bytes]:
        """One JPEG per prompt, each from its own seeded noise."""
        ...


def create_render_backend(name: str, **kwargs) -> RenderBackend:
    if name == "diffusers":
        from .diffusers_backend import DiffusersRenderer

        return DiffusersRenderer(**kwargs)
    raise ValueError(f"unknown render backend {name!r} (known: diffusers)")
