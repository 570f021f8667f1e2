"""Scenario files: YAML in, a validated, typed ``Scenario`` out.

The YAML shape is a public contract (see README, "Scenario file"). Quantities carry units parsed
with pint; inside a ``Scenario`` every number is a float in infusim's internal units (hours, kg,
cells, micrometres). Every problem raises ``ScenarioError`` with the field path and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import yaml
from pydantic import Field, model_validator

from infusim.compartments import ARTERIAL_SITES, CSF_ROUTES, CSF_SITE, ORGANS, Species
from infusim.errors import ScenarioError
from infusim.scenario_economics import Economics
from infusim.scenario_errors import _first_error, _refuse_duplicate_keys
from infusim.scenario_sections import (
    BODY_WEIGHT_RANGE_KG,
    MAX_DOSE_CELLS_PER_KG,
    MAX_DURATION_H,
    MAX_OUTPUTS,
    PLAUSIBLE_SOURCES,
    Administration,
    Condition,
    Label,
    Patient,
    Product,
    Repeat,
    Simulation,
    _FieldError,
    _Section,
    default_outputs_h,
)
from infusim.scenario_trial import Arm, Primary, Trial

__all__ = [
    "BODY_WEIGHT_RANGE_KG",
    "MAX_DOSE_CELLS_PER_KG",
    "MAX_DURATION_H",
    "MAX_OUTPUTS",
    "PLAUSIBLE_SOURCES",
    "Administration",
    "Arm",
    "Condition",
    "Label",
    "Patient",
    "Primary",
    "Product",
    "Repeat",
    "Scenario",
    "Simulation",
    "Trial",
    "default_outputs_h",
    "from_dict",
    "load",
]


def _own_doses_need_own_schedule(base: dict, arm: dict, index: int) -> None:
    """An arm that changes the dose while the scenario's schedule gives some administrations their
    own doses must say its own schedule: which of them the new dose replaces is not obvious."""
    schedule = base.get("schedule")
    own = isinstance(schedule, list) and any(isinstance(e, dict) and "dose" in e for e in schedule)
    if own and "schedule" not in arm and "repeat" not in arm:
        raise _FieldError(
            f"trial.arms.{index}.administration.dose",
            "the scenario's schedule gives some administrations their own doses; give this arm its "
            "own administration.schedule as well",
        )


class Scenario(_Section):
    """A validated scenario. Build one with ``load(path)`` or ``from_dict(mapping)``."""

    name: str = Field("scenario", min_length=1, max_length=200)
    species: Species
    patient: Patient = Patient()
    condition: Condition | None = None
    product: Product
    administration: Administration
    simulation: Simulation = Simulation()
    trial: Trial | None = None
    #: Cost-effectiveness of the trial's cells arms (``scenario_economics``; needs ``trial``).
    economics: Economics | None = None
    #: Table rows replaced for this scenario: ``{"loss_rate[msc/lungs]": "0.1 1/h"}`` (checked and
    #: applied by ``parameters.for_scenario``; ``infusim parameters`` lists the rows).
    parameters: dict[str, str | float] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _arm_overrides(cls, data: Any) -> Any:
        """Each arm's administration and product overrides merged onto the scenario's own."""
        if not isinstance(data, dict) or not isinstance(data.get("trial"), dict):
            return data
        arms = data["trial"].get("arms")
        if not isinstance(arms, list):
            return data
        merged = []
        for i, arm in enumerate(arms):
            arm = dict(arm) if isinstance(arm, dict) else arm
            if isinstance(arm, dict):
                for key in ("administration", "product"):
                    if isinstance(arm.get(key), dict) and isinstance(data.get(key), dict):
                        base = dict(data[key])
                        if key == "administration" and "dose" in arm[key]:
                            base.pop("dose", None)
                            _own_doses_need_own_schedule(base, arm[key], i)
                        if key == "administration" and "repeat" in arm[key]:
                            base.pop("schedule", None)
                        if key == "administration" and "schedule" in arm[key]:
                            base.pop("repeat", None)
                        arm[key] = {**base, **arm[key]}
            merged.append(arm)
        return {**data, "trial": {**data["trial"], "arms": merged}}

    @model_validator(mode="after")
    def _cross_checks(self) -> Scenario:
        from infusim.parameters import reference_body_weight_kg

        low, high = BODY_WEIGHT_RANGE_KG[self.species]
        weight = self.patient.body_weight_kg
        if weight is None:
            patient = self.patient.model_copy(
                update={"body_weight_kg": reference_body_weight_kg(self.species)}
            )
            object.__setattr__(self, "patient", patient)
        elif not low <= weight <= high:
            raise _FieldError(
                "patient.body_weight",
                f"{weight:g} kg is not a {self.species} body weight ({low:g}-{high:g} kg)",
            )
        admin = self.administration
        per_kg = self.dose_cells_per_kg * max(admin.dose_scales)
        if per_kg > MAX_DOSE_CELLS_PER_KG:
            largest = max(range(admin.count), key=lambda i: admin.dose_scales[i])
            raise _FieldError(
                f"administration.schedule.{largest}.dose"
                if admin.dose_scales[largest] != 1
                else "administration.dose",
                f"{per_kg:.3g} cells/kg is above the largest accepted dose "
                f"({MAX_DOSE_CELLS_PER_KG:g} cells/kg)",
            )
        if admin.route in ("intra_arterial", "local") and admin.into is None:
            if self.condition is None:
                raise _FieldError(
                    "administration.into",
                    f"required for route {admin.route} when no condition site is given; allowed: "
                    + ", ".join(ARTERIAL_SITES if admin.route == "intra_arterial" else ORGANS),
                )
            if admin.route == "intra_arterial" and self.condition.site not in ARTERIAL_SITES:
                raise _FieldError(
                    "administration.into",
                    f"the condition site {self.condition.site!r} has no artery of its own; "
                    f"allowed: {', '.join(ARTERIAL_SITES)}",
                )
        if admin.conditioning != "none" and (
            self.product.cell_type != "hsc" or self.product.donor != "autologous"
        ):
            raise _FieldError(
                "administration.conditioning",
                f"{admin.conditioning} goes with autologous hsc transplants only; allowed here: none",
            )
        if self.trial is not None:
            self._check_trial()
        elif self.economics is not None:
            raise _FieldError("economics", "a cost-effectiveness analysis needs a trial section")
        last_start = admin.starts_h[-1]
        if last_start > self.simulation.duration_h:
            raise _FieldError(
                "administration.schedule" if admin.schedule else "administration.repeat",
                f"the last dose starts at {last_start:g} h, after the end of the simulation "
                f"({self.simulation.duration_h:g} h)",
            )
        return self

    def _check_trial(self) -> None:
        from infusim import conditions

        trial = self.trial
        if self.condition is None or self.condition.name is None:
            raise _FieldError(
                "trial", f"a trial needs condition.name; allowed: {', '.join(conditions.names())}"
            )
        if self.species != "human":
            raise _FieldError(
                "species",
                "virtual trials are of human patients (populations, endpoints and evidence come from "
                f"human trials), got {self.species}; allowed: human "
                f"(`infusim simulate` runs one {self.species})",
            )
        info = conditions.get(self.condition.name)
        allowed = [e.name for e in info.endpoints]
        if trial.primary.endpoint not in allowed:
            raise _FieldError(
                "trial.primary.endpoint",
                f"{trial.primary.endpoint!r} is not an endpoint of {info.name}; "
                f"allowed: {', '.join(allowed)}",
            )
        endpoint = info.endpoint(trial.primary.endpoint)
        seen = {(trial.primary.endpoint, trial.primary.at_h)}
        for i, secondary in enumerate(trial.key_secondary):
            if secondary.endpoint not in allowed:
                raise _FieldError(
                    f"trial.key_secondary[{i}].endpoint",
                    f"{secondary.endpoint!r} is not an endpoint of {info.name}; "
                    f"allowed: {', '.join(allowed)}",
                )
            if (secondary.endpoint, secondary.at_h) in seen:
                raise _FieldError(
                    f"trial.key_secondary[{i}]",
                    f"{secondary.endpoint} at {secondary.at_h / 24:g} day is already tested (the primary or "
                    "an earlier key secondary)",
                )
            seen.add((secondary.endpoint, secondary.at_h))
        if trial.key_secondary and trial.multiplicity in ("holm", "hochberg"):
            raise _FieldError(
                "trial.key_secondary",
                f"the fixed sequence runs within each arm; with several arms it keeps the family-wise error "
                f"only with multiplicity bonferroni (each arm's sequence at 0.05 / arms), not "
                f"{trial.multiplicity}",
            )
        if trial.dropout_missing != "at_random" and trial.dropout_hazard_ratio == 1.0:
            raise _FieldError(
                "trial.dropout_missing", "acts through trial.dropout_hazard_ratio: give a ratio other than 1"
            )
        if trial.dropout_hazard_ratio != 1.0:
            if trial.dropout == 0:
                raise _FieldError(
                    "trial.dropout_hazard_ratio", "scales the dropout hazard: give trial.dropout above 0 too"
                )
            if endpoint.unit == "% of patients":
                raise _FieldError(
                    "trial.dropout_hazard_ratio",
                    f"needs a continuous primary endpoint to worsen; {endpoint.name} is a response rate",
                )
        if trial.multiplicity != "none" and len(trial.arms) < 3:
            raise _FieldError(
                "trial.multiplicity",
                "adjusts the comparisons of several treated arms; this trial has one (use none)",
            )
        if trial.lots is not None and not any(
            self.for_arm(a).product.donor == "allogeneic" for a in trial.arms if a.kind == "cells"
        ):
            raise _FieldError(
                "trial.lots",
                "lots apply to an allogeneic product; every cells arm here is autologous (each patient's "
                "own cells vary by the between-patient potency CV)",
            )
        if trial.missed_doses > 0 and not any(
            self.for_arm(a).administration.count > 1 for a in trial.arms if a.kind != "none"
        ):
            raise _FieldError(
                "trial.missed_doses", "applies to administrations after the first; no arm gives more than one"
            )
        change = trial.primary.responder_change
        if change is not None and change * endpoint.direction <= 0:
            better = "an increase" if endpoint.direction > 0 else "a decrease"
            sign = "positive" if endpoint.direction > 0 else "negative"
            raise _FieldError(
                "trial.primary.responder_change",
                f"improvement of {endpoint.name} is {better}: give a {sign} change",
            )
        entry = trial.eligibility.baseline if trial.eligibility else None
        if entry is not None:
            primary = info.primary
            if not primary.by_severity:
                raise _FieldError(
                    "trial.eligibility.baseline",
                    f"{info.name}'s entry value ({primary.name}) does not vary with severity; "
                    "allowed: age only",
                )
            if entry[1] <= primary.low or entry[0] >= primary.high:
                raise _FieldError(
                    "trial.eligibility.baseline",
                    f"[{entry[0]:g}, {entry[1]:g}] lies outside {primary.name}'s range "
                    f"{primary.low:g}-{primary.high:g} {primary.unit}",
                )
        if trial.visits_h[-1] > self.simulation.duration_h:
            raise _FieldError(
                "trial.visits",
                f"the last visit ({trial.visits_h[-1] / 24:g} day) is after simulation.duration "
                f"({self.simulation.duration_h / 24:g} day)",
            )
        for i, arm in enumerate(trial.arms):
            try:
                self.for_arm(arm)
            except _FieldError as exc:
                raise _FieldError(f"trial.arms.{i}.{exc.field}", exc.message) from None

    def for_arm(self, arm: Arm) -> Scenario:
        """This scenario as given to one arm (its administration and product overrides applied)."""
        update: dict[str, Any] = {"trial": None, "economics": None}
        if isinstance(arm.administration, Administration):
            update["administration"] = arm.administration
        if arm.product is not None:
            update["product"] = arm.product
        variant = self.model_copy(update=update)
        type(self)._cross_checks(variant)
        return variant

    @property
    def dose_cells_per_kg(self) -> float:
        """Dose per administration, cells per kg body weight (an administration of a schedule that
        gives its own dose: this times its ``administration.dose_scales``)."""
        admin = self.administration
        if admin.dose_cells_per_kg is not None:
            return admin.dose_cells_per_kg
        return admin.dose_cells / self.patient.body_weight_kg

    @property
    def dose_cells(self) -> float:
        """Dose per administration, cells."""
        return self.dose_cells_per_kg * self.patient.body_weight_kg

    def dose_cells_for(self, body_weight_kg: np.ndarray) -> np.ndarray:
        """Cells per administration for patients of the given body weights (kg)."""
        weight = np.asarray(body_weight_kg, dtype=float)
        admin = self.administration
        if admin.dose_cells is not None:
            return np.full(weight.shape, admin.dose_cells)
        return admin.dose_cells_per_kg * weight

    @property
    def site(self) -> str | None:
        """Organ receiving an intra-arterial, local, intrathecal or intraventricular dose (``into``, else
        the condition's site; the central nervous system, ``brain``, for a dose into the CSF)."""
        admin = self.administration
        if admin.route == "intravenous":
            return None
        if admin.route in CSF_ROUTES:
            return CSF_SITE
        return admin.into or (self.condition.site if self.condition else None)

    @property
    def clinical(self) -> bool:
        """Whether the scenario has clinical endpoints: a named condition in a human patient (the
        conditions' endpoints, natural history and potencies come from human trials)."""
        return self.condition is not None and self.condition.name is not None and self.species == "human"

    def warnings(self) -> list[str]:
        """Inputs that are valid but have no effect, one line each."""
        notes = []
        if self.condition is not None and self.condition.name is not None and not self.clinical:
            notes.append(
                f"condition.name: {self.condition.name} is a human disease whose endpoints, natural history "
                f"and potencies come from human trials; in a {self.species} only its site, severity and "
                f"timing act (on the cell kinetics) and no clinical endpoint is reported: infusim has no "
                f"{self.species} disease model and no rule to translate effects between species"
            )
        if self.administration.route == "intravenous" and self.administration.into is not None:
            notes.append(
                "administration.into is ignored for an intravenous infusion (cells enter venous blood)"
            )
        if (
            self.product.tissue_source in ("cord_blood", "peripheral_blood")
            and self.product.cell_type == "msc"
        ):
            notes.append(
                f"product.tissue_source {self.product.tissue_source} is an unusual source of MSC; "
                "the generic MSC size is used"
            )
        if self.product.cryopreserved and self.product.cell_type == "msc" and self.species == "human":
            notes.append(
                "product.cryopreserved: thawed MSC products carry 2.5-30x less DMSO per kg than HSC "
                "grafts and only isolated infusion reactions were reported (DMSO review 2025); no rate "
                "was found, so none are drawn"
                + (
                    ""
                    if self.product.carrier
                    else "; set product.carrier (crystalloid or albumin) to count the cells that die "
                    "in the bag (Nguyen 2024: about 10%/h in Ringer's)"
                )
            )
        return notes

    def hash(self) -> str:
        """A SHA-256 of the validated content: equal for scenarios that simulate the same thing. Fields at
        their defaults are left out, so a field added later with a default that keeps the old behaviour
        does not change the hash of existing scenarios (a resume also checks the infusim version); the
        ``economics`` section analyses a trial's output and is left out, so it can change afterwards."""
        content = self.model_dump(mode="json", exclude={"economics"}, exclude_defaults=True)
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def from_dict(data: Any) -> Scenario:
    """Validate a mapping (as read from YAML) into a ``Scenario``."""
    if not isinstance(data, dict):
        raise ScenarioError(
            "scenario", "the file must hold a mapping of sections (name, species, product, ...)"
        )
    try:
        return Scenario.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _first_error(exc, data, Scenario) from None
    except _FieldError as exc:
        raise ScenarioError(exc.field, exc.message) from None


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file."""
    path = Path(path)
    if path.is_dir():
        raise ScenarioError("scenario", f"{path} is a folder; give a scenario YAML file")
    if not path.is_file():
        bundled = Path(__file__).parent / "examples" / f"{path.stem}.yaml"
        hint = (
            f"; the bundled example of that name is {bundled}"
            if bundled.is_file() and path.parent == Path(".")
            else ""
        )
        raise ScenarioError("scenario", f"file not found: {path}{hint}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError("scenario", f"cannot read {path}: {exc}") from None
    try:
        _refuse_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError("scenario", f"malformed YAML{where}: {problem}") from None
    return from_dict(data)


def as_scenario(scenario: Scenario | dict | str | Path) -> Scenario:
    """A validated ``Scenario`` from an object, a mapping or a YAML path."""
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, dict):
        return from_dict(scenario)
    if isinstance(scenario, (str, Path)):
        return load(scenario)
    raise ScenarioError(
        "scenario", f"a Scenario, a mapping or a path to a YAML file, not {type(scenario).__name__}"
    )
