"""Priors of parameter rows, sampled parameter sets, and the ensemble that evaluates them."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from infusim import ensemble, uncertainty
from infusim import sensitivity_analysis as sensitivity
from infusim.errors import ScenarioError
from infusim.model.kinetics import assemble
from infusim.parameters import bundled, for_scenario, sampled
from infusim.scenario import load
from infusim.simulation import simulate
from tests.helpers import EXAMPLES, scenario


def test_every_prior_row_is_valid_and_defaults_cover_every_provenance():
    rows = uncertainty.prior_rows()
    entries = bundled().entries
    for (parameter, scope), row in rows.items():
        if parameter != "default":
            assert any(p == parameter for p, _ in entries), f"priors.csv names an unknown row {parameter}"
        assert row.note, f"{parameter}[{scope}] needs a note saying why"


def test_a_lognormal_prior_has_the_table_value_as_median_and_the_stated_cv():
    params = bundled()
    prior = uncertainty.prior_for(params, ("loss_rate", "msc/lungs"))
    assert prior.distribution == "lognormal" and prior.spread == 0.5
    assert prior.quantile(np.array([0.5]))[0] == pytest.approx(0.05)
    values = prior.quantile(np.linspace(0.0005, 0.9995, 2000))
    sigma = np.log(values).std()
    assert sigma == pytest.approx(np.sqrt(np.log1p(0.5**2)), rel=0.05)  # CV 0.5 on the log scale


def test_fractions_stay_inside_zero_one_and_structural_values_are_held():
    params = bundled()
    share = uncertainty.prior_for(params, ("phagocytosed_share", "msc/liver"))  # 0.9, assumption
    assert share.distribution == "logitnormal"
    low, high = share.interval(0.999)
    assert 0 < low < 0.9 < high < 1
    assert not uncertainty.prior_for(params, ("adhesion_extraction", "msc")).varies  # 0: structural
    assert not uncertainty.prior_for(params, ("physical_half_life", "in111")).varies  # priors.csv: fixed
    potency = uncertainty.prior_for(params, ("potency", "copd/systemic"))
    assert potency.distribution == "posterior" and potency.varies


def test_a_value_set_in_the_scenario_is_held():
    s = scenario(parameters={"loss_rate[msc/lungs]": "0.1 1/h"})
    assert not uncertainty.prior_for(for_scenario(s), ("loss_rate", "msc/lungs")).varies


def test_draws_of_one_row_do_not_depend_on_which_other_rows_are_drawn():
    params = bundled()
    a = uncertainty.priors(params, [("loss_rate", "msc/lungs")])
    b = uncertainty.priors(params, [("loss_rate", "msc/lungs"), ("release_rate", "msc")])
    key = ("loss_rate", "msc/lungs")
    assert np.array_equal(uncertainty.draw(a, 50, 7)[key], uncertainty.draw(b, 50, 7)[key])
    draws = uncertainty.draw(a, 4000, 7)[key]
    assert scipy.stats.kstest(np.log(draws / 0.05) / np.sqrt(np.log1p(0.25)), "norm").pvalue > 1e-3


def test_a_sampled_set_gives_what_a_scenario_override_gives():
    """Independent route to the same number: the per-patient arrays in ``sampled`` against the
    scenario's ``parameters`` section, which replaces the table row before assembly."""
    outputs_text = ["live_cells:lungs@24 h", "live_fraction:liver@72 h", "dead_cells:all@7 day"]
    values = {("loss_rate", "msc/lungs"): [0.02, 0.08, 0.2], ("diameter", "msc"): [15.0, 21.0, 30.0]}
    base = scenario()
    outputs = [ensemble.parse_output(t, base) for t in outputs_text]
    batch = ensemble.evaluate(base, outputs, {k: np.array(v) for k, v in values.items()}, 3)
    for i in range(3):
        one = scenario(
            parameters={"loss_rate[msc/lungs]": f"{values[('loss_rate', 'msc/lungs')][i]} 1/h"},
            product={"diameter": f"{values[('diameter', 'msc')][i]} um"},
        )
        alone = ensemble.evaluate(one, outputs, {}, 1)[0]
        np.testing.assert_allclose(batch[i], alone, rtol=1e-9)
    assert len(set(batch[:, 0])) == 3  # the three sets differ
    given = simulate(base).summary["live_fraction_of_dose"]["3 d"]["liver"]
    assert ensemble.evaluate(base, outputs, {}, 1)[0, 1] == pytest.approx(given, rel=1e-9)


