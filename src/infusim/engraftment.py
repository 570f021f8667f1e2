"""Neutrophil recovery after conditioning and an autologous stem-cell graft, by CD34+ dose.

After a conditioning regimen (``administration.conditioning``) the returned haematopoietic cells
(``product.cell_type: hsc``; the dose is the CD34+ dose) restore the blood neutrophils. The day on
which neutrophils reach 0.5e9/L is log-normal between patients, with a median that falls with the
CD34+ dose per kg as a power law::

    median(d) = median_ref * (d / d_ref) ** -b,   log(day) ~ N(log median(d), sd^2)

(``neutrophil_recovery_median``, ``neutrophil_recovery_reference_dose`` per regimen,
``neutrophil_recovery_dose_exponent``, ``neutrophil_recovery_sd``; data/safety.csv). Neutrophils
stay below 1.0e9/L for the recovery day minus ``neutropenia_start`` days; beyond
``neutropenia_long_days`` the risk of bacteraemia is ``bacteraemia_neutropenia_rr`` times higher
(Pinana 2014). A regimen's serious-infection rate was counted in patients given about its reference
dose, so the dose changes that rate by the ratio of the expected relative risks::

    factor(d) = (1 + (RR - 1) P_long(d)) / (1 + (RR - 1) P_long(d_ref))

For one patient (``simulate``) the summary is the distribution, in closed form. A trial draws each
patient's recovery day from its own random stream (``recovery_days``: a pure function of seed and
patient, so chunking does not change it); the patient's serious-infection risk is then the
regimen's rate times RR / (1 + (RR - 1) P_long(d_ref)) with long neutropenia and 1 / (1 + (RR - 1)
P_long(d_ref)) without (``infection_factors``), whose mean is ``factor(d)`` above, and the patients
table records the day (``neutrophil_recovery_d``). The summaries (``recovery``) give 95% intervals of
the median day and of the factor over draws of the rows' priors (data/priors.csv defaults by
provenance); the risks use the point values (``mean_infection_factor``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.stats

from infusim.parameters import ParameterSet
from infusim.population import standard_normals, stream
from infusim.scenario import Scenario

#: The random stream of each trial patient's recovery day.
STREAM = "engraftment:neutrophil_recovery"


#: Parameter draws behind the 95% intervals of the median day and the infection factor.
PARAMETER_DRAWS = 1000


@dataclass(frozen=True)
class Recovery:
    """Neutrophil recovery of a regimen and CD34+ dose: median and 5-95% range over patients (days
    after the graft), the share of patients whose neutrophils stay below 1.0e9/L longer than the
    long-neutropenia threshold (days), the factor on the regimen's serious-infection risk, the
    relative risk, and 95% intervals of the median day and the factor over the rows' priors."""

    regimen: str
    cd34_per_kg: float
    median_d: float
    p5_d: float
    p95_d: float
    share_long_neutropenia: float
    infection_factor: float
    long_neutropenia_days: float
    bacteraemia_rr: float
    median_d_interval: tuple[float, float]
    infection_factor_interval: tuple[float, float]

    def as_dict(self) -> dict:
        return {
            "regimen": self.regimen,
            "cd34_per_kg": self.cd34_per_kg,
            "median_day": round(self.median_d, 2),
            "median_day_95_interval": [round(v, 2) for v in self.median_d_interval],
            "day_5th_percentile": round(self.p5_d, 2),
            "day_95th_percentile": round(self.p95_d, 2),
            "share_neutropenia_beyond_threshold": round(self.share_long_neutropenia, 4),
            "serious_infection_factor": round(self.infection_factor, 4),
            "serious_infection_factor_95_interval": [round(v, 4) for v in self.infection_factor_interval],
            "long_neutropenia_days": self.long_neutropenia_days,
            "bacteraemia_rr": self.bacteraemia_rr,
            "basis": "neutrophils >= 0.5e9/L; log-normal by CD34+ dose (docs/safety.md, Neutrophil "
            "recovery); 95% intervals over the rows' priors",
        }


