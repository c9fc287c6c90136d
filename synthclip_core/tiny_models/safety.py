"""A tiny text classifier for the concept safety screen (``concept_safety.py``), trained when it
is built to call weapons ``unsafe``: a stand-in policy whose words the offline bank (ImageNet's
names) holds, so the screen has something to find offline.

A real ``BertForSequenceClassification`` with a WordPiece tokenizer trained on the bank's names,
saved with ``save_pretrained`` and loaded by transformers' text-classification pipeline as any hub
classifier is. Seeded, one thread, a few seconds.
"""

from __future__ import annotations

import random
from pathlib import Path

# The policy the tiny classifier learns (ImageNet names holding these words are "unsafe").
UNSAFE_WORDS = ("rifle", "revolver", "missile", "cannon", "guillotine", "projectile", "gun", "sword", "bomb", "pistol")
STEPS = 300


def _is_unsafe(concept: str) -> bool:
    return bool(set(concept.lower().replace("-", " ").split()) & set(UNSAFE_WORDS))


def build_tiny_safety(out_dir: Path, seed: int = 0, log=print, progress=lambda done, total: None) -> Path:
    import torch
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    try:
        names = list(dict.fromkeys(IMAGENET_CLASSNAMES)) + [f"{w}" for w in UNSAFE_WORDS]
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.train_from_iterator(names, trainers.WordPieceTrainer(
            vocab_size=2000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False))
        from tokenizers.processors import TemplateProcessing

        tok.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
            ("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                            cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
        config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64, num_labels=2,
                            id2label={0: "safe", 1: "unsafe"}, label2id={"safe": 0, "unsafe": 1})
        model = BertForSequenceClassification(config)
        unsafe = [n for n in names if _is_unsafe(n)]
        safe = [n for n in names if not _is_unsafe(n)]
        optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for step in range(STEPS):
            batch = rng.sample(safe, 24) + rng.choices(unsafe, k=8)
            labels = torch.tensor([int(_is_unsafe(b)) for b in batch])
            enc = tokenizer(batch, padding=True, return_tensors="pt")
            loss = model(**enc, labels=labels).loss
            loss.backward()
            optim.step()
            optim.zero_grad(set_to_none=True)
            progress(step + 1, STEPS)
            if step % 100 == 0 or step == STEPS - 1:
                log(f"  tiny safety classifier step {step + 1}/{STEPS} loss {loss.item():.3f}")
        model.eval()
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
    finally:
        torch.set_num_threads(threads)
    return out_dir
