"""Caption backends: one small interface, chosen by name.

A backend turns chat prompts into completions, one seed per prompt, batching as it sees fit. It
receives and returns plain Python data only, because it may run in a Ray actor under another
interpreter (the vLLM environment). Model libraries are imported inside the backend, never at
package import.
"""

from __future__ import annotations

from typing import Protocol, TypedDict

from ..config import is_plugin, plugin_class


class Completion(TypedDict):
    text: str
    tokens: int  # generated tokens, for throughput accounting


class CaptionBackend(Protocol):
    device: str

    def generate(self, messages: list[list[dict[str, str]]], seeds: list[int], sampling: dict) -> list[Completion]:
        """One completion per conversation, sampled with its own seed."""
        ...


BACKENDS = ("transformers", "vllm")


def create_caption_backend(name: str, **kwargs) -> CaptionBackend:
    """``transformers``, ``vllm``, or a plug-in named ``package.module:ClassName`` taking the same
    keyword arguments (as render backends are named)."""
    if name == "transformers":
        from .transformers_backend import TransformersCaptioner

        return TransformersCaptioner(**kwargs)
    if name == "vllm":
        from .vllm_backend import VLLMCaptioner

        return VLLMCaptioner(**kwargs)
    if is_plugin(name):
        return plugin_class(name, "captions.backend")(**kwargs)
    raise ValueError(f"unknown caption backend {name!r} (known: {', '.join(BACKENDS)}, or package.module:ClassName)")
