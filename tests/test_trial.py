"""Virtual trials: allocation, untreated twins, measurement error, statistics and nulls."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import scipy.stats

from infusim import stats
from infusim.parameters import for_scenario
from infusim.population import replicate_seed
from infusim.runner import chunks, power_curve
from infusim.scenario import load
from infusim.virtual_trial import FIELDS, allocate, design, simulate_chunk
from tests.helpers import EXAMPLES

OA = EXAMPLES / "trial-knee-osteoarthritis.yaml"
COPD = EXAMPLES / "trial-copd.yaml"


def test_permuted_blocks_keep_the_ratio_and_do_not_depend_on_chunks():
    arms = allocate(3, np.arange(4_000), (1, 2, 1))
    blocks = arms.reshape(-1, 4)
    assert all(sorted(b) == [0, 1, 1, 2] for b in blocks)
    np.testing.assert_array_equal(allocate(3, np.arange(1_001, 1_999), (1, 2, 1)), arms[1_001:1_999])
    assert not np.array_equal(allocate(4, np.arange(4_000), (1, 2, 1)), arms)


def test_patient_rows_are_bit_identical_however_the_trial_is_chunked():
    s = load(OA)
    whole, _ = simulate_chunk(s, 0, 0, 180)
    parts = [simulate_chunk(s, 0, c.start, c.stop)[0] for c in chunks(s, chunk_size=7)]
    assert pa.concat_tables(parts).equals(whole)
    second, _ = simulate_chunk(s, 1, 0, 180)
    assert not second.equals(whole)
    assert replicate_seed(2026, 0) != replicate_seed(2026, 1)


def test_a_replicate_draws_the_same_unknown_truth_however_it_is_chunked():
    s = load(COPD)
    whole = simulate_chunk(s, 3, 0, 60, table=False, uncertain=True)[1].sums
    parts = [
        simulate_chunk(s, 3, a, min(a + 7, 60), table=False, uncertain=True)[1].sums for a in range(0, 60, 7)
    ]
    np.testing.assert_allclose(np.sum(parts, axis=0), whole, rtol=1e-12, atol=1e-12)
    other = simulate_chunk(s, 4, 0, 60, table=False, uncertain=True)[1].sums
    fixed = simulate_chunk(s, 3, 0, 60, table=False)[1].sums
    effect = FIELDS.index("sum_effect")
    assert not np.allclose(other[..., effect], whole[..., effect])  # another replicate, another truth
    assert not np.allclose(fixed[..., effect], whole[..., effect])  # a draw, not the medians


def test_measurement_error_and_untreated_twin_in_a_null_control_arm():
    s = load(COPD)
    table, _ = simulate_chunk(s, 0, 0, 4_000)
    rows = table.to_pandas()
    control = rows[(rows.arm == "placebo") & (rows.time_d > 0)]
    # COPD has no placebo effect on FEV1: recorded minus twin is pure measurement error (0.103 L)
    residual = control.fev1 - control.fev1_untreated
    assert abs(residual.mean()) < 0.005 and abs(residual.std() - 0.103) < 0.005
    # the twin declines at the tabulated rate (ECLIPSE -33 mL/year, SD 59 mL/year between patients)
    twin = rows.pivot_table(index="patient", columns="time_d", values="fev1_untreated")
    slope = (twin[365.0] - twin[0.0]) / (365 / 365.25)
    assert abs(slope.mean() + 0.033) < 0.004 and abs(slope.std() - 0.059) < 0.005


def test_summary_statistics_match_an_independent_welch_test_on_the_rows():
    s = load(OA)
    table, partial = simulate_chunk(s, 0, 0, 180)
    plan = design(s)
    totals = stats.combine([partial], 1, partial.sums.shape)[0]
    rows = table.to_pandas()
    wide = rows.pivot_table(index=["patient", "arm"], columns="time_d", values="womac_total").reset_index()
    change = (wide[180.0] - wide[0.0]).dropna()  # complete case: a patient who died has no day-180 value
    arm = wide.arm[change.index]
    treated, control = change[arm == "msc_5e7"], change[arm == "saline"]
    reference = scipy.stats.ttest_ind(treated, control, equal_var=False)
    ours = stats.compare(totals, plan, plan.arms.index("msc_5e7"), plan.primary, plan.primary_visit)
    # the rows are float32; the partial sums float64
    assert ours["difference"] == pytest.approx(treated.mean() - control.mean(), rel=1e-6)
    assert ours["p_value"] == pytest.approx(reference.pvalue, rel=1e-4)
    interval = reference.confidence_interval()
    assert ours["ci95"] == pytest.approx([interval.low, interval.high], rel=1e-5)
    summary = stats.arm_summary(totals, plan)["msc_5e7"]["womac_total"]["visits"]["180"]
    assert summary["responders"] == pytest.approx(100 * np.mean(treated <= -10))


def test_uncertain_evidence_lowers_the_chance_of_success_below_the_power_at_the_median():
    """COPD rests on one pooled estimate whose CI reaches zero: averaged over its posterior (and a
    new trial's own effect), success is less likely than at the posterior median."""
    copd = power_curve(load(COPD), [120], replicates=200)[120]["msc"]
    # measured 2026-12-03: power 0.675 at the median, assurance 0.635 (the posterior is skewed, so
    # its high draws make up part of what its low ones lose)
    assert 0.05 < copd["assurance"] < copd["power"]
    oa = power_curve(load(OA), [120], replicates=30)[120]
    assert all(0 <= v["assurance"] <= 1 for v in oa.values())


def test_placebo_arm_shows_the_tabulated_placebo_response_and_no_cell_effect():
    s = load(OA)
    _, partial = simulate_chunk(s, 0, 0, 6_000, table=False)
    plan = design(s)
    totals = stats.combine([partial], 1, partial.sums.shape)[0]
    saline = stats.arm_summary(totals, plan)["saline"]["womac_total"]["visits"]["180"]
    # Previtali 2021: intra-articular saline improves WOMAC total by about 14.5 points by 6 months
    assert saline["effect_vs_untreated"] == pytest.approx(-14.5 * (1 - np.exp(-180 / 14)), rel=0.05)
    assert saline["mean_change"] == pytest.approx(saline["effect_vs_untreated"], abs=0.6)


def _trial(condition: str, visits: list[str], primary: dict, patients: int, **extra):
    from infusim.scenario import from_dict
    from tests.helpers import BASE, merge

    spec = {
        "condition": {"name": condition},
        "simulation": {"duration": visits[-1], "outputs": None},
        "trial": {
            "patients": patients,
            "arms": [{"name": "placebo", "administration": "placebo"}, {"name": "cells"}],
            "visits": visits,
            "primary": primary,
        },
    }
    return from_dict(merge(merge(BASE, spec), extra))


def test_deaths_leave_continuous_endpoints_missing_and_count_as_no_response():
    from infusim import safety

    # decompensated cirrhosis: 34% dead at 18 months without cells (ANSWER), so about 24% at a year
    s = _trial("liver_cirrhosis", ["90 day", "365 day"], {"endpoint": "meld", "at": "365 day"}, 3_000)
    table, partial = simulate_chunk(s, 0, 0, 3_000)
    plan = design(s)
    rows = table.to_pandas()
    events, _ = safety.chunk_events(s, 0, 0, 3_000)
    deaths = events[events.grade == 5].groupby("patient").time_d.min()
    died = rows.groupby("patient").died_d.first().dropna()
    assert died.index.equals(deaths.index) and np.allclose(died, deaths, rtol=1e-6)
    after = rows.time_d > rows.died_d
    assert rows.meld[after].isna().all() and rows.meld[~after].notna().all()
    totals = stats.combine([partial], 1, partial.sums.shape)[0]
    n = totals[:, plan.primary, :, FIELDS.index("n")]  # (arms, visits)
    assert (n[:, 0] == np.bincount(rows[rows.time_d == 0].arm.cat.codes, minlength=2)).all()
    alive = n[:, 2].sum() / n[:, 0].sum()
    expected = np.exp(-bundled_rate("liver_cirrhosis/death"))
    assert scipy.stats.binomtest(int(n[:, 2].sum()), int(n[:, 0].sum()), expected).pvalue > 0.001
    assert 0.7 < alive < 0.8
    summary = stats.compare(totals, plan, 1, plan.primary, plan.primary_visit)
    assert summary["n"] == [int(n[1, 2]), int(n[0, 2])]
    # steroid-refractory GVHD (median survival 5.8 months): the dead are non-responders at day 28,
    # and every randomised patient stays in the denominator
    g = _trial(
        "acute_gvhd",
        ["28 day"],
        {"endpoint": "overall_response_d28", "at": "28 day"},
        3_000,
        product={"donor": "allogeneic", "hla_mismatches": 5},
    )
    table, partial = simulate_chunk(g, 0, 0, 3_000)
    rows = table.to_pandas()
    dead = rows[(rows.time_d == 28) & (rows.died_d < 28)]
    assert len(dead) > 100 and (dead.overall_response_d28 == 0).all()
    totals = stats.combine([partial], 1, partial.sums.shape)[0]
    assert totals[:, 0, 1, FIELDS.index("n")].sum() == 3_000


def test_treatment_related_mortality_is_the_adverse_events_own_death():
    from infusim import safety

    s = _trial(
        "multiple_sclerosis",
        ["100 day"],
        {"endpoint": "edss", "at": "100 day"},
        2_000,
        product={"cell_type": "hsc", "tissue_source": "peripheral_blood"},
        administration={"dose": "5e6 cells/kg", "conditioning": "beam_atg"},
    )
    table, _ = simulate_chunk(s, 0, 0, 2_000)
    rows = table.to_pandas()
    events, _ = safety.chunk_events(s, 0, 0, 2_000)
    trm = set(events[events.event == "treatment_related_death"].patient)
    recorded = set(rows[(rows.time_d == 100) & (rows.treatment_related_mortality == 1)].patient)
    assert recorded == trm and len(trm) > 20  # BEAM/ATG: 2.7% (Mancardi 2012)
    # the recorded share follows the endpoint's own curve, 2.7% x (1 - exp(-100 / 30 days))
    cells = rows[(rows.time_d == 100) & (rows.arm == "cells")]
    expected = 0.027 * -np.expm1(-100 / 30)
    assert (
        scipy.stats.binomtest(int(cells.treatment_related_mortality.sum()), len(cells), expected).pvalue
        > 0.001
    )


def bundled_rate(scope: str) -> float:
    from infusim.parameters import bundled

    return bundled().get("background_rate", scope, "1/year")


def test_deaths_in_the_records_do_not_depend_on_chunking():
    s = _trial("liver_cirrhosis", ["90 day", "365 day"], {"endpoint": "meld", "at": "365 day"}, 300)
    whole, _ = simulate_chunk(s, 0, 0, 300)
    parts = [simulate_chunk(s, 0, c.start, c.stop)[0] for c in chunks(s, chunk_size=7)]
    assert pa.concat_tables(parts).equals(whole)
    died = whole.to_pandas().groupby("patient").died_d.first()
    assert died.notna().sum() > 40  # about a quarter die within the year (ANSWER)


def test_loss_to_follow_up_removes_later_visits_at_the_stated_yearly_rate():
    """trial.dropout: 20% a year lost to follow-up: about 20% withdrawn within a year (exact binomial
    test against 1 - (1 - 0.2)^(365/365.25)); their later continuous values are missing and their
    later responses count as none; the analysed numbers fall by the same share; chunk-invariant."""
    visits, primary = ["90 day", "365 day"], {"endpoint": "womac_total", "at": "365 day"}
    base = _trial("knee_osteoarthritis", visits, primary, 4_000)
    s = _trial("knee_osteoarthritis", visits, primary, 4_000, trial={"dropout": "20%"})
    assert s.trial.dropout == pytest.approx(0.2)
    table, partial = simulate_chunk(s, 0, 0, 4_000)
    rows = table.to_pandas()
    first = rows.groupby("patient").first()
    withdrawn = first.withdrawn_d.notna()
    expected = 1 - 0.8 ** (365 / 365.25)
    assert scipy.stats.binomtest(int(withdrawn.sum()), len(first), expected).pvalue > 0.001
    after = rows.time_d > rows.withdrawn_d
    assert after.any() and rows.womac_total[after].isna().all()
    # without dropout the same patients are all recorded (deaths aside), with identical values before
    plain, plain_partial = simulate_chunk(base, 0, 0, 4_000)
    plain_rows = plain.to_pandas()
    before = ~after
    assert np.array_equal(
        rows.womac_total[before].to_numpy(), plain_rows.womac_total[before].to_numpy(), equal_nan=True
    )
    plan = design(s)
    n_drop = stats.combine([partial], 1, partial.sums.shape)[0][:, plan.primary, 2, FIELDS.index("n")].sum()
    n_all = stats.combine([plain_partial], 1, plain_partial.sums.shape)[0][
        :, plan.primary, 2, FIELDS.index("n")
    ].sum()
    assert n_drop / n_all == pytest.approx(1 - expected, abs=0.03)
    parts = [simulate_chunk(s, 0, c.start, c.stop)[0] for c in chunks(s, chunk_size=333)]
    assert pa.concat_tables(parts).equals(table)


def test_dropout_is_a_share_per_year_between_0_and_0_9():
    from infusim.errors import ScenarioError

    for bad in ("95%", "lots", -0.1):
        with pytest.raises(ScenarioError) as caught:
            _trial(
                "knee_osteoarthritis",
                ["90 day"],
                {"endpoint": "womac_total", "at": "90 day"},
                20,
                trial={"dropout": bad},
            )
        assert caught.value.field == "trial.dropout"


def test_informative_dropout_draws_the_piecewise_hazard_from_the_same_exponential():
    """From each visit to the next the hazard is rate x HR^worse; the day a patient leaves is where
    the cumulative hazard reaches the patient's exponential draw (written here by hand)."""
    from infusim.virtual_trial import withdrawal_days

    index = np.arange(2_000)
    visits = np.array([0.0, 100.0, 400.0])
    plain = withdrawal_days(7, index, 0.5, visits)  # constant hazard
    rate = -np.log(0.5) / 365.25
    target = np.where(np.isinf(plain), np.nan, plain * rate)  # the draws of those who leave by day 400
    worse = np.column_stack([np.zeros(2_000), np.full(2_000, 1.5), np.zeros(2_000)])
    found = withdrawal_days(7, index, 0.5, visits, worse, 2.0)
    np.testing.assert_array_equal(withdrawal_days(7, index, 0.5, visits, worse, 1.0), plain)
    early = plain <= 100.0  # before the first visit the hazard is the plain one
    np.testing.assert_allclose(found[early], plain[early], rtol=1e-12)
    later = np.isfinite(plain) & ~early
    second = rate * 2.0**1.5
    np.testing.assert_allclose(
        found[later], 100.0 + (target[later] - rate * 100.0) / second, rtol=1e-12
    )  # every one of them leaves sooner, and some who stayed leave too
    assert np.isfinite(found).sum() > np.isfinite(plain).sum()


def test_dropout_missing_at_random_on_worsening_biases_the_complete_case_comparison():
    """COPD, 40% a year lost: with the hazard x 3 per measurement SD of worsening at the last visit,
    patients who had worsened by day 120 leave more often before day 365 than those who improved
    (not so at random), and the records are identical however the trial is chunked."""
    visits, primary = ["120 day", "365 day"], {"endpoint": "fev1", "at": "365 day"}
    extra = {"product": {"donor": "allogeneic"}}

    def leaving(ratio: float):
        s = _trial(
            "copd", visits, primary, 3_000, trial={"dropout": "40%", "dropout_hazard_ratio": ratio}, **extra
        )
        table, _ = simulate_chunk(s, 0, 0, 3_000)
        rows = table.to_pandas().pivot_table(index="patient", columns="time_d", values="fev1", dropna=False)
        first = table.to_pandas().groupby("patient").first()
        at_120 = rows[120.0].notna()
        worsened = (rows[120.0] < rows[0.0]) & at_120
        improved = (rows[120.0] > rows[0.0]) & at_120
        gone = first.withdrawn_d > 120.0
        return (
            s,
            table,
            gone[worsened].mean(),
            gone[improved].mean(),
            int(worsened.sum()),
            int(improved.sum()),
        )

    _, _, worse_plain, better_plain, n_w, n_b = leaving(1.0)
    k_w, k_b = round(worse_plain * n_w), round(better_plain * n_b)
    at_random = scipy.stats.fisher_exact([[k_w, n_w - k_w], [k_b, n_b - k_b]]).pvalue
    assert at_random > 0.001
    s, table, worse, better, _, _ = leaving(3.0)
    assert worse > 1.5 * better
    parts = [simulate_chunk(s, 0, c.start, c.stop)[0] for c in chunks(s, chunk_size=700)]
    assert pa.concat_tables(parts).equals(table)


@pytest.mark.parametrize(
    ("trial", "words"),
    [
        ({"dropout_hazard_ratio": 2.0}, "give trial.dropout above 0"),
        ({"dropout": "10%", "dropout_hazard_ratio": 50}, "less than or equal to 20"),
    ],
)
def test_informative_dropout_needs_a_dropout_and_a_ratio_in_range(trial, words):
    from infusim.errors import ScenarioError

    with pytest.raises(ScenarioError) as caught:
        _trial("copd", ["90 day"], {"endpoint": "fev1", "at": "90 day"}, 20, trial=trial)
    assert caught.value.field == "trial.dropout_hazard_ratio" and words in caught.value.message


def test_informative_dropout_needs_a_continuous_primary_endpoint():
    from infusim.errors import ScenarioError

    with pytest.raises(ScenarioError) as caught:
        _trial(
            "crohns_perianal_fistula",
            ["168 day"],
            {"endpoint": "combined_remission", "at": "168 day"},
            20,
            trial={"dropout": "10%", "dropout_hazard_ratio": 2},
        )
    assert caught.value.field == "trial.dropout_hazard_ratio" and "response rate" in caught.value.message


def test_dropout_not_at_random_acts_on_the_true_value_the_next_visit_leaves_unmeasured(monkeypatch):
    """``dropout_missing: not_at_random``: from each visit to the next the hazard follows the noise-free
    worsening at the next visit (tipping-point analysis); ``at_random`` the measured one at the last."""
    from infusim import virtual_trial
    from infusim.errors import ScenarioError

    seen = {}
    original = virtual_trial._worsening

    def spy(plan, values, params, ahead=False):
        seen["ahead"], seen["values"] = ahead, values
        return original(plan, values, params, ahead)

    monkeypatch.setattr(virtual_trial, "_worsening", spy)
    visits, primary = ["120 day", "365 day"], {"endpoint": "fev1", "at": "365 day"}
    trial = {"dropout": "40%", "dropout_hazard_ratio": 3, "dropout_missing": "not_at_random"}
    s = _trial("copd", visits, primary, 200, trial=trial)
    table, _ = simulate_chunk(s, 0, 0, 200)
    rows = table.to_pandas()
    assert seen["ahead"] is True
    # noise-free: the values differ from what was recorded by the measurement error alone
    recorded = rows.pivot_table(index="patient", columns="time_d", values="fev1", dropna=False)[0.0]
    assert not np.allclose(seen["values"]["fev1"][:, 0], recorded.to_numpy())
    # each column holds the next visit's worsening, in measurement SDs (FEV1: lower is worse)
    params = for_scenario(s)
    sd = params.get("measurement_sd", "copd/fev1", params.entry("measurement_sd", "copd/fev1").unit)
    found = original(design(s), {"fev1": np.array([[1.0, 0.8, 1.1]])}, params, True)
    np.testing.assert_allclose(found, [[0.2 / sd, -0.1 / sd, -0.1 / sd]])
    with pytest.raises(ScenarioError) as caught:
        _trial("copd", visits, primary, 20, trial={"dropout": "10%", "dropout_missing": "not_at_random"})
    assert caught.value.field == "trial.dropout_missing"


def test_trial_exposure_is_true_or_false():
    from infusim.errors import ScenarioError

    with pytest.raises(ScenarioError) as caught:
        _trial("copd", ["90 day"], {"endpoint": "fev1", "at": "90 day"}, 20, trial={"exposure": "yes"})
    assert caught.value.field == "trial.exposure" and "boolean" in caught.value.message
