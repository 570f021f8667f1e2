"""Observation models: what live-cell assays, DNA qPCR and radiolabel imaging would read."""

from __future__ import annotations

import numpy as np
import pytest

from infusim.model.kinetics import assemble
from infusim.observe import observation_table, observe
from infusim.parameters import bundled
from infusim.scenario import Label
from infusim.solve import solve
from tests.helpers import scenario

TIMES = np.array([0.25, 1.0, 24.0, 72.0, 168.0])


def table(isotope: str | None, decay_corrected: bool = True, **overrides):
    s = scenario(species="mouse", patient={"body_weight": "25 g"}, **overrides)
    label = Label(isotope=isotope, decay_corrected=decay_corrected) if isotope else None
    observed = observe(assemble(s), TIMES, s.species, label=label)
    return s, observation_table(observed)


def pivot(frame, quantity):
    rows = frame[frame.quantity == quantity]
    return rows.pivot(index="time_h", columns="compartment", values="value")


def test_live_cell_observations_equal_the_live_states():
    s, frame = table(None)
    model = assemble(s)
    states = solve(model, TIMES).patient_states()[0]
    lungs = states[:, model.index("lungs")]
    np.testing.assert_allclose(pivot(frame, "live_cells")["lungs"].to_numpy(), lungs, rtol=1e-9)


def test_dna_reads_at_least_the_live_cells_everywhere_and_outlasts_them():
    _, frame = table(None)
    live, dna = pivot(frame, "live_cells"), pivot(frame, "dna")
    assert np.all(dna.to_numpy() >= live[dna.columns].to_numpy() * (1 - 1e-12))
    dead_share = 1 - live["lungs"] / dna["lungs"]
    assert dead_share.iloc[-2] > dead_share.iloc[0]


def test_dna_of_dead_cells_is_degraded_so_the_signal_fades():
    s, frame = table(None)
    dna = pivot(frame, "dna")["whole_body"] / s.dose_cells
    assert dna.iloc[0] > 0.9 and dna.iloc[-1] < 0.05


@pytest.mark.parametrize("isotope", ["in111", "tc99m", "f18", "zr89"])
def test_radiolabel_without_decay_correction_is_the_corrected_value_times_physical_decay(isotope):
    _, corrected = table(isotope, True)
    _, raw = table(isotope, False)
    half_life = bundled().get("physical_half_life", isotope, "h")
    ratio = pivot(raw, "radiolabel") / pivot(corrected, "radiolabel")
    expected = np.exp(-np.log(2) * TIMES / half_life)
    np.testing.assert_allclose(ratio.to_numpy(), np.repeat(expected[:, None], ratio.shape[1], 1), rtol=1e-10)


@pytest.mark.parametrize("isotope", ["in111", "tc99m", "f18", "zr89"])
def test_decay_corrected_label_is_all_accounted_for(isotope):
    _, frame = table(isotope)
    label = pivot(frame, "radiolabel")
    body = label["whole_body"].to_numpy()
    assert np.all(body <= 1 + 1e-9) and np.all(body > 0.3)
    np.testing.assert_allclose(label.drop(columns="whole_body").sum(axis=1).to_numpy(), body, rtol=1e-9)


def test_leaky_labels_overstate_liver_and_understate_lungs_compared_with_live_cells():
    s, frame = table("tc99m")
    live = pivot(frame, "live_cells") / s.dose_cells
    label = pivot(frame, "radiolabel")
    at_24h = 24.0
    assert label.loc[at_24h, "lungs"] < live.loc[at_24h, "lungs"]
    assert label.loc[at_24h, "liver"] > 10 * live.loc[at_24h, "liver"]


def test_indium_label_lingers_after_live_cells_are_gone():
    s, frame = table("in111")
    live = pivot(frame, "live_cells")["whole_body"] / s.dose_cells
    label = pivot(frame, "radiolabel")["whole_body"]
    assert live.iloc[-1] < 0.01 and label.iloc[-1] > 0.5


def test_only_the_first_dose_carries_the_label():
    _, frame = table("in111", administration={"repeat": {"count": 2, "interval": "2 day"}})
    label = pivot(frame, "radiolabel")["whole_body"]
    assert label.max() <= 1 + 1e-9