def test_an_unsampled_parameter_set_reproduces_the_assembled_model():
    s = load(EXAMPLES / "msc-allogeneic-iv-human.yaml")
    params = bundled()
    plain = assemble(s, patients=2, params=params)
    table = params.get("loss_rate", "msc", "1/h")
    same = assemble(
        s, patients=2, params=sampled(params, {("loss_rate", "msc"): np.full(2, table)}, repeat=3)
    )
    for name in plain.parameters:
        np.testing.assert_allclose(same.parameters[name], plain.parameters[name], rtol=1e-12)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("live_cells:lung@24 h", "compartment must be one of"),
        ("live_cells:lungs+aorta@24 h", "joined by \\+"),
        ("cells:lungs@24 h", "quantity must be one of"),
        ("live_cells:lungs@yesterday", "is not a time"),
        ("live_cells:lungs@30 day", "within the simulation"),
        ("effect:lvef@1 day", "need a named condition"),
        ("dead_cells:eaten@1 day", "cause must be one of"),
        ("lungs", "is not quantity:where@time"),
    ],
)
def test_bad_outputs_are_one_line_errors(text, field):
    with pytest.raises(ScenarioError, match=field):
        ensemble.parse_output(text, scenario())


def test_bands_hold_the_point_prediction_and_widen_with_assumptions():
    s = load(EXAMPLES / "condition-acute-myocardial-infarction.yaml")
    result = simulate(s, uncertainty=300)
    found = result.summary["uncertainty"]
    assert found["draws"] == 300 and found["parameters_varied"] > 20
    rows = {(r["quantity"], r["where"], r["time_h"]): r for r in found["rows"]}
    point = result.summary["live_fraction_of_dose"]["24 h"]
    for compartment in ("liver", "target", "bone_marrow"):
        band = rows[("live_fraction", compartment, 24.0)]
        assert band["low"] < point[compartment] < band["high"]
    effect = result.summary["endpoints"]["120 d"]["lvef"]
    band = rows[("effect", "lvef", 2880.0)]
    assert band["low"] < effect["effect"] < band["high"]
    assert band["high"] - band["low"] >= 0.9 * (effect["high"] - effect["low"])  # kinetics add spread


def test_adverse_event_bands_vary_with_the_rows_the_events_read_and_hold_the_point():
    """Fever is the pooled odds ratio on an assumed control risk: with both held by the scenario its
    band collapses to the point (computed by hand from the two rows); left to their priors it spreads
    around the point. Lung obstruction at 3e7 cells/kg (a risk near 0.4%) is banded too."""
    held = scenario(
        product={"donor": "allogeneic"},
        parameters={"fever_odds_ratio[msc]": 1.61, "fever_control_risk": 0.05},
    )
    rows = {
        (r["quantity"], r["where"]): r for r in simulate(held, uncertainty=40).summary["uncertainty"]["rows"]
    }
    fever = rows[("event_probability", "fever")]
    by_hand = 1.61 * 0.05 / (1 - 0.05 + 1.61 * 0.05)  # the odds ratio applied to the control odds
    assert fever["low"] == pytest.approx(by_hand, rel=1e-12) and fever["high"] == pytest.approx(
        by_hand, rel=1e-12
    )
    assert ("serious_event_probability", "fever") not in rows  # no grade 3-5 is modelled for fever
    free = simulate(
        scenario(product={"donor": "allogeneic"}, administration={"dose": "3e7 cells/kg"}), uncertainty=80
    )
    point = free.summary["adverse_events"]["events"]
    rows = {(r["quantity"], r["where"]): r for r in free.summary["uncertainty"]["rows"]}
    for event in ("fever", "lung_obstruction"):
        band = rows[("event_probability", event)]
        assert band["low"] < point[event]["probability"] < band["high"], event
    lung = rows[("serious_event_probability", "lung_obstruction")]
    assert lung["high"] / lung["low"] > 10  # the lethal load and the probit spread are assumptions


def test_sensitivity_finds_size_trapping_for_lung_retention_and_is_batch_invariant():
    """Known physics: IV MSC in the lungs at 1 h are held by size, so the size rows lead; the two
    methods (variance-based and elementary effects) agree on the leader; batching changes nothing."""
    s = load(EXAMPLES / "msc-iv-human.yaml")
    outputs = [ensemble.parse_output("live_cells:lungs@1 h", s)]
    sobol = sensitivity.analyse(s, outputs, method="sobol", n=256)
    top = sobol.ranking("live_cells:lungs@1 h", 3)["parameter"].tolist()
    size_rows = {"diameter[msc]", "capillary_diameter[human]", "size_extraction_midpoint", "diameter_cv[msc]"}
    assert top[0] in size_rows, top
    morris = sensitivity.analyse(s, outputs, method="morris", n=40)
    assert morris.ranking("live_cells:lungs@1 h", 1)["parameter"].iloc[0] in size_rows
    table = sobol.table
    assert (table["total"] >= table["first_order"] - 3 * table["total_conf"] - 0.05).all()
    priors = sensitivity.varied_priors(s, outputs)
    _, design = sensitivity.design("sobol", priors, 16, 3)
    values = sensitivity.to_values(priors, design)
    whole = sensitivity.evaluate_all(s, outputs, values, workers=1)
    pieces = sensitivity.evaluate_all(s, outputs, values, workers=2, batch=100)
    np.testing.assert_array_equal(whole, pieces)


