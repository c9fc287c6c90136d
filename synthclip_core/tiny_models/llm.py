"""A tiny Llama-style LLM that writes captions naming their concept, and rewrites them.

A randomly initialised LLM writes gibberish that matches no concept, and balancing would then
drop every caption. So the tiny model is trained for a bounded number of steps, at build time, on
the real caption prompt (through its own chat template) followed by templated captions that
contain the concept verbatim, and on the rewrite prompt (``synthclip-rewrite``) with one such
caption followed by another scene of the same concept. Training is seeded and single-threaded,
hence reproducible.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from ..captioning.prompts import SYNTHCLIP, SYNTHCLIP_REWRITE
from .world import SCENES

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}<|user|>{{ message['content'] }}"
    "{% else %}<|assistant|>{{ message['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL = ["<|pad|>", "<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>"]


CAPTIONS_PER_CONCEPT, REWRITES_PER_CONCEPT = 4, 2


def build_corpus(concepts: list[str], rng: random.Random) -> list[tuple[str, str]]:
    """(prompt, answer) pairs: every concept with a few scenes, and a few rewrites of one scene
    into another of the same concept."""
    pairs = []
    for concept in concepts:
        for scene in rng.sample(SCENES, CAPTIONS_PER_CONCEPT):
            pairs.append((SYNTHCLIP.render(concept), scene.replace("{c}", concept)))
        for _ in range(REWRITES_PER_CONCEPT):
            before, after = (scene.replace("{c}", concept) for scene in rng.sample(SCENES, 2))
            pairs.append((SYNTHCLIP_REWRITE.render(concept, before), after))
    rng.shuffle(pairs)
    return pairs


def _train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", bos_token="<|bos|>", eos_token="<|eos|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llm(
    out_dir: Path,
    steps: int = 900,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    log=print,
    progress=lambda done, total: None,
) -> Path:
    import torch
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pairs = build_corpus(list(IMAGENET_CLASSNAMES), rng)
        tokenizer = _train_tokenizer([p + " " + c for p, c in pairs[:4000]], vocab_size=2048)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=384,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            head_dim=32,  # vLLM's CPU attention needs head size >= 32
            max_position_embeddings=256,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=True,
        )
        model = LlamaForCausalLM(config)
        examples = [_encode(tokenizer, p, c) for p, c in pairs]
        optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=lr, total_steps=steps, pct_start=0.1)
        model.train()
        start = time.time()
        for step in range(steps):
            batch = [examples[(step * batch_size + i) % len(examples)] for i in range(batch_size)]
            ids, labels = _collate(batch, tokenizer.pad_token_id)
            loss = model(input_ids=ids, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
            progress(step + 1, steps)
            if step % 100 == 0 or step == steps - 1:
                log(f"tiny LLM step {step + 1}/{steps} loss {loss.item():.3f} ({time.time() - start:.0f}s)")
        model.eval()
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
    finally:
        torch.set_num_threads(threads)
    return out_dir


def _encode(tokenizer, prompt: str, caption: str) -> tuple[list[int], int]:
    prefix = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(caption, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prefix_ids + target_ids, len(prefix_ids)


def _collate(batch, pad_id: int):
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, (seq, prompt_len) in enumerate(batch):
        ids[row, : len(seq)] = torch.tensor(seq)
        labels[row, prompt_len : len(seq)] = torch.tensor(seq[prompt_len:])
    return ids, labels
