"""Writing captions for (concept, index) requests with a caption backend: what the captions stage,
the closed loop (``stages/topup``) and the rewrites (``stages/rewrites``) share.

A request's seed comes from (run seed, concept id, index) and its id from (concept id,
template@version, index, run seed), so a request asked again, by any stage on any worker, is the
same caption. Every row says which concept, template, seed, model and backend produced it;
rejected answers stay in the rows with their reason.
"""

from __future__ import annotations

import time
from collections import Counter

from ..compute import progress
from ..config import scheme_of
from ..fingerprint import model_identity_of, model_label
from ..ids import caption_id, derive_seed, rewrite_id
from ..tiny_models import resolve_model
from .backends import create_caption_backend
from .cleaning import clean_caption
from .prompts import get_template

GENERATE_CHUNK = 4096  # prompts per backend call (rounded up to whole batches): progress moves between them

# vLLM engine options that change how fast captions come, not which (the rest, such as dtype,
# quantization or max_model_len, are fingerprinted from scheme 2).
OPERATIONAL_ENGINE_OPTIONS = frozenset({
    "gpu_memory_utilization", "enforce_eager", "swap_space", "cpu_offload_gb", "max_num_seqs",
    "max_num_batched_tokens", "disable_log_stats", "distributed_executor_backend", "enable_prefix_caching",
})


def caption_settings(cfg, template: str | None = None, section=None) -> dict:
    """What a caption actor needs of a run config (plain data): the captions section's model,
    sampling and cleaning (or ``section``'s, a captions section with another model in it), with
    ``template`` in place of the section's where given."""
    c = section or cfg.captions
    identity = model_identity_of(c, scheme_of(cfg))
    return {
        "backend": c.backend, "model": c.model, "revision": c.load_revision, "dtype": c.dtype,
        "batch_size": c.batch_size, "tensor_parallel_size": c.tensor_parallel_size,
        "engine_options": c.engine_options, "template": template or c.template, "per_concept": c.per_concept,
        "sampling": c.sampling(), "max_words": c.max_words, "seed": cfg.seed,
        "model_identity": identity, "model_label": model_label(c.model, identity),
    }


class CaptionWriter:
    """Holds the caption backend (loaded once per actor) and writes the rows of a list of requests."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.template = get_template(settings["template"])
        self.backend = create_caption_backend(
            settings["backend"], model=resolve_model(settings["model"]), revision=settings["revision"],
            dtype=settings["dtype"], batch_size=settings["batch_size"],
            tensor_parallel_size=settings["tensor_parallel_size"], engine_options=settings["engine_options"],
        )

    def write(self, requests: list[tuple[str, str, int]]) -> tuple[list[dict], dict]:
        """The caption rows of ``(concept_id, concept, index)`` requests, and the lineage that
        says how they were made (cleaning counts, throughput, sampling, seeds)."""
        s = self.settings
        rows = [{"caption_id": caption_id(cid, self.template.key, index, s["seed"]), "concept_id": cid,
                 "concept": concept, "template": self.template.key, "index": index,
                 "seed": derive_seed(s["seed"], cid, index), "model": s["model_label"], "backend": s["backend"]}
                for cid, concept, index in requests]
        messages = [self.template.messages(r["concept"]) for r in rows]
        return rows, self._complete(rows, messages, "caption", "derive_seed(run_seed, concept_id, index)")

    def rewrite(self, requests: list[tuple[str, str, str, str, int]]) -> tuple[list[dict], dict]:
        """The rewrite rows of ``(caption_id, concept_id, concept, caption, k)`` requests (cleaned,
        not yet vetted against their concept and each other: ``rewriting.vet``), and their lineage."""
        s = self.settings
        rows = [{"rewrite_id": rewrite_id(cap, self.template.key, k, s["seed"]), "caption_id": cap, "concept_id": cid,
                 "concept": concept, "template": self.template.key, "k": k, "seed": derive_seed(s["seed"], cap, k),
                 "model": s["model_label"], "backend": s["backend"]}
                for cap, cid, concept, _, k in requests]
        messages = [self.template.messages(concept, caption) for _, _, concept, caption, _ in requests]
        return rows, self._complete(rows, messages, "rewrite", "derive_seed(run_seed, caption_id, k)")

    def _complete(self, rows: list[dict], messages: list[list[dict]], field: str, seed_rule: str) -> dict:
        """Generate an answer for each row's messages, clean it into ``row[field]`` (or a reason),
        and say how: cleaning counts, throughput, sampling, seeds."""
        s = self.settings
        started = time.time()
        completions = self._generate(messages, [r["seed"] for r in rows])
        seconds = max(time.time() - started, 1e-9)
        rejects, fixes = Counter(), Counter()
        for row, completion in zip(rows, completions, strict=True):
            cleaned = clean_caption(completion["text"], s["max_words"])
            row.update({"raw": completion["text"], "tokens": completion["tokens"], field: cleaned.caption,
                        "reject_reason": cleaned.reject, "fixes": list(cleaned.fixes)})
            rejects.update([cleaned.reject] if cleaned.reject else [])
            fixes.update(cleaned.fixes)
        tokens = sum(r["tokens"] for r in rows)
        return {
            "backend": s["backend"], "model": s["model_identity"], "template": self.template.key, "sampling": s["sampling"],
            "seeds": {"run_seed": s["seed"], "rule": seed_rule},
            "cleaning": {"kept": len(rows) - sum(rejects.values()), "rejected": dict(rejects), "fixed": dict(fixes)},
            "throughput": {"prompts_per_s": round(len(rows) / seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
                           "generated_tokens": tokens},
        }

    def _generate(self, messages: list[list[dict]], seeds: list[int]) -> list[dict]:
        """The backend's completions, asked for in chunks of whole batches so that progress moves
        within a partition; every prompt has its own seed, so chunking changes no caption."""
        chunk = -(-GENERATE_CHUNK // self.settings["batch_size"]) * self.settings["batch_size"]
        completions: list[dict] = []
        for start in range(0, len(messages), chunk):
            progress.within(start, len(messages))
            completions += self.backend.generate(messages[start:start + chunk], seeds[start:start + chunk],
                                                 self.settings["sampling"])
        return completions
