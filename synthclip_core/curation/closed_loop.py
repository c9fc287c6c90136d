"""The closed loop's rules, as pure functions: which concepts get new captions in a round and how
many, and why a new caption is kept or dropped.

A concept under ``target`` kept captions is asked for ``ceil((target - kept) * oversample)`` new
ones; when the budget cannot pay for every request, the concepts with the fewest kept captions are
served first (then bank order), and the last one served gets what is left. A new caption is kept
by the rule balancing kept the others by (MetaCLIP's, with balancing's keep probabilities) after
the checks balancing makes: not rejected by cleaning, not a copy of a kept caption, naming some
concept. One naming a held-out concept is dropped: it could neither train nor join the evaluation
without changing the evaluation set, which the loop leaves as balancing fixed it.
"""

from __future__ import annotations

import numpy as np

from .balancing import is_kept


def round_requests(kept: np.ndarray, eligible: np.ndarray, target: int, oversample: float,
                   budget: int | None) -> np.ndarray:
    """New captions to ask per concept (an array like ``kept``), within ``budget`` (None: no cap)."""
    need = np.where(eligible & (kept < target), target - kept, 0)
    ask = np.ceil(need * oversample - 1e-9).astype(np.int64)
    if budget is None or ask.sum() <= budget:
        return ask
    order = np.lexsort((np.arange(len(kept)), kept))  # fewest kept first, then bank order
    order = order[ask[order] > 0]
    paid = np.cumsum(ask[order])
    out = np.zeros_like(ask)
    served = paid <= budget
    out[order[served]] = ask[order[served]]
    if not served.all():
        first_unpaid = order[np.argmin(served)]
        out[first_unpaid] = budget - (paid[served][-1] if served.any() else 0)
    return out


def verdict(caption: str, text_hash: int, matched: list[int], seen: set[int], held_out: np.ndarray,
            seed: int, caption_id: str, concept_ids: list[str], probs: np.ndarray) -> str:
    """``kept`` or why not: ``rejected``, ``duplicate``, ``no_match``, ``held_out``, ``sampled_out``."""
    if not caption:
        return "rejected"
    if text_hash in seen:
        return "duplicate"
    if not matched:
        return "no_match"
    if held_out[matched].any():
        return "held_out"
    if not is_kept(seed, caption_id, [concept_ids[i] for i in matched], [float(probs[i]) for i in matched]):
        return "sampled_out"
    return "kept"


def coverage(kept: np.ndarray, target: int) -> dict:
    """Concepts with at least one and with at least ``target`` kept captions."""
    return {"at_least_1": int((kept >= 1).sum()), "at_least_target": int((kept >= target).sum()),
            "kept_captions": int(kept.sum())}


def report_table(notes: dict) -> str:
    """The loop's rounds as a markdown table (the topup stage's notes), for the run's report."""
    target = notes["target"]
    lines = [f"Closed loop (target {target} kept captions per concept; stopped: {notes['stop']}):", "",
             f"| round | captions asked | kept | concepts with >= 1 | concepts with >= {target} |",
             "| --- | --- | --- | --- | --- |",
             f"| after balancing | - | - | {notes['before']['at_least_1']} | {notes['before']['at_least_target']} |"]
    for r in notes["rounds"]:
        lines.append(f"| {r['round']} | {r['asked']} | {r['kept']} | {r['after']['at_least_1']} | "
                     f"{r['after']['at_least_target']} |")
    lines += ["", f"{notes['asked']} new captions asked, {notes['kept']} kept; "
              f"{notes['concepts_reaching_target_per_1000_captions']} concepts reached the target per 1,000 asked "
              f"({notes['held_out_concepts']} held-out concepts are never topped up)."]
    return "\n".join(lines)
