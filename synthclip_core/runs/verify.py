"""Re-read a run's committed outputs and prove them against their commit records
(``synthclip verify RUN [--repair]``).

Each output is read whole: its size and sha256 must be the record's, and it must be readable as
its kind (``validation.problem``: Parquet with this platform's schema, tars to their last member,
checkpoints to their CRCs). Files in the run that no record names (a killed writer's) and hidden
temporaries are listed. Commit records and completion markers are proven too: each carries the
checksum of its own content (``seals``), and every output a marker names must have a record.
``repair`` moves damaged outputs and markers aside (``_damaged/<time>/``, never deleted or
overwritten) and retires their records, so ``resume`` recomputes exactly those and marks their
stages again; it removes temporaries older than an hour, which no reader ever opens and no live
writer still holds (a writer's temporary lives for one write), so it may run beside a live resume.
Reads run on a thread pool: object-store reads wait on the network, and hashing and Parquet
decoding release the GIL.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..compute import progress
from ..storage import placing, seals, validation
from ..storage.store import BUDGET, COMMITS, COMPLETE, DAMAGED, FAILURES, LIVE, SPEND, RunStore

PROGRESS = "verify"  # the progress events' stage name
WHOLE_IN_MEMORY = 2 << 30  # larger outputs are hashed in blocks, their kind unchecked
_BOOKKEEPING = (COMMITS, FAILURES, COMPLETE, DAMAGED, LIVE, SPEND, BUDGET)
STALE_TEMPORARY_S = 3600.0  # older temporaries are a killed writer's; younger ones may be a live writer's


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
    unsealed: int = 0  # records and markers written before they carried checksums
    kept_temporaries: list[str] = field(default_factory=list)  # young: a live writer may hold them
    repaired: list[str] = field(default_factory=list)  # where damaged outputs were moved
    unrepairable: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged

    @property
    def mib_per_s(self) -> float:
        return self.bytes / (1 << 20) / max(self.seconds, 1e-9)


def verify(store: RunStore, repair: bool = False, threads: int = 8,
           stale_temporary_s: float = STALE_TEMPORARY_S) -> Verification:
    """Check every committed output of the run in ``store`` (and its records and markers); with
    ``repair``, set the damaged aside and remove temporaries older than ``stale_temporary_s``."""
    started, result = time.perf_counter(), Verification()
    committed = store.committed_all()
    work = [(stage, output) for stage in sorted(committed) for output in sorted(committed[stage])]
    progress.report(PROGRESS, 0, len(work))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for done, (stage, output, size, problem, sealed) in enumerate(pool.map(lambda so: _check(store, *so), work), start=1):
            result.checked += 1
            result.bytes += size
            result.unsealed += not sealed
            if problem is not None:
                result.damaged.append(Finding(stage, output, problem))
            progress.report(PROGRESS, done, len(work))
    result.damaged += _damaged_markers(store, committed, result)
    result.orphans = _orphans(store, committed)
    result.temporaries = store.temporaries()
    if repair:
        stale = set(store.temporaries(older_than_s=stale_temporary_s))
        result.kept_temporaries = [t for t in result.temporaries if t not in stale]
        _repair(store, result, sorted(stale))
    result.seconds = time.perf_counter() - started
    return result


def _check(store: RunStore, stage: str, output: str) -> tuple[str, str, int, str | None, bool]:
    """(stage, output, bytes read, why it is not its record's output or None, whether its record is sealed)."""
    try:
        record = json.loads(store.fs.cat_file(store.path(COMMITS, stage, output + ".json")))
        expected_size, expected_sha = int(record["bytes"]), record["sha256"]
    except Exception as exc:  # an unreadable record names nothing
        return stage, output, 0, f"its commit record is unreadable ({type(exc).__name__})", True
    if (problem := seals.broken(record)) is not None:
        return stage, output, 0, f"its commit record: {problem}", True
    path = store.data_path(stage, output)
    sealed = seals.is_sealed(record)
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
        return stage, output, 0, "the file is gone", sealed
    if size != expected_size:
        return stage, output, size, f"{size} bytes, its record says {expected_size}", sealed
    if sha != expected_sha:
        return stage, output, size, f"sha256 {sha[:12]}…, its record says {expected_sha[:12]}…", sealed
    return stage, output, size, kind_problem, sealed


def _damaged_markers(store: RunStore, committed: dict[str, set[str]], result: Verification) -> list[Finding]:
    """Markers that are unreadable, edited since written, or name outputs with no record (a
    marker is the stage's last write, after every output it names was committed)."""
    found = []
    for path in _find(store, store.path(COMPLETE)):
        name = posixpath.basename(path)
        try:
            doc = json.loads(store.fs.cat_file(path))
            outputs = set(doc["outputs"])
        except Exception as exc:
            found.append(Finding(COMPLETE, name, f"unreadable completion marker ({type(exc).__name__})"))
            continue
        result.unsealed += not seals.is_sealed(doc)
        if (problem := seals.broken(doc)) is not None:
            found.append(Finding(COMPLETE, name, f"completion marker: {problem}"))
        elif missing := sorted(outputs - committed.get(name[: -len(".json")], set())):
            found.append(Finding(COMPLETE, name, f"completion marker names {len(missing)} output(s) with no "
                                                 f"commit record, e.g. {missing[0]}"))
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


def _repair(store: RunStore, result: Verification, stale_temporaries: list[str]) -> None:
    for finding in result.damaged:
        if finding.stage == "run":  # run.json is the run's identity: nothing to recompute it from
            result.unrepairable.append(finding)
        elif finding.stage == COMPLETE:  # the stage reads unfinished; its next call marks it again
            if (aside := store.set_aside_marker(finding.output[: -len(".json")], f"verify: {finding.problem}")):
                result.repaired.append(aside)
        else:
            result.repaired.append(store.quarantine(finding.stage, finding.output, f"verify: {finding.problem}"))
    for temporary in stale_temporaries:
        try:
            store.fs.rm_file(temporary)
        except FileNotFoundError:  # its writer finished with it meanwhile
            pass
