"""Captions with Hugging Face transformers: the CPU and fallback backend, batched.

transformers samples a batch from one global random stream, which would tie each caption to its
batch-mates. Here a logits processor samples every row with its own seeded generator (after
OpenAI-style presence/frequency penalties, temperature and top-p) and leaves only the chosen
token, which greedy decoding then takes: batched speed, per-caption seeds. Prompts are
left-padded; the same prompts in the same batches give the same text.
"""

from __future__ import annotations


class TransformersCaptioner:
    def __init__(self, model: str, revision: str | None = None, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 16, **_ignored):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        torch_dtype = {"auto": torch.float16 if self.device == "cuda" else torch.float32,
                       "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype=torch_dtype)
        self.model.to(self.device).eval()

    def generate(self, messages: list[list[dict[str, str]]], seeds: list[int], sampling: dict) -> list[dict]:
        out: list[dict] = []
        for start in range(0, len(messages), self.batch_size):
            out += self._batch(messages[start:start + self.batch_size], seeds[start:start + self.batch_size], sampling)
        return out

    def _batch(self, messages, seeds, sampling) -> list[dict]:
        import torch
        from transformers import LogitsProcessorList

        prompts = [self.tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in messages]
        enc = self.tokenizer(prompts, add_special_tokens=False, padding=True, return_tensors="pt").to(self.device)
        width = enc["input_ids"].shape[1]
        sampler = SeededSampler(width, seeds, sampling)
        with torch.inference_mode():
            ids = self.model.generate(
                **enc, do_sample=False, max_new_tokens=sampling.get("max_tokens", 64),
                logits_processor=LogitsProcessorList([sampler]), pad_token_id=self.tokenizer.pad_token_id,
                temperature=None, top_p=None, top_k=None,
            )
        eos = self.tokenizer.eos_token_id
        results = []
        for row in ids[:, width:].tolist():
            tokens = row.index(eos) + 1 if eos in row else len(row)
            results.append({"text": self.tokenizer.decode(row[:tokens], skip_special_tokens=True), "tokens": tokens})
        return results


class SeededSampler:
    """Samples each row from its own generator; returns scores where only that token survives."""

    def __init__(self, prompt_width: int, seeds: list[int], sampling: dict):
        import torch

        self.prompt_width = prompt_width
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.temperature = sampling.get("temperature", 1.0)
        self.top_p = sampling.get("top_p", 1.0)
        self.presence = sampling.get("presence_penalty", 0.0)
        self.frequency = sampling.get("frequency_penalty", 0.0)

    def __call__(self, input_ids, scores):
        import torch

        logits = scores.float().cpu()
        generated = input_ids[:, self.prompt_width:].cpu()
        if generated.shape[1] and (self.presence or self.frequency):
            counts = torch.zeros_like(logits).scatter_add_(1, generated, torch.ones_like(generated, dtype=logits.dtype))
            logits = logits - self.frequency * counts - self.presence * (counts > 0).to(logits.dtype)
        if self.temperature <= 0:
            choice = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits / self.temperature, dim=-1)
            if self.top_p < 1.0:
                sorted_probs, order = probs.sort(dim=-1, descending=True)
                outside = sorted_probs.cumsum(dim=-1) - sorted_probs > self.top_p  # always keeps the top token
                sorted_probs[outside] = 0.0
                probs = torch.zeros_like(probs).scatter_(1, order, sorted_probs)
            choice = torch.stack([torch.multinomial(probs[i], 1, generator=g)[0] for i, g in enumerate(self.generators)])
        forced = torch.full_like(scores, float("-inf"))
        forced[torch.arange(scores.shape[0]), choice.to(scores.device)] = 0.0
        return forced