def sentence(found: dict) -> str:
    """One line for the console and the report from ``Recovery.as_dict()``."""
    days, factor = found["median_day_95_interval"], found["serious_infection_factor_95_interval"]
    return (
        f"Neutrophil recovery (>= 0.5e9/L) after {found['regimen']} with "
        f"{found['cd34_per_kg']:.3g} CD34+/kg: median day {found['median_day']:.1f} (95% over the "
        f"parameters {days[0]:.1f}-{days[1]:.1f}; 5-95% of patients: "
        f"{found['day_5th_percentile']:.1f}-{found['day_95th_percentile']:.1f}); "
        f"{found['share_neutropenia_beyond_threshold']:.0%} of patients stay below 1.0e9/L longer than "
        f"{found['long_neutropenia_days']:g} days, which raises bacteraemia {found['bacteraemia_rr']:g}-fold "
        f"(serious infection x {found['serious_infection_factor']:.2f}, 95% {factor[0]:.2f}-{factor[1]:.2f}, "
        "against the regimen's reference dose)."
    )


def applies(scenario: Scenario, kind: str = "cells") -> bool:
    """True when the scenario conditions a human patient and returns haematopoietic cells (the rows
    are from patients); a trial arm's ``kind`` must be ``cells`` (no graft in a sham or untreated arm)."""
    return (
        kind == "cells"
        and scenario.species == "human"
        and scenario.administration.conditioning != "none"
        and scenario.product.cell_type == "hsc"
    )


def _rows(regimen: str) -> dict[str, tuple[str, str, str]]:
    """The rows the model reads: role -> (parameter, scope, unit)."""
    return {
        "median": ("neutrophil_recovery_median", regimen, "day"),
        "reference_dose": ("neutrophil_recovery_reference_dose", regimen, "1/kg"),
        "exponent": ("neutrophil_recovery_dose_exponent", "", ""),
        "sd": ("neutrophil_recovery_sd", "", ""),
        "start": ("neutropenia_start", regimen, "day"),
        "long_days": ("neutropenia_long_days", "", "day"),
        "rr": ("bacteraemia_neutropenia_rr", "", ""),
    }


def _values(regimen: str, params: ParameterSet) -> dict[str, float]:
    return {role: params.get(*row) for role, row in _rows(regimen).items()}


def _median(v: dict, cd34_per_kg):
    """Median recovery day for a CD34+ dose (cells/kg); ``v`` holds numbers or arrays of draws."""
    return v["median"] * (cd34_per_kg / v["reference_dose"]) ** -v["exponent"]


def _share_long(v: dict, cd34_per_kg):
    """Share of patients with neutrophils < 1.0e9/L for longer than the threshold."""
    return scipy.stats.norm.sf(np.log((v["long_days"] + v["start"]) / _median(v, cd34_per_kg)) / v["sd"])


def _factor(v: dict, cd34_per_kg):
    """Mean factor on the regimen's serious-infection risk at a dose against its reference dose."""
    rr = v["rr"]
    return (1.0 + (rr - 1.0) * _share_long(v, cd34_per_kg)) / _reference_risk(v)


def _reference_risk(v: dict):
    """Mean relative bacteraemia risk at the regimen's reference dose, 1 + (RR - 1) P_long(d_ref):
    the regimen's serious-infection rate was counted over that mixture."""
    return 1.0 + (v["rr"] - 1.0) * _share_long(v, v["reference_dose"])


def median_day(regimen: str, cd34_per_kg: float, params: ParameterSet) -> float:
    """Median day (after the graft) of neutrophils >= 0.5e9/L for a CD34+ dose (cells/kg)."""
    if cd34_per_kg <= 0:
        raise ValueError(f"cd34_per_kg must be positive, got {cd34_per_kg}")
    return float(_median(_values(regimen, params), cd34_per_kg))


def share_long(regimen: str, cd34_per_kg: float, params: ParameterSet) -> float:
    """Share of patients whose neutrophils stay < 1.0e9/L longer than ``neutropenia_long_days``."""
    return float(_share_long(_values(regimen, params), cd34_per_kg))


