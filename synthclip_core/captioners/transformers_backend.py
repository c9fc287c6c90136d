"""Captions with Hugging Face transformers: the CPU and fallback backend.

Each prompt is sampled on its own with ``torch.manual_seed(seed)`` so that every caption has its
own reproducible random stream regardless of batching (transformers has no per-row seeds).
Presence and frequency penalties follow the OpenAI/vLLM definition (subtracted from the logits of
tokens already generated), so both backends read the same sampling settings the same way.
"""

from __future__ import annotations


class TransformersCaptioner:
    def __init__(self, model: str, revision: str | None = None, device: str = "auto", dtype: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = "cuda" if device == "auto" and torch.cuda.is_available() else (
            "cpu" if device == "auto" else device
        )
        torch_dtype = {"auto": torch.float16 if self.device == "cuda" else torch.float32,
                       "float32": torch.float32, "float16": torch.float16,
                       "bfloat16": torch.bfloat16}[dtype]
        self.tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
        self.model = AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype=torch_dtype)
        self.model.to(self.device).eval()

    def generate(self, messages: list[list[dict[str, str]]], seeds: list[int], sampling: dict) -> list[str]:
        import torch
        from transformers import LogitsProcessorList

        outputs = []
        for conversation, seed in zip(messages, seeds, strict=True):
            ids = self.tokenizer.apply_chat_template(
                conversation, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"].to(self.device)
            torch.manual_seed(seed)
            penalties = _OutputPenalties(
                ids.shape[1], sampling.get("presence_penalty", 0.0), sampling.get("frequency_penalty", 0.0)
            )
            with torch.inference_mode():
                out = self.model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=sampling.get("temperature", 1.0) > 0,
                    temperature=sampling.get("temperature", 1.0),
                    top_p=sampling.get("top_p", 1.0),
                    max_new_tokens=sampling.get("max_tokens", 64),
                    logits_processor=LogitsProcessorList([penalties]),
                    pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                )
            outputs.append(self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
        return outputs


class _OutputPenalties:
    """OpenAI-style presence/frequency penalties over the generated tokens only."""

    def __init__(self, prompt_len: int, presence: float, frequency: float):
        self.prompt_len, self.presence, self.frequency = prompt_len, presence, frequency

    def __call__(self, input_ids, scores):
        import torch

        generated = input_ids[:, self.prompt_len:]
        if generated.shape[1] == 0 or (self.presence == 0 and self.frequency == 0):
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)
