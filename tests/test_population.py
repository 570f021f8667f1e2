"""Per-patient random streams: reproducible, chunk-invariant, with the requested spread."""

from __future__ import annotations

import numpy as np

from infusim.population import lognormal_factors, standard_normals, uniforms


def test_a_patient_gets_the_same_numbers_in_any_chunk():
    everyone = uniforms(42, np.arange(10_000), stream=3)
    np.testing.assert_array_equal(uniforms(42, np.arange(5_000, 5_010), stream=3), everyone[5_000:5_010])
    np.testing.assert_array_equal(uniforms(42, np.array([9_999]), stream=3), everyone[-1:])


def test_seeds_and_streams_give_different_numbers():
    a = uniforms(1, np.arange(1000), 1)
    assert not np.allclose(a, uniforms(2, np.arange(1000), 1))
    assert not np.allclose(a, uniforms(1, np.arange(1000), 2))


def test_uniforms_are_uniform_and_normals_normal():
    u = uniforms(7, np.arange(200_000), 1)
    assert 0 < u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    z = standard_normals(7, np.arange(200_000), 2)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01


def test_lognormal_factors_have_median_one_and_the_requested_cv():
    f = lognormal_factors(3, np.arange(200_000), {"loss": 0.3, "release": 0.5})
    for name, cv in (("loss", 0.3), ("release", 0.5)):
        assert abs(np.median(f[name]) - 1) < 0.01
        assert abs(f[name].std() / f[name].mean() - cv) < 0.02


def test_cohorts_follow_the_tabulated_trial_populations():
    from infusim.parameters import bundled
    from infusim.population import sample_cohort
    from infusim.scenario import load
    from tests.helpers import EXAMPLES

    params = bundled()
    copd = sample_cohort(load(EXAMPLES / "condition-copd.yaml"), 5, np.arange(40_000))
    assert abs(copd.age_years.mean() - 65.0) < 0.5  # UPLIFT 65 +/- 8, truncated at 40-85
    assert abs(copd.age_years.std() - 8.0) < 0.5
    assert abs(copd.female.mean() - params.get("female_fraction", "copd", "")) < 0.01
    men, women = copd.body_weight_kg[~copd.female], copd.body_weight_kg[copd.female]
    ratio = (1.619 / 1.759) ** 2  # same BMI distribution, mean heights of women and men
    assert abs(np.median(women) / np.median(men) - ratio) < 0.02
    ms = sample_cohort(load(EXAMPLES / "condition-multiple-sclerosis.yaml"), 5, np.arange(20_000))
    edss = 3.31 * ms.severity / 0.5  # entry EDSS from severity (healthy 0, moderate 3.31)
    assert edss.min() >= 2.0 - 1e-9 and edss.max() <= 6.0 + 1e-9  # MIST eligibility
    gvhd = sample_cohort(load(EXAMPLES / "condition-acute-gvhd.yaml"), 5, np.arange(20_000))
    assert gvhd.age_years.max() < 18 and np.median(gvhd.body_weight_kg / (3 * gvhd.age_years + 7)) < 1.05


def test_a_patient_is_the_same_whichever_cohort_draws_it():
    from infusim.population import sample_cohort
    from infusim.scenario import load
    from tests.helpers import EXAMPLES

    s = load(EXAMPLES / "condition-lupus.yaml")
    big = sample_cohort(s, 9, np.arange(1_000))
    small = sample_cohort(s, 9, np.array([17, 503]))
    for field in ("age_years", "female", "body_weight_kg", "severity", "placebo_factor"):
        np.testing.assert_array_equal(getattr(small, field), getattr(big, field)[[17, 503]])
    np.testing.assert_array_equal(small.rate_factors["homing"], big.rate_factors["homing"][[17, 503]])
    other_seed = sample_cohort(s, 10, np.array([17, 503]))
    assert not np.array_equal(other_seed.age_years, small.age_years)
