"""Caption backends: one small interface, chosen by name.

A backend turns chat prompts into raw completions, one seed per prompt. It receives and returns
plain Python data only, because it may run in a Ray actor under another interpreter (the vLLM
environment). Model libraries are imported inside the backend, never at package import.
"""

from __future__ import annotations

from typing import Protocol


class CaptionBackend(Protocol):
    def generate(
        self, messages: list[list[dict[str, str]]], seeds: list[int], sampling: dict
    ) -> list[str]:
        """One completion per conversation, sampled with its own seed."""
        ...


def create_caption_backend(name: str, **kwargs) -> CaptionBackend:
    if name == "transformers":
        from .transformers_backend import TransformersCaptioner

        return TransformersCaptioner(**kwargs)
    if name == "vllm":
        from .vllm_backend import VLLMCaptioner

        return VLLMCaptioner(**kwargs)
    raise ValueError(f"unknown caption backend {name!r} (known: transformers, vllm)")
