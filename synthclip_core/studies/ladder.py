"""A scaling ladder: one recipe trained on nested subsets of a run's pairs, each model measured on
the same data, and a curve fitted through them (the paper's Table 1, for your own data).

A ladder lives under the root beside runs, as ``ROOT/LADDER_ID``: ``study/ladder.json`` (what it
is: the run, its pairs, the fractions, the recipe, the sources it is set against) is its first
commit, and ``study/points.json``, ``fit.json``, ``report.md`` and ``<metric>.png`` its last,
each record naming the rungs' evaluation reports and checkpoints it was made from. Its rungs are
ordinary training jobs under the same root (``rung-RUN-SOURCE-PAIRS-HASH``, the hash of what it trains
on and how), so each trains, resumes and is evaluated like any job, and a rung already finished, by
this ladder or another, is read, never trained again.

Every rung draws its pairs as a source ``limit`` of the same name and seed, and a limit keeps the
first pairs of one seeded order (``training/layout.subset``), so each rung's pairs hold the
smaller rungs'. Every rung is evaluated on the run's held-out split (``eval.held_out_of``) and its
``eval.datasets``; a source set against the run (``--against NAME=SOURCE``) climbs the same sizes.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, field_validator

from ..errors import ConfigError
from ..evaluation import mistakes, predictions
from ..evaluation.compare import mistakes_picture
from ..evaluation.config import EvalConfig
from ..fingerprint import stable_hash
from ..ids import NAME_PATTERN, check_run_id
from ..pipeline import JobConfig, load_job_config
from ..runs.lifecycle import Run, load_run, open_run
from ..storage.lineage import input_ref, lineage
from ..storage.store import RunRef, RunStore
from ..storage.tables import output_index
from ..training.config import DataSource, TrainConfig
from . import ladder_report, scaling, snapshot

SYNTHETIC = "synthetic"  # the run's own pairs, as a source of every rung
STUDY = "study"  # the ladder's folder of outputs
VERSION = 1  # of what a ladder writes
SPEC, POINTS, FIT, REPORT = "ladder.json", "points.json", "fit.json", "report.md"
DEFAULT_FRACTIONS = (0.125, 0.25, 0.5, 1.0)
HEADLINE = ("zeroshot", "top1")  # the metric a ladder's verdict speaks of, on the run's held-out split


class LadderSpec(BaseModel):
    """What a ladder is; stored as ``study/ladder.json``, so the same command continues it."""

    run_id: str
    pairs: int = Field(..., ge=1, description="The run's training pairs when the ladder began.")
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    seed: int = 0
    train: dict[str, Any]  # the recipe: a train section, its sources left to the ladder
    eval: dict[str, Any]  # the run's eval section: the same data for every rung
    against: dict[str, str] = Field(default_factory=dict)  # name -> training source URI
    against_pairs: dict[str, int] = Field(default_factory=dict)  # name -> the pairs it holds
    early: dict[str, Any] | None = None  # while the run renders: {"counts": [[image partition, train rows]], "final_pairs"}

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("--fractions: name at least one fraction")
        if bad := [f for f in value if not 0 < f <= 1]:
            raise ValueError(f"--fractions: each must be in (0, 1], got {bad[0]:g}")
        return tuple(sorted(set(value)))

    @field_validator("against")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        for name in value:
            if name == SYNTHETIC or not re.match(NAME_PATTERN, name):
                raise ValueError(f"--against {name}=...: the name must be letters, digits, '.', '_' or '-' and not "
                                 f"{SYNTHETIC!r}")
        return value

    def ladder_id(self) -> str:
        return f"ladder-{self.run_id}-{stable_hash(self.model_dump(mode='json'))[:8]}"


@dataclass(frozen=True)
class Rung:
    source: str  # SYNTHETIC or an --against name
    fraction: float
    pairs: int
    job_id: str
    config: JobConfig


def new_spec(run: Run, fractions: tuple[float, ...] = DEFAULT_FRACTIONS, recipe: TrainConfig | None = None,
             against: dict[str, str] | None = None) -> LadderSpec:
    """The ladder of ``run`` (checked: it has pairs to train on), with the run's ``train`` section
    as its recipe unless a job preset's is given."""
    if run.kind != "run":
        raise ConfigError(f"{run.ref.run_id} is a training job; a ladder climbs a synthetic run's pairs")
    early = None
    if run.completion("shards") is not None:
        pairs = run_pairs(run)
    else:  # still rendering: the pairs committed so far, and what the finished run will hold
        counts = snapshot.committed_images(run)
        pairs = sum(n for _, n in counts)
        early = {"counts": [list(c) for c in counts], "final_pairs": max(snapshot.final_pairs(run), pairs)}
    train = (recipe or run.config.train).model_dump(mode="json")
    train.update(sources=[], samples_per_epoch=None)
    try:
        return LadderSpec(run_id=run.ref.run_id, pairs=pairs, fractions=tuple(fractions), seed=run.config.seed, train=train,
                          eval=run.config.eval.model_dump(mode="json"), against=dict(against or {}), early=early)
    except ValueError as exc:
        raise ConfigError(_first_error(exc)) from None


