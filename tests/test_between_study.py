"""Between-study variation: the estimator recovers a known spread; no study widens its own interval."""

import numpy as np
import pandas as pd
import pytest

from infusim import between_study as bs


def _points(residuals_log10, s_log10=0.0, species="rat", bound=""):
    predicted = np.full(len(residuals_log10), 10.0)
    half = bs.Z95 * s_log10
    return pd.DataFrame(
        {
            "observed": predicted / 10.0 ** np.asarray(residuals_log10),
            "predicted": predicted,
            "predicted_low": predicted / 10.0**half,
            "predicted_high": predicted * 10.0**half,
            "bound": bound,
            "species": species,
        }
    )


def test_tau_recovers_a_known_normal_spread():
    rng = np.random.default_rng(3)
    points = _points(rng.normal(0.0, 0.3, 20_000))
    assert bs.tau(points) == pytest.approx(0.3, rel=0.03)


def test_tau_leaves_out_what_the_parameter_intervals_already_carry():
    rng = np.random.default_rng(4)
    points = _points(rng.normal(0.0, 0.5, 20_000), s_log10=0.3)
    assert bs.tau(points) == pytest.approx(0.4, rel=0.05)  # sqrt(0.5^2 - 0.3^2)
    assert bs.tau(_points(rng.normal(0.0, 0.1, 2000), s_log10=0.3)) == 0.0


def test_widened_interval_of_a_point_prediction_is_1_96_tau_on_the_log_scale():
    wide = bs.widened(_points([0.0]), 0.25)
    assert wide.between_high.iloc[0] / wide.predicted.iloc[0] == pytest.approx(10 ** (1.96 * 0.25), rel=1e-3)
    assert wide.predicted.iloc[0] / wide.between_low.iloc[0] == pytest.approx(10 ** (1.96 * 0.25), rel=1e-3)


def test_bounds_count_as_inside_when_respected():
    points = _points([-1.0, 1.0]).assign(bound=["<", ">"])  # predicted 10x below a <x, 10x above a >x
    assert bs.log_residuals(points).tolist() == [0.0, 0.0]
    assert bs.inside(points, "predicted_low", "predicted_high").tolist() == [True, True]


def test_a_study_never_widens_its_own_interval():
    rng = np.random.default_rng(5)
    held = {f"s{i}": _points(rng.normal(0.0, 0.2, 50)) for i in range(4)}
    before = bs.leave_one_study_out(held)
    held["s0"] = _points(np.full(50, 3.0))  # a 1000-fold miss
    after = bs.leave_one_study_out(held)
    assert after["tau_log10_by_study"]["s0"] == before["tau_log10_by_study"]["s0"]
    assert after["tau_log10_by_study"]["s1"] > before["tau_log10_by_study"]["s1"]
    assert 0.8 < before["inside_95_with_between_study"] <= 1.0
    assert before["inside_95_parameter_only"] < 0.1  # point predictions: no parameter spread
