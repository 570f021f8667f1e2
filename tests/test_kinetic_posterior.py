"""The posterior of the fitted capture parameters: its anchors, its draws and how they are used."""

from __future__ import annotations

import numpy as np
import pytest

from infusim import kinetic_posterior, posterior, uncertainty
from infusim.calibrate import FITTED, fit_extraction
from infusim.parameters import bundled


def test_batched_anchors_equal_the_least_squares_fit_path():
    """The posterior evaluates the Abbott anchor through sampled parameter sets (one patient per
    walker); the least-squares fit through one model per value. They must agree."""
    fit = fit_extraction()
    theta = np.array([[fit.midpoint, np.log(fit.width), np.log(fit.homing / (1 - fit.homing))]] * 3)
    found = kinetic_posterior.anchors(theta)
    assert found["fischer"][0] == pytest.approx(fit.fischer_ratio, rel=1e-10)
    for cell, value in fit.human_heart_first_pass.items():
        assert found[cell][2] == pytest.approx(value, rel=1e-10)
    assert found["abbott"][1] == pytest.approx(fit.abbott_ratio, rel=1e-8)


def test_leaving_out_an_anchor_removes_exactly_its_term():
    theta = np.array([[2.0, np.log(0.3), 0.5]])
    found = kinetic_posterior.anchors(theta)
    term = -0.5 * (np.log(found["fischer"] / 30.0) / kinetic_posterior.ANCHOR_LOG_SD["fischer"]) ** 2
    full = kinetic_posterior.log_posterior(theta)
    without = kinetic_posterior.log_posterior(theta, leave_out=("fischer",))
    assert full - without == pytest.approx(term, rel=1e-10)


def test_stored_draws_converged_and_hold_the_tabulated_fit():
    stored = posterior.load(kinetic_posterior.NAME, kinetic_posterior.folder())
    assert stored is not None and stored.draws == posterior.STORED_DRAWS
    assert max(stored.record["split_rhat"].values()) < 1.05
    assert min(stored.record["ess"].values()) > 300
    params = bundled()
    for name in FITTED:
        low, high = np.percentile(stored.samples[name], [2.5, 97.5])
        assert low < params.get(name, "", "") < high


def test_capture_rows_vary_jointly_by_their_posterior_and_apart_from_the_effect_fits():
    params = bundled()
    keys = [(n, "") for n in FITTED] + [("potency", "copd/systemic")]
    found = uncertainty.priors(params, keys)
    assert {p.group for p in found.values()} == {"extraction", "copd"}
    drawn = uncertainty.draw(found, 500, 3)
    stored = posterior.load(kinetic_posterior.NAME, kinetic_posterior.folder())
    rows = np.stack([drawn[(n, "")] for n in FITTED], axis=1)
    table = np.stack([stored.samples[n] for n in FITTED], axis=1)
    assert all((table == row).all(axis=1).any() for row in rows[:20])  # whole stored draws, jointly
    assert abs(np.corrcoef(drawn[("potency", "copd/systemic")], rows[:, 2])[0, 1]) < 0.15