def recovery_days(
    regimen: str, cd34_per_kg: float, params: ParameterSet, seed: int, index: np.ndarray
) -> np.ndarray:
    """Each patient's day of neutrophils >= 0.5e9/L (patients ``index`` of a trial with ``seed``)."""
    sd = params.get("neutrophil_recovery_sd", "", "")
    z = standard_normals(seed, np.asarray(index, dtype=np.int64), stream(STREAM))
    return median_day(regimen, cd34_per_kg, params) * np.exp(sd * z)


def infection_factors(regimen: str, recovery_d: np.ndarray, params: ParameterSet) -> np.ndarray:
    """Per patient, the factor on the regimen's serious-infection risk from their own recovery day:
    RR with long neutropenia, 1 without, both over the mean at the regimen's reference dose."""
    v = _values(regimen, params)
    long = np.asarray(recovery_d) - v["start"] > v["long_days"]
    return np.where(long, v["rr"], 1.0) / _reference_risk(v)


def recovery(regimen: str, cd34_per_kg: float, params: ParameterSet, seed: int = 1) -> Recovery:
    """Neutrophil recovery and the serious-infection factor for a regimen and CD34+ dose, with 95%
    intervals of the median day and the factor over ``PARAMETER_DRAWS`` draws of the rows' priors."""
    from infusim import uncertainty  # the priors, only here

    v = _values(regimen, params)
    median = median_day(regimen, cd34_per_kg, params)
    z = scipy.stats.norm.ppf(0.95)
    keys = {role: row[:2] for role, row in _rows(regimen).items()}
    drawn = uncertainty.draw(uncertainty.priors(params, keys.values()), PARAMETER_DRAWS, seed)
    w = {role: drawn.get(key, v[role]) for role, key in keys.items()}
    medians, factors = _median(w, cd34_per_kg), _factor(w, cd34_per_kg)
    return Recovery(
        regimen,
        float(cd34_per_kg),
        median,
        float(median * np.exp(-z * v["sd"])),
        float(median * np.exp(z * v["sd"])),
        float(_share_long(v, cd34_per_kg)),
        float(_factor(v, cd34_per_kg)),
        float(v["long_days"]),
        float(v["rr"]),
        _interval(medians),
        _interval(factors),
    )


def _interval(values) -> tuple[float, float]:
    low, high = np.percentile(np.broadcast_to(values, (PARAMETER_DRAWS,)), [2.5, 97.5])
    return float(low), float(high)


def for_scenario(scenario: Scenario, params: ParameterSet, kind: str = "cells") -> Recovery | None:
    """The scenario's neutrophil recovery with its intervals, or None when ``applies`` is false."""
    if not applies(scenario, kind):
        return None
    return recovery(scenario.administration.conditioning, graft_dose_per_kg(scenario), params)


def mean_infection_factor(scenario: Scenario, params: ParameterSet) -> float | None:
    """The factor on the serious-infection risk at the scenario's dose (cheap: no intervals), or None
    when ``applies`` is false."""
    if not applies(scenario):
        return None
    v = _values(scenario.administration.conditioning, params)
    return float(_factor(v, graft_dose_per_kg(scenario)))


def for_patients(
    scenario: Scenario, params: ParameterSet, seed: int, index: np.ndarray, kind: str = "cells"
) -> np.ndarray | None:
    """Recovery days of trial patients ``index`` given the arm's ``scenario`` and ``kind`` (its dose per
    kg of the typical patient), or None when ``applies`` is false."""
    if not applies(scenario, kind):
        return None
    regimen = scenario.administration.conditioning
    return recovery_days(regimen, graft_dose_per_kg(scenario), params, seed, index)


def graft_dose_per_kg(scenario: Scenario) -> float:
    """Cells per kg of the first administration: the graft that restores marrow after conditioning."""
    return scenario.dose_cells_per_kg * scenario.administration.dose_scales[0]
