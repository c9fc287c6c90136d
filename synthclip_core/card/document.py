"""The card as a Hugging Face dataset card: YAML metadata that the Hub and ``datasets`` read, then
what the data is, how it was made, what was measured, what it cost and what it cannot do."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import yaml

CITATION = """@article{hammoud2024synthclip,
  title={SynthCLIP: Are We Ready for a Fully Synthetic CLIP Training?},
  author={Hammoud, Hasan Abed Al Kader and Itani, Hani and Pizzati, Fabio and Torr, Philip and Bibi, Adel and Ghanem, Bernard},
  journal={arXiv preprint arXiv:2402.01832},
  year={2024}
}"""
# What the run folder holds for ``datasets``: paths relative to the folder, which is the repository.
DATA_FILES = [{"config_name": "default", "data_files": [{"split": "train", "path": "images/part-*.parquet"}]},
              {"config_name": "shards", "data_files": [{"split": "train", "path": "shards/*.tar"}]}]
REWRITES = {"config_name": "rewrites", "data_files": [{"split": "train", "path": "rewrites/part-*.parquet"}]}
_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]


def size_category(n: int) -> str:
    """The Hub's size category of a dataset of ``n`` rows."""
    return next((label for bound, label in _SIZES if n < bound), "n>1T")


@dataclass
class Facts:
    """Everything the card says, as plain data (``card/stats.json`` holds it)."""

    run_id: str
    pretty_name: str
    license: str
    licenses: dict[str, str]  # per model or bank, as its own card says ("unknown" where it cannot be read)
    counts: dict  # images, captions, concepts, training pairs, held-out pairs
    models: list[dict]  # role, model, pinned (commit or content hash)
    template: dict  # name, version, text
    settings: dict  # per stage, what shaped its outputs (sampling, rendering, balancing, seeds)
    lineage: list[dict]  # stage, version, fingerprint, outputs
    evaluation: list[dict]  # dataset, task, metric, value
    limitations: list[str]
    captions: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)
    quality: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)
    cost_basis: dict = field(default_factory=dict)  # the price table's version and currency
    scorer: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    def headline(self) -> dict:
        """A few numbers for the stage's summary and ``synthclip compare``."""
        dup = self.images.get("near_duplicates", {})
        return {"alignment": self.images.get("alignment"), "shuffled_floor": self.images.get("shuffled_floor"),
                "image_vendi": self.images.get("image_vendi_median"), "caption_vendi": self.images.get("caption_vendi_median"),
                "near_duplicate_share": dup.get("share"), "naming_share": self.captions.get("naming_share"),
                "tail_share": self.captions.get("tail", {}).get("tail_share_of_concepts"),
                "distinct_2": self.captions.get("distinct_2"), "scorer": self.scorer}

    def metadata(self) -> dict:
        return {"pretty_name": self.pretty_name, "license": self.license, "language": ["en"],
                "task_categories": ["text-to-image", "image-to-text", "zero-shot-image-classification"],
                "size_categories": [size_category(self.counts.get("images", 0))],
                "tags": ["synthetic", "image-text-pairs", "clip", "synthclip", "webdataset"],
                "configs": DATA_FILES + ([REWRITES] if "rewrites" in self.counts else [])}


def _rewrites(c: dict) -> list[str]:
    """The card's paragraph on rewrites, where the run has them."""
    if "rewrites" not in c:
        return []
    return [f"`rewrites/part-*.parquet` (the `rewrites` config) holds the rewrites of the train captions, {c['rewrites']:,} "
            "of which count (each row names its `caption_id`; a dropped one keeps its reason), and every shard sample's "
            f"json lists its caption's that count as `rewrites`. The model of this run trained on {c.get('texts_per_image', 1):.2f} texts "
            "per image on average.", ""]


