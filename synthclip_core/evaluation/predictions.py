"""Predictions recorded with a run (an early ladder's verdict on what the finished run reaches),
and, once the run's own evaluation measures the same metric, predicted against measured."""

from __future__ import annotations

import json

PREDICTIONS = "predictions"  # the run's folder of recorded predictions, one JSON per ladder


def record(store, name: str, prediction: dict) -> None:
    """Commit ``prediction`` with the run (once per ``name``: a ladder's id)."""
    store.commit(PREDICTIONS, f"{name}.json", json.dumps(prediction, indent=1, sort_keys=True).encode(),
                 deterministic=False)


def recorded(store) -> list[dict]:
    """Every prediction committed with the run, in name order."""
    names = sorted(o for o in store.committed(PREDICTIONS) if o.endswith(".json"))
    return [json.loads(store.read_bytes(PREDICTIONS, name)) for name in names]


def against_measured(predictions: list[dict], measured: dict[str, float]) -> list[dict]:
    """Each prediction beside what the run measured (``measured``: ``task/metric`` -> value on its
    held-out split), with the error and whether the interval held it."""
    out = []
    for p in predictions:
        value = measured.get(p["metric"])
        lo, hi = p["interval"]
        out.append({**p, "measured": value, "error": None if value is None else value - p["predicted"],
                    "inside": None if value is None else lo <= value <= hi})
    return out


def note(compared: list[dict]) -> str:
    """One line per prediction, for the run's evaluation report."""
    lines = []
    for c in compared:
        lo, hi = c["interval"]
        said = (f"measured {c['measured']:.4f} (error {c['error']:+.4f}, {'inside' if c['inside'] else 'outside'} the "
                f"interval)" if c["measured"] is not None else "not measured by this evaluation")
        lines.append(f"Predicted by ladder `{c['ladder_id']}` from {c['from_pairs']} pairs: {c['metric']} at "
                     f"{c['pairs']} pairs {c['predicted']:.4f} ({lo:.4f} to {hi:.4f}); {said}.")
    return "\n".join(lines)
