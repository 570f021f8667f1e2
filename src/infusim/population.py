"""Per-patient random numbers that do not depend on chunking, ordering or workers.

Each number is a pure function of (seed, patient index, stream): a SplitMix64 hash, vectorised over
patients. Patient 12 of a cohort gets the same draws whether it is simulated alone, in a chunk of
1,000 or on another machine.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.special

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, patients: np.ndarray, stream: int) -> np.ndarray:
    """Uniform numbers in (0, 1), one per patient index, for a given seed and stream number."""
    index = np.asarray(patients, dtype=np.uint64)
    with np.errstate(over="ignore"):
        key = _splitmix64(np.full(index.shape, seed, dtype=np.uint64))
        key = _splitmix64(key ^ np.uint64(stream))
        bits = _splitmix64(key ^ _splitmix64(index))
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def standard_normals(seed: int, patients: np.ndarray, stream: int) -> np.ndarray:
    """Standard normal numbers, one per patient index (inverse-CDF of ``uniforms``)."""
    return scipy.special.ndtri(uniforms(seed, patients, stream))


def lognormal_factors(seed: int, patients: np.ndarray, cvs: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Median-one log-normal multipliers with the given coefficients of variation, by name.

    Streams are numbered by the order of ``cvs``; keep that order stable for reproducible cohorts.
    """
    factors = {}
    for stream, (name, cv) in enumerate(cvs.items(), start=1):
        sigma = np.sqrt(np.log1p(cv**2))
        factors[name] = np.exp(sigma * standard_normals(seed, patients, stream))
    return factors
