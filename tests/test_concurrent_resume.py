"""Two processes resuming the same run at once: outputs are deterministic and records are created
only if absent, so whichever loses a race discards its work, and nothing is lost or doubled."""

from __future__ import annotations

import shutil

import pytest
from faults import compare, synthclip

from synthclip_core.storage.store import RunStore

REDO = ("images", "shards", "train", "eval", "card")


@pytest.mark.slow  # about 2 minutes: two whole resumes racing
def test_two_concurrent_resumes_end_with_the_reference_outputs(micro_reference, tmp_path):
    reference, _ = micro_reference
    shutil.copytree(reference.base, tmp_path / "reference")
    store = RunStore(str(tmp_path), "reference")
    for stage, output in [("captions", "part-00001.parquet"), *((s, o) for s in REDO for o in store.committed(s))]:
        store.fs.rm_file(store.path("_commits", stage, output + ".json"))
        store.fs.rm_file(store.data_path(stage, output))
    assert set(store.committed_all()) == {"run", "concepts", "captions", "balanced"}

    resumes = [synthclip("resume", "reference", "--root", str(tmp_path)) for _ in range(2)]
    outputs = [proc.communicate(timeout=900)[0] for proc in resumes]
    for proc, out in zip(resumes, outputs):
        assert proc.returncode == 0, out[-3000:]
    assert compare(reference, store) == []
    adopted = [(s, o) for s in store.committed_all() for o, r in store.records(s).items() if r.get("adopted")]
    assert all(s in ("train", "eval", "card", "run") for s, _ in adopted), adopted  # only timings and metrics may differ
