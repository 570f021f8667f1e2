"""The delta-adjusted tipping-point analysis of an MMRM comparison (``stats.tipping_point``)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from infusim import stats
from infusim.runner import run_trial
from infusim.virtual_trial import design
from tests.test_trial_analysis import OA, _copd, _fields, _with_analysis

MEANS = {0: np.array([2.0, 2.0, 1.95]), 1: np.array([2.0, 2.1, 2.12])}  # placebo, cells (FEV1, L)
COV = np.array([[0.16, 0.13, 0.12], [0.13, 0.17, 0.14], [0.12, 0.14, 0.18]])
CUT, LOW, HIGH = 2.0, 0.6, 0.1  # lost after day 120 with probability LOW below CUT there, HIGH above


def _trial(rng, plan, n: int, shift: float, shift_control: float = 0.0) -> tuple[np.ndarray, dict, dict]:
    """Partial sums of a made-up two-arm trial, written from the pattern-mixture model itself: full
    data multivariate normal, losses after day 120 that depend on the value seen there (missing at
    random), and the cells arm's lost patients ``shift`` L worse at day 365 than their unobserved
    MAR values (the placebo arm's ``shift_control``; not seen, so the sums cannot know it). Returns
    the sums, each arm's rows as seen (NaN where lost) and in full."""
    full, seen = {}, {}
    for arm in (0, 1):
        y = rng.multivariate_normal(MEANS[arm], COV, n)
        lost = rng.uniform(size=n) < np.where(y[:, 1] < CUT, LOW, HIGH)
        y[lost, 2] -= shift if arm == 1 else shift_control
        full[arm] = y
        seen[arm] = y.copy()
        seen[arm][lost, 2] = np.nan
    return _fields(seen, plan), seen, full


def _lost_share(arm: int) -> float:
    below = scipy.stats.norm.cdf((CUT - MEANS[arm][1]) / np.sqrt(COV[1, 1]))
    return LOW * below + HIGH * (1 - below)


def _recovery(shift: float, shift_control: float, replicates: int, seed: int) -> tuple[dict, float]:
    """Replicate trials of 250 per arm from the pattern-mixture model: the z-scores against the
    generating model's truth of the delta-adjusted difference (``a``, at the true shifts) and of
    plain MMRM (``m``), and the adjusted 95% interval's coverage."""
    plan = design(_copd(20, analysis="mmrm"))
    assert plan.primary_visit == 2 and plan.control == 0
    truth = (MEANS[1][2] - MEANS[1][0] - shift * _lost_share(1)) - (
        MEANS[0][2] - MEANS[0][0] - shift_control * _lost_share(0)
    )
    rng = np.random.default_rng(seed)
    adjusted, plain, covered = [], [], []
    for _ in range(replicates):
        sums, _seen, _full = _trial(rng, plan, 250, shift, shift_control)
        difference, se, _p = stats.delta_adjusted(sums, plan, 1, shift, shift_control)
        adjusted.append(difference)
        plain.append(stats.delta_adjusted(sums, plan, 1, 0.0)[0])
        covered.append(abs(difference - truth) < 1.959964 * se)
    error = {
        k: (np.mean(x) - truth) / (np.std(x) / np.sqrt(len(x))) for k, x in (("a", adjusted), ("m", plain))
    }
    return error, float(np.mean(covered))


def test_the_delta_adjusted_comparison_recovers_a_known_departure_from_missing_at_random():
    """1000 replicate trials of 250 per arm whose cells-arm dropouts fare 0.15 L worse than MAR: the
    comparison adjusted by that delta is unbiased against the truth computed from the generating
    model (the mean over every randomised patient, lost ones at their shifted values) and its 95%
    interval covers it within three binomial SDs of 95%; plain MMRM overstates the benefit by
    pi x delta. Measured 2026-12-03 over 2000 replicates: bias -0.00015 L (SD of the estimate
    0.0335, mean SE 0.0338), coverage 95.0%; with delta 0.4 L, 95.3%."""
    error, coverage = _recovery(0.15, 0.0, 1000, seed=7)
    assert abs(error["a"]) < 3
    assert error["m"] > 6  # MAR ignores the shift: too favourable
    assert abs(coverage - 0.95) < 3 * np.sqrt(0.95 * 0.05 / 1000)


def test_shifting_both_arms_recovers_the_truth_and_plain_mmrm_misses_it_the_other_way():
    """600 replicate trials of 250 per arm whose placebo dropouts fare 0.3 L worse than MAR and cells
    dropouts 0.1 L worse: the two-arm delta-adjusted comparison is unbiased against the generating
    model's truth and covers it at 95%; plain MMRM now understates the benefit, by
    pi_c x 0.3 - pi_t x 0.1. Measured 2026-12-03 over 2000 replicates: bias +0.0007 L (SD 0.036,
    mean SE 0.035), coverage 94.8%; plain MMRM -0.074 L."""
    error, coverage = _recovery(0.1, 0.3, 600, seed=11)
    assert abs(error["a"]) < 3
    assert error["m"] < -6  # MAR ignores that placebo dropouts did worse: the benefit looks smaller
    assert abs(coverage - 0.95) < 3 * np.sqrt(0.95 * 0.05 / 600)


def test_the_control_arm_shift_moves_the_tipping_point_as_its_definition_says():
    plan = design(_copd(20, analysis="mmrm"))
    sums, seen, _full = _trial(np.random.default_rng(3), plan, 400, 0.0)
    found = stats.tipping_point(sums, plan, 1)
    sd, plain = found["sd_change"], stats.delta_adjusted(sums, plan, 1, 0.0)[0]
    lost = {arm: np.isnan(seen[arm][:, 2]).mean() for arm in (0, 1)}
    assert found["missing_share_control"] == pytest.approx(lost[0], abs=1e-12)
    tips = []
    for row in found["control_shifts"]:
        delta_c = row["delta_control_sd"] * sd
        tip = row["tipping_delta"]
        moved, _se, p = stats.delta_adjusted(sums, plan, 1, tip, delta_c)
        assert p == pytest.approx(0.05, abs=1e-9)  # where significance is lost, by definition
        assert moved == pytest.approx(plain - lost[1] * tip + lost[0] * delta_c, rel=1e-9)
        assert stats.delta_adjusted(sums, plan, 1, 0.99 * tip, delta_c)[2] < 0.05
        assert row["tipping_delta_sd"] == pytest.approx(tip / sd, rel=1e-9)
        tips.append((row["delta_control_sd"], tip))
    tips.append((0.0, found["tipping_delta"]))
    ordered = [tip for _k, tip in sorted(tips)]
    assert ordered == sorted(ordered)  # the worse the placebo dropouts fare, the more robust the result
    # a control shift that large the other way removes significance at delta 0: no tipping point
    found_mar = stats._contrast(sums, plan, 1, plan.primary, plan.primary_visit)
    losses = (stats._missing(sums, plan, 1), stats._missing(sums, plan, 0))
    assert stats._tipping(found_mar, losses, plan, -1.01 * plain / lost[0]) is None


def test_the_tipping_delta_is_where_p_reaches_five_percent():
    plan = design(_copd(20, analysis="mmrm"))
    sums, seen, _full = _trial(np.random.default_rng(3), plan, 400, 0.0)
    found = stats.tipping_point(sums, plan, 1)
    delta = found["tipping_delta"]
    assert 0 < delta and stats.delta_adjusted(sums, plan, 1, 0.0)[2] < 0.05
    assert stats.delta_adjusted(sums, plan, 1, delta)[2] == pytest.approx(0.05, abs=1e-9)
    assert stats.delta_adjusted(sums, plan, 1, 0.99 * delta)[2] < 0.05
    # the share lost and the SD scale, counted from the rows
    lost = np.isnan(seen[1][:, 2]).mean()
    assert found["missing_share"] == pytest.approx(lost, abs=1e-12)
    sd = np.nanstd(np.concatenate([seen[a][:, 2] - seen[a][:, 0] for a in (0, 1)]), ddof=1)
    assert found["sd_change"] == pytest.approx(sd, rel=1e-9)
    assert found["tipping_delta_sd"] == pytest.approx(delta / sd, rel=1e-9)
    plain = stats.delta_adjusted(sums, plan, 1, 0.0)[0]
    for row in found["shifts"]:
        moved, _se, p = stats.delta_adjusted(sums, plan, 1, row["delta_sd"] * sd)
        assert row["difference"] == pytest.approx(moved) == pytest.approx(plain - lost * row["delta"])
        assert row["p_value"] == pytest.approx(p)


def test_no_tipping_delta_without_losses_or_without_a_significant_benefit():
    plan = design(_copd(20, analysis="mmrm"))
    rng = np.random.default_rng(5)
    complete = _fields({arm: rng.multivariate_normal(MEANS[arm], COV, 400) for arm in (0, 1)}, plan)
    found = stats.tipping_point(complete, plan, 1)
    assert found["missing_share"] == 0 and found["tipping_delta"] is None
    plain = stats.delta_adjusted(complete, plan, 1, 0)[0]
    assert all(row["difference"] == pytest.approx(plain, rel=1e-9) for row in found["shifts"])
    _sums, seen, _full = _trial(rng, plan, 200, 0.0)
    same = _fields({0: seen[0], 1: seen[0]}, plan)  # both arms the same patients: difference 0, p 1
    assert stats.delta_adjusted(same, plan, 1, 0.0)[2] == pytest.approx(1.0)
    assert stats.tipping_point(same, plan, 1)["tipping_delta"] is None
    for analysis in ("change", "ancova"):
        other = design(_copd(20, analysis=analysis))
        assert stats.tipping_point(complete, other, 1) is None
        assert "tipping_point" not in stats.primary_comparisons(complete, other)["cells"]


def test_a_trial_with_mmrm_reports_its_tipping_point_in_summary_report_console_and_power(tmp_path):
    """Knee OA with losses that follow decline: the 5e7-cell arm's WOMAC difference at day 180 is
    significant (p = 0.03), so its tipping point is printed; without ``mmrm`` there is none."""
    import yaml
    from typer.testing import CliRunner

    from infusim.cli import app
    from infusim.runner import power_curve
    from infusim.scenario_spec import to_spec

    lossy = {"dropout": "30%", "dropout_hazard_ratio": 2}
    s = _with_analysis(OA, "mmrm", **lossy)
    summary = run_trial(s, tmp_path / "t")
    found = summary["primary"]["comparisons"]["msc_5e7"]["tipping_point"]
    n = summary["by_arm"]["msc_5e7"]["womac_total"]["visits"]
    assert found["missing_share"] == pytest.approx(1 - n["180"]["n"] / n["0"]["n"], abs=1e-9)
    assert found["tipping_delta"] > 0
    page = (tmp_path / "t" / "report.html").read_text()
    assert "If the missing patients fared worse" in page and "saline's missing +1 SD" in page
    by_control = {c["delta_control_sd"]: c["tipping_delta"] for c in found["control_shifts"]}
    assert set(by_control) == set(stats.CONTROL_SHIFTS_SD) and by_control[1.0] > found["tipping_delta"]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(to_spec(s)))
    printed = CliRunner().invoke(app, ["trial", str(tmp_path / "s.yaml"), "-o", str(tmp_path / "cli")])
    assert printed.exit_code == 0
    text = " ".join(printed.output.split())
    assert f"fared {found['tipping_delta']:.3g} points" in text
    assert "if saline's missing fared -0.5/+0.5/+1 SD worse" in text
    plain = run_trial(_with_analysis(OA, "change", **lossy), tmp_path / "c")
    assert "tipping_point" not in plain["primary"]["comparisons"]["msc_5e7"]
    curve = power_curve(s, [180], 20)[180]["msc_5e7"]
    assert curve["tipping_delta_sd_median"] > 0
    assert (
        "tipping_delta_sd_median" not in power_curve(_with_analysis(OA, "change"), [180], 4)[180]["msc_5e7"]
    )
