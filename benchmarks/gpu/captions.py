"""The GPU proof's caption part: the transformers backend on the largest Llama shape the time allows."""

from __future__ import annotations

import time
from pathlib import Path

from .timing import WORDS, Budget, free, peak_gib, timed


def caption_part(shapes: dict, device: str, work: Path, budget: Budget) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from synthclip_core.captioning.prompts import get_template
    from synthclip_core.captioning.transformers_backend import TransformersCaptioner
    from synthclip_core.tiny_models.llm import CHAT_TEMPLATE, _train_tokenizer

    choice = next(((name, cfg) for (name, cfg), need in zip(shapes["llms"], shapes["llm_seconds"]) if budget.allows(need)), None)
    if choice is None:
        return {"skipped": f"{budget.left():.0f} s of the budget left"}
    name, shape = choice
    template = get_template("synthclip")
    concepts = [w.removeprefix("a ").removeprefix("an ") for w in WORDS]
    tokenizer = _train_tokenizer([template.render(c) + " " + c for c in concepts * 20], vocab_size=4096)
    tokenizer.chat_template = CHAT_TEMPLATE
    started = time.perf_counter()
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **shape)
    dtype = getattr(torch, shapes["dtype"])
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    folder = work / "llm"
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    parameters = sum(p.numel() for p in model.parameters())
    del model
    free(device)
    batch = shapes["llm_batch"]
    captioner = TransformersCaptioner(str(folder), device=device, dtype=shapes["dtype"], batch_size=batch)
    built_s = time.perf_counter() - started
    messages = [template.messages(concepts[i % len(concepts)]) for i in range(batch)]
    sampling = {"temperature": 0.7, "top_p": 0.95, "presence_penalty": 1.0, "frequency_penalty": 1.0,
                "max_tokens": shapes["max_tokens"]}
    captioner.generate(messages, list(range(batch)), sampling)  # warm-up
    seconds, completions = timed(device, lambda: captioner.generate(messages, list(range(batch, 2 * batch)), sampling))
    tokens = sum(c["tokens"] for c in completions)
    return {"model": name, "parameters": parameters, "dtype": shapes["dtype"], "batch": batch, "build_s": round(built_s, 1),
            "prompts_per_s": round(batch / seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "tokens_per_prompt": round(tokens / batch, 1), "peak_gpu_gib": peak_gib(device)}
