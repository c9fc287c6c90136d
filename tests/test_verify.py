"""`synthclip verify`: every committed output proven against its record, damage set aside on
--repair (docs/reliability.md, "Trust")."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from commands import synthclip

from synthclip_core.storage.store import RunStore

REPO = Path(__file__).resolve().parents[1]


# -- synthclip verify: every committed output proven against its record; --repair sets damage aside --

def _damage(base: Path) -> dict[str, bytes]:
    """Four kinds of damage to a copy of a finished micro run; returns the damaged outputs' original bytes."""
    originals = {rel: (base / rel).read_bytes() for rel in
                 ("shards/00000.tar", "captions/part-00001.parquet", "balanced/part-00000.parquet", "train/checkpoints/epoch_1.pt")}
    (base / "shards/00000.tar").write_bytes(originals["shards/00000.tar"][:5000])  # truncated
    flipped = bytearray(originals["captions/part-00001.parquet"])
    flipped[len(flipped) // 2] ^= 0xFF  # one bit flipped, same size
    (base / "captions/part-00001.parquet").write_bytes(bytes(flipped))
    (base / "balanced/part-00000.parquet").unlink()  # gone
    ckpt = bytearray(originals["train/checkpoints/epoch_1.pt"])
    ckpt[2000:2064] = b"\0" * 64  # a bad disk under a checkpoint
    (base / "train/checkpoints/epoch_1.pt").write_bytes(bytes(ckpt))
    marker = base / "_complete/concepts.json"
    marker.write_bytes(marker.read_bytes()[:30])  # a torn completion marker
    (base / "images/stray.parquet").write_bytes(b"a killed writer's")  # orphaned
    temporary = base / "shards/.00001.tar.0123456789abcdef0123456789abcdef.tmp"
    temporary.write_bytes(b"half")  # a killed writer's temporary, two hours old
    os.utime(temporary, (temporary.stat().st_mtime - 7200,) * 2)
    return originals


@pytest.fixture
def damaged_copy(micro_reference, tmp_path):
    """A copy of the finished micro run, proven clean by verify, then damaged (see ``_damage``)."""
    import shutil

    reference, _ = micro_reference
    root = tmp_path / "root"
    shutil.copytree(reference.base, root / "copy")
    clean = synthclip("verify", "copy", "--root", str(root))
    assert clean.returncode == 0 and "0 damaged, 0 orphaned, 0 temporaries" in clean.stderr, clean.stdout + clean.stderr
    return root, _damage(root / "copy")


def test_verify_finds_every_damage_and_repair_sets_it_aside(damaged_copy):
    root, _ = damaged_copy
    found = synthclip("verify", "copy", "--root", str(root))
    assert found.returncode == 1, found.stdout + found.stderr
    out = found.stderr
    assert "5 damaged, 1 orphaned, 1 temporaries" in out, out
    assert "damaged _complete/concepts.json: unreadable completion marker" in out
    assert "damaged shards/00000.tar: 5000 bytes, its record says" in out
    assert "damaged captions/part-00001.parquet: sha256" in out
    assert "damaged balanced/part-00000.parquet: the file is gone" in out
    assert "damaged train/checkpoints/epoch_1.pt: sha256" in out
    assert "orphaned images/stray.parquet" in out and "temporary" in out

    repaired = synthclip("verify", "copy", "--root", str(root), "--repair")
    assert repaired.returncode == 0 and "set aside 5 damaged output(s)" in repaired.stderr, repaired.stdout + repaired.stderr
    [aside] = (root / "copy/_damaged").glob("*/shards/00000.tar")
    assert aside.stat().st_size == 5000  # kept, not deleted
    assert aside.with_name("00000.tar.why.json").is_file()
    store = RunStore(str(root), "copy")
    assert "00000.tar" not in store.committed("shards") and "part-00001.parquet" not in store.committed("captions")
    assert not store.temporaries()


@pytest.mark.slow
def test_after_repair_resume_makes_exactly_the_damaged_outputs_again(damaged_copy):
    root, originals = damaged_copy
    assert synthclip("verify", "copy", "--root", str(root), "--repair").returncode == 0
    resumed = synthclip("resume", "copy", "--root", str(root))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for rel in ("shards/00000.tar", "captions/part-00001.parquet", "balanced/part-00000.parquet"):
        assert (root / "copy" / rel).read_bytes() == originals[rel], rel  # made again, the same bytes
    assert RunStore(str(root), "copy").committed("train") >= {"checkpoints/epoch_1.pt"}
    assert RunStore(str(root), "copy").completion("concepts") is not None  # its outputs checked, marked again
    after = synthclip("verify", "copy", "--root", str(root))
    assert after.returncode == 0 and " 0 damaged" in after.stderr, after.stderr


def test_verify_reads_an_object_store_run(micro_reference, s3_server, bucket):
    import s3fs

    reference, _ = micro_reference
    fs = s3fs.S3FileSystem(use_listings_cache=False)
    fs.put(reference.base.rstrip("/") + "/", f"{bucket}/runs/copy/", recursive=True)
    root = f"s3://{bucket}/runs"
    clean = synthclip("verify", "copy", "--root", root, env={"AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"]})
    assert clean.returncode == 0 and " 0 damaged" in clean.stderr, clean.stdout + clean.stderr
    fs.pipe_file(f"{bucket}/runs/copy/shards/00001.tar", b"not a tar")
    found = synthclip("verify", "copy", "--root", root, "--repair")
    assert "damaged shards/00001.tar" in found.stderr and "set aside 1 damaged" in found.stderr, found.stdout + found.stderr
    assert fs.glob(f"{bucket}/runs/copy/_damaged/*/shards/00001.tar")
    assert "00001.tar" not in RunStore(root, "copy").committed("shards")
