import random
from collections import Counter

from synthclip_core.balancing import ConceptMatcher, balance_captions, prepare_text
from synthclip_core.ids import caption_id


def test_prepare_text_follows_metaclip():
    assert prepare_text("a cat, on\ta mat.") == " a cat ,  on a mat .  "


def test_matching_is_whole_word_and_punctuation_aware():
    m = ConceptMatcher(["cat", "hot dog", "dog", "Cat"])
    assert m.match("a cat.") == [0]
    assert m.match("a concatenation") == []
    assert m.match("a hot dog; yum") == [1, 2]
    assert m.match("Cat!") == [3]
    assert ConceptMatcher(["cat", "Cat"], case_sensitive=False).match("CAT?") == [0, 1]


def _rows(texts):
    return [{"caption_id": caption_id(f"c{i}", "t", 0, 0), "concept_id": "x", "caption": t} for i, t in enumerate(texts)]


def test_counts_probabilities_and_drops():
    texts = ["a cat here"] * 1 + [f"a cat number {i}" for i in range(99)] + ["a dog", "a dog", "", "nothing"]
    result = balance_captions(_rows(texts), ["cat", "dog"], ["C", "D"], threshold=10, seed=0, eval_fraction=0.0)
    assert result.dropped["duplicate"] == 1 and result.dropped["empty"] == 1 and result.dropped["no_match"] == 1
    assert result.count_before == Counter({0: 100, 1: 1})
    assert result.probabilities == {0: 0.1, 1: 1.0}
    assert result.count_after[1] == 1
    assert 3 <= result.count_after[0] <= 20  # ~ t = 10
    assert all(r["split"] == "train" for r in result.rows)


def test_result_does_not_depend_on_order_of_unique_captions():
    texts = [f"a cat number {i}" for i in range(200)] + [f"a dog {i}" for i in range(5)]
    rows = _rows(texts)
    a = balance_captions(rows, ["cat", "dog"], ["C", "D"], threshold=20, seed=1, eval_fraction=0.2)
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    b = balance_captions(shuffled, ["cat", "dog"], ["C", "D"], threshold=20, seed=1, eval_fraction=0.2)
    def key(row):
        return row["caption_id"]

    assert sorted(a.rows, key=key) == sorted(b.rows, key=key)
    assert any(r["split"] == "eval" for r in a.rows)
