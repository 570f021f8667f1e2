"""Adverse events: what can go wrong with the same cells and procedures (docs/safety.md).

Each event has, per patient, a probability over the simulated time and a CTCAE grade (1-5, 5 =
death; serious when 3 or more), from a cited base rate (``data/safety.csv``) and, where the
mechanism lives in the cell model, from the model itself:

* ``fever`` (grade 1): within ``fever_window`` of a dose or sham procedure; the control risk
  ``fever_control_risk``, its odds multiplied by ``fever_odds_ratio`` for an MSC dose (Wang 2024),
  or, by a route with its own per-injection rate (``fever_risk[route/msc]``: intraventricular,
  Kim 2021), that rate;
* ``lung_obstruction`` (grade 3, or 5 = death; MSC, which are held by size): the peak of live cells
  held in the lungs per gram of lung, against the load that killed half the mice of a published
  adipose-MSC bolus (Kwon 2024a, simulated with the same model), shifted by the product's tissue
  factor (source) and by heparin;
  probit in the log load. Dose rate, cell size and lung clearance act through the kinetics;
* ``treatment_related_death`` (grade 5): the conditioning regimen's mortality, within 100 days;
* ``serious_infection`` (grade 3): after conditioning, within 100 days, where a rate was read, times
  the factor of the CD34+ dose (longer neutropenia, more bacteraemia: ``infusim.engraftment``);
* ``febrile_neutropenia`` (grade 3): fever during neutropenia after conditioning, within 100 days
  (BEAM-ATG 88%, Cy-ATG 68%: Silfverberg 2024); mostly without a documented infection;
* ``arterial_occlusion``: intra-arterial MSC into an organ with a read rate (heart, grade 4), and
  into the brain's arteries (grade 3) from the peak of live cells held per gram of brain against the
  load that gave half the rats of Janowski 2013 a stroke (simulated with the same model; probit);
* ``anti_donor_antibodies`` (grade 1): once, four weeks after the first allogeneic dose;
* ``ectopic_growth`` (grade 3): a lifetime risk with an exponential onset, higher for an unregulated
  product (``product.regulated: false``);
* ``harvest_complication`` (1 minor, 3 serious, 5 death): harvesting an autologous product, by tissue,
  with the median days to full recovery (``recovery_d``) where a source gives it;
* ``delivery_complication`` (grade 3; 2 for a post-dural-puncture headache, 1 for a reaction at an
  intra-articular injection site): catheterisation, intramyocardial or intra-articular injection,
  lumbar puncture for an intrathecal dose or the reservoir access of an intraventricular one, per
  dose; with the first intraventricular dose, the reservoir's placement
  (grade 3, or 5 = death);
* ``infusion_reaction`` (grade 1, or 2 with hypoxia needing oxygen): each infusion of a thawed
  (``product.cryopreserved``) HSC or marrow graft, from its DMSO (Otrock 2017);
* ``joint_effusion`` (grade 1): each intra-articular MSC injection (Shang 2023, uncontrolled);
* ``background_death`` (grade 5), ``background_serious_infection``, ``background_thromboembolism``
  and ``background_malignancy`` (grade 3): what the condition's patients have without cells, in every
  arm (control arms of trials, registries: ``background_rate[<condition>/<kind>]``, per year, a
  constant hazard), where a rate was read.

Every rate but the lung and brain loads comes from patients, so animal scenarios get lung
obstruction and (intra-arterial into the brain) arterial occlusion only.
Events are drawn from each patient's own random streams (``population.uniforms``, one stream per
event and dose), so a trial's events do not depend on how it is cut into chunks. Times are days
after the first dose.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.stats

from infusim import engraftment
from infusim.compartments import CSF_ROUTES, LEFT_VENTRICLE
from infusim.model.kinetics import assemble
from infusim.model.physiology import physiology
from infusim.parameters import ParameterSet, for_scenario
from infusim.population import doses_taken, replicate_seed, stream, uniforms
from infusim.scenario import Scenario, from_dict
from infusim.solve import solve

#: CTCAE grade of a delivery procedure's minor complication (``delivery_minor_risk``), by row scope.
DELIVERY_MINOR_GRADE = {"intrathecal": 2, "local/joints": 1}  # post-dural-puncture headache; site pain
#: Events of the condition itself, in every arm (``background_rate[<condition>/<kind>]``), and grades.
BACKGROUND_GRADES = {"death": 5, "serious_infection": 3, "thromboembolism": 3, "malignancy": 3}
BACKGROUND_EVENTS = tuple(f"background_{kind}" for kind in BACKGROUND_GRADES)
#: Event names in report order.
EVENTS = (
    "fever",
    "lung_obstruction",
    "treatment_related_death",
    "serious_infection",
    "febrile_neutropenia",
    "arterial_occlusion",
    "anti_donor_antibodies",
    "ectopic_growth",
    "harvest_complication",
    "delivery_complication",
    "infusion_reaction",
    "joint_effusion",
    *BACKGROUND_EVENTS,
)
#: Outcomes that safety meta-analyses pool over several of infusim's events: any of the named
#: events, or (``death``) any event at grade 5.
OUTCOME_GROUPS = {
    "thromboembolism": ("lung_obstruction", "arterial_occlusion", "background_thromboembolism"),
    "infection": ("serious_infection", "background_serious_infection"),
    "malignancy": ("ectopic_growth", "background_malignancy"),
    "death": (),
}
#: Events the treatment causes (the therapeutic window's harms): all but the condition's own.
TREATMENT_EVENTS = tuple(e for e in EVENTS if e not in BACKGROUND_EVENTS)
#: What a validation case may compare: one event or a pooled outcome.
COMPARABLE = (*EVENTS, *OUTCOME_GROUPS)
#: CTCAE grade from which an event counts as serious.
SERIOUS_GRADE = 3
#: Days after conditioning within which treatment-related deaths are counted.
TRM_WINDOW_D = 100.0
#: Kwon 2024a's experiment: adipose MSC bolus into the tail vein of ~20 g mice (dose set per use).
KWON2024_SCENARIO = {
    "name": "kwon2024",
    "species": "mouse",
    "patient": {"body_weight": "20 g"},
    "product": {"cell_type": "msc", "tissue_source": "adipose", "viability": 1.0},
    "administration": {"route": "intravenous", "dose": "1e6 cells", "duration": "0 min"},
    "simulation": {"duration": "24 h", "outputs": ["24 h"]},
}
#: Janowski 2013's experiment: MSC into the internal carotid artery of a rat (dose set per use;
#: body weight and infusion time not in the abstract: assumptions, docs/safety.md).
JANOWSKI2013_SCENARIO = {
    "name": "janowski2013",
    "species": "rat",
    "patient": {"body_weight": "250 g"},
    "product": {"cell_type": "msc", "tissue_source": "bone_marrow", "viability": 1.0},
    "administration": {"route": "intra_arterial", "into": "brain", "dose": "2e6 cells", "duration": "5 min"},
    "simulation": {"duration": "24 h", "outputs": ["24 h"]},
}
#: A human peak lung (or brain) load above this share of the lethal (stroke) load is flagged.
WARN_LOAD_SHARE = 0.1


@dataclass(frozen=True)
class Risk:
    """One chance of an event: ``grades`` are (grade, probability of at least that severity), most
    severe first; ``when`` maps a uniform (0-1) to the day it happens; ``dose`` numbers the chance."""

    event: str
    grades: tuple[tuple[int, np.ndarray], ...]
    when: object
    basis: str
    dose: int = 0
    recovery_d: float | None = None  # median days to full recovery where a source gives it

    @property
    def probability(self) -> np.ndarray:
        """Probability of the event at any grade (per patient)."""
        return np.max(np.stack([np.asarray(p, float) for _, p in self.grades]), axis=0)


@dataclass(frozen=True)
class HeldLoad:
    """Peak live cells held in an organ per gram (per patient), the load at which half the animals of
    the calibrating study had the event (lungs: died; brain: stroke), and when the peak occurs (day)."""

    peak_per_g: np.ndarray
    lethal_per_g: float
    peak_day: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def share(self) -> np.ndarray:
        return self.peak_per_g / self.lethal_per_g


def lethal_lung_load(params: ParameterSet) -> float:
    """Cells held per gram of lung at which half the mice of Kwon 2024a would die (adipose MSC)."""
    dose = params.get("lung_obstruction_lethal_dose", "mouse", "cells")
    return _study_load(KWON2024_SCENARIO, dose, "lungs", params)


def stroke_brain_load(params: ParameterSet) -> float:
    """Cells held per gram of brain at which half the rats of Janowski 2013 would have a stroke."""
    dose = params.get("arterial_occlusion_stroke_dose", "rat/brain", "cells")
    return _study_load(JANOWSKI2013_SCENARIO, dose, "brain", params)


def _study_load(spec: dict, dose: float, organ: str, params: ParameterSet) -> float:
    """Peak cells held per gram of ``organ`` in a calibrating study's experiment given ``dose`` cells."""
    spec = {**spec, "administration": {**spec["administration"], "dose": f"{dose} cells"}}
    return float(held_load(from_dict(spec), params, organ).peak_per_g[0])


