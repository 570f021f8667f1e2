"""Effect modifiers (covariates that change the response to cells) and subgroup analyses of trials."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import yaml

from infusim import conditions, modifier_fit, modifiers, stats
from infusim.errors import ScenarioError
from infusim.model.disease import baseline
from infusim.model.kinetics import assemble
from infusim.parameters import bundled, with_values
from infusim.population import SEVERITY_MAX, beyond_most_severe, sample_cohort
from infusim.runner import chunks, trial_warnings
from infusim.scenario import Scenario, from_dict, load
from infusim.simulation import disease_outcomes
from infusim.uncertainty import prior_for
from infusim.virtual_trial import FIELDS, design, simulate_chunk
from tests.helpers import EXAMPLES

AMI = conditions.get("acute_myocardial_infarction")
TRIAL = EXAMPLES / "trial-ami-subgroups.yaml"
# Delewi 2014 (Eur Heart J 35:989), LVEF benefit in points: below / at or above the cut
DELEWI = {"age_years": (3.38, 1.77), "baseline": (5.30, 1.45)}


def test_factors_keep_the_reference_populations_mean_and_split_by_the_ratio():
    params = bundled()
    scenario = Scenario.model_validate(modifier_fit.AMI_DESIGN)  # moderate severity: the reference
    cohort = sample_cohort(scenario, 5, np.arange(100_000), params)
    entry = baseline(AMI, AMI.primary, cohort.severity, params)
    factor = modifiers.factors(AMI, params, cohort.age_years, entry)
    # the analytic normalisation (truncated normals of the population rows) against a Monte Carlo mean
    assert factor.mean() == pytest.approx(1.0, abs=0.01)
    old, low = cohort.age_years >= 55, entry < 40
    young_high = factor[~old & ~low][0]
    assert factor[old & ~low][0] / young_high == pytest.approx(modifiers.ratio(AMI, "age_years", params))
    assert young_high / factor[~old & low][0] == pytest.approx(modifiers.ratio(AMI, "baseline", params))
    assert modifiers.reference_share(AMI, "age_years", params) == pytest.approx(old.mean(), abs=0.01)
    # the trial cohort's potency factor carries them (mean-one noise times the modifier)
    ratio = cohort.variation.potency_factor / factor
    assert ratio.mean() == pytest.approx(1.0, abs=0.01)
    # without a modifier row nothing changes
    knee = conditions.get("knee_osteoarthritis")
    assert modifiers.present(knee, params) == ()
    assert modifiers.factors(knee, params, np.array([30.0, 80.0]), np.array([10.0, 90.0])).tolist() == [1, 1]


def test_the_fitted_potency_ratios_give_the_subgroup_effects_delewi_2014_pooled():
    params = bundled()
    for target in modifier_fit.TARGETS:
        effects, share = modifier_fit.subgroup_effects(target, params, patients=3_000)
        below, above = effects(modifiers.ratio(AMI, target.covariate, params))
        source_below, source_above = DELEWI[target.covariate]
        assert above / below == pytest.approx(source_above / source_below, rel=0.05), target.covariate
        assert 0.2 < share < 0.9
    # the mechanism alone makes a worse ventricle gain more, but less than the source says
    effects, _ = modifier_fit.subgroup_effects(modifier_fit.TARGETS[1], params, patients=3_000)
    below, above = effects(1.0)
    assert DELEWI["baseline"][1] / DELEWI["baseline"][0] < above / below < 1


def test_a_ratio_below_one_has_a_log_normal_prior():
    prior = prior_for(bundled(), ("effect_modifier_ratio", "acute_myocardial_infarction/age_years"))
    assert prior.distribution == "lognormal" and prior.spread == pytest.approx(0.33)
    low, high = prior.interval()
    assert low == pytest.approx(
        prior.value * np.exp(-scipy.stats.norm.ppf(0.975) * np.sqrt(np.log1p(0.33**2))), rel=1e-9
    )
    # symmetric on the log scale, as a ratio's uncertainty is (a share's logit-normal would give 0.66)
    assert high / prior.value == pytest.approx(prior.value / low, rel=1e-9) and high > 0.9


def test_one_patients_effect_follows_its_age():
    def effect(age):
        spec = dict(modifier_fit.AMI_DESIGN, patient={"age": f"{age} year"} if age else {})
        scenario = from_dict(spec)
        model = assemble(scenario, patients=1, params=bundled())
        outcomes = disease_outcomes(scenario, model, bundled(), extra_days=np.array([183.0]))
        return (outcomes.treated["lvef"] - outcomes.untreated["lvef"])[0, -1]

    young, old, unknown = effect(40), effect(70), effect(None)
    # potency scales the improvement before it saturates, so the ratio is the row's to within 3%
    assert old / young == pytest.approx(modifiers.ratio(AMI, "age_years", bundled()), rel=0.03)
    assert young > unknown > old  # no age given: the population's average age factor (one)


def test_subgroup_contrasts_match_an_independent_welch_test_on_the_rows():
    s = load(TRIAL)
    plan = design(s)
    table, partial = simulate_chunk(s, 0, 0, 600)
    rows = table.to_pandas()
    wide = rows.pivot_table(index=["patient", "arm"], columns="time_d", values="lvef").reset_index()
    ages = rows.groupby("patient").age_years.first()
    change = (wide[183.0] - wide[0.0]).dropna()
    arm, day0 = wide.arm[change.index], wide[0.0][change.index]
    covariate = {"age_years": ages[wide.patient[change.index]].to_numpy(), "baseline": day0.to_numpy()}
    found = stats.subgroups(partial.subgroups[None], plan, s.trial.subgroups)
    for g, group in enumerate(s.trial.subgroups):
        above = covariate[group.covariate] >= group.cut
        contrasts = []
        for side, name in ((~above, "below"), (above, "at_or_above")):
            treated, control = change[side & (arm == "bmc")], change[side & (arm == "placebo")]
            reference = scipy.stats.ttest_ind(treated, control, equal_var=False)
            ours = found[g][name]
            assert ours["difference"] == pytest.approx(treated.mean() - control.mean(), rel=1e-5)
            assert ours["p_value"] == pytest.approx(reference.pvalue, rel=1e-3)
            assert ours["n"] == [len(treated), len(control)]
            se = np.sqrt(treated.var() / len(treated) + control.var() / len(control))
            contrasts.append((treated.mean() - control.mean(), se))
        (d0, s0), (d1, s1) = contrasts
        z = (d1 - d0) / np.hypot(s0, s1)
        assert found[g]["interaction"]["difference"] == pytest.approx(d1 - d0, abs=1e-5)  # float32 rows
        assert found[g]["interaction"]["p_value"] == pytest.approx(2 * scipy.stats.norm.sf(abs(z)), rel=1e-3)
    # the patients of the two sides add up to the whole comparison, however the trial is chunked
    np.testing.assert_allclose(partial.subgroups.sum(axis=1)[0], partial.sums, rtol=1e-12, atol=1e-9)
    parts = [simulate_chunk(s, 0, c.start, c.stop, table=False)[1].subgroups for c in chunks(s, 97)[:7]]
    whole = simulate_chunk(s, 0, 0, chunks(s, 97)[6].stop, table=False)[1].subgroups
    np.testing.assert_allclose(np.sum(parts, axis=0), whole, rtol=1e-12, atol=1e-9)


def test_a_trials_cells_arm_carries_the_subgroup_ratio_of_its_source_and_not_without_the_modifier():
    spec = yaml.safe_load(TRIAL.read_text())
    spec["trial"] |= {"patients": 8_000, "replicates": 1}
    big = from_dict(spec)
    plan = design(big)
    cells, effect = plan.arms.index("bmc"), FIELDS.index("sum_effect")
    n = FIELDS.index("n")
    ratios = {}
    for label, value in (("with", None), ("without", 1.0)):
        key = ("effect_modifier_ratio", "acute_myocardial_infarction/age_years")
        params = None if value is None else with_values(bundled(), {key: value})
        groups = simulate_chunk(big, 0, 0, 8_000, params=params, table=False)[1].subgroups
        age = groups[0][:, cells, plan.primary, plan.primary_visit]  # (below, above) x fields
        mean = age[:, effect] / age[:, n]  # each side's mean effect against the untreated twins
        ratios[label] = mean[1] / mean[0]
    # Delewi 2014: 1.77 / 3.38 at 55 years or more against below (potency noise: CV 0.5 per patient)
    assert ratios["with"] == pytest.approx(1.77 / 3.38, rel=0.12)
    assert ratios["without"] == pytest.approx(1.0, rel=0.12)


@pytest.mark.parametrize(
    ("subgroups", "reason"),
    [
        ([{"covariate": "height", "cut": 170}], "trial.subgroups.0.covariate"),
        ([{"covariate": "age_years"}], "trial.subgroups.0.cut"),
        ([{"covariate": "age_years", "cut": "old"}], "trial.subgroups.0.cut"),
    ],
)
def test_a_bad_subgroup_is_a_one_line_error_naming_the_field(subgroups, reason):
    spec = yaml.safe_load(TRIAL.read_text())
    spec["trial"]["subgroups"] = subgroups
    with pytest.raises(ScenarioError) as caught:
        from_dict(spec)
    assert caught.value.field == reason and "\n" not in str(caught.value)


def _ami_trial(patients: int, **trial) -> Scenario:
    spec = yaml.safe_load(TRIAL.read_text())
    spec["trial"] |= {"patients": patients, "replicates": 1, **trial}
    return from_dict(spec)


def _cells_effect(scenario: Scenario) -> float:
    plan = design(scenario)
    sums = simulate_chunk(scenario, 0, 0, scenario.trial.patients, table=False)[1].sums
    row = sums[plan.arms.index("bmc"), plan.primary, plan.primary_visit]
    return row[FIELDS.index("sum_effect")] / row[FIELDS.index("n")]


def test_an_enriched_trial_enrols_within_its_ranges_and_sees_its_subgroups_effect():
    young = _ami_trial(6_000, eligibility={"age": [18, 54.999]})
    table, _ = simulate_chunk(young, 0, 0, 600)
    ages = table.column("age_years").to_numpy()
    assert ages.min() >= 18 and ages.max() < 55
    # the enriched trial's cells arm gains what the below-55 subgroup of an all-comers trial gains
    everyone = _ami_trial(6_000)
    plan = design(everyone)
    groups = simulate_chunk(everyone, 0, 0, 6_000, table=False)[1].subgroups
    below = groups[0, 0, plan.arms.index("bmc"), plan.primary, plan.primary_visit]
    expected = below[FIELDS.index("sum_effect")] / below[FIELDS.index("n")]
    assert _cells_effect(young) == pytest.approx(expected, rel=0.08)
    assert _cells_effect(young) > 1.3 * _cells_effect(everyone)
    # a baseline range: entry values within it, down to LVEF 25 (the model holds patients to twice the
    # typical deficit, LVEF 15.6; until 2026-12-03 it stopped at 37.8)
    low_ef = _ami_trial(2_000, eligibility={"baseline": [25, 40]})
    cohort = sample_cohort(low_ef, 1, np.arange(2_000), bundled())
    entry = baseline(AMI, AMI.primary, cohort.severity, bundled())
    assert 25 <= entry.min() < 30 and entry.max() <= 40
    share, worst = beyond_most_severe(low_ef, bundled())
    assert (
        worst == pytest.approx(15.6)
        and share == 0
        and not any("severity 2" in w for w in trial_warnings(low_ef))
    )
    # a range reaching past it: the held share is exact against Monte Carlo, and the trial warns
    beyond = _ami_trial(2_000, eligibility={"baseline": [5, 20]})
    cohort = sample_cohort(beyond, 1, np.arange(2_000), bundled())
    share, _ = beyond_most_severe(beyond, bundled())
    assert 0.1 < share < 0.9
    assert np.mean(cohort.severity == SEVERITY_MAX) == pytest.approx(share, abs=0.03)
    assert any("severity 2" in w for w in trial_warnings(beyond))


@pytest.mark.parametrize(
    ("eligibility", "field"),
    [
        ({"age": [60, 50]}, "trial.eligibility.age"),
        ({"age": [18, 150]}, "trial.eligibility.age"),
        ({"baseline": [101, 120]}, "trial.eligibility.baseline"),
        ({"weight": [50, 90]}, "trial.eligibility.weight"),
    ],
)
def test_a_bad_eligibility_range_is_a_one_line_error_naming_the_field(eligibility, field):
    with pytest.raises(ScenarioError) as caught:
        _ami_trial(100, eligibility=eligibility)
    assert caught.value.field == field and "\n" not in str(caught.value)


def test_subgroups_and_eligibility_round_trip_through_a_written_scenario():
    from infusim.scenario_spec import to_spec

    s = _ami_trial(100, eligibility={"age": [18, 55], "baseline": [25, 40]})
    again = from_dict(yaml.safe_load(yaml.safe_dump(to_spec(s))))
    assert again.hash() == s.hash() and again.trial.eligibility.age_years == (18.0, 55.0)
    assert [g.covariate for g in again.trial.subgroups] == ["age_years", "baseline"]
    assert _ami_trial(100).hash() != s.hash()  # the ranges are part of what is simulated
