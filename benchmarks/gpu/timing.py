"""What every part of the GPU proof shares: the time budget, timing that waits for the GPU, its
peak memory, and the prompts."""

from __future__ import annotations

import time

WORDS = ["a red fox", "a lighthouse", "a bowl of ramen", "a violin", "a steam locomotive", "an owl", "a glacier",
         "a bicycle", "a cathedral", "a koi pond", "a typewriter", "a snow leopard", "a sailboat", "a cactus"]

class Budget:
    """Seconds left of the run's budget; a part asks before it starts."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def allows(self, seconds: float) -> bool:
        return self.left() >= seconds


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def timed(device: str, call) -> tuple[float, object]:
    sync(device)
    started = time.perf_counter()
    out = call()
    sync(device)
    return time.perf_counter() - started, out


def peak_gib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


def reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