def render(facts: Facts, pictures: dict[str, str]) -> str:
    """The card's README.md; ``pictures`` are paths relative to the run folder."""
    front = yaml.safe_dump(facts.metadata(), sort_keys=False, width=1000).strip()
    c, cap, img = facts.counts, facts.captions, facts.images
    out = [f"---\n{front}\n---", "", f"# {facts.pretty_name}", "",
           f"{c.get('images', 0):,} synthetic images of {c.get('concepts', 0):,} concepts, each with the caption it was "
           f"rendered from; {c.get('train_pairs', 0):,} pairs train, {c.get('held_out_pairs', 0):,} are held out. "
           f"Made by the SynthCLIP pipeline (run `{facts.run_id}`): an LLM wrote captions for each concept of a concept "
           "bank, the captions were balanced MetaCLIP-style, and a text-to-image model rendered them. No image was "
           "photographed and no caption written by a person.", "",
           f"![Diversity and alignment against concept frequency]({pictures['story']})", "",
           "## Using it", "",
           "The run folder is the dataset repository as it is: `images/part-*.parquet` (the `default` config: "
           "image, caption, concept and split per row) and `shards/*.tar` (the `shards` config: the training split as "
           "webdataset tars that open_clip reads). Rows whose `split` is not `train` never reached the shards.", "",
           "```python", "import datasets", "ds = datasets.load_dataset(\"PATH/TO/RUN\", split=\"train\")  "
           "# or the repository's name on the Hub", "```", "",
           *_rewrites(c),
           "## How it was made", "", "| role | model | pinned |", "| --- | --- | --- |"]
    out += [f"| {m['role']} | {m['model']} | {m.get('pinned') or ''} |" for m in facts.models]
    out += ["", f"Prompt template `{facts.template.get('name')}` (version {facts.template.get('version')}), with "
            "`{concept}` replaced by each concept:", "", "```", facts.template.get("text", "").strip(), "```", ""]
    out += ["| stage | settings |", "| --- | --- |"]
    out += [f"| {stage} | {_inline(settings)} |" for stage, settings in facts.settings.items()]
    tail = cap.get("tail", {})
    words = cap.get("words", {})
    out += ["", "## Captions", "",
            "| | |", "| --- | --- |",
            f"| written | {cap.get('written', 0):,} |",
            f"| rejected by cleaning (empty, overlong, refusals) | {cap.get('rejected_by_cleaning', 0):,} |",
            f"| exact duplicates removed | {cap.get('duplicates_removed', 0):,} |",
            f"| naming no concept of the bank | {cap.get('naming_no_concept', 0):,} |",
            f"| kept by balancing (t = {cap.get('threshold')}) | {cap.get('kept', 0):,} |",
            f"| words per caption: mean, median, 5th to 95th percentile | {words.get('mean', 0):.1f}, {words.get('median')}, "
            f"{words.get('p5')} to {words.get('p95')} |",
            f"| name the concept they were written for | {cap.get('naming_share', 0):.1%} |",
            f"| distinct unigrams, bigrams (sample of {img.get('sampled', 0):,} captions) | "
            f"{cap.get('distinct_1', 0):.3f}, {cap.get('distinct_2', 0):.3f} |",
            f"| caption diversity per concept, median Vendi score | {img.get('caption_vendi_median', 0):.2f} of "
            f"{img.get('per_concept')} |",
            f"| the tail: concepts kept with fewer than t captions | {tail.get('tail_concepts', 0):,} of "
            f"{tail.get('concepts', 0):,} ({tail.get('tail_share_of_concepts', 0):.1%}; "
            f"{tail.get('tail_share_of_captions', 0):.1%} of captions) |", ""]
    dup, quality = img.get("near_duplicates", {}), facts.quality
    dup_line = (f"{dup.get('surplus', 0):,} images ({dup.get('share', 0):.2%}) beyond the first of "
                f"{dup.get('groups', 0):,} groups, over all {dup.get('images', 0):,} images (perceptual hashes at most "
                f"{dup.get('bits')} of 64 bits apart)")
    dropped = ", ".join(f"{n:,} {problem}" for problem, n in quality.get("dropped", {}).items()) or "none"
    out += ["## Images", "",
            f"Measured with `{facts.scorer}` on a sample of {img.get('sampled', 0):,} images of "
            f"{img.get('sampled_concepts', 0):,} concepts (at most {img.get('per_concept')} each; whole concept "
            "partitions in a seeded order).", "",
            "| | |", "| --- | --- |",
            f"| alignment: CLIP score with its own caption (mean) | {img.get('alignment', 0):.2f} |",
            f"| the floor: with another concept's caption (mean) | {img.get('shuffled_floor', 0):.2f} |",
            f"| images scoring below the floor | {img.get('below_floor', 0):.1%} |",
            f"| image diversity per concept, median Vendi score | {img.get('image_vendi_median', 0):.2f} of "
            f"{img.get('per_concept')} |",
            f"| near-duplicates | {dup_line} |",
            f"| dropped by the quality guards | {dropped}; {quality.get('rerendered', 0):,} re-rendered once |", "",
            f"![The largest near-duplicate groups]({pictures['duplicates']})", "",
            "The concepts to look at first, with the lowest image diversity (top) and alignment (bottom):", "",
            f"![Lowest diversity and alignment]({pictures['lowest']})", ""]
    if facts.evaluation:
        out += ["## Evaluation", "", "A CLIP model trained on the training split, on the held-out split:", "",
                "| dataset | task | metric | value |", "| --- | --- | --- | --- |"]
        out += [f"| {r['dataset']} | {r['task']} | {r['metric']} | {r['value']:.4f} |" for r in facts.evaluation]
        out += [""]
    out += ["## Lineage", "", "Every output has a commit record under `_commits/` naming its inputs, their sha256, "
            "the models and seeds; a stage's fingerprint covers what shaped its outputs.", "",
            "| stage | version | fingerprint | outputs |", "| --- | --- | --- | --- |"]
    out += [f"| {s['stage']} | {s['version']} | `{s['fingerprint'][:16]}` | {s['outputs']:,} |" for s in facts.lineage]
    prices = facts.cost_basis
    out += ["", "## Cost", "", "What each stage held and for how long, summed over the run's ledger (every committed "
            "output's record, and the spend records of failed or lost attempts and of the stage calls themselves: "
            "`synthclip cost` shows the same), what that comes to at the price table "
            f"`{prices.get('version', '?')}` ({prices.get('currency', 'USD')}), and what the stage stores.", "",
            "| stage | GPU-hours | CPU-hours | failed or lost | cost | stored |", "| --- | --- | --- | --- | --- | --- |"]
    out += [f"| {stage} | {c.get('gpu_hours', 0):.3f} | {c.get('cpu_hours', 0):.3f} | {c.get('wasted_share', 0):.1%} | "
            f"{c.get('money', 0):,.4f} | {_bytes(c.get('bytes', 0))} |" for stage, c in facts.cost.items()]
    out += ["", "## Known limitations", ""] + [f"- {line}" for line in facts.limitations]
    if len(set(facts.licenses.values())) > 1 or facts.license == "unknown":
        out += ["", "## License", "", f"`{facts.license}`: " + "; ".join(f"{k}: {v}" for k, v in facts.licenses.items())
                + ". The data's terms follow from the models' and the bank's."]
    out += ["", "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(out)


def _inline(settings: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in settings.items())


def _bytes(n: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
