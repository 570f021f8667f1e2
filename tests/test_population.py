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
