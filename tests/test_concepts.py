import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthclip_core.curation.concepts import load_bank
from synthclip_core.errors import ConceptBankError
from synthclip_core.ids import concept_id


def test_text_bank_is_normalised_deduplicated_in_order(tmp_path):
    path = tmp_path / "bank.txt"
    path.write_text("tench\n  goldfish  \n\ncafe\u0301\ntench\ncaf\u00e9\n", encoding="utf-8")
    bank = load_bank(str(path))
    assert bank.concepts == ["tench", "goldfish", "caf\u00e9"]
    assert bank.dropped == {"empty": 1, "duplicate": 2}
    table = bank.table()
    assert table.column("concept_id").to_pylist()[0] == concept_id("tench")


def test_json_csv_parquet_banks(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps(["a b", "c"]))
    (tmp_path / "b.csv").write_text("name,other\na b,1\nc,2\n")
    pq.write_table(pa.table({"name": ["a b", "c"]}), tmp_path / "b.parquet")
    assert load_bank(str(tmp_path / "b.json")).concepts == ["a b", "c"]
    assert load_bank(str(tmp_path / "b.csv"), column="name").concepts == ["a b", "c"]
    assert load_bank(str(tmp_path / "b.parquet"), column="name").concepts == ["a b", "c"]


def test_builtin_bank_and_deterministic_subsample():
    bank = load_bank("builtin:imagenet-1k")
    assert len(bank.concepts) >= 990
    a = load_bank("builtin:imagenet-1k", limit=50, seed=3).concepts
    assert a == load_bank("builtin:imagenet-1k", limit=50, seed=3).concepts and len(a) == 50
    assert a != load_bank("builtin:imagenet-1k", limit=50, seed=4).concepts


@pytest.mark.parametrize("name,content,message", [
    ("bad.txt", b"ok\n\xff\xfe\n", "not UTF-8 (line 2"),
    ("bad.json", b'{"a": 1}', "expected a JSON list"),
    ("bad2.json", b'["a", 3]', "entry 1 is int"),
    ("bad3.json", b'["a",\n', "invalid JSON at line"),
    ("bad.csv", b"x,y\n1,2\n", "no column 'concept'"),
    ("empty.txt", b"\n  \n", "no concepts left"),
    ("bank.xml", b"<a/>", "unsupported file type"),
])
def test_invalid_banks_name_file_and_place(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConceptBankError) as err:
        load_bank(str(path))
    assert message in str(err.value) and str(path) in str(err.value)


def test_missing_bank(tmp_path):
    with pytest.raises(ConceptBankError, match="not found"):
        load_bank(str(tmp_path / "absent.txt"))


def test_metaclip_sized_bank_from_s3_with_shards(s3_server, bucket):
    import fsspec

    entries = [f"concept {i}" for i in range(500_000)] + ["concept 7", "  ", "caf\u00e9"]
    with fsspec.open(f"s3://{bucket}/metaclip/metadata.json", "w") as handle:
        json.dump(entries, handle)
    bank = load_bank(f"s3://{bucket}/metaclip/metadata.json")
    assert len(bank.concepts) == 500_001 and bank.dropped == {"empty": 1, "duplicate": 1}
    shard = load_bank(f"s3://{bucket}/metaclip/metadata.json", num_shards=4, shard_index=1)
    assert shard.concepts[:2] == ["concept 1", "concept 5"] and shard.dropped["other_shards"] == 375_001


def test_bad_entries_are_dropped_and_counted(tmp_path):
    path = tmp_path / "bank.txt"
    lines = ["tench", "tench", " Tench ", "goldfish\x00", "\x1b[31mred\x1b[0m", "x" * 10_000, "tab\tseparated", "   ", "end"]
    path.write_text("\n".join(lines), encoding="utf-8")
    bank = load_bank(str(path))
    assert bank.concepts == ["tench", "Tench", "tab separated", "end"]
    assert bank.dropped == {"empty": 1, "duplicate": 1, "control_characters": 2, "too_long": 1}


def test_a_bank_of_duplicates_only_keeps_one_concept_and_counts_the_rest(tmp_path):
    path = tmp_path / "bank.json"
    path.write_text('["cat", "cat", "cat ", " cat"]')
    bank = load_bank(str(path))
    assert bank.concepts == ["cat"] and bank.dropped["duplicate"] == 3


def test_a_bank_of_only_bad_entries_is_an_error(tmp_path):
    path = tmp_path / "bank.txt"
    path.write_text("\x00\n" + "y" * 10_000 + "\n")
    with pytest.raises(ConceptBankError, match="no concepts left"):
        load_bank(str(path))
