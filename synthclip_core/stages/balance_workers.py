"""The two parallel passes of balancing, run in CPU actors (one automaton per actor).

Pass 1 (``MatchProcessor``): caption partition i -> ``balanced/matches/part-i.parquet`` with each
caption's text hash and matched concept indices. Pass 2 (``SampleProcessor``): matches i, the
global keep probabilities and the duplicate rows -> ``balanced/part-i.parquet``. Memory is the
automaton plus one partition per actor.
"""

from __future__ import annotations

import resource
import time

import numpy as np
import pyarrow as pa

from ..balancing import ConceptMatcher, is_kept, split_of, text_hash
from ..schemas import SCHEMAS, table_from_rows, to_parquet_bytes
from ..store import RunStore
from .common import lineage, read_concepts, read_table, worker_info


def read_duplicates(store: RunStore) -> dict[int, set[int]]:
    """The rows dropped as exact duplicates, by caption partition index."""
    table = read_table(store, "balanced", "duplicates.parquet", "balance_duplicates")
    by_part: dict[int, set[int]] = {}
    for part, row in zip(table.column("partition").to_pylist(), table.column("row").to_pylist()):
        by_part.setdefault(part, set()).add(row)
    return by_part


class MatchProcessor:
    def __init__(self, settings: dict):
        self.settings = settings
        self.matcher: ConceptMatcher | None = None
        self.build = {}

    def _matcher(self, store: RunStore) -> ConceptMatcher:
        if self.matcher is None:
            concepts = read_concepts(store, self.settings["concept_parts"], ("concept",)).column(0).to_pylist()
            rss_before, started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.time()
            self.matcher = ConceptMatcher(concepts, self.settings["case_sensitive"])
            self.build = {"concepts": len(concepts), "build_s": round(time.time() - started, 3),
                          "max_rss_growth_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024, 1)}
        return self.matcher

    def __call__(self, store: RunStore, job: dict) -> dict:
        matcher = self._matcher(store)
        started = time.time()
        captions = read_table(store, "captions", job["inputs"][0]["output"]).select(["caption_id", "concept_id", "caption"])
        texts = captions.column("caption").to_pylist()
        table = pa.table({
            "caption_id": captions.column("caption_id"), "concept_id": captions.column("concept_id"),
            "caption": captions.column("caption"), "empty": [not t for t in texts],
            "text_hash": [text_hash(t) if t else 0 for t in texts],
            "matched": [matcher.match(t) if t else [] for t in texts],
        }, schema=SCHEMAS["balance_matches"][1])
        seconds = max(time.time() - started, 1e-9)
        return store.commit("balanced", job["output"], to_parquet_bytes(table, "balance_matches"),
                            lineage(job["fingerprint"], job["inputs"], started, len(texts), automaton=self.build,
                                    throughput={"captions_per_s": round(len(texts) / seconds, 1)}, worker=worker_info()))


class SampleProcessor:
    def __init__(self, settings: dict):
        self.settings = settings
        self.cache: dict = {}

    def _shared(self, store: RunStore) -> tuple[np.ndarray, list[str], dict[int, set[int]]]:
        if not self.cache:
            counts = read_table(store, "balanced", "counts.parquet", "balance_counts")
            self.cache = {"p": counts.column("keep_probability").to_numpy(),
                          "ids": counts.column("concept_id").to_pylist(), "dups": read_duplicates(store)}
        return self.cache["p"], self.cache["ids"], self.cache["dups"]

    def __call__(self, store: RunStore, job: dict) -> dict:
        probs, concept_ids, duplicates = self._shared(store)
        started = time.time()
        seed, eval_fraction = self.settings["seed"], self.settings["eval_fraction"]
        held_out = set(self.settings.get("held_out", ()))
        dups = duplicates.get(job["partition"], set())
        matches = read_table(store, "balanced", job["inputs"][0]["output"], "balance_matches")
        columns = [matches.column(c).to_pylist() for c in ("caption_id", "concept_id", "caption", "empty", "matched")]
        kept = []
        for row_index, (cap_id, source, caption, empty, matched) in enumerate(zip(*columns)):
            if empty or not matched or row_index in dups:
                continue
            ids = [concept_ids[e] for e in matched]
            if is_kept(seed, cap_id, ids, [probs[e] for e in matched]):
                split = "holdout" if held_out and (source in held_out or held_out.intersection(ids)) \
                    else split_of(seed, cap_id, eval_fraction)
                kept.append({"caption_id": cap_id, "concept_id": source, "caption": caption,
                             "matched_concept_ids": ids, "split": split})
        return store.commit("balanced", job["output"], to_parquet_bytes(table_from_rows(kept, "balanced"), "balanced"),
                            lineage(job["fingerprint"], job["inputs"], started, len(kept),
                                    threshold=self.settings["threshold"], seed=seed, worker=worker_info()))
