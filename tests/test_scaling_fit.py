"""The scaling fit: pure, on published numbers and on curves of known shape."""

from __future__ import annotations

import math

import pytest

from synthclip_core.errors import ConfigError
from synthclip_core.studies.scaling import fit_curve, read_points

# The paper's Table 1: ImageNet zero-shot top-1 of ViT-B/16 trained 40 epochs on SynthCI at each size.
TABLE_1 = [(3e6, 9.5), (8.8e6, 18.5), (10e6, 20.9), (20e6, 28.0)]
MEASURED_30M = 30.5


def test_the_fit_on_the_papers_table_1_predicts_its_30m_row():
    curve = fit_curve(TABLE_1)
    predicted = curve.value_at(30e6)
    lo, hi = curve.interval_at(30e6)
    assert curve.form == "log-linear"  # the power law predicts the rungs it leaves out far worse
    assert curve.alternatives["log-linear"] < curve.alternatives["saturating"]
    assert lo < MEASURED_30M < hi
    assert abs(predicted - MEASURED_30M) < 1.0  # 31.4 predicted, 30.5 measured
    assert 25e6 < curve.pairs_for(MEASURED_30M) < 30e6


def test_a_saturating_curve_is_chosen_where_it_predicts_better_and_its_ceiling_is_said():
    points = [(n, 60 - 50 * (n / 1e5) ** -0.5) for n in (1e5, 2e5, 4e5, 8e5, 1.6e6, 3.2e6)]
    curve = fit_curve(points)
    assert curve.form == "saturating"
    assert curve.params["a"] == pytest.approx(60, abs=0.5)
    assert curve.value_at(1e8) == pytest.approx(60 - 50 * 1000 ** -0.5, abs=0.5)
    assert curve.pairs_for(61) is None  # above the ceiling: never, said as None
    assert curve.pairs_for(55) == pytest.approx(1e5 * 100, rel=0.1)
    lo, hi = curve.interval_at(6.4e6)
    assert lo <= curve.value_at(6.4e6) <= hi


def test_with_three_points_the_line_in_log_pairs_is_fitted_with_a_wide_interval():
    curve = fit_curve([(100, 1.0), (200, 2.1), (400, 2.9)])
    assert curve.form == "log-linear" and "saturating" not in curve.alternatives
    lo, hi = curve.interval_at(800)
    assert hi - lo > 1.0  # one degree of freedom: the interval says how little three points know
    assert math.isfinite(curve.loo_rmse)


def test_a_falling_curve_never_reaches_a_higher_target():
    curve = fit_curve([(10, 5.0), (20, 4.0), (40, 3.1)])
    assert curve.pairs_for(6.0) is None


def test_points_from_a_csv_and_one_line_for_each_kind_of_bad_table():
    assert read_points("pairs,value\n3e6,9.5\n8.8e6,18.5\n1e7,20.9\n", "t.csv") == [(3e6, 9.5), (8.8e6, 18.5), (1e7, 20.9)]
    with pytest.raises(ConfigError, match=r"t.csv: a curve needs at least 3 points at different sizes, got 2"):
        read_points("pairs,value\n1,1\n2,2\n", "t.csv")
    with pytest.raises(ConfigError, match=r"t.csv:3: pairs must be a positive number, got 0"):
        read_points("pairs,value\n1,1\n0,2\n4,3\n", "t.csv")
    with pytest.raises(ConfigError, match=r"t.csv:2: pairs and value must be numbers, got 'many'"):
        read_points("pairs,value\nmany,1\n", "t.csv")
    with pytest.raises(ConfigError, match=r"t.csv: needs the columns pairs,value \(it has n,acc\)"):
        read_points("n,acc\n1,1\n", "t.csv")
