"""Captions: an LLM writes ``per_concept`` captions for every concept, one seed each.

Partition ``captions/part-i`` is made from ``concepts/part-i``. A caption's seed comes from
(run seed, concept id, index) and its id from (concept id, template@version, index, run seed).
Every row says which concept, template, seed, model and backend produced it; rejected answers stay
in the partition with their reason, and the commit record counts them.
"""

from __future__ import annotations

import time
from collections import Counter

import pyarrow as pa

from ..caption_cleaning import clean_caption
from ..captioners import create_caption_backend
from ..fingerprint import model_identity, model_label
from ..ids import caption_id, derive_seed
from ..prompts import get_template
from ..run import Run
from ..schemas import to_parquet_bytes
from ..store import RunStore
from ..tiny_models import resolve_model
from .common import lineage, plan_mirrored, read_table, worker_info
from .concepts import MANIFEST as CONCEPTS_MANIFEST


def plan_captions(run: Run) -> tuple[list[dict], int]:
    """Pending caption jobs and the total number of partitions."""
    return plan_mirrored(run, "captions", "concepts", CONCEPTS_MANIFEST)


def caption_settings(run: Run) -> dict:
    c = run.config.captions
    identity = model_identity(c.model, c.revision)
    return {
        "backend": c.backend, "model": c.model, "revision": c.revision, "dtype": c.dtype,
        "batch_size": c.batch_size, "tensor_parallel_size": c.tensor_parallel_size,
        "engine_options": c.engine_options, "template": c.template, "per_concept": c.per_concept,
        "sampling": c.sampling(), "max_words": c.max_words, "seed": run.config.seed,
        "model_identity": identity,
        "model_label": model_label(c.model, identity),
    }


class CaptionProcessor:
    """Runs inside a caption actor: loads the backend once, captions one partition per call."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.template = get_template(settings["template"])
        self.backend = create_caption_backend(
            settings["backend"], model=resolve_model(settings["model"]), revision=settings["revision"],
            dtype=settings["dtype"], batch_size=settings["batch_size"],
            tensor_parallel_size=settings["tensor_parallel_size"], engine_options=settings["engine_options"],
        )

    def __call__(self, store: RunStore, job: dict) -> dict:
        started = time.time()
        s = self.settings
        concepts = read_table(store, "concepts", job["inputs"][0]["output"]).to_pylist()
        rows = [
            {"caption_id": caption_id(c["concept_id"], self.template.key, index, s["seed"]),
             "concept_id": c["concept_id"], "concept": c["concept"], "template": self.template.key,
             "index": index, "seed": derive_seed(s["seed"], c["concept_id"], index),
             "model": s["model_label"], "backend": s["backend"]}
            for c in concepts for index in range(s["per_concept"])
        ]
        generate_started = time.time()
        completions = self.backend.generate([self.template.messages(r["concept"]) for r in rows],
                                            [r["seed"] for r in rows], s["sampling"])
        generate_s = max(time.time() - generate_started, 1e-9)
        rejects, fixes = Counter(), Counter()
        for row, completion in zip(rows, completions, strict=True):
            cleaned = clean_caption(completion["text"], s["max_words"])
            row.update(raw=completion["text"], tokens=completion["tokens"], caption=cleaned.caption,
                       reject_reason=cleaned.reject, fixes=list(cleaned.fixes))
            rejects.update([cleaned.reject] if cleaned.reject else [])
            fixes.update(cleaned.fixes)
        tokens = sum(r["tokens"] for r in rows)
        return store.commit("captions", job["output"], to_parquet_bytes(pa.Table.from_pylist(rows), "captions"), lineage(
            job["fingerprint"], job["inputs"], started, len(rows),
            backend=s["backend"], model=s["model_identity"], template=self.template.key, sampling=s["sampling"],
            seeds={"run_seed": s["seed"], "rule": "derive_seed(run_seed, concept_id, index)"},
            cleaning={"kept": len(rows) - sum(rejects.values()), "rejected": dict(rejects), "fixed": dict(fixes)},
            throughput={"prompts_per_s": round(len(rows) / generate_s, 2),
                        "tokens_per_s": round(tokens / generate_s, 1), "generated_tokens": tokens},
            worker=worker_info(self.backend.device),
        ))
