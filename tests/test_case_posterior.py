"""Posteriors of the case-based kinetic fits: the batched likelihood is the case's own score, and
uncertainty analyses draw these rows from the stored posterior."""

from __future__ import annotations

import numpy as np
import pytest

from infusim import case_posterior, posterior, uncertainty
from infusim.case_format import bundled_cases_dir, load_case
from infusim.kinetic_posterior import folder
from infusim.parameters import bundled, with_values
from infusim.validation import run_case


@pytest.mark.parametrize("fit", case_posterior.FITS, ids=lambda f: f.name)
def test_batched_residuals_are_each_walkers_own_case_score(fit):
    problem = case_posterior.Problem(fit)
    values = np.array([problem.table, problem.table * 0.5])
    r = problem.residuals(values)
    for walker in range(2):
        params = with_values(bundled(), dict(zip(fit.rows, values[walker], strict=True)))
        folds = np.concatenate(
            [
                run_case(load_case(bundled_cases_dir() / c), params, curves=False).comparisons.fold_error
                for c in fit.cases
            ]
        )
        assert np.exp(np.abs(r[walker])) == pytest.approx(folds, rel=1e-6)


def test_stored_draws_back_every_fitted_row_in_uncertainty_analyses():
    params = bundled()
    for fit in case_posterior.FITS:
        stored = posterior.load(fit.name, folder())
        assert stored is not None and posterior.records(folder())[fit.name]["cases"] == list(fit.cases)
        for key in fit.rows:
            prior = uncertainty.prior_for(params, key)
            assert prior.distribution == "posterior" and prior.group == fit.name
            draws = prior.draws
            assert len(draws) == posterior.STORED_DRAWS and np.all(draws > 0)
            if case_posterior._is_share(params, key):
                assert np.all(draws <= 1)
        record = posterior.records(folder())[fit.name]
        assert max(record["split_rhat"].values()) < 1.05 and min(record["ess"].values()) > 200


def test_the_posterior_prefers_the_data_over_a_far_value():
    fit = case_posterior.FITS[0]  # Tc-99m efflux from Couto 2011
    problem = case_posterior.Problem(fit)
    near = np.concatenate([problem.start, [np.log(0.3)]])
    far = near.copy()
    far[0] += np.log(30.0)  # efflux 30x faster: the liver would lose its label within hours
    assert problem.log_posterior(far)[0] < problem.log_posterior(near)[0] - 5
