"""Images: a diffusion model renders ``images_per_caption`` images for every balanced caption.

Partition ``images/part-i-j`` is made from slice j of ``balanced/part-i`` (or of a closed-loop
partition, ``topup/part-rK-i``) by a
:class:`RenderWorker` in an actor of the render pool. An image's seed comes from (run seed,
caption id, index), its id from (caption id, index, run seed); every image is rendered from its
own generator, so batching and resumption never change pixels. Each run of rows of one split is a
row group of its own and the commit record counts the rows per split (``splits``), so export plans
its shards from records and eval reads held-out rows without a byte of a train row's JPEG. Once
every partition is committed, ``contact_sheet.png`` shows the first images with their captions.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections import Counter

from PIL import Image

from ..compute import progress
from ..config import ImagesConfig
from ..errors import BackendError
from ..fingerprint import model_identity, model_identity_of, model_label
from ..ids import derive_seed, image_id
from ..pictures import contact_sheet
from ..rendering.backends import create_render_backend
from ..rendering.scoring import ClipScorer
from ..runs.pins import scheme_of
from ..storage.schemas import table_from_rows, to_parquet_bytes
from ..storage.store import RunStore
from ..tiny_models import resolve_model
from .common import data_parts, lineage, read_table, worker_info
from .partitions import committed_rows, model_pool, pending_jobs, run_jobs
from .stage import Run, Stage, StageSummary, section_settings

NAME = "images"
VERSION = 3
CONTACT_SHEET = "contact_sheet.png"


CAPTION_STAGES = ("balanced", "topup")  # what is rendered: balanced captions, then the closed loop's (where a run has it)


def render_parts(run: Run, records: dict[tuple[str, str], dict]) -> list[tuple[str, str, str, dict]]:
    """Render partitions: slices of ``captions_per_partition`` rows of each caption partition.

    ``images/part-i-j`` holds rows ``[j*R, (j+1)*R)`` of ``balanced/part-i`` (and
    ``images/part-rK-i-j`` of the closed loop's ``topup/part-rK-i``); sizes come from the caption
    partitions' commit ``records`` (by stage and output), so planning reads no data. Each is
    (output, input stage, input, slice).
    """
    size = run.config.images.captions_per_partition
    plan = []
    for (stage, part), record in records.items():
        stem = part[: -len(".parquet")]
        for j, start in enumerate(range(0, record["rows"], size)):
            plan.append((f"{stem}-{j:03d}.parquet", stage, part, {"offset": start, "length": size}))
    return plan


def caption_records(run: Run) -> dict[tuple[str, str], dict]:
    """The commit records of the caption partitions to render, by (stage, output), in order."""
    out: dict[tuple[str, str], dict] = {}
    for stage in CAPTION_STAGES:
        if run.has(stage):
            records = run.store.records(stage, data_parts(run.require(stage).outputs))
            out.update({(stage, part): record for part, record in records.items()})
    return out


def plan_images(run: Run) -> list[str]:
    return [output for output, *_ in render_parts(run, caption_records(run))]


def run_images(run: Run) -> StageSummary:
    if (finished := run.finished(NAME)) is not None:
        return finished
    records = caption_records(run)
    plan = render_parts(run, records)
    parts = [output for output, *_ in plan]
    by_stage: dict[str, dict[str, dict]] = {}
    for (stage, part), record in records.items():
        by_stage.setdefault(stage, {})[part] = record
    jobs = pending_jobs(run, NAME, plan, by_stage)
    summary = run_jobs(run, NAME, workers(run.config)[0], RenderWorker, (worker_settings(run),), jobs, len(plan))
    if not summary.ok:
        return summary
    summary.rows = committed_rows(run, NAME, parts)
    write_contact_sheet(run, parts)
    summary.pictures = [f"{NAME}/{CONTACT_SHEET}"]
    return run.complete(summary, parts + [CONTACT_SHEET])


def workers(cfg) -> list:
    return [model_pool(cfg, "images")]


def worker_settings(run: Run) -> dict:
    r = run.config.images
    identity = model_identity_of(r, scheme_of(run.config))
    return {
        "backend": r.backend, "model": r.model, "revision": r.load_revision, "dtype": r.dtype, "compile": r.compile,
        "safety_checker": r.safety_checker, "scheduler": r.scheduler, "batch_size": r.batch_size,
        "pipeline": r.pipeline, "offload": r.offload, "device_map": r.device_map,
        "best_of": r.best_of, "scorer": r.scorer, "scorer_identity": scorer_identity(r.scorer),
        "images_per_caption": r.images_per_caption,
        "sampler": {"steps": r.steps, "guidance_scale": r.guidance_scale, "eta": r.eta,
                    "height": r.height, "width": r.width, "stored_size": r.stored_size,
                    "jpeg_quality": r.jpeg_quality},
        "seed": run.config.seed, "model_identity": identity,
        "model_label": model_label(r.model, identity),
    }


def scorer_identity(name: str) -> dict:
    """A best-of-k scorer by its identity: a local one's content, a named one by its name."""
    if name.startswith("local-dir:"):
        return model_identity(name.removeprefix("local-dir:"), None, 2)
    return model_identity(name, None, 2) if name.startswith("tiny/") else {"name": name}


def settings(cfg) -> dict:
    """The section's settings; with best-of-k, the scorer by its identity."""
    out = section_settings(NAME)(cfg)
    if cfg.images.best_of > 1:
        out["scorer"] = scorer_identity(cfg.images.scorer)
    return out


def write_contact_sheet(run: Run, parts: list[str], count: int = 24) -> None:
    """The first ``count`` images of the run (in partition order) in a grid, with their captions."""
    store = run.store
    if CONTACT_SHEET in store.committed(NAME):
        return
    started = time.time()
    rows: list[dict] = []
    for part in parts:
        rows += read_table(store, NAME, part).select(["jpg", "caption"]).to_pylist()[: count - len(rows)]
        if len(rows) >= count:
            break
    store.commit(NAME, CONTACT_SHEET, contact_sheet(rows), lineage(run.fingerprints[NAME], VERSION, [], started, len(rows)))


class RenderWorker:
    """Runs inside a render actor: loads the pipeline once, renders one partition per call.

    An image that fails a quality guard (NaN, black, constant, flagged) is rendered once more
    from a new seed derived from the first; if that fails too, it is dropped and counted.
    """

    def __init__(self, settings: dict):
        self.settings = settings
        self.backend = create_render_backend(
            settings["backend"], model=resolve_model(settings["model"]), revision=settings["revision"],
            scheduler=settings["scheduler"], dtype=settings["dtype"], compile=settings["compile"],
            safety_checker=settings["safety_checker"], pipeline=settings["pipeline"], offload=settings["offload"],
            device_map=settings["device_map"],
        )
        self.best_of = settings.get("best_of", 1)
        self.scorer = ClipScorer(settings["scorer"], self.backend.device) if self.best_of > 1 else None

    def __call__(self, store: RunStore, job: dict) -> dict:
        started = time.time()
        s = self.settings
        source = job["inputs"][0]
        captions = read_table(store, source["stage"], source["output"], "balanced").slice(job["offset"], job["length"]).to_pylist()
        rows = [{**caption, "index": index, "seed": derive_seed(s["seed"], caption["caption_id"], index),
                 "image_id": image_id(caption["caption_id"], index, s["seed"]), "rerendered": False}
                for caption in captions for index in range(s["images_per_caption"])]
        chosen = self._render_best(rows) if self.scorer else None
        if chosen is None:
            self._render(rows)
        retry = [] if chosen is not None else [r for r in rows if r["jpg"] is None]  # k candidates are k tries
        for row in retry:
            row.update(seed=derive_seed(row["seed"], "re-render"), rerendered=True)
        self._render(retry)
        dropped = Counter(r["problem"] for r in rows if r["jpg"] is None)
        kept = [r for r in rows if r["jpg"] is not None]
        size, sampler = s["sampler"]["stored_size"], s["sampler"]
        for row in kept:
            row.update(model=s["model_label"], scheduler=s["scheduler"], steps=sampler["steps"],
                       guidance_scale=sampler["guidance_scale"], format="jpeg", width=size, height=size,
                       sha256=hashlib.sha256(row["jpg"]).hexdigest())
        seconds = time.time() - started
        table = to_parquet_bytes(table_from_rows(kept, NAME), NAME, group_by="split")  # eval reads held-out rows only
        return store.commit(NAME, job["output"], table, lineage(
            job["fingerprint"], job["version"], job["inputs"], started, len(kept), slice=[job["offset"], job["length"]],
            splits=dict(sorted(Counter(r["split"] for r in kept).items())),
            model=s["model_identity"], scheduler=s["scheduler"], sampler=sampler,
            seeds={"run_seed": s["seed"], "rule": "derive_seed(run_seed, caption_id, index); "
                   "a re-render uses derive_seed(first seed, 're-render')"},
            quality={"rerendered": len(retry), "dropped": dict(dropped)},
            **({"best_of": {"k": self.best_of, "scorer": s["scorer_identity"], "images": chosen,
                            "rule": "candidate c has seed derive_seed(seed, 'candidate', c) (c = 0: the seed itself); "
                                    "the highest CLIP score is kept"}} if chosen is not None else {}),
            throughput={"images_per_s": round(len(rows) / max(seconds, 1e-9), 3)},
            worker=worker_info(self.backend.device),
        ), deterministic=False)  # diffusion on a GPU may differ between two writers

    def _render(self, rows: list[dict]) -> None:
        batch_size = self.settings["batch_size"]
        for start in range(0, len(rows), batch_size):
            progress.within(start, len(rows))
            batch = rows[start:start + batch_size]
            images = self.backend.render([r["caption"] for r in batch], [r["seed"] for r in batch], self.settings["sampler"])
            if len(images) != len(batch):
                raise BackendError(f"render backend {self.settings['backend']!r} returned {len(images)} images "
                                   f"for {len(batch)} prompts")
            for row, image in zip(batch, images):
                jpg, problem = image.get("jpg"), image.get("problem")
                if jpg is not None and problem is None:
                    problem = self._check(jpg)
                row.update(jpg=None if problem else jpg, problem=problem)

    def _render_best(self, rows: list[dict]) -> dict:
        """Best of k: ``best_of`` candidates per image, each from its own seed, scored against the
        caption; the best passing candidate is the row's image (a row with none is dropped for the
        first candidate's problem). Per image id: the candidates' seeds, scores (None: failed a
        guard) and the index kept."""
        k = self.best_of
        candidates = [{"caption": row["caption"], "seed": row["seed"] if c == 0 else derive_seed(row["seed"], "candidate", c)}
                      for row in rows for c in range(k)]
        self._render(candidates)
        passing = [c for c in candidates if c["jpg"] is not None]
        for candidate, score in zip(passing, self.scorer([c["jpg"] for c in passing], [c["caption"] for c in passing])):
            candidate["score"] = round(score, 4)
        chosen = {}
        for i, row in enumerate(rows):
            group = candidates[i * k:(i + 1) * k]
            scores = [c.get("score") for c in group]
            ranked = [j for j in range(k) if scores[j] is not None]
            best = max(ranked, key=lambda j: (scores[j], -j)) if ranked else None
            if best is None:
                row.update(jpg=None, problem=group[0]["problem"])
            else:
                row.update(jpg=group[best]["jpg"], problem=None, seed=group[best]["seed"])
            chosen[row["image_id"]] = {"seeds": [c["seed"] for c in group], "scores": scores, "kept": best}
        return chosen

    def _check(self, jpg: bytes) -> str | None:
        """A backend's image must be a readable JPEG of the stored size; a wrong size is a bug in
        the backend (every image would be wrong), an unreadable one is dropped and counted."""
        try:
            with Image.open(io.BytesIO(jpg)) as image:
                size, kind = image.size, image.format
        except (OSError, ValueError):
            return "undecodable"
        side = self.settings["sampler"]["stored_size"]
        if kind != "JPEG" or size != (side, side):
            raise BackendError(f"render backend {self.settings['backend']!r} returned a {size[0]}x{size[1]} {kind} "
                               f"image; render.stored_size is {side}, so it must be a {side}x{side} JPEG")
        return None


STAGE = Stage(
    name=NAME,
    version=VERSION,
    section=ImagesConfig,
    upstream=CAPTION_STAGES,
    run=run_images,
    plan=plan_images,
    workers=workers,
    settings=settings,
    description="Render every pending balanced partition on the diffusion actor pool.",
)