def brain_load_for(scenario: Scenario, params: ParameterSet, model=None) -> HeldLoad | None:
    """The brain load of a dose into the brain's arteries against the rats' stroke load (None for
    any other route: cells reach the brain there only after the lungs, in far smaller numbers)."""
    if scenario.administration.route != "intra_arterial" or scenario.site != "brain":
        return None
    found = held_load(scenario, params, "brain", model)
    stroke = stroke_brain_load(params)
    share = float(np.max(found.peak_per_g) / stroke)
    notes = []
    if scenario.species == "human" and share > WARN_LOAD_SHARE:
        notes.append(
            f"peak brain load is {share:.0%} of the load that gave half the rats of a published "
            "intracarotid MSC infusion a stroke (Janowski 2013; dogs tolerated more, Srinivasan 2021): "
            "lower the dose or use smaller cells"
        )
    return HeldLoad(found.peak_per_g, stroke, found.peak_day, notes)


def lung_load(scenario: Scenario, params: ParameterSet, model=None, body_weight_kg=None) -> HeldLoad:
    """Peak live cells in the lungs per gram of lung after each dose (first 24 h), per patient of
    ``model`` (default: the scenario's one patient)."""
    return held_load(scenario, params, "lungs", model, body_weight_kg)


def held_load(
    scenario: Scenario, params: ParameterSet, organ: str, model=None, body_weight_kg=None
) -> HeldLoad:
    """Peak live cells held in ``organ`` (its injured part included) per gram of the organ after
    each dose (first 24 h), per patient of ``model`` (default: the scenario's one patient)."""
    model = model if model is not None else assemble(scenario, params=params)
    admin = scenario.administration
    grid = np.unique(
        np.concatenate(
            [
                start + np.concatenate([[0.0], admin.effective_duration_h + np.geomspace(1e-3, 24.0, 40)])
                for start in admin.starts_h
            ]
        )
    )
    states = solve(model, grid).patient_states()
    site = scenario.condition.site if scenario.condition else None
    in_organ = [
        i
        for i, s in enumerate(model.states)
        if s.kind == "live" and (s.compartment == organ or (s.compartment == "target" and site == organ))
    ]
    held = states[:, :, in_organ].sum(axis=2)
    weight = np.broadcast_to(
        scenario.patient.body_weight_kg if body_weight_kg is None else body_weight_kg, (held.shape[0],)
    )
    organ_g = physiology(scenario.species, weight, params).organ_volume_l[organ] * 1000.0
    per_g = held / np.reshape(organ_g, (-1, 1))
    peak = per_g.argmax(axis=1)
    return HeldLoad(per_g.max(axis=1), np.nan, grid[peak] / 24.0)


