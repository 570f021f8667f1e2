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
table records the day (``neutrophil_recovery_d``).
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


@dataclass(frozen=True)
class Recovery:
    """Neutrophil recovery of a regimen and CD34+ dose: median and 5-95% range (days after the graft),
    the share of patients whose neutrophils stay below 1.0e9/L longer than the long-neutropenia
    threshold (days), the factor on the regimen's serious-infection risk, and the relative risk."""

    regimen: str
    cd34_per_kg: float
    median_d: float
    p5_d: float
    p95_d: float
    share_long_neutropenia: float
    infection_factor: float
    long_neutropenia_days: float
    bacteraemia_rr: float

    def as_dict(self) -> dict:
        return {
            "regimen": self.regimen,
            "cd34_per_kg": self.cd34_per_kg,
            "median_day": round(self.median_d, 2),
            "day_5th_percentile": round(self.p5_d, 2),
            "day_95th_percentile": round(self.p95_d, 2),
            "share_neutropenia_beyond_threshold": round(self.share_long_neutropenia, 4),
            "serious_infection_factor": round(self.infection_factor, 4),
            "long_neutropenia_days": self.long_neutropenia_days,
            "bacteraemia_rr": self.bacteraemia_rr,
            "basis": "neutrophils >= 0.5e9/L; log-normal by CD34+ dose (docs/safety.md, Neutrophil recovery)",
        }


def sentence(found: dict) -> str:
    """One line for the console and the report from ``Recovery.as_dict()``."""
    return (
        f"Neutrophil recovery (>= 0.5e9/L) after {found['regimen']} with "
        f"{found['cd34_per_kg']:.3g} CD34+/kg: median day {found['median_day']:.1f} (5-95% of patients: "
        f"{found['day_5th_percentile']:.1f}-{found['day_95th_percentile']:.1f}); "
        f"{found['share_neutropenia_beyond_threshold']:.0%} of patients stay below 1.0e9/L longer than "
        f"{found['long_neutropenia_days']:g} days, which raises bacteraemia {found['bacteraemia_rr']:g}-fold "
        f"(serious infection x {found['serious_infection_factor']:.2f} against the regimen's reference dose)."
    )


def applies(scenario: Scenario) -> bool:
    """True when the scenario conditions a human patient and returns haematopoietic cells (the rows
    are from patients)."""
    return (
        scenario.species == "human"
        and scenario.administration.conditioning != "none"
        and scenario.product.cell_type == "hsc"
    )


def median_day(regimen: str, cd34_per_kg: float, params: ParameterSet) -> float:
    """Median day (after the graft) of neutrophils >= 0.5e9/L for a CD34+ dose (cells/kg)."""
    if cd34_per_kg <= 0:
        raise ValueError(f"cd34_per_kg must be positive, got {cd34_per_kg}")
    reference = params.get("neutrophil_recovery_median", regimen, "day")
    d_ref = params.get("neutrophil_recovery_reference_dose", regimen, "1/kg")
    b = params.get("neutrophil_recovery_dose_exponent", "", "")
    return float(reference * (cd34_per_kg / d_ref) ** -b)


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
    rr = params.get("bacteraemia_neutropenia_rr", "", "")
    start = params.get("neutropenia_start", regimen, "day")
    long_d = params.get("neutropenia_long_days", "", "day")
    return np.where(np.asarray(recovery_d) - start > long_d, rr, 1.0) / _reference_risk(regimen, params)


def _reference_risk(regimen: str, params: ParameterSet) -> float:
    """Mean relative bacteraemia risk at the regimen's reference dose, 1 + (RR - 1) P_long(d_ref):
    the regimen's serious-infection rate was counted over that mixture."""
    rr = params.get("bacteraemia_neutropenia_rr", "", "")
    d_ref = params.get("neutrophil_recovery_reference_dose", regimen, "1/kg")
    return 1.0 + (rr - 1.0) * share_long(regimen, d_ref, params)


def share_long(regimen: str, cd34_per_kg: float, params: ParameterSet) -> float:
    """Share of patients whose neutrophils stay < 1.0e9/L longer than ``neutropenia_long_days``."""
    sd = params.get("neutrophil_recovery_sd", "", "")
    start = params.get("neutropenia_start", regimen, "day")
    long_d = params.get("neutropenia_long_days", "", "day")
    median = median_day(regimen, cd34_per_kg, params)
    return float(scipy.stats.norm.sf(np.log((long_d + start) / median) / sd))


def recovery(regimen: str, cd34_per_kg: float, params: ParameterSet) -> Recovery:
    """Neutrophil recovery and the serious-infection factor for a regimen and CD34+ dose."""
    sd = params.get("neutrophil_recovery_sd", "", "")
    rr = params.get("bacteraemia_neutropenia_rr", "", "")
    median = median_day(regimen, cd34_per_kg, params)
    z = scipy.stats.norm.ppf(0.95)
    p_long = share_long(regimen, cd34_per_kg, params)
    factor = (1.0 + (rr - 1.0) * p_long) / _reference_risk(regimen, params)
    return Recovery(
        regimen,
        float(cd34_per_kg),
        median,
        float(median * np.exp(-z * sd)),
        float(median * np.exp(z * sd)),
        p_long,
        float(factor),
        float(params.get("neutropenia_long_days", "", "day")),
        float(rr),
    )


def for_scenario(scenario: Scenario, params: ParameterSet) -> Recovery | None:
    """The scenario's neutrophil recovery, or None without conditioning or a haematopoietic graft."""
    if not applies(scenario):
        return None
    return recovery(scenario.administration.conditioning, scenario.dose_cells_per_kg, params)


def for_patients(scenario: Scenario, params: ParameterSet, seed: int, index: np.ndarray) -> np.ndarray | None:
    """Recovery days of trial patients ``index`` given the arm's ``scenario`` (its dose per kg of the
    typical patient), or None without conditioning or a haematopoietic graft."""
    if not applies(scenario):
        return None
    regimen = scenario.administration.conditioning
    return recovery_days(regimen, scenario.dose_cells_per_kg, params, seed, index)
