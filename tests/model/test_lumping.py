"""Exact lumping: parallel leaves become one state, and expanding it gives the unlumped answer."""

from __future__ import annotations

import numpy as np

from infusim.model.declare import Dose, Model, Process, State
from infusim.model.kinetics import assemble
from infusim.model.lumping import lump
from infusim.solve import _expm_solve
from tests.helpers import scenario


def star(release: tuple[float, float, float], dosed_leaf: bool = False) -> Model:
    """Blood feeding three leaves that release back to blood and die; blood is dosed."""
    states = [State("blood", "blood", "live"), State("dead", "body", "dead")]
    processes, parameters = [], {}
    for i, rate in enumerate(release):
        leaf = f"leaf{i}"
        states.append(State(leaf, leaf, "live"))
        processes += [
            Process(f"in{i}", "blood", leaf, f"in{i}"),
            Process(f"out{i}", leaf, "blood", f"out{i}"),
            Process(f"die{i}", leaf, "dead", "death"),
        ]
        parameters[f"in{i}"] = np.array([0.5 * (i + 1)])
        parameters[f"out{i}"] = np.array([rate])
    parameters["death"] = np.array([0.05])
    processes.append(Process("blood death", "blood", "dead", "death"))
    split = {"leaf0": np.array([1.0])} if dosed_leaf else {"blood": np.array([1.0])}
    doses = (Dose(0.0, 2.0, np.array([100.0]), split),)
    return Model(tuple(states), tuple(processes), parameters, doses)


def test_identical_leaves_lump_into_one_state_and_expand_exactly():
    model = star((0.2, 0.2, 0.2))
    lumping = lump(model)
    assert len(lumping.reduced.states) == 3
    times = np.array([0.5, 2.0, 10.0, 100.0])
    expanded = lumping.expand(_expm_solve(lumping.reduced, times))
    np.testing.assert_allclose(expanded, _expm_solve(model, times), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lumping.share[0, 2:], [1 / 6, 2 / 6, 3 / 6])


def test_leaves_with_other_rates_or_a_dose_of_their_own_stay_apart():
    assert len(lump(star((0.2, 0.2, 0.3))).reduced.states) == 4
    assert len(lump(star((0.2, 0.2, 0.2), dosed_leaf=True)).reduced.states) == 4


def test_whole_body_model_lumps_generic_organs_but_keeps_the_injured_target_apart():
    model = assemble(scenario(condition={"site": "heart", "severity": 0.5}))
    names = [s.name for s in lump(model).reduced.states]
    assert "target" in names and "lungs" in names and "bone_marrow" in names
    generic = next(n for n in names if n.startswith("lumped:") and "brain" in n)
    assert "kidneys" in generic and "heart" in generic and "liver" not in generic