def risks(
    scenario: Scenario,
    params: ParameterSet,
    kind: str = "cells",
    patients: int = 1,
    load: HeldLoad | None = None,
    brain: HeldLoad | None = None,
    infection_factor: np.ndarray | None = None,
) -> list[Risk]:
    """Every chance of an adverse event of ``patients`` patients given ``scenario`` (``kind``:
    ``cells``, ``placebo`` for a sham procedure without cells, ``none`` for no procedure; ``load``
    and ``brain``: the lung and brain loads of ``load_for`` and ``brain_load_for``;
    ``infection_factor``: per patient, from their own neutrophil recovery, else the dose's mean).
    The condition's background events come in every arm."""
    if scenario.species != "human":  # the rates are from patients; only the held loads are per species
        return _lung_risks(scenario, params, load) + _brain_risks(params, brain) if kind == "cells" else []
    admin, product = scenario.administration, scenario.product
    horizon_d = scenario.simulation.duration_h / 24.0
    background = _background_risks(scenario, params, horizon_d, patients)
    if kind == "none":
        return background
    doses_d = [start / 24.0 for start in admin.starts_h]
    doses_d = [d for d in doses_d if d <= horizon_d]
    ones = np.ones(patients)
    out: list[Risk] = list(background)

    window = params.get("fever_window", "", "day")
    control = params.get("fever_control_risk", "", "")
    fever, basis = control, "fever_control_risk (background; no pooled estimate for this product)"
    by_route = f"{admin.route}/{product.cell_type}"
    if kind == "cells" and params.has("fever_risk", by_route):
        fever, basis = params.get("fever_risk", by_route, ""), f"fever_risk[{by_route}] (per injection)"
    elif kind == "cells" and product.cell_type == "msc":
        odds = params.get("fever_odds_ratio", "msc", "") * control / (1.0 - control)
        fever, basis = odds / (1.0 + odds), "fever_odds_ratio[msc] (Wang 2024) on fever_control_risk"
    elif kind != "cells":
        basis = "fever_control_risk (sham procedure)"
    for i, day in enumerate(doses_d):
        out.append(Risk("fever", ((1, fever * ones),), _uniform_in(day, day + window), basis, i))

    out += _procedure_risks(scenario, params, doses_d, ones)
    if kind != "cells":
        return out

    out += _lung_risks(scenario, params, load)
    out += _brain_risks(params, brain)
    if admin.conditioning != "none":
        # treatment-related death: the regimen's risk with the onset of the trial endpoint (an
        # exponential with time constant trm_time_constant), so the deaths drawn here are the ones a
        # trial records; serious infections and febrile neutropenia where read, within 100 days
        risk = params.get("treatment_related_mortality", admin.conditioning, "")
        tau = params.get("trm_time_constant", "", "day")
        out.append(
            Risk(
                "treatment_related_death",
                ((5, risk * -np.expm1(-horizon_d / tau) * ones),),
                _exponential_within(tau, horizon_d),
                f"treatment_related_mortality[{admin.conditioning}]",
            )
        )
        covered = min(horizon_d, TRM_WINDOW_D) / TRM_WINDOW_D
        window = _uniform_in(0.0, min(horizon_d, TRM_WINDOW_D))
        # bacteraemia is more likely the longer neutrophils stay low, which a smaller CD34+ dose prolongs
        mean = engraftment.mean_infection_factor(scenario, params)
        own = infection_factor if infection_factor is not None and mean else (mean or 1.0) * ones
        note = f" x {mean:.2f} (mean) for the CD34+ dose (neutrophil recovery)" if mean else ""
        for event, row, grade, factor, basis in (
            ("serious_infection", "serious_infection_risk", 3, own, note),
            ("febrile_neutropenia", "febrile_neutropenia_risk", 3, ones, ""),
        ):
            if params.has(row, admin.conditioning):
                p = np.minimum(1.0, params.get(row, admin.conditioning, "") * factor)
                out.append(
                    Risk(event, ((grade, p * covered),), window, f"{row}[{admin.conditioning}]{basis}")
                )
    if admin.route == "intra_arterial" and params.has(
        "arterial_occlusion_risk", f"{product.cell_type}/{scenario.site}"
    ):
        occlusion = params.get("arterial_occlusion_risk", f"{product.cell_type}/{scenario.site}", "")
        for i, day in enumerate(doses_d):
            out.append(
                Risk(
                    "arterial_occlusion",
                    ((4, occlusion * ones),),
                    _at(day),
                    f"arterial_occlusion_risk[{product.cell_type}/{scenario.site}] (Gao 2013)",
                    i,
                )
            )
    if (
        admin.route == "local"
        and scenario.site == "joints"
        and params.has("joint_effusion_risk", product.cell_type)
    ):
        p = params.get("joint_effusion_risk", product.cell_type, "")
        basis = f"joint_effusion_risk[{product.cell_type}] (Shang 2023, uncontrolled)"
        for i, day in enumerate(doses_d):
            out.append(Risk("joint_effusion", ((1, p * ones),), _at(day), basis, i))
    if product.cryopreserved and params.has("infusion_reaction_risk", product.cell_type):
        p = params.get("infusion_reaction_risk", product.cell_type, "")
        hypoxia = p * params.get("infusion_reaction_grade2_share", "", "")
        basis = f"infusion_reaction_risk[{product.cell_type}] (Otrock 2017: DMSO in thawed grafts)"
        for i, day in enumerate(doses_d):
            out.append(Risk("infusion_reaction", ((2, hypoxia * ones), (1, p * ones)), _at(day), basis, i))
    if product.donor == "allogeneic" and doses_d:
        # once per patient after the first dose: neither the dose count nor the HLA mismatches changed
        # the share in Sanabria 2021's review (safety.csv note)
        delay = params.get("anti_donor_antibody_delay", "", "day")
        if doses_d[0] + delay <= horizon_d:
            p = params.get("anti_donor_antibody_risk", "", "")
            basis = "anti_donor_antibody_risk (Sanabria 2021: DSA in 15% of patients given allogeneic MSC)"
            out.append(Risk("anti_donor_antibodies", ((1, p * ones),), _at(doses_d[0] + delay), basis, 0))
    lifetime = params.get("ectopic_growth_risk", "", "")
    if not product.regulated:
        lifetime *= params.get("ectopic_growth_unregulated_factor", "", "")
    mean_d = params.get("ectopic_growth_onset", "", "day")
    by_horizon = lifetime * (1.0 - np.exp(-horizon_d / mean_d))
    out.append(
        Risk(
            "ectopic_growth",
            ((3, by_horizon * ones),),
            _exponential_within(mean_d, horizon_d),
            "Wang 2024 bound",
        )
    )
    return out


