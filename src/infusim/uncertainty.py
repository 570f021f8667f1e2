"""Parameter uncertainty: a prior for every parameter row, and parameter sets drawn from them.

Every row of the parameter tables gets a distribution around its value (``data/priors.csv``): a row
of its own where its source says how sure it is, else the default of its provenance (read 10%,
derived 25%, calibrated 20%, assumption 50% CV). Values are medians: a log-normal keeps positive
rates positive, a logit-normal keeps fractions inside (0, 1). Rows with a stored posterior (a
condition's potencies, effect ratios and fitted K; the kinetic capture parameters) vary by their
posterior draws instead; values a
scenario sets (``parameters:``) are the user's choice and are held.

A ``Prior`` maps probabilities to values (``quantile``), so random draws (``draw``) and the unit
hypercube of a sensitivity design (``infusim sensitivity``) go through one function. Shares that
must sum to one (where free label goes) are drawn together from a Dirichlet around the table's
split (``dirichlet``): ``draw`` keeps their sum, a sensitivity design cannot, so it holds them.
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np
import scipy.stats

from infusim import conditions, posterior
from infusim.errors import DataError
from infusim.parameters import PROVENANCES, SCENARIO_SOURCE, ParameterSet, _data_dir, citations

DISTRIBUTIONS = ("lognormal", "logitnormal", "fixed", "dirichlet")
PRIOR_COLUMNS = ("parameter", "scope", "distribution", "spread", "source", "provenance", "note")
#: Parameters whose values come with posterior draws (``data/posteriors``).
POSTERIOR_PARAMETERS = ("potency", "effect_ratio", "half_saturation")


@dataclass(frozen=True)
class PriorRow:
    """One row of ``priors.csv``."""

    parameter: str
    scope: str
    distribution: str
    spread: float
    source: str
    note: str


@dataclass(frozen=True)
class Prior:
    """Distribution of one parameter row (``key`` = (parameter, scope)) on the row's own unit."""

    key: tuple[str, str]
    value: float
    unit: str
    distribution: str  # lognormal, logitnormal, fixed or posterior
    spread: float
    basis: str  # which priors row (or posterior) set it, and why
    draws: np.ndarray | None = None
    #: Rows drawn jointly: the fit whose draws these are (posterior), or the split a share belongs to
    #: (dirichlet: ``free_fraction[in111]`` for ``free_fraction[in111/liver]``).
    group: str = ""

    @property
    def varies(self) -> bool:
        return self.distribution != "fixed"

    @property
    def name(self) -> str:
        parameter, scope = self.key
        return f"{parameter}[{scope}]" if scope else parameter

    def quantile(self, q: np.ndarray) -> np.ndarray:
        """Values at probabilities ``q`` (0 < q < 1)."""
        q = np.asarray(q, dtype=float)
        if self.distribution == "fixed":
            return np.full(q.shape, self.value)
        if self.distribution == "posterior":
            return np.quantile(self.draws, q)
        if self.distribution == "dirichlet":  # the share's marginal: Beta(a0 m, a0 (1 - m))
            total = dirichlet_concentration(self.spread)
            return scipy.stats.beta.ppf(q, total * self.value, total * (1.0 - self.value))
        z = scipy.stats.norm.ppf(q) * np.sqrt(np.log1p(self.spread**2))
        if self.distribution == "lognormal":
            return self.value * np.exp(z)
        logit = np.log(self.value / (1.0 - self.value)) + z
        return 1.0 / (1.0 + np.exp(-logit))

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Central interval holding ``level`` of the prior."""
        tail = (1.0 - level) / 2.0
        low, high = self.quantile(np.array([tail, 1.0 - tail]))
        return float(low), float(high)


def _read_priors() -> dict[tuple[str, str], PriorRow]:
    path = _data_dir() / "priors.csv"
    rows: dict[tuple[str, str], PriorRow] = {}
    known = set(citations()) | {"infusim"}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(line for line in handle if not line.startswith("#"))
        if tuple(reader.fieldnames or ()) != PRIOR_COLUMNS:
            raise DataError(path.name, f"columns must be {', '.join(PRIOR_COLUMNS)}")
        for number, row in enumerate(reader, start=2):
            where = f"{path.name} line {number}"
            if row["distribution"] not in DISTRIBUTIONS:
                raise DataError(where, f"distribution must be one of {', '.join(DISTRIBUTIONS)}")
            try:
                spread = float(row["spread"])
            except ValueError:
                raise DataError(where, f"spread {row['spread']!r} is not a number") from None
            if not spread >= 0:
                raise DataError(where, "spread must be zero or positive")
            if row["source"] not in known:
                raise DataError(where, f"source {row['source']!r} is not in CITATIONS.bib")
            if row["parameter"] == "default" and row["scope"] not in PROVENANCES:
                raise DataError(where, f"a default row's scope is a provenance: {', '.join(PROVENANCES)}")
            key = (row["parameter"], row["scope"])
            if key in rows:
                raise DataError(where, f"{key[0]}[{key[1]}] is given twice")
            rows[key] = PriorRow(*key, row["distribution"], spread, row["source"], row["note"])
    missing = [p for p in PROVENANCES if ("default", p) not in rows]
    if missing:
        raise DataError(path.name, f"needs a default row for {', '.join(missing)}")
    return rows


@cache
def prior_rows() -> dict[tuple[str, str], PriorRow]:
    """The rows of ``data/priors.csv`` by (parameter, scope)."""
    return _read_priors()


@cache
def _posterior_columns() -> dict[tuple[str, str], tuple[str, np.ndarray]]:
    """Posterior draws of every fitted row: (parameter, scope) -> (fit name, draws). The conditions'
    effect fits (``data/posteriors``), the kinetic capture fit and the case-based kinetic fits
    (``data/kinetic_posteriors``: ``kinetic_posterior``, ``case_posterior``)."""
    from infusim import kinetic_posterior

    found: dict[tuple[str, str], tuple[str, np.ndarray]] = {}
    for name in conditions.names():
        fitted = posterior.load(name)
        if fitted is None:
            continue
        for column, values in fitted.samples.items():
            key = posterior.split(column)
            if key[0] in POSTERIOR_PARAMETERS:
                found[key] = (name, values)
    kinetic_folder = kinetic_posterior.folder()
    for name in posterior.records(kinetic_folder):  # the capture fit and the case-based fits
        kinetic = posterior.load(name, kinetic_folder)
        for column, values in (kinetic.samples if kinetic else {}).items():
            found[posterior.split(column)] = (name, values)
    return found


#: Dimensionless rows that are ratios, not shares: log-normal even below one.
RATIOS = ("effect_modifier_ratio",)


def prior_for(params: ParameterSet, key: tuple[str, str]) -> Prior:
    """The prior of the row ``key`` of ``params`` (see the module docstring for the rules)."""
    entry = params.entries[key]
    value = float(entry.value)
    if entry.source == SCENARIO_SOURCE:
        return Prior(key, value, entry.unit, "fixed", 0.0, "set in the scenario: held")
    stored = _posterior_columns().get(key)
    if stored is not None:
        group, draws = stored
        return Prior(
            key, value, entry.unit, "posterior", 0.0, f"posterior draws of the {group} fit", draws, group
        )
    rows = prior_rows()
    parts = key[1].split("/") if key[1] else []
    row = next(
        (
            rows[(key[0], "/".join(parts[:n]))]
            for n in range(len(parts), -1, -1)
            if (key[0], "/".join(parts[:n])) in rows
        ),
        rows[("default", entry.provenance)],
    )
    basis = f"{row.parameter}[{row.scope}]: {row.note}"
    dimensionless = entry.unit in ("", "dimensionless")
    if row.distribution == "dirichlet" and 0 < value < 1:  # one split: the scope less its destination
        split = f"{key[0]}[{key[1].rpartition('/')[0]}]"
        return Prior(key, value, entry.unit, "dirichlet", row.spread, basis, group=split)
    if row.distribution == "fixed" or row.spread == 0 or value == 0 or (dimensionless and value == 1):
        return Prior(
            key,
            value,
            entry.unit,
            "fixed",
            0.0,
            basis if row.distribution == "fixed" else "structural value: held",
        )
    share = dimensionless and 0 < value < 1 and key[0] not in RATIOS
    distribution = "logitnormal" if share else "lognormal"
    if value < 0:
        return Prior(key, value, entry.unit, "fixed", 0.0, "negative value: held (priors are multiplicative)")
    return Prior(key, value, entry.unit, distribution, row.spread, basis)


def priors(params: ParameterSet, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Prior]:
    """Priors of ``keys`` (sorted by name)."""
    return {key: prior_for(params, key) for key in sorted(set(keys))}


def dirichlet_concentration(spread: float) -> float:
    """Total concentration ``a0`` of a Dirichlet whose share of one half has coefficient of variation
    ``spread`` (Var = m (1 - m) / (a0 + 1)): ``a0 = 1 / spread^2 - 1``."""
    if not 0 < spread < 1:
        raise DataError("priors.csv", f"a dirichlet spread is a CV between 0 and 1, got {spread}")
    return 1.0 / spread**2 - 1.0


def _stream(seed: int, key: tuple[str, str]) -> np.random.Generator:
    """A random stream of one parameter, independent of which other parameters are drawn."""
    return np.random.default_rng([seed, zlib.crc32(f"{key[0]}[{key[1]}]".encode())])


def draw(found: Mapping[tuple[str, str], Prior], count: int, seed: int) -> dict[tuple[str, str], np.ndarray]:
    """``count`` values of every varying prior. Rows backed by one condition's posterior are drawn
    jointly (the same stored draws), keeping the fit's correlations; the others independently."""
    out: dict[tuple[str, str], np.ndarray] = {}
    picks: dict[str, np.ndarray] = {}
    for key, prior in found.items():
        if not prior.varies:
            continue
        if prior.distribution == "posterior":
            if prior.group not in picks:
                stream = np.random.default_rng([seed, zlib.crc32(prior.group.encode())])
                picks[prior.group] = stream.integers(0, len(prior.draws), size=count)
            out[key] = prior.draws[picks[prior.group]]
        elif prior.distribution == "dirichlet":
            if prior.group not in picks:
                picks[prior.group] = _split(found, prior.group, count, seed)
            out[key] = picks[prior.group][key]
        else:
            q = _stream(seed, key).random(count)
            out[key] = prior.quantile(np.clip(q, 1e-12, 1 - 1e-12))
    return out


def _split(found: Mapping[tuple[str, str], Prior], group: str, count: int, seed: int) -> dict:
    """``count`` draws of every share of one split (``group``) from a Dirichlet with the table's
    shares as its mean; the shares of the split this prior set holds must sum to one."""
    members = sorted(k for k, p in found.items() if p.distribution == "dirichlet" and p.group == group)
    means = np.array([found[k].value for k in members])
    if abs(means.sum() - 1.0) > 1e-6:
        raise DataError("priors.csv", f"the shares of {group} drawn together sum to {means.sum():g}, not 1")
    total = dirichlet_concentration(found[members[0]].spread)
    drawn = np.random.default_rng([seed, zlib.crc32(group.encode())]).dirichlet(total * means, size=count)
    return {k: drawn[:, j] for j, k in enumerate(members)}