@pytest.mark.parametrize("name", ["msc-iv-human", "msc-intramyocardial-rat", "bmmnc-intracoronary-human"])
def test_marker_systems_solved_by_eigen_decomposition_match_the_matrix_exponential(name):
    from infusim.scenario import load
    from tests.helpers import EXAMPLES

    s = load(EXAMPLES / f"{name}.yaml")
    label = s.simulation.label
    times = np.asarray(s.simulation.outputs_h)
    fast = observe(assemble(s), times, s.species, label=label, method="eig").trajectory
    exact = observe(assemble(s), times, s.species, label=label, method="expm").trajectory
    scale = s.dose_cells * s.administration.repeat.count
    np.testing.assert_allclose(fast.states, exact.states, rtol=1e-8, atol=1e-12 * scale)


#: ICRP Publication 151, Table 27.3: the systemic model of indium (transfer coefficients, 1/day), as
#: transcribed in github 9rnsr/FlexID (resources/inp/OIR/49-In/In-111/In-111_inj.inp), typed here
#: from that file, independently of labels.csv.
ICRP151_INDIUM = [
    ("plasma", "transferrin", 83),
    ("plasma", "rbc", 0.415),
    ("rbc", "plasma", 0.0554),
    ("transferrin", "marrow1", 0.316),
    ("transferrin", "liver1", 0.253),
    ("transferrin", "st0", 0.427),
    ("transferrin", "st1", 0.586),
    ("marrow1", "transferrin", 1.10),
    ("marrow1", "marrow2", 0.475),
    ("marrow2", "marrow1", 0.00831),
    ("liver1", "transferrin", 0.475),
    ("liver1", "faeces", 0.110),
    ("liver1", "liver2", 0.554),
    ("liver2", "liver1", 0.00831),
    ("st0", "plasma", 2.37),
    ("st1", "plasma", 0.00475),
    ("plasma", "kidneys", 1.66),
    ("kidneys", "plasma", 0.0166),
    ("kidneys", "urine", 0.0268),
]


def test_human_free_indium_follows_the_icrp_151_model_and_rodents_keep_their_own_rows():
    """Solve the ICRP 151 indium model for a unit input to plasma: the human free-In-111 rows are its
    shares outside blood at day 7 (to the rows' rounding) and its blood share at day 1; mice and rats
    read the ``in111`` rows, not the human ones."""
    import scipy.linalg

    from infusim.observe import free_label_scope, label_rates

    names = sorted({n for a, b, _ in ICRP151_INDIUM for n in (a, b)})
    at = {n: i for i, n in enumerate(names)}
    rates = np.zeros((len(names), len(names)))
    for source, target, k in ICRP151_INDIUM:
        rates[at[target], at[source]] += k
        rates[at[source], at[source]] -= k
    start = np.zeros(len(names))
    start[at["plasma"]] = 1.0

    def share(days: float, *pools: str) -> float:
        x = scipy.linalg.expm(rates * days) @ start
        return float(sum(x[at[p]] for p in pools))

    blood = ("plasma", "transferrin", "rbc")
    outside = 1 - share(7, *blood)
    expected = {
        "liver": share(7, "liver1", "liver2") / outside,
        "bone_marrow": share(7, "marrow1", "marrow2") / outside,
        "kidneys": share(7, "kidneys") / outside,
        "rest": share(7, "st0", "st1") / outside,
        "excreted": share(7, "urine", "faeces") / outside,
    }
    params = bundled()
    human = label_rates("in111", "human", params)
    assert free_label_scope("in111", "human", params) == "human/in111"
    for dest, value in expected.items():
        assert human.free_fractions[dest] == pytest.approx(value, abs=0.006), dest
    assert human.free_clearance == pytest.approx(-np.log(share(1, *blood)) / 24, rel=0.01)
    for species in ("mouse", "rat"):
        rodent = label_rates("in111", species, params)
        assert free_label_scope("in111", species, params) == "in111"
        assert rodent.free_fractions["bone_marrow"] == params.get("free_fraction", "in111/bone_marrow", "")
        assert rodent.free_clearance == params.get("free_clearance_rate", "in111", "1/h")
    assert (
        label_rates("tc99m", "human", params).free_fractions
        == label_rates("tc99m", "mouse", params).free_fractions
    )