def _lung_risks(scenario: Scenario, params: ParameterSet, load: HeldLoad | None) -> list[Risk]:
    """Lung obstruction by cells held in the lungs (see the module docstring)."""
    product = scenario.product
    out: list[Risk] = []
    # leukocyte-sized cells marginate in the lungs and leave within minutes (Thakur 1977): they do not
    # obstruct; only cells held by size (MSC) count towards the lung load
    if load is not None and product.cell_type == "msc" and np.any(load.peak_per_g > 0):
        sd = params.get("lung_obstruction_probit_sd", "", "")
        serious = params.get("lung_obstruction_serious_fraction", "", "")
        z = np.log(np.maximum(load.share, 1e-300)) / sd
        death = scipy.stats.norm.cdf(z)
        grade3 = scipy.stats.norm.cdf(z - np.log(serious) / sd)
        peak = load.peak_day
        out.append(
            Risk(
                "lung_obstruction",
                ((5, death), (3, grade3)),
                lambda u, peak=peak: peak + 0.0 * u,
                "lung load against the lethal load of Kwon 2024a",
            )
        )
    return out


def _brain_risks(params: ParameterSet, brain: HeldLoad | None) -> list[Risk]:
    """Stroke from cells held in the brain after an intra-arterial dose: probit in the log of the
    peak load against the rats' stroke load (Janowski 2013), grade 3 (a lesion on MRI in the rats)."""
    if brain is None or not np.any(brain.peak_per_g > 0):
        return []
    sd = params.get("arterial_occlusion_probit_sd", "brain", "")
    p = scipy.stats.norm.cdf(np.log(np.maximum(brain.share, 1e-300)) / sd)
    peak = brain.peak_day
    return [
        Risk(
            "arterial_occlusion",
            ((3, p),),
            lambda u, peak=peak: peak + 0.0 * u,
            "brain load against the stroke load of Janowski 2013 (rats)",
        )
    ]


