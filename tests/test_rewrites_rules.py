"""The rules of caption rewrites, on small hand-made cases: which rewrites count, which text a
sample trains on in each epoch, and the templates a rewrite may use."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from synthclip_core.captioning.prompts import SYNTHCLIP, SYNTHCLIP_REWRITE, rewrite_template
from synthclip_core.captioning.rewriting import DUPLICATE, NOT_NAMING, kept_by_caption, vet
from synthclip_core.errors import ConfigError
from synthclip_core.storage.schemas import table_from_rows
from synthclip_core.training.data import drawn_text, other_texts


def _row(cap: str, k: int, text: str, concept: str = "tiger shark", reason: str | None = None) -> dict:
    return {"rewrite_id": f"{cap}-{k}", "caption_id": cap, "concept_id": "c", "concept": concept, "template": "t",
            "k": k, "seed": k, "model": "m", "backend": "b", "raw": text, "tokens": 3, "rewrite": "" if reason else text,
            "reject_reason": reason, "fixes": []}


def test_a_rewrite_counts_only_where_it_names_its_concept_and_says_something_new():
    captions = {"a": "a tiger shark near a calm lake at sunset."}
    rows = [
        _row("a", 0, "a tiger shark in fresh snow."),  # counts
        _row("a", 1, "a shark in fresh snow."),  # the concept is gone: balancing would not count it
        _row("a", 2, "a tiger shark near a calm lake at sunset."),  # the caption itself
        _row("a", 3, "a tiger shark in fresh snow."),  # an earlier rewrite
        _row("a", 4, "", reason="empty"),  # cleaning rejected it: left as it is
        _row("a", 5, "tiger sharks in a museum hall."),  # "tiger sharks" is not "tiger shark" as a whole word
        _row("a", 6, "the tiger shark, alone in an empty room."),  # marks apart, as balancing matches
    ]
    dropped = vet(rows, captions)
    assert dropped == {NOT_NAMING: 2, DUPLICATE: 2}
    assert [r["reject_reason"] for r in rows] == [None, NOT_NAMING, DUPLICATE, DUPLICATE, "empty", NOT_NAMING, None]
    assert all(r["rewrite"] == "" for r in rows if r["reject_reason"])
    kept = kept_by_caption(table_from_rows(list(reversed(rows)), "rewrites"))
    assert kept == {"a": ["a tiger shark in fresh snow.", "the tiger shark, alone in an empty room."]}  # k order


def test_case_folding_follows_balancing():
    rows = [_row("a", 0, "A Tiger Shark at dawn.")]
    assert vet([dict(r) for r in rows], {"a": "x"}) == {NOT_NAMING: 1}
    assert vet([dict(r) for r in rows], {"a": "x"}, case_sensitive=False) == {}


def test_a_sample_draws_one_of_its_texts_per_epoch_and_the_same_again():
    others = ["a tiger shark in fresh snow.", "the tiger shark, alone in an empty room.", "a tiger shark at dawn."]
    draws = [[drawn_text("caption", others, 0, epoch, f"{i:05d}") for epoch in range(8)] for i in range(50)]
    assert draws == [[drawn_text("caption", others, 0, epoch, f"{i:05d}") for epoch in range(8)] for i in range(50)]
    assert all(len(set(d)) > 1 for d in draws)  # 8 epochs of 4 texts: every sample meets more than one
    shares = {t: sum(d.count(t) for d in draws) / 400 for t in ["caption", *others]}
    assert all(0.15 < share < 0.35 for share in shares.values()), shares  # uniform over the 4
    assert drawn_text("caption", [], 0, 3, "k") == "caption"  # no other texts: the caption


def test_other_texts_come_from_the_json_field_the_source_names():
    sample = {"json": json.dumps({"rewrites": ["one", "", 3], "captions": ["two"]}).encode()}
    assert other_texts(sample, {}) == ["one"]
    assert other_texts(sample, {"texts_field": "captions"}) == ["two"]
    assert other_texts({"txt": b"x"}, {}) == []
    from synthclip_core.storage.decoding import Unreadable

    with pytest.raises(Unreadable, match="not a JSON object"):
        other_texts({"json": b"[1, 2"}, {})


def test_a_rewrite_template_names_the_caption():
    text = SYNTHCLIP_REWRITE.render("tiger shark", "a tiger shark at dawn.")
    assert "a tiger shark at dawn." in text and "{" not in text
    assert rewrite_template("synthclip-rewrite") is SYNTHCLIP_REWRITE
    with pytest.raises(ConfigError, match=r"rewrites.template: template 'synthclip' has no '\{caption\}' placeholder"):
        rewrite_template(SYNTHCLIP.name)


def test_rewrites_schema_keeps_dropped_rows():
    table = table_from_rows([_row("a", 0, "x", reason=NOT_NAMING)], "rewrites")
    assert isinstance(table, pa.Table) and table.column("reject_reason").to_pylist() == [NOT_NAMING]
