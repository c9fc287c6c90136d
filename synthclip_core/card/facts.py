"""What a card says of how a run was made, read from its config, pins and completion markers:
models and their pins, the prompt, the settings that shaped the data, lineage, evaluation,
licenses and the limitations a user should know before training on it."""

from __future__ import annotations

import os

from .document import Facts

UNKNOWN = "unknown"


def facts_of(run, counts) -> Facts:
    """The card's facts of ``run`` (a RunView whose stages up to eval are complete); ``counts`` is
    the balanced stats table (per concept, before and after)."""
    from ..captioning.prompts import get_template
    from ..captioning.rewriting import texts_trained_on

    cfg = run.config
    template = get_template(cfg.captions.template)
    images = run.require("images").rows
    train = run.require("shards").rows if run.has("shards") else 0
    concepts = sum(1 for c in counts.column("count_after").to_pylist() if c)
    models = models_of(run)
    licenses = {m["model"]: model_license(m["model"], m.get("pinned")) for m in models}
    licenses[f"bank {cfg.concepts.source}"] = UNKNOWN
    known = {v for v in licenses.values() if v != UNKNOWN}
    license_ = cfg.card.license or (known.pop() if len(known) == 1 and UNKNOWN not in licenses.values() else
                                    "other" if known else UNKNOWN)
    return Facts(
        run_id=run.ref.run_id,
        pretty_name=cfg.card.pretty_name or f"SynthCLIP {cfg.name}: {cfg.captions.model} captions, {cfg.images.model} images",
        license=license_, licenses=licenses,
        counts={"images": images, "captions": run.require("balanced").notes.get("kept", 0), "concepts": concepts,
                "train_pairs": train, "held_out_pairs": images - train, "texts_per_image": texts_trained_on(run),
                **({"rewrites": run.require("rewrites").notes.get("rewrites_kept", 0)} if run.has("rewrites") else {})},
        models=models, template={"name": template.name, "version": template.version, "text": template.text},
        settings=settings_of(cfg), lineage=lineage_of(run), evaluation=evaluation_of(run),
        limitations=[], scorer=scorer_name(run),
    )


def scorer_name(run) -> str:
    scorer = run.config.card.scorer
    return scorer if scorer != "run" else f"the CLIP of run {run.ref.run_id} ({run.require('train').notes.get('arch')})"


def models_of(run) -> list[dict]:
    """Each model that shaped the data: its role, name and what pins it (a hub commit, or a local
    model's content hash)."""
    from ..fingerprint import model_identity_of

    found = []
    for stage in run.stages:
        for role, section in stage.models(run.config).items():
            identity = model_identity_of(section)
            pinned = section.commit or identity.get("commit") or identity.get("content_sha256", "")
            found.append({"role": role, "model": section.model, "pinned": str(pinned)[:16]})
        for field_, repo in stage.named_models(run.config).items():
            found.append({"role": field_, "model": repo, "pinned": run.config.model_pins.get(field_, {}).get("commit", "")})
    return found


def model_license(name: str, commit: str | None = None) -> str:
    """The license a model's own card declares, where the card can be read here (a local folder's
    README.md, or the Hub cache's); ``unknown`` otherwise."""
    from ..tiny_models import resolve_model

    path = resolve_model(name)
    readme = os.path.join(path, "README.md") if os.path.isdir(path) else None
    if readme is None or not os.path.isfile(readme):
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, "README.md", revision=commit)
            readme = cached if isinstance(cached, str) else None
        except Exception:  # not a repository name: a local path, a tag
            readme = None
    if not readme:
        return UNKNOWN
    try:
        from huggingface_hub import ModelCard

        return str(ModelCard.load(readme).data.to_dict().get("license") or UNKNOWN)
    except Exception:
        return UNKNOWN


def settings_of(cfg) -> dict:
    c, i, b = cfg.captions, cfg.images, cfg.balanced
    return {
        "captions": {"backend": c.backend, "per concept": c.per_concept, "temperature": c.temperature, "top_p": c.top_p,
                     "presence penalty": c.presence_penalty, "frequency penalty": c.frequency_penalty,
                     "max tokens": c.max_tokens, "max words": c.max_words},
        "balanced": {"t": b.threshold, "eval fraction": b.eval_fraction, "held-out concepts": b.held_out_count},
        "images": {"scheduler": i.scheduler, "steps": i.steps, "guidance": i.guidance_scale,
                   "rendered": f"{i.width}x{i.height}", "stored": f"{i.stored_size}px JPEG q{i.jpeg_quality}",
                   "per caption": i.images_per_caption, **({"best of": i.best_of} if i.best_of > 1 else {})},
        **({"rewrites": {"per caption": cfg.rewrites.per_caption, "template": cfg.rewrites.template,
                         "model": cfg.rewrites.model or c.model, "trained": f"train.texts: {cfg.train.texts}"}}
           if cfg.rewrites.per_caption else {}),
        "seeds": {"run seed": cfg.seed, "rule": "every caption's and image's seed derives from its id and the run seed"},
    }


def lineage_of(run) -> list[dict]:
    return [{"stage": s.name, "version": s.version, "fingerprint": run.fingerprints.get(s.name, ""),
             "outputs": len(run.require(s.name).outputs)} for s in run.stages if s.name != "card"]


def evaluation_of(run) -> list[dict]:
    import json

    if not run.has("eval") or "report.json" not in run.store.committed("eval"):
        return []
    report = json.loads(run.store.read_bytes("eval", "report.json"))
    return [{k: r[k] for k in ("dataset", "task", "metric", "value")} for r in report.get("results", [])
            if isinstance(r.get("value"), (int, float))]


def limitations(run, facts: Facts) -> list[str]:
    """What a user should know before training on the data, from what was measured."""
    cfg, cap, img = run.config, facts.captions, facts.images
    tail = cap.get("tail", {})
    lines = [f"The concept bank's skew: {tail.get('tail_concepts', 0):,} of {tail.get('concepts', 0):,} concepts "
             f"({tail.get('tail_share_of_concepts', 0):.0%}) have fewer than t = {cfg.balanced.threshold} captions; "
             "balancing caps the head but cannot lift the tail (see the story picture)."]
    if cfg.balanced.held_out_count:
        lines.append(f"{cfg.balanced.held_out_count} concepts are held out of training on purpose (their rows have "
                     "split `holdout`): accuracy on them measures generalisation beyond the bank.")
    if unsafe := run.require("concepts").notes.get("unsafe"):
        lines.append(f"{unsafe['dropped']} concepts were dropped as unsafe before captioning (concepts/unsafe.parquet); "
                     "the data says nothing of them.")
    if cfg.card.scorer == "run":
        lines.append("Alignment and diversity are measured with the CLIP trained on this data, which has seen the "
                     "training images: compare runs with one fixed scorer (card.scorer).")
    if any(m["model"].startswith("tiny/") for m in facts.models):
        lines.append("Made offline with tiny models built on the machine: the images are coloured glyphs, not "
                     "pictures (docs/offline-world.md).")
    if img.get("below_floor", 0) > 0.05:
        lines.append(f"{img['below_floor']:.0%} of sampled images score below the shuffled-caption floor: their "
                     "images do not show their captions (see the lowest-alignment concepts).")
    return lines