def open_ladder(run_id: str, root: str, fractions: tuple[float, ...] = DEFAULT_FRACTIONS, job: str | None = None,
                against: dict[str, str] | None = None, ladder_id: str | None = None) -> "Ladder":
    """The ladder of run ``run_id`` under ``root``, begun or continued; everything a user can fix
    (the run, its pairs, the fractions, the recipe, each source set against it) is one line first."""
    check_run_id(run_id)
    try:
        run = load_run(RunRef(root, run_id))
    except Exception:
        raise ConfigError(f"ladder: no run {run_id} under {root}") from None
    recipe = load_job_config(job).train if job else None
    spec = new_spec(run, fractions, recipe, against)
    spec = spec.model_copy(update={"against_pairs": {name: source_pairs(run, name, uri) for name, uri in spec.against.items()}})
    ladder = Ladder(spec, root, ladder_id).begin()
    if spec.early:
        snapshot.write_snapshot(run, ladder.store, [(part, rows) for part, rows in spec.early["counts"]])
    return ladder


def load_ladder(ladder_id: str, root: str) -> "Ladder":
    """A ladder as stored under ``root`` (its ``ladder.json``), to read its status or study."""
    store = RunRef(root, check_run_id(ladder_id)).store()
    try:
        spec = LadderSpec.model_validate_json(store.read_bytes(STUDY, SPEC))
    except FileNotFoundError:
        raise ConfigError(f"no ladder {ladder_id} under {root}") from None
    return Ladder(spec, root, ladder_id)


def source_pairs(run: Run, name: str, uri: str) -> int:
    """The pairs a source set against the run holds (another run's shards, or webdataset tars)."""
    from ..training.sources import tar_source

    if uri.startswith("run:"):
        try:
            return run_pairs(run.sibling(uri[4:]))
        except ConfigError:
            raise
        except Exception:
            raise ConfigError(f"--against {name}={uri}: no run {uri[4:]} under {run.ref.root}") from None
    try:
        return tar_source(DataSource(name=name, uri=uri)).samples
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"--against {name}={uri}: {_first_error(exc)}") from None
    except Exception as exc:  # noqa: BLE001 (a filesystem's own error for a missing bucket or host)
        raise ConfigError(f"--against {name}={uri}: cannot be read ({type(exc).__name__}: {exc})") from None


def run_pairs(run: Run) -> int:
    """The run's training pairs: the rows of its exported shards."""
    done = run.completion("shards")
    if done is None:
        raise ConfigError(f"run {run.ref.run_id} has no exported shards yet: let its shards stage finish (or resume it) "
                          f"before climbing a ladder on it")
    pairs = sum(r["rows"] for r in output_index(run.store, "shards", done.outputs, ".tar").values())
    if not pairs:
        raise ConfigError(f"run {run.ref.run_id}: its shards hold no training pairs")
    return pairs


