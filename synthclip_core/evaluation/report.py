"""``report.json`` (every number with its dataset, task, metric, checkpoint and config hash) and
``report.md`` (the tables, the worst classes, skipped images, pictures)."""

from __future__ import annotations

import hashlib
import json

from .tasks import TaskResult


def config_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_report(results: list[TaskResult], checkpoint: str, sha256: str, arch: str, cfg_hash: str, **extra) -> dict:
    rows = [{"dataset": r.dataset, "task": r.task, "metric": k, "value": round(float(v), 5), "samples": r.samples,
             "checkpoint": checkpoint, "checkpoint_sha256": sha256, "config_hash": cfg_hash}
            for r in results for k, v in r.metrics.items()]
    return {
        "checkpoint": checkpoint, "checkpoint_sha256": sha256, "arch": arch, "config_hash": cfg_hash, **extra,
        "results": rows,
        "details": [{"dataset": r.dataset, "task": r.task, **r.extra, "skipped": r.skipped,
                     **({"per_class_top1": r.per_class} if r.per_class else {})} for r in results],
    }


def render_markdown(report: dict, title: str, pictures: list[tuple[str, str]] = (), notes: list[str] = ()) -> str:
    lines = [f"# {title}", "", f"Checkpoint `{report['checkpoint']}` ({report['arch']}, sha256 "
             f"`{report['checkpoint_sha256'][:12]}`), config hash `{report['config_hash']}`.", "",
             "| dataset | task | metric | value | samples |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['dataset']} | {r['task']} | {r['metric']} | {r['value']:.4f} | {r['samples']} |" for r in report["results"]]
    for detail in report["details"]:
        per_class = {k: v for k, v in detail.get("per_class_top1", {}).items() if v is not None}
        if len(per_class) > 1:
            worst = sorted(per_class.items(), key=lambda kv: kv[1])[:10]
            lines += ["", f"Lowest per-class top-1 on {detail['dataset']}: "
                      + ", ".join(f"{name} {value:.2f}" for name, value in worst)]
        if detail["skipped"]:
            shown = "; ".join(f"`{s['id']}` ({s['reason']})" for s in detail["skipped"][:20])
            lines += ["", f"{len(detail['skipped'])} unreadable image(s) skipped in {detail['dataset']}: {shown}"]
    for note in notes:
        lines += ["", note]
    for caption, file in pictures:
        lines += ["", f"![{caption}]({file})"]
    return "\n".join(lines).rstrip() + "\n"