def _background_risks(
    scenario: Scenario, params: ParameterSet, horizon_d: float, patients: int
) -> list[Risk]:
    """The condition's own events over the simulation, whatever the arm: a constant hazard
    ``background_rate[<condition>/<kind>]`` (1/day), onset exponential within the horizon."""
    condition = scenario.condition
    if condition is None or condition.name is None or horizon_d <= 0:
        return []
    out = []
    for kind, grade in BACKGROUND_GRADES.items():
        scope = f"{condition.name}/{kind}"
        if not params.has("background_rate", scope):
            continue
        rate = params.get("background_rate", scope, "1/day")
        p = -np.expm1(-rate * horizon_d) * np.ones(patients)
        basis = f"background_rate[{scope}] (the condition without cells)"
        out.append(
            Risk(f"background_{kind}", ((grade, p),), _exponential_within(1.0 / rate, horizon_d), basis)
        )
    return out


def _procedure_risks(
    scenario: Scenario, params: ParameterSet, doses_d: list[float], ones: np.ndarray
) -> list[Risk]:
    """Harvest of an autologous product (once, before the first dose; a blinded sham arm is harvested
    too) and the delivery procedure of each dose."""
    product = scenario.product
    out = []
    source = product.tissue_source
    if product.donor == "autologous":
        death = _row_or(params, "harvest_death_risk", source, "", 0.0)
        serious = _row_or(params, "harvest_serious_risk", source, "", 0.0)
        minor = _row_or(params, "harvest_minor_risk", source, "", 0.0)
        grades = tuple(
            (g, p * ones) for g, p in ((5, death), (3, serious), (1, max(minor, serious))) if p > 0
        )
        if grades:
            recovery = _row_or(params, "harvest_recovery", source, "day", None)
            out.append(Risk("harvest_complication", grades, _at(0.0), f"harvest of {source}", 0, recovery))
    key = _delivery_key(scenario)
    if key is not None:
        serious = params.get("delivery_serious_risk", key, "")
        minor = _row_or(params, "delivery_minor_risk", key, "", 0.0)  # e.g. post-dural-puncture headache
        basis = f"delivery_serious_risk[{key}]" + (f", delivery_minor_risk[{key}]" if minor else "")
        # a device placed once, before the first dose (an Ommaya reservoir): its own serious and fatal risk
        placed = _row_or(params, "device_placement_serious_risk", key, "", 0.0)
        placed_death = _row_or(params, "device_placement_death_risk", key, "", 0.0)
        for i, day in enumerate(doses_d):
            first = i == 0 and placed > 0
            at_least_3 = 1.0 - (1.0 - serious) * (1.0 - placed) if first else serious
            grades = [(5, placed_death * ones)] if first and placed_death > 0 else []
            grades.append((3, at_least_3 * ones))
            if minor:
                grades.append((DELIVERY_MINOR_GRADE[key], minor * ones))
            text = basis + (f", device_placement_*_risk[{key}] (first dose)" if first else "")
            out.append(Risk("delivery_complication", tuple(grades), _at(day), text, i))
    return out


def _row_or(params: ParameterSet, name: str, scope: str, unit: str, default):
    """The row ``name[scope]`` in ``unit``, or ``default`` where no row was read for that scope."""
    return params.get(name, scope, unit) if params.has(name, scope) else default