def rungs(spec: LadderSpec, ladder_id: str, root: str) -> list[Rung]:
    """Every rung: each source at each size, smallest first."""
    mine = RunRef(root, ladder_id).store().uri(snapshot.SNAPSHOT) if spec.early else f"run:{spec.run_id}"
    sources = {SYNTHETIC: mine, **spec.against}
    held_out = {"held_out_of": f"run:{spec.run_id}", "held_out_images": [p for p, _ in spec.early["counts"]] if spec.early else []}
    sizes = sorted({max(1, round(f * spec.pairs)) for f in spec.fractions})
    out = []
    for source, uri in sources.items():
        for pairs in [n for n in sizes if n <= spec.against_pairs.get(source, spec.pairs)]:
            train = TrainConfig.model_validate({**spec.train, "sources": [{"name": source, "uri": uri, "limit": pairs}]})
            measured = EvalConfig.model_validate({**spec.eval, **held_out})  # the same data for every rung
            # named by what it trains on and how, so ladders that share a rung (one with --against
            # added, say) share its job and never train it twice
            same = stable_hash({"seed": spec.seed, "train": train.model_dump(mode="json"), "eval": measured.model_dump(mode="json")})
            job_id = f"rung-{spec.run_id}-{source}-{pairs}-{same[:8]}"
            cfg = JobConfig(name=job_id, seed=spec.seed, root=root, train=train, eval=measured)
            out.append(Rung(source, pairs / spec.pairs, pairs, job_id, cfg))
    return out


