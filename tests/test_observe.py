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