def _delivery_key(scenario: Scenario) -> str | None:
    """Row scope of the delivery procedure's serious risk, or None where no rate was read."""
    admin = scenario.administration
    if admin.route == "intra_arterial" and scenario.site != LEFT_VENTRICLE:
        return "intra_arterial"
    if admin.route == "local" and scenario.site in ("heart", "joints"):
        return f"local/{scenario.site}"
    if admin.route in CSF_ROUTES:
        return admin.route
    return None


def _uniform_in(start: float, end: float):
    return lambda u: start + u * (end - start)


def _at(day: float):
    return lambda u: day + 0.0 * u


def _exponential_within(mean_d: float, horizon_d: float):
    """Onset times of an exponential with mean ``mean_d`` conditioned on falling before the horizon."""
    return lambda u: -mean_d * np.log1p(-u * (1.0 - np.exp(-horizon_d / mean_d)))


def draw(chances: list[Risk], seed: int, index: np.ndarray) -> pd.DataFrame:
    """The events that happen to patients ``index`` (``patient, event, time_d, grade, serious``).

    Each chance is drawn on its own stream; a patient's first death (grade 5) ends their record, so
    events drawn for later times are dropped (events at the same time are kept)."""
    index = np.asarray(index, dtype=np.int64)
    frames = []
    for chance in chances:
        name = f"adverse:{chance.event}:{chance.dose}"
        u = uniforms(seed, index, stream(name))
        grade = np.zeros(len(index), dtype=np.int8)
        for level, probability in sorted(chance.grades, key=lambda g: -g[0]):
            hit = (grade == 0) & (u < np.asarray(probability))
            grade[hit] = level
        hit = grade > 0
        if not hit.any():
            continue
        recovery = chance.recovery_d if chance.recovery_d is not None else np.nan
        when = np.broadcast_to(chance.when(uniforms(seed, index, stream(f"{name}:time"))), index.shape)
        frames.append(
            pd.DataFrame(
                {
                    "patient": index[hit],
                    "event": chance.event,
                    "time_d": when[hit].astype(float),
                    "grade": grade[hit],
                    "serious": grade[hit] >= SERIOUS_GRADE,
                    "recovery_d": recovery,
                }
            )
        )
    if not frames:
        return pd.DataFrame(
            {
                "patient": pd.Series(dtype="int64"),
                "event": pd.Series(dtype="object"),
                "time_d": pd.Series(dtype="float64"),
                "grade": pd.Series(dtype="int8"),
                "serious": pd.Series(dtype="bool"),
                "recovery_d": pd.Series(dtype="float64"),
            }
        )
    events = pd.concat(frames, ignore_index=True).sort_values(["patient", "time_d", "event"], kind="stable")
    death = events[events.grade == 5].groupby("patient").time_d.min()
    if len(death):
        ends = events.patient.map(death).fillna(np.inf).to_numpy()
        events = events[events.time_d.to_numpy() <= ends]
    return events


def load_for(scenario: Scenario, params: ParameterSet, model=None, body_weight_kg=None) -> HeldLoad:
    """The scenario's lung load with the lethal load for its product and premedication."""
    found = lung_load(scenario, params, model, body_weight_kg)
    product = scenario.product
    factor = params.get("lung_obstruction_source_factor", f"{product.cell_type}/{product.tissue_source}", "")
    if scenario.administration.heparin_iu > 0:
        factor *= params.get("lung_obstruction_heparin_factor", "", "")
    lethal = lethal_lung_load(params) * factor
    notes = []
    share = float(np.max(found.peak_per_g) / lethal)
    if scenario.species == "human" and share > WARN_LOAD_SHARE:
        notes.append(
            f"peak lung load is {share:.0%} of the load that killed half the mice of a published bolus "
            "(Kwon 2024a): slow the infusion, lower the dose or consider heparin"
        )
    return HeldLoad(found.peak_per_g, lethal, found.peak_day, notes)


def any_of(probabilities) -> float:
    """Probability of at least one of independent events, exact for tiny ones (1 - prod(1 - p) rounds
    anything under about 1e-16 to 0)."""
    p = np.asarray(probabilities, dtype=float)
    if p.size == 0 or np.any(p >= 1.0):
        return float(p.size > 0)
    return float(-np.expm1(np.sum(np.log1p(-p))))


def probability_text(p: float) -> str:
    """A probability as printed: 0 only when it is 0, '<1e-10' below that, else 3 significant digits."""
    return "0" if p == 0 else "<1e-10" if p < 1e-10 else f"{p:.3g}"


def event_bands(uncertainty: dict | None) -> dict[tuple[str, str], str]:
    """'low-high' of each event's probability over parameter draws (``simulate --uncertainty``), by
    (``event_probability`` or ``serious_event_probability``, event)."""
    rows = (uncertainty or {}).get("rows", [])
    return {
        (r["quantity"], r["where"]): f"{probability_text(r['low'])} to {probability_text(r['high'])}"
        for r in rows
        if r["quantity"] in ("event_probability", "serious_event_probability")
    }


