"""What each model gets wrong: per-class counts, confusions with what they share, and the classes
whose accuracy differs most between two models, with the counts behind each number."""

from __future__ import annotations

import pytest

from synthclip_core.evaluation.compare import comparison, render_comparison
from synthclip_core.evaluation.mistakes import class_counts, confusions, differences, mistakes_png

NAMES = ["red fox", "arctic fox", "grey wolf", "tabby cat"]


def _report(labels: list[int], predicted: list[int]) -> dict:
    return {"checkpoint_sha256": "0" * 64, "results": [{"dataset": "held", "task": "zeroshot", "metric": "top1",
                                                        "value": sum(a == b for a, b in zip(labels, predicted)) / len(labels)}],
            "details": [{"dataset": "held", "task": "zeroshot", "class_counts": class_counts(labels, predicted, NAMES),
                         "confusions": confusions(labels, predicted, NAMES)}]}


def test_confusions_are_counted_and_say_what_the_two_classes_share():
    labels, predicted = [0, 0, 0, 1, 1, 2, 3], [1, 1, 0, 0, 1, 2, 2]
    assert class_counts(labels, predicted, NAMES) == {"red fox": [1, 3], "arctic fox": [1, 2], "grey wolf": [1, 1],
                                                      "tabby cat": [0, 1]}
    found = confusions(labels, predicted, NAMES)
    assert found[0] == {"true": "red fox", "predicted": "arctic fox", "count": 2, "shared": "fox"}
    assert {"true": "tabby cat", "predicted": "grey wolf", "count": 1, "shared": "-"} in found


def test_two_models_side_by_side_name_the_classes_that_differ_most_with_their_counts():
    labels = [0, 0, 0, 1, 1, 2, 3]
    weak, strong = _report(labels, [1, 1, 0, 0, 1, 2, 2]), _report(labels, [0, 0, 0, 1, 1, 2, 2])
    rows = differences(weak["details"][0]["class_counts"], strong["details"][0]["class_counts"])
    assert rows[0] == {"class": "red fox", "a": "1/3", "b": "3/3", "difference": pytest.approx(2 / 3), "samples": 3}
    table = comparison({"weak": ("a.pt", {"trained_on": "", "started_from": ""}),
                        "strong": ("b.pt", {"trained_on": "", "started_from": ""})}, {"weak": weak, "strong": strong})
    markdown = render_comparison(table)
    assert "| red fox | 1/3 | 3/3 | +0.67 |" in markdown
    assert "`weak`, most frequent confusions: red fox -> arctic fox (2; shared: fox)" in markdown
    assert mistakes_png(table["mistakes"], "held")[:4] == b"\x89PNG"
