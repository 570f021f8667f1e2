"""Shared helpers: scenarios built from small dictionaries, and solved models."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from infusim.model.kinetics import assemble
from infusim.scenario import Scenario, from_dict
from infusim.solve import solve

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "infusim" / "examples"

BASE = {
    "name": "test",
    "species": "human",
    "patient": {"body_weight": "70 kg"},
    "product": {"cell_type": "msc", "tissue_source": "bone_marrow", "donor": "autologous", "viability": 1.0},
    "administration": {"route": "intravenous", "dose": "2e6 cells/kg", "duration": "1 min"},
    "simulation": {"duration": "7 day", "outputs": ["5 min", "1 h", "24 h", "72 h", "7 day"]},
}


def merge(base: dict, overrides: dict) -> dict:
    """Deep-merge ``overrides`` into a copy of ``base``; a None value deletes the key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def scenario(**overrides) -> Scenario:
    """A valid scenario: ``BASE`` with ``overrides`` deep-merged in."""
    return from_dict(merge(BASE, overrides))


def live_by_compartment(s: Scenario, times_h=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Solve ``s`` for one patient; live cells per compartment as fractions of the dose, over time."""
    model = assemble(s)
    times = np.asarray(times_h if times_h is not None else s.simulation.outputs_h, dtype=float)
    states = solve(model, times).patient_states()[0]
    total = model.administered(np.inf).sum()
    out: dict[str, np.ndarray] = {}
    for i, state in enumerate(model.states):
        key = state.compartment if state.kind == "live" else state.name
        out[key] = out.get(key, 0.0) + states[:, i] / total
    return times, out