def serious_text(event: dict) -> str:
    """The serious (grade 3-5) probability of a ``patient_summary`` event as printed."""
    return probability_text(event["probability_serious"]) if event["serious_modelled"] else "not modelled"


def patient_summary(chances: list[Risk], load: HeldLoad | None, brain: HeldLoad | None = None) -> dict:
    """Per event: probability over the simulation for the scenario's patient, grades and basis."""
    events = {}
    for name in EVENTS:
        own = [c for c in chances if c.event == name]
        if not own:
            continue
        serious = [c for c in own if any(g >= SERIOUS_GRADE for g, _ in c.grades)]
        events[name] = {
            "probability": any_of([float(np.asarray(c.probability).reshape(-1)[0]) for c in own]),
            "probability_serious": any_of(
                [
                    float(np.max([np.asarray(p).reshape(-1)[0] for g, p in c.grades if g >= SERIOUS_GRADE]))
                    for c in serious
                ]
            ),
            # False: the source gives no grade 3-5 counts, so none are modelled (0 is not a measurement)
            "serious_modelled": bool(serious),
            "chances": len(own),
            "basis": own[0].basis,
        }
    out = {"events": events}
    if load is not None:
        out["lung_load"] = {
            "peak_cells_per_g": float(np.max(load.peak_per_g)),
            "lethal_cells_per_g": float(load.lethal_per_g),
            "share_of_lethal": float(np.max(load.share)),
        }
        out["warnings"] = list(load.notes)
    if brain is not None:
        out["brain_load"] = {
            "peak_cells_per_g": float(np.max(brain.peak_per_g)),
            "stroke_cells_per_g": float(brain.lethal_per_g),
            "share_of_stroke_load": float(np.max(brain.share)),
        }
        out["warnings"] = out.get("warnings", []) + list(brain.notes)
    return out


def simulate_events(
    scenario: Scenario, model, params: ParameterSet | None = None
) -> tuple[pd.DataFrame, dict]:
    """Adverse events of the scenario's one patient: the drawn events (seeded) and the summary."""
    params = params or for_scenario(scenario)
    load = load_for(scenario, params, model)
    brain = brain_load_for(scenario, params, model)
    chances = risks(scenario, params, "cells", 1, load, brain)
    events = draw(chances, scenario.simulation.seed, np.array([0]))
    summary = patient_summary(chances, load, brain)
    recovery = engraftment.for_scenario(scenario, params)
    if recovery is not None:
        summary["neutrophil_recovery"] = recovery.as_dict()
    return events, summary