class Ladder:
    """A ladder under a root: its spec, its rungs, what is finished, and its study."""

    def __init__(self, spec: LadderSpec, root: str, ladder_id: str | None = None):
        self.spec, self.root = spec, root
        self.ladder_id = check_run_id(ladder_id or spec.ladder_id())
        self.store: RunStore = RunRef(root, self.ladder_id).store()
        self.rungs = rungs(spec, self.ladder_id, root)

    def begin(self) -> "Ladder":
        """Write ``ladder.json``, or check that the one stored describes this ladder."""
        data = json.dumps(self.spec.model_dump(mode="json"), indent=1, sort_keys=True).encode()
        if self.store.commit(STUDY, SPEC, data)["sha256"] != hashlib.sha256(data).hexdigest():  # one was there before
            raise ConfigError(f"{self.ladder_id} under {self.root} is another ladder; choose another --ladder-id")
        return self

    def job(self, rung: Rung) -> Run:
        """The rung's training job, created or continued (its own checks first)."""
        return open_run(rung.config, RunRef(self.root, rung.job_id))

    def finished(self, rung: Rung) -> Run | None:
        """The rung's job once trained and evaluated, else None (nothing is started here)."""
        try:
            job = load_run(RunRef(self.root, rung.job_id))
        except Exception:  # noqa: BLE001 (not made yet, or unreadable: the rung is to do)
            return None
        return job if job.completion("eval") is not None else None

    def status(self) -> list[dict]:
        """Each rung: its job, size and state (evaluated, trained, training from a checkpoint, not started)."""
        out = []
        for rung in self.rungs:
            try:
                job = load_run(RunRef(self.root, rung.job_id))
            except Exception:  # noqa: BLE001 (not made yet)
                job = None
            if job is None:
                state = "not started"
            elif job.completion("eval") is not None:
                state = "evaluated"
            elif job.completion("train") is not None:
                state = "trained, not evaluated"
            else:
                state = f"training ({len(job.store.committed('train'))} outputs committed)"
            out.append({"source": rung.source, "pairs": rung.pairs, "job_id": rung.job_id, "state": state})
        return out

    def pending(self) -> list[Rung]:
        return [r for r in self.rungs if self.finished(r) is None]

    def point(self, rung: Rung) -> dict:
        """A finished rung as a point of the study: its size, every metric its eval measured, and
        the checkpoint and report it was read from."""
        job = self.finished(rung)
        if job is None:
            raise ConfigError(f"rung {rung.job_id} is not trained and evaluated yet")
        done = job.require("eval")
        trained = job.require("train")
        report = json.loads(job.store.read_bytes("eval", "report.json"))
        return {"source": rung.source, "fraction": rung.fraction, "pairs": rung.pairs, "job_id": rung.job_id,
                "metrics": {k: v for k, v in done.notes.items() if isinstance(v, (int, float))},
                "samples": {f"{r['dataset']}/{r['task']}/{r['metric']}": r["samples"] for r in report["results"]},
                "inputs": [{**input_ref(job.store, "eval", "report.json"), "run_id": rung.job_id},
                           {**input_ref(job.store, "train", trained.notes["checkpoint"]), "run_id": rung.job_id}]}

    def write_study(self, target: float | None = None) -> dict:
        """Fit every finished rung and commit the study (points, fit, a plot per metric, the report),
        each output's record naming the rungs' reports and checkpoints."""
        started = time.time()
        points = [self.point(r) for r in self.rungs]
        fit = study(self.spec, points)
        metric = headline(list(fit["metrics"]))
        full = self.spec.early["final_pairs"] if self.spec.early else self.spec.pairs
        fit["verdicts"] = [verdict(fit, metric, full, target)] if metric else []
        fit["back_test"] = back_test(fit, metric) if metric else None
        if self.spec.early and metric and "predicted" in fit["verdicts"][0]:
            self.record_prediction(fit["verdicts"][0], metric)
        inputs = [ref for p in points for ref in p["inputs"]]
        outputs = {POINTS: json.dumps(points, indent=1).encode(), FIT: json.dumps(fit, indent=1).encode()}
        for name, entry in fit["metrics"].items():
            outputs[ladder_report.picture_name(name)] = ladder_report.ladder_png(name, entry, full)
        sources = [SYNTHETIC, *self.spec.against]
        found = mistakes.mistakes(self.reports_compared())
        fit["mistakes"] = found
        outputs[FIT] = json.dumps(fit, indent=1).encode()
        for dataset in found:
            outputs[mistakes_picture(dataset)] = mistakes.mistakes_png(found, dataset)
        outputs[REPORT] = (ladder_report.render_report(self.ladder_id, self.spec, sources, fit)
                           + "".join(f"\n![confusions on {d}]({mistakes_picture(d)})\n" for d in found)
                           + mistakes.render(found)).encode()
        for output, data in outputs.items():
            self.store.commit(STUDY, output, data, lineage(self.spec.ladder_id(), VERSION, inputs, started, len(points)),
                              deterministic=False)
        return fit

    def reports_compared(self) -> dict[str, dict]:
        """The evaluation reports whose mistakes the study sets side by side: the smallest and the
        largest synthetic rung, and the largest rung of each source set against the run."""
        chosen: dict[str, Rung] = {}
        for source in [SYNTHETIC, *self.spec.against]:
            mine = [r for r in self.rungs if r.source == source]
            for rung in ([mine[0], mine[-1]] if source == SYNTHETIC else mine[-1:]):
                chosen[f"{source} {rung.pairs}"] = rung
        return {label: json.loads(self.finished(rung).store.read_bytes("eval", "report.json"))
                for label, rung in chosen.items()}

    def record_prediction(self, said: dict, metric: str) -> None:
        """An early ladder's verdict, committed with the run: its eval report sets it against what it measures."""
        run = load_run(RunRef(self.root, self.spec.run_id))
        predictions.record(run.store, self.ladder_id, {
            "ladder_id": self.ladder_id, "metric": metric.split("/", 1)[1], "pairs": said["pairs"],
            "from_pairs": self.spec.pairs, "predicted": said["predicted"], "interval": said["interval"],
            "form": said["form"]})

    def committed_study(self) -> dict | None:
        """The study, where it is committed."""
        if FIT not in self.store.committed(STUDY):
            return None
        return json.loads(self.store.read_bytes(STUDY, FIT))