def test_sensitivity_input_errors_name_the_option():
    s = load(EXAMPLES / "msc-iv-human.yaml")
    outputs = [ensemble.parse_output("live_cells:lungs@1 h", s)]
    with pytest.raises(ScenarioError, match="--n"):
        sensitivity.analyse(s, outputs, n=1000)
    with pytest.raises(ScenarioError, match="--method"):
        sensitivity.analyse(s, outputs, method="fast")
    with pytest.raises(ScenarioError, match="--parameters"):
        sensitivity.analyse(s, outputs, patterns=("no_such_row*",), n=16)


def test_marker_outputs_equal_what_simulate_reports():
    s = load(EXAMPLES / "msc-iv-human.yaml")  # In-111, decay-corrected
    texts = ["radiolabel:lungs@1 h", "radiolabel:liver@24 h", "dna:lungs@24 h", "radiolabel:whole_body@24 h"]
    outputs = [ensemble.parse_output(t, s) for t in texts]
    values = ensemble.evaluate(s, outputs, {}, 1)[0]
    table = simulate(s).observations
    for o, value in zip(outputs, values, strict=True):
        row = table[
            (table.quantity == o.quantity) & (table.compartment == o.where) & (table.time_h == o.time_h)
        ]
        assert value == pytest.approx(float(row.value.iloc[0]), rel=1e-9), o.text
    keys = ensemble.read_keys(s, outputs)
    assert ("efflux_rate", "in111") in keys and ("dna_debris_degradation_rate", "") in keys
    with pytest.raises(ScenarioError, match=r"needs simulation\.label"):
        ensemble.parse_output("radiolabel:lungs@1 h", scenario())


def test_a_joined_output_is_the_sum_of_its_parts_and_matches_the_whole_organ_of_a_validation_case():
    # with a condition, "heart" is the healthy part and "target" the injured part (simulate's table);
    # a validation case's "heart" is the whole organ: heart+target gives the same number
    from infusim.case_format import bundled_cases_dir, load_case
    from infusim.validation import predict

    case = load_case(bundled_cases_dir() / "nakamuta2009_rat_iv_bmc_tc99m")
    s = case.scenario.model_copy(
        update={"simulation": case.scenario.simulation.model_copy(update={"label": case.label})}
    )
    texts = ["radiolabel:heart@24 h", "radiolabel:target@24 h", "radiolabel:heart+target@24 h"]
    heart, target, whole = ensemble.evaluate(s, [ensemble.parse_output(t, s) for t in texts], {}, 1)[0]
    assert heart > 0 and target > 0
    assert whole == pytest.approx(heart + target, rel=1e-12)
    assert 100 * whole == pytest.approx(float(predict(case, np.array([24.0])).predicted.iloc[0]), rel=1e-9)


def test_a_free_label_split_is_drawn_as_a_dirichlet_that_keeps_its_sum():
    """Where free In-111 goes (human rows): each drawn set sums to one, the shares' means are the
    table's split, each share's SD is the Dirichlet's sqrt(m (1 - m) / (a0 + 1)) with a0 = 1/0.25^2 - 1
    = 15, the marginal quantile is that Beta's, and a sensitivity design holds the split."""
    params = bundled()
    keys = [k for k in params.entries if k[0] == "free_fraction" and k[1].startswith("human/in111/")]
    found = uncertainty.priors(params, keys)
    assert {p.distribution for p in found.values()} == {"dirichlet"}
    drawn = uncertainty.draw(found, 20_000, seed=3)
    total = sum(drawn[k] for k in keys)
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    for key in keys:
        m = params.get(*key, "")
        assert drawn[key].mean() == pytest.approx(m, abs=0.004)
        assert drawn[key].std() == pytest.approx(np.sqrt(m * (1 - m) / 16), rel=0.05)
        q = found[key].quantile(np.array([0.1, 0.9]))
        np.testing.assert_allclose(q, scipy.stats.beta.ppf([0.1, 0.9], 15 * m, 15 * (1 - m)))
    every = [k for k in params.entries if k[0] == "free_fraction"]  # every label's split at once
    both = uncertainty.draw(uncertainty.priors(params, every), 10, seed=3)
    for split in {k[1].rpartition("/")[0] for k in every}:
        shares = [both[k] for k in every if k[1].rpartition("/")[0] == split and k in both]
        np.testing.assert_allclose(sum(shares), 1.0, atol=1e-12, err_msg=split)
    again = uncertainty.draw(found, 20_000, seed=3)
    assert all(np.array_equal(again[k], drawn[k]) for k in keys)  # the same seed, the same split
    rodent = uncertainty.prior_for(params, ("free_fraction", "in111/liver"))
    assert rodent.distribution == "dirichlet" and uncertainty.dirichlet_concentration(
        rodent.spread
    ) == pytest.approx(3)
    human = load(EXAMPLES / "msc-iv-human.yaml")  # In-111: its free label's split is read
    output = [ensemble.parse_output("radiolabel:liver@24 h", human)]
    assert ("free_fraction", "human/in111/liver") in ensemble.read_keys(human, output)
    assert not any(k[0] == "free_fraction" for k in sensitivity.varied_priors(human, output))
