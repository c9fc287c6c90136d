"""Re-read a run's committed outputs and prove them against their commit records
(``synthclip verify RUN [--repair]``).

Each output is read whole: its size and sha256 must be the record's, and it must be readable as
its kind (``validation.problem``: Parquet with this platform's schema, tars to their last member,
checkpoints to their CRCs). Files in the run that no record names (a killed writer's) and hidden
temporaries are listed. ``repair`` moves damaged outputs aside (``_damaged/``, never deleted) and
retires their records, so ``resume`` recomputes exactly those; it removes temporaries, which no
reader ever opens. Reads run on a thread pool: object-store reads wait on the network, and hashing
and Parquet decoding release the GIL.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..compute import progress
from ..storage import placing, validation
from ..storage.store import COMMITS, COMPLETE, DAMAGED, FAILURES, LIVE, RunStore

PROGRESS = "verify"  # the progress events' stage name
WHOLE_IN_MEMORY = 2 << 30  # larger outputs are hashed in blocks, their kind unchecked
_BOOKKEEPING = (COMMITS, FAILURES, COMPLETE, DAMAGED, LIVE)


@dataclass(frozen=True)
class Finding:
    stage: str
    output: str
    problem: str


@dataclass
class Verification:
    checked: int = 0
    bytes: int = 0
    seconds: float = 0.0
    damaged: list[Finding] = field(default_factory=list)  # other size or sha256, unreadable, gone
    orphans: list[str] = field(default_factory=list)  # files no record names
    temporaries: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # where damaged outputs were moved
    unrepairable: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged

    @property
    def mib_per_s(self) -> float:
        return self.bytes / (1 << 20) / max(self.seconds, 1e-9)


def verify(store: RunStore, repair: bool = False, threads: int = 8) -> Verification:
    """Check every committed output of the run in ``store``; with ``repair``, set the damaged aside."""
    started, result = time.perf_counter(), Verification()
    committed = store.committed_all()
    work = [(stage, output) for stage in sorted(committed) for output in sorted(committed[stage])]
    progress.report(PROGRESS, 0, len(work))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for done, (stage, output, size, problem) in enumerate(pool.map(lambda so: _check(store, *so), work), start=1):
            result.checked += 1
            result.bytes += size
            if problem is not None:
                result.damaged.append(Finding(stage, output, problem))
            progress.report(PROGRESS, done, len(work))
    result.damaged += _damaged_markers(store)
    result.orphans = _orphans(store, committed)
    result.temporaries = store.temporaries()
    if repair:
        _repair(store, result)
    result.seconds = time.perf_counter() - started
    return result


def _check(store: RunStore, stage: str, output: str) -> tuple[str, str, int, str | None]:
    """(stage, output, bytes read, why it is not its record's output or None)."""
    try:
        record = store.record(stage, output)
        expected_size, expected_sha = int(record["bytes"]), record["sha256"]
    except Exception as exc:  # an unreadable record names nothing
        return stage, output, 0, f"its commit record is unreadable ({type(exc).__name__})"
    path = store.data_path(stage, output)
    try:
        if expected_size > WHOLE_IN_MEMORY:
            size, digest = 0, hashlib.sha256()
            with store.fs.open(path, "rb", block_size=8 << 20) as handle:
                for block in iter(lambda: handle.read(8 << 20), b""):
                    digest.update(block)
                    size += len(block)
            sha, kind_problem = digest.hexdigest(), None
        else:  # one read, no size request first: on an object store each request is a round trip
            data = store.fs.cat_file(path)
            size, sha = len(data), hashlib.sha256(data).hexdigest()
            kind_problem = validation.problem(output, data) if sha == expected_sha else None
    except FileNotFoundError:
        return stage, output, 0, "the file is gone"
    if size != expected_size:
        return stage, output, size, f"{size} bytes, its record says {expected_size}"
    if sha != expected_sha:
        return stage, output, size, f"sha256 {sha[:12]}…, its record says {expected_sha[:12]}…"
    return stage, output, size, kind_problem


def _damaged_markers(store: RunStore) -> list[Finding]:
    found = []
    for path in _find(store, store.path(COMPLETE)):
        try:
            json.loads(store.fs.cat_file(path))
        except Exception as exc:
            found.append(Finding(COMPLETE, posixpath.basename(path), f"unreadable completion marker ({type(exc).__name__})"))
    return found


def _orphans(store: RunStore, committed: dict[str, set[str]]) -> list[str]:
    """Files of the run that no commit record names (bookkeeping and temporaries aside)."""
    names = {posixpath.relpath(store.data_path(s, o), store.base) for s, outputs in committed.items() for o in outputs}
    out = []
    for path in _find(store, store.base):
        rel = posixpath.relpath(path, store.base)
        if rel.split("/", 1)[0] in _BOOKKEEPING or placing.is_temporary(path) or rel in names:
            continue
        out.append(rel)
    return sorted(out)


def _find(store: RunStore, top: str) -> list[str]:
    try:
        return store.fs.find(top)
    except FileNotFoundError:
        return []


def _repair(store: RunStore, result: Verification) -> None:
    for finding in result.damaged:
        if finding.stage == "run":  # run.json is the run's identity: nothing to recompute it from
            result.unrepairable.append(finding)
        elif finding.stage == COMPLETE:  # a marker is remade when its stage runs again
            aside = store.path(DAMAGED, COMPLETE, finding.output)
            store.fs.mv(store.path(COMPLETE, finding.output), aside)
            result.repaired.append(aside)
        else:
            result.repaired.append(store.quarantine(finding.stage, finding.output, f"verify: {finding.problem}"))
    for temporary in result.temporaries:
        store.fs.rm_file(temporary)

