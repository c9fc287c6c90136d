"""Balancing at paper scale on one node: 500k concepts, 1M captions.

Reported, all measured in this process on this machine:
- the automaton: build time and memory for 500k concepts;
- the stage (Ray actors, store, both passes, reduce, report) with 1 and 2 workers: captions/s;
- (a) a plain single-process pyahocorasick loop (match only) and (b) the naive per-concept
  substring loop on a small sample: captions/s, and the stage's ratio to each.
Usage: ``python -m benchmarks.bench_balancing [CAPTIONS] [CONCEPTS]``.
"""

from __future__ import annotations

import random
import resource
import sys
import tempfile
import time

import ahocorasick
import pyarrow as pa

from benchmarks.results_file import record
from synthclip_core.curation.balancing import ConceptMatcher, prepare_text
from synthclip_core.ids import caption_id, concept_id
from synthclip_core.stages.executor import execute

SYLLABLES = ["ka", "lo", "mi", "tu", "ra", "ne", "so", "vi", "da", "pe", "zu", "ho", "ri", "ga", "fe", "no"]
FILLER = ["a", "the", "on", "in", "with", "near", "of", "bright", "small", "photo", "scene", "under", "sky"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))


def synthetic_bank(n: int, rng: random.Random) -> list[str]:
    bank: dict[str, None] = {}
    while len(bank) < n:
        bank[" ".join(_word(rng) for _ in range(rng.choice((1, 1, 1, 2, 2, 3))))] = None
    return list(bank)


def synthetic_captions(n: int, bank: list[str], rng: random.Random) -> list[str]:
    zipf = [int(len(bank) * (rng.random() ** 3)) for _ in range(n * 2)]  # skewed concept frequencies
    out = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(8)]
        words.insert(rng.randrange(8), bank[zipf[2 * i]])
        if i % 3 == 0:
            words.insert(rng.randrange(9), bank[zipf[2 * i + 1]])
        out.append(" ".join(words) + rng.choice([".", ",", "!", ""]))
    return out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plain_loop(captions: list[str], bank: list[str]) -> float:
    automaton = ahocorasick.Automaton()
    for index, concept in enumerate(bank):
        automaton.add_word(f" {concept} ", index)
    automaton.make_automaton()
    start = time.perf_counter()
    for caption in captions:
        {index for _, index in automaton.iter(prepare_text(caption))}
    return len(captions) / (time.perf_counter() - start)


def naive_loop(captions: list[str], bank: list[str]) -> float:
    start = time.perf_counter()
    for caption in captions:
        text = prepare_text(caption)
        [i for i, c in enumerate(bank) if f" {c} " in text]
    return len(captions) / (time.perf_counter() - start)


def stage_throughput(captions: list[str], bank: list[str], workers: int, partitions: int) -> float:
    import yaml

    from synthclip_core.compute.ray_runtime import ensure_ray
    from synthclip_core.pipeline import config_from_dict
    from synthclip_core.runs.lifecycle import open_run
    from synthclip_core.stages.executor import complete
    from synthclip_core.stages.stage import StageSummary
    from synthclip_core.storage.schemas import to_parquet_bytes
    from synthclip_core.storage.store import RunRef

    ensure_ray()
    with tempfile.TemporaryDirectory() as root:
        bank_path = f"{root}/bank.txt"
        with open(bank_path, "w") as handle:
            handle.write("\n".join(bank))
        data = yaml.safe_load(open("configs/micro.yaml"))
        data["concepts"] = {"source": bank_path, "per_partition": -(-len(bank) // partitions)}
        data["balanced"] = {"threshold": 20, "num_actors": workers, "eval_fraction": 0.001}
        run = open_run(config_from_dict(data), RunRef(root, f"bench-{workers}"))
        execute(run, "concepts")
        per = -(-len(captions) // partitions)
        cid = concept_id(bank[0])
        for p in range(partitions):
            texts = captions[p * per:(p + 1) * per]
            n = len(texts)
            table = pa.table({
                "caption_id": [caption_id(cid, "t", p * per + i, 0) for i in range(n)], "concept_id": [cid] * n,
                "concept": [bank[0]] * n, "template": ["t@v1"] * n, "index": [0] * n, "seed": [0] * n,
                "model": ["m"] * n, "backend": ["b"] * n, "raw": texts, "tokens": [1] * n, "caption": texts,
                "reject_reason": [None] * n, "fixes": [[]] * n,
            })
            run.store.commit("captions", f"part-{p:05d}.parquet", to_parquet_bytes(table, "captions"))
        complete(run, StageSummary("captions", outputs=[f"part-{p:05d}.parquet" for p in range(partitions)]))
        start = time.perf_counter()
        execute(run, "balanced")
        return len(captions) / (time.perf_counter() - start)


def main(n_captions: int = 1_000_000, n_concepts: int = 500_000) -> dict:
    rng = random.Random(0)
    bank = synthetic_bank(n_concepts, rng)
    captions = synthetic_captions(n_captions, bank, rng)
    rss, start = _rss_mb(), time.perf_counter()
    matcher = ConceptMatcher(bank)
    build_s, build_mb = time.perf_counter() - start, _rss_mb() - rss
    stats = matcher.automaton.get_stats()
    del matcher
    plain = plain_loop(captions[:200_000], bank)
    naive = naive_loop(captions[:50], bank)
    stage = {w: stage_throughput(captions, bank, w, partitions=20) for w in (1, 2)}
    print(f"balancing, {n_captions:,} captions x {n_concepts:,} concepts (2-core machine):")
    print(f"  automaton: built in {build_s:.1f} s, +{build_mb:.0f} MB RSS ({stats['total_size'] / 2**20:.0f} MB of trie)")
    print(f"  (a) plain pyahocorasick loop, match only, 1 process: {plain:,.0f} captions/s")
    print(f"  (b) naive per-concept loop: {naive:,.1f} captions/s")
    for workers, rate in stage.items():
        print(f"  stage, {workers} worker(s), both passes + reduce + report: {rate:,.0f} captions/s "
              f"= {rate / plain:.2f}x (a), {rate / naive:,.0f}x (b)")
    result = {"captions": n_captions, "concepts": n_concepts, "automaton_build_s": round(build_s, 2),
              "automaton_mb": round(build_mb), "plain_pyahocorasick_captions_per_s": round(plain),
              "naive_captions_per_s": round(naive, 1),
              "stage_captions_per_s": {f"{w} worker(s)": round(r) for w, r in stage.items()},
              "ratio_vs_plain": {f"{w} worker(s)": round(r / plain, 3) for w, r in stage.items()},
              "scaling_1_to_2_workers": round(stage[2] / stage[1], 2)}
    record("balancing", result)
    return result


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*args)
