"""Captions: an LLM writes ``per_concept`` captions for every concept, one seed each.

Partition ``captions/part-i`` is made from ``concepts/part-i``. A caption's seed comes from
(run seed, concept id, index) and its id from (concept id, template, index, run seed).
"""

from __future__ import annotations

import time

import pyarrow as pa

from ..captioners import create_caption_backend
from ..fingerprint import model_identity
from ..ids import caption_id, derive_seed
from ..prompts import clean_caption, get_template
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
    return {
        "backend": c.backend, "model": c.model, "revision": c.revision, "dtype": c.dtype,
        "template": c.template, "per_concept": c.per_concept, "sampling": c.sampling(),
        "seed": run.config.seed, "model_identity": model_identity(c.model, c.revision),
    }


class CaptionProcessor:
    """Runs inside a caption actor: loads the backend once, captions one partition per call."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.template = get_template(settings["template"])
        self.backend = create_caption_backend(
            settings["backend"], model=resolve_model(settings["model"]),
            revision=settings["revision"], dtype=settings["dtype"],
        )

    def __call__(self, store: RunStore, job: dict) -> dict:
        started = time.time()
        s = self.settings
        concepts = read_table(store, "concepts", job["inputs"][0]["output"]).to_pylist()
        rows = []
        for concept in concepts:
            for index in range(s["per_concept"]):
                seed = derive_seed(s["seed"], concept["concept_id"], index)
                rows.append({
                    "caption_id": caption_id(concept["concept_id"], self.template.key, index, s["seed"]),
                    "concept_id": concept["concept_id"], "concept": concept["concept"],
                    "template": self.template.key, "index": index, "seed": seed,
                })
        raw = self.backend.generate([self.template.messages(r["concept"]) for r in rows],
                                    [r["seed"] for r in rows], s["sampling"])
        for row, text in zip(rows, raw, strict=True):
            row["raw"], row["caption"] = text, clean_caption(text)
        data = to_parquet_bytes(pa.Table.from_pylist(rows), "captions")
        seconds = time.time() - started
        return store.commit("captions", job["output"], data, lineage(
            job["fingerprint"], job["inputs"], started, len(rows),
            model=s["model_identity"], template=self.template.key, sampling=s["sampling"],
            seeds={"run_seed": s["seed"], "rule": "derive_seed(run_seed, concept_id, index)"},
            empty_captions=sum(1 for r in rows if not r["caption"]),
            throughput={"captions_per_s": round(len(rows) / max(seconds, 1e-9), 2)},
            worker=worker_info(getattr(self.backend, "device", "cpu")),
        ))