def chunk_events(
    scenario: Scenario, replicate: int, start: int, stop: int, params: ParameterSet | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Adverse events of trial patients ``start`` to ``stop - 1`` of ``replicate``: the events (with
    ``replicate`` and ``arm``) and counts (arms, events + 1, 2): patients with the event at any
    grade and serious; the last event slot holds the arm's patients (both columns).

    Allocation and streams are those of ``trial.simulate_chunk`` (pure functions of seed and patient),
    so the events do not depend on chunking. The lung load is that of each arm's typical patient.
    """
    from infusim.virtual_trial import allocate  # trial's own allocation, imported late: trial is heavier

    params = params or for_scenario(scenario)
    trial = scenario.trial
    seed = replicate_seed(scenario.simulation.seed, replicate)
    index = np.arange(start, stop, dtype=np.int64)
    arm = allocate(seed, index, tuple(a.ratio for a in trial.arms))
    counts = np.zeros((len(trial.arms), len(EVENTS) + 1, 2), dtype=np.int64)
    frames = []
    for a, spec in enumerate(trial.arms):
        members = index[arm == a]
        counts[a, -1, :] = members.size
        if members.size == 0:
            continue
        arm_scenario = scenario.for_arm(spec)
        cells = spec.kind == "cells"
        load = load_for(arm_scenario, params) if cells else None
        brain = brain_load_for(arm_scenario, params) if cells else None
        days = engraftment.for_patients(arm_scenario, params, seed, members, spec.kind)
        regimen = arm_scenario.administration.conditioning
        factor = None if days is None else engraftment.infection_factors(regimen, days, params)
        chances = risks(arm_scenario, params, spec.kind, members.size, load, brain, factor)
        if trial.missed_doses and spec.kind != "none":  # a missed administration has no risks of its own
            taken = doses_taken(seed, members, arm_scenario.administration.count, trial.missed_doses)
            chances = [_if_taken(r, taken) for r in chances]
        events = draw(chances, seed, members)
        for e, name in enumerate(EVENTS):
            own = events[events.event == name]
            counts[a, e, 0] = own.patient.nunique()
            counts[a, e, 1] = own[own.serious].patient.nunique()
        frames.append(events.assign(replicate=replicate, arm=spec.name))
    columns = ["replicate", "patient", "arm", "event", "time_d", "grade", "serious", "recovery_d"]
    table = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    return table, counts


def _if_taken(risk: Risk, taken: np.ndarray) -> Risk:
    """``risk`` of the administration ``risk.dose`` only for the patients who receive it (the first
    administration, and chances not tied to one, ``dose`` 0, are everyone's)."""
    if risk.dose == 0:
        return risk
    return replace(risk, grades=tuple((grade, p * taken[:, risk.dose]) for grade, p in risk.grades))


def death_days(table: pd.DataFrame, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Day of each trial patient's death (a grade-5 event of any cause) and of a treatment-related
    death, ``inf`` where there is none, for patients ``start`` to ``stop - 1``, from their events
    (``chunk_events``), so a trial's records and its adverse events tell one story."""
    index = np.arange(start, stop, dtype=np.int64)

    def first(rows: pd.DataFrame) -> np.ndarray:
        return rows.groupby("patient").time_d.min().reindex(index).fillna(np.inf).to_numpy()

    return first(table[table.grade == 5]), first(table[table.event == "treatment_related_death"])


def trial_summary(counts: np.ndarray, arms: list[str], control: int) -> dict:
    """Per event and arm: patients with the event (any grade, serious) with exact 95% CIs, and the
    relative risk against the control arm with its 95% CI (None when either arm has no event)."""
    out: dict[str, dict] = {}
    for e, name in enumerate(EVENTS):
        entry: dict[str, dict] = {}
        for a, arm in enumerate(arms):
            n = int(counts[a, -1, 0])
            row = {"patients": n}
            for j, key in enumerate(("any", "serious")):
                k = int(counts[a, e, j])
                row[key] = _rate(k, n)
                if a != control:
                    row[f"relative_risk_{key}"] = _relative_risk(
                        k, n, int(counts[control, e, j]), int(counts[control, -1, 0])
                    )
            entry[arm] = row
        out[name] = entry
    return out


def _rate(k: int, n: int) -> dict:
    if n == 0:
        return {"events": k, "rate": None, "low": None, "high": None}
    ci = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return {"events": k, "rate": k / n, "low": float(ci.low), "high": float(ci.high)}


def _relative_risk(k: int, n: int, k0: int, n0: int) -> dict | None:
    if n == 0 or n0 == 0 or k0 == 0 or k == 0:
        return None
    found = scipy.stats.contingency.relative_risk(k, n, k0, n0)
    ci = found.confidence_interval(confidence_level=0.95)
    return {"estimate": float(found.relative_risk), "low": float(ci.low), "high": float(ci.high)}


def trial_odds_ratio(
    scenario: Scenario, event: str, params: ParameterSet | None = None, background: float = 0.0
) -> dict:
    """Odds ratio of patients with ``event`` (any grade; an event or a pooled outcome of
    ``OUTCOME_GROUPS``) in the first cells arm against the control arm of replicate 0 of the
    scenario's trial, with its exact 95% CI (conditional maximum likelihood), and the risk ratio (NaN
    without control events). ``background``: the risk of the outcome from causes infusim does not
    model, the same in both arms (p -> 1 - (1 - background)(1 - p)); with it the ratios are those of
    the expected risks and the CI is that of the counts without it."""
    trial = scenario.trial
    table, counts = chunk_events(scenario, 0, 0, trial.patients, params)
    if event == "death":
        hit = table[table.grade == 5]
    else:
        hit = table[table.event.isin(OUTCOME_GROUPS.get(event, (event,)))]
    control = next(i for i, a in enumerate(trial.arms) if a.name == trial.control.name)
    treated = next(i for i, a in enumerate(trial.arms) if a.kind == "cells" and i != control)
    k1, n1 = hit[hit.arm == trial.arms[treated].name].patient.nunique(), int(counts[treated, -1, 0])
    k0, n0 = hit[hit.arm == trial.arms[control].name].patient.nunique(), int(counts[control, -1, 0])
    found = scipy.stats.contingency.odds_ratio([[k1, n1 - k1], [k0, n0 - k0]])
    ci = found.confidence_interval(confidence_level=0.95)
    if background > 0:
        p1, p0 = (1.0 - (1.0 - background) * (1.0 - k / n) for k, n in ((k1, n1), (k0, n0)))
        return {
            "odds_ratio": p1 / (1 - p1) / (p0 / (1 - p0)),
            "low": float(ci.low),
            "high": float(ci.high),
            "risk_ratio": p1 / p0,
        }
    risk = scipy.stats.contingency.relative_risk(k1, n1, k0, n0) if k0 > 0 else None
    return {
        "odds_ratio": float(found.statistic),
        "low": float(ci.low),
        "high": float(ci.high),
        "risk_ratio": float(risk.relative_risk) if risk is not None else float("nan"),
    }