def study(spec: LadderSpec, points: list[dict]) -> dict:
    """Per metric measured on every rung: a curve per source, the full run's predicted value, and
    where the run meets each source it is set against."""
    metrics = sorted(set.intersection(*(set(p["metrics"]) for p in points))) if points else []
    out: dict[str, Any] = {"run_id": spec.run_id, "pairs": spec.pairs, "level": scaling.LEVEL, "metrics": {}}
    for metric in metrics:
        curves, entry = {}, {"curves": {}, "points": {}}
        for source in [SYNTHETIC, *spec.against]:
            mine = [(p["pairs"], p["metrics"][metric]) for p in points if p["source"] == source]
            counts = [p.get("samples", {}).get(metric, 0) for p in points if p["source"] == source]
            entry["points"][source] = mine
            try:
                curves[source] = scaling.fit_curve(mine, noise_sd=scaling.binomial_sd(mine, counts))
                entry["curves"][source] = curves[source].to_dict()
            except ConfigError as exc:
                entry["curves"][source] = {"error": str(exc)}
        if SYNTHETIC in curves:
            entry["crossover"] = {name: crossover(curves[SYNTHETIC], entry["points"][name]) for name in spec.against}
        out["metrics"][metric] = entry
    return out


def crossover(synthetic: scaling.Curve, other: list[tuple[float, float]]) -> list[dict]:
    """For each size of another source: the synthetic pairs that reach its value, said plainly
    where the curve does not (outside the range the synthetic rungs span, or never)."""
    low, high = synthetic.points[0][0], synthetic.points[-1][0]
    out = []
    for pairs, value in other:
        needed = synthetic.pairs_for(value)
        if needed is None:
            said = "never, by the fitted curve"
        elif needed > high * 4 or needed < low / 4:
            said = f"about {needed:.3g}, far outside the synthetic rungs ({low:g} to {high:g}): an extrapolation"
        else:
            said = f"{needed:.3g}"
        out.append({"pairs": pairs, "value": value, "synthetic_pairs": needed, "said": said})
    return out


def verdict(fit: dict, metric: str, pairs: int, target: float | None = None) -> dict:
    """What the ladder says of ``metric`` at ``pairs`` (a run's full size): the synthetic curve's
    value and interval, and the pairs a target needs."""
    entry = fit["metrics"].get(metric, {}).get("curves", {}).get(SYNTHETIC, {})
    if "form" not in entry:
        return {"metric": metric, "pairs": pairs, "error": entry.get("error", f"{metric} was not measured on every rung")}
    curve = ladder_report.curve_of(entry)
    lo, hi = curve.interval_at(pairs)
    out = {"metric": metric, "pairs": pairs, "predicted": curve.value_at(pairs), "interval": [lo, hi],
           "form": curve.form, "formula": curve.describe()}
    if target is not None:
        out["target"], out["pairs_for_target"] = target, curve.pairs_for(target)
    return out


def rungs_at_once(ladder: "Ladder") -> int:
    """How many rungs' trainers the Ray cluster hosts at once (each a gang of its ranks)."""
    from ..compute.ray_runtime import ensure_ray
    from ..compute.resources import ClusterOffer, asks, workers_fitting
    from ..training.fit import trainer_pool

    ensure_ray()
    pool = trainer_pool(ladder.rungs[0].config.train)
    return max(1, workers_fitting(asks(pool), ClusterOffer.of_ray().nodes) // pool.count)


def back_test(fit: dict, metric: str) -> dict | None:
    """The largest synthetic rung predicted from the smaller ones (at least three), against what
    it measured: how far this ladder's curve can be trusted one step out."""
    points = fit["metrics"][metric]["points"][SYNTHETIC]
    if len(points) < 4:
        return None
    *smaller, (pairs, measured) = points
    noise = fit["metrics"][metric]["curves"][SYNTHETIC].get("noise_sd", 0.0)
    curve = scaling.fit_curve(smaller, noise_sd=noise)
    lo, hi = curve.interval_at(pairs)
    return {"metric": metric, "pairs": pairs, "from_pairs": [p for p, _ in smaller], "predicted": curve.value_at(pairs),
            "interval": [lo, hi], "measured": measured, "error": measured - curve.value_at(pairs), "form": curve.form}


def headline(metrics: list[str]) -> str | None:
    """The held-out zero-shot top-1, where the ladder measured it."""
    return next((m for m in metrics if m.startswith("heldout:") and m.endswith("/" + "/".join(HEADLINE))), None)


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors) and errors():
        return str(errors()[0].get("msg", exc)).removeprefix("Value error, ")
    return str(exc)
