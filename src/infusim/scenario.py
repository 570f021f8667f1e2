"""Scenario files: YAML in, a validated, typed ``Scenario`` out.

The YAML shape is a public contract (see README, "Scenario file"). Quantities carry units parsed
with pint; inside a ``Scenario`` every number is a float in infusim's internal units (hours, kg,
cells, micrometres). Every problem raises ``ScenarioError`` with the field path and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from infusim import units
from infusim.compartments import (
    ARTERIAL_SITES,
    ORGANS,
    SITES,
    CellType,
    Donor,
    Isotope,
    Route,
    Sex,
    Species,
    TissueSource,
)
from infusim.errors import ScenarioError

#: Largest dose accepted, cells per kg body weight (an input guard, not a model parameter: clinical
#: MSC doses are 1e5-1e7 cells/kg and marrow transplants about 1e8-1e9 nucleated cells/kg).
MAX_DOSE_CELLS_PER_KG = 1e10
#: Plausible body weights (kg) per species: guards against unit slips such as '70 g' for a human.
BODY_WEIGHT_RANGE_KG = {"human": (2.0, 350.0), "mouse": (0.005, 0.1), "rat": (0.03, 1.2)}
#: Tissue sources each cell type is obtained from (MSC from blood are rare: allowed with a warning).
PLAUSIBLE_SOURCES = {
    "msc": ("bone_marrow", "adipose", "umbilical_cord", "cord_blood", "peripheral_blood"),
    "hsc": ("bone_marrow", "cord_blood", "peripheral_blood"),
    "bm_mnc": ("bone_marrow",),
}
#: Longest simulation accepted (h): ten years.
MAX_DURATION_H = 24.0 * 365.25 * 10


class _FieldError(ValueError):
    """A cross-field error that knows its own field path."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(message)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _parsed(unit: str, what: str):
    """A before-validator turning ``'70 kg'`` into a float in ``unit``."""

    def convert(value: Any, info: pydantic.ValidationInfo) -> float:
        if value is None:
            return value
        field = info.field_name or "value"
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f"{value} has no unit (write e.g. '{value} {unit}')")
        try:
            return units.to_float(value, unit, field, what)
        except ScenarioError as exc:
            raise ValueError(exc.message) from None

    return pydantic.BeforeValidator(convert)


def _hours():
    def convert(value: Any, info: pydantic.ValidationInfo) -> float:
        try:
            return units.hours(value, info.field_name or "value")
        except ScenarioError as exc:
            raise ValueError(exc.message) from None

    return pydantic.BeforeValidator(convert)


Hours = Annotated[float, _hours()]


class Patient(_Section):
    """Who receives the cells. Body weight defaults to the species' reference weight."""

    body_weight_kg: Annotated[float | None, _parsed("kg", "a body weight")] = Field(None, alias="body_weight")
    age_years: Annotated[float | None, _parsed("year", "an age")] = Field(None, alias="age")
    sex: Sex | None = None

    @field_validator("age_years")
    @classmethod
    def _age_in_range(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= 120:
            raise ValueError(f"{value:g} year is outside 0-120 year")
        return value


class Condition(_Section):
    """The disease: a named condition (its site follows), or only an injured organ (``site``).

    ``severity`` is 0-1, or mild, moderate, severe. With a ``name`` the run also gives the
    condition's clinical endpoints; an explicit ``site`` must agree with the condition's.
    ``onset`` is how long before the first dose the injury happened (``'5 day'``), or ``chronic``
    (the default, unless the named condition gives one): the homing signal of the injured tissue
    depends on it (docs/model.md, "Time since injury"). ``onset_h`` is None when chronic.
    """

    name: str | None = None
    site: str = ""
    severity: float = 0.5
    onset_h: float | None = Field(None, alias="onset")

    @field_validator("onset_h", mode="before")
    @classmethod
    def _onset(cls, value: Any) -> float | None:
        if value is None or value == "chronic":
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f"{value} has no unit (write e.g. '5 day', or chronic)")
        try:
            hours = units.hours(value, "onset")
        except ScenarioError as exc:
            raise ValueError(f"{exc.message}; allowed: a time before the first dose or chronic") from None
        if hours < 0:
            raise ValueError(f"{value!r} is negative; the injury happens before (or at) the first dose")
        return hours

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: Any) -> float:
        from infusim.conditions import SEVERITY_WORDS
        from infusim.parameters import bundled

        if isinstance(value, str):
            if value not in SEVERITY_WORDS:
                raise ValueError(f"{value!r} is not a severity; allowed: {', '.join(SEVERITY_WORDS)} or 0-1")
            return bundled().get("severity_level", value, "")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"{value!r} is outside 0-1; allowed: 0-1 or {', '.join(SEVERITY_WORDS)}")
        return float(value)

    @model_validator(mode="after")
    def _name_and_site(self) -> Condition:
        from infusim import conditions

        if self.name is not None:
            if self.name not in conditions.names():
                raise _FieldError(
                    "condition.name",
                    f"unknown condition {self.name!r}; allowed: {', '.join(conditions.names())}",
                )
            site = conditions.get(self.name).site
            if self.site and self.site != site:
                raise _FieldError(
                    "condition.site", f"{self.site!r} conflicts with {self.name}, whose site is {site!r}"
                )
            object.__setattr__(self, "site", site)
            if self.onset_h is None and "onset_h" not in self.model_fields_set:
                object.__setattr__(self, "onset_h", conditions.get(self.name).onset_h)
        elif not self.site:
            raise _FieldError("condition", "give a name (e.g. knee_osteoarthritis) or a site")
        if self.site not in SITES:
            raise _FieldError("condition.site", f"unknown site {self.site!r}; allowed: {', '.join(SITES)}")
        return self


class Product(_Section):
    """The cell product: type, tissue of origin, donor, size and viability."""

    cell_type: CellType
    tissue_source: TissueSource
    donor: Donor = "autologous"
    hla_mismatches: int = Field(0, ge=0, le=10)
    diameter_um: Annotated[float | None, _parsed("micrometer", "a cell diameter")] = Field(
        None, alias="diameter"
    )
    viability: float = Field(0.9, gt=0.0, le=1.0)

    @field_validator("diameter_um")
    @classmethod
    def _diameter_in_range(cls, value: float | None) -> float | None:
        if value is not None and not 3.0 <= value <= 60.0:
            raise ValueError(f"{value:g} um is not a cell diameter (allowed 3-60 um)")
        return value

    @model_validator(mode="after")
    def _source_fits_cell_type(self) -> Product:
        allowed = PLAUSIBLE_SOURCES[self.cell_type]
        if self.tissue_source not in allowed:
            raise _FieldError(
                "product.tissue_source",
                f"{self.cell_type} cells are not obtained from {self.tissue_source}; "
                f"allowed: {', '.join(allowed)}",
            )
        return self

    @model_validator(mode="after")
    def _mismatches_need_allogeneic(self) -> Product:
        if self.donor == "autologous" and self.hla_mismatches:
            raise _FieldError(
                "product.hla_mismatches", "applies to allogeneic cells only (donor: allogeneic)"
            )
        return self


class Repeat(_Section):
    """Repeated administration: ``count`` doses in all, ``interval`` apart (start to start)."""

    count: int = Field(1, ge=1, le=100)
    interval_h: Hours = Field(24.0 * 28, alias="interval")

    @field_validator("interval_h")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be a positive duration")
        return value


class Administration(_Section):
    """How the cells are given. Exactly one of ``dose_cells_per_kg`` and ``dose_cells`` is set."""

    route: Route
    into: str | None = None
    dose_cells_per_kg: float | None = None
    dose_cells: float | None = None
    duration_h: Hours = Field(0.5, alias="duration")
    repeat: Repeat = Repeat()
    conditioning: Literal["none", "cy_atg", "beam_atg"] = "none"

    @model_validator(mode="before")
    @classmethod
    def _split_dose(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "dose" not in data:
            if isinstance(data, dict):
                raise _FieldError("administration.dose", "is required (e.g. '2e6 cells/kg' or '1.4e8 cells')")
            return data
        data = dict(data)
        text = data.pop("dose")
        try:
            quantity = units.parse(text, "dose") if not isinstance(text, bool) else None
        except ScenarioError as exc:
            raise _FieldError("administration.dose", exc.message) from None
        hint = "a cell count (e.g. '1.4e8 cells') or cells per body weight (e.g. '2e6 cells/kg')"
        if quantity is None:
            raise _FieldError("administration.dose", f"{text!r} is not {hint}")
        if quantity.check("[cell_count] / [mass]"):
            data["dose_cells_per_kg"] = float(quantity.to("cell/kg").magnitude)
        elif quantity.check("[cell_count]"):
            data["dose_cells"] = float(quantity.to("cell").magnitude)
        else:
            raise _FieldError("administration.dose", f"{text} is not {hint}")
        return data

    @field_validator("dose_cells_per_kg", "dose_cells")
    @classmethod
    def _positive_dose(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise ValueError(f"dose must be positive, got {value:g}")
        return value

    @field_validator("duration_h")
    @classmethod
    def _duration_range(cls, value: float) -> float:
        if not 0 <= value <= 24.0 * 7:
            raise ValueError(f"{value:g} h is outside 0-168 h")
        if 0 < value < 1 / 3600:
            raise ValueError(f"{value:g} h is shorter than 1 s; use 0 for a bolus")
        return value

    @model_validator(mode="after")
    def _route_rules(self) -> Administration:
        if self.into is not None and self.route != "intravenous":
            allowed = ARTERIAL_SITES if self.route == "intra_arterial" else ORGANS
            if self.into not in allowed:
                raise _FieldError(
                    "administration.into",
                    f"unknown {self.route} site {self.into!r}; allowed: {', '.join(allowed)}",
                )
        if self.route == "local" and "duration_h" in self.model_fields_set and self.duration_h > 0:
            raise _FieldError(
                "administration.duration",
                "applies to intravenous and intra_arterial infusions, not local injection",
            )
        if self.repeat.count > 1 and self.repeat.interval_h <= self.effective_duration_h:
            raise _FieldError("administration.repeat.interval", "must be longer than the infusion duration")
        return self

    @property
    def effective_duration_h(self) -> float:
        """Infusion time (h); a local injection is a bolus."""
        return 0.0 if self.route == "local" else self.duration_h


class Label(_Section):
    """Radiolabel carried by the cells, for the radiolabel observation model."""

    isotope: Isotope
    decay_corrected: bool = True


class Simulation(_Section):
    """Run settings: horizon, output times, random seed and the radiolabel to observe."""

    duration_h: Hours = Field(24.0 * 28, alias="duration")
    outputs_h: tuple[Hours, ...] = Field((), alias="outputs")
    seed: int = Field(1, ge=0, le=2**63 - 1)
    label: Label | None = None

    @field_validator("label", mode="before")
    @classmethod
    def _label_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value == "none":
                return None
            return {"isotope": value}
        return value

    @model_validator(mode="after")
    def _check_times(self) -> Simulation:
        if not 0 < self.duration_h <= MAX_DURATION_H:
            raise ValueError(f"duration {self.duration_h:g} h is outside (0, {MAX_DURATION_H:g}] h")
        outputs = self.outputs_h or default_outputs_h(self.duration_h)
        bad = [t for t in outputs if not 0 <= t <= self.duration_h]
        if bad:
            raise ValueError(
                f"outputs: {bad[0]:g} h lies outside 0-{self.duration_h:g} h (simulation.duration)"
            )
        if len(set(outputs)) > MAX_OUTPUTS:
            raise ValueError(
                f"outputs: {len(set(outputs))} output times; at most {MAX_OUTPUTS} (reports and "
                "summary.json grow with each; the report draws its own dense curves)"
            )
        object.__setattr__(self, "outputs_h", tuple(sorted(set(outputs))))
        return self


#: Most output times a scenario may ask for.
MAX_OUTPUTS = 500


def default_outputs_h(duration_h: float) -> tuple[float, ...]:
    """Output times (h) used when a scenario lists none: 5 min, 1 h, 1, 3, 7 days, and the end."""
    candidates = (5 / 60, 1.0, 24.0, 72.0, 168.0, duration_h)
    return tuple(sorted({t for t in candidates if t <= duration_h}))


class Arm(_Section):
    """One arm of a virtual trial: ``placebo`` (sham procedure), ``none`` (natural history only), or
    cells (the scenario's administration, with any fields overridden)."""

    name: str = Field(min_length=1, max_length=60)
    ratio: int = Field(1, ge=1, le=100)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", value):
            raise ValueError(f"{value!r}: use letters, digits and _ . + - only")
        return value

    administration: Literal["placebo", "none"] | Administration | None = None
    product: Product | None = None

    @field_validator("administration", mode="before")
    @classmethod
    def _administration(cls, value: Any) -> Any:
        if value is None or isinstance(value, Administration):
            return value
        if isinstance(value, str):
            if value not in ("placebo", "none"):
                raise _FieldError(
                    ".administration",
                    f"{value!r} is not allowed; allowed: placebo, none, or administration fields to change",
                )
            return value
        return _nested(Administration, value, "administration")

    @field_validator("product", mode="before")
    @classmethod
    def _product(cls, value: Any) -> Any:
        return value if value is None or isinstance(value, Product) else _nested(Product, value, "product")

    @property
    def kind(self) -> str:
        """``cells``, ``placebo`` or ``none``."""
        return self.administration if isinstance(self.administration, str) else "cells"


def _nested(model: type[BaseModel], value: Any, section: str) -> BaseModel:
    """Validate an arm's override section; errors keep their field path relative to the arm."""
    if not isinstance(value, dict):
        raise _FieldError(f".{section}", f"give a mapping of {section} fields, got {value!r}")
    try:
        return model.model_validate(value)
    except pydantic.ValidationError as exc:
        error = _first_error(exc, value, model)
        field = error.field.removeprefix(f"{section}.").removeprefix(section)
        raise _FieldError(f".{section}.{field}".rstrip("."), error.message) from None
    except _FieldError as exc:
        field = exc.field.removeprefix(f"{section}.").removeprefix(section)
        raise _FieldError(f".{section}.{field}".rstrip("."), exc.message) from None


class Primary(_Section):
    """The primary comparison: endpoint, visit, and the change (endpoint units) defining a responder."""

    endpoint: str
    at_h: Hours = Field(alias="at")
    responder_change: float | None = None


class Trial(_Section):
    """A virtual randomised trial (see README, "Virtual trials")."""

    patients: int = Field(ge=2, le=10_000_000)
    arms: tuple[Arm, ...] = Field(min_length=1, max_length=20)
    visits_h: tuple[Hours, ...] = Field(alias="visits", min_length=1, max_length=400)
    primary: Primary
    replicates: int = Field(1, ge=1, le=100_000)

    @model_validator(mode="after")
    def _arms_and_visits(self) -> Trial:
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise _FieldError("trial.arms", f"arm names must be unique, got {', '.join(names)}")
        if self.patients < len(self.arms):
            raise _FieldError("trial.patients", f"{self.patients} is fewer than the {len(self.arms)} arms")
        visits = tuple(sorted({0.0, *self.visits_h}))
        if visits[0] < 0:
            raise _FieldError("trial.visits", "visits are times after the first dose (>= 0 day)")
        object.__setattr__(self, "visits_h", visits)
        if self.primary.at_h not in visits:
            raise _FieldError(
                "trial.primary.at",
                f"{self.primary.at_h / 24:g} day is not a visit; allowed: "
                + ", ".join(f"{v / 24:g} day" for v in visits),
            )
        return self

    @property
    def control(self) -> Arm:
        """The arm others are compared with: the first placebo or no-treatment arm, else the first."""
        return next((a for a in self.arms if a.kind != "cells"), self.arms[0])


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
        for arm in arms:
            arm = dict(arm) if isinstance(arm, dict) else arm
            if isinstance(arm, dict):
                for key in ("administration", "product"):
                    if isinstance(arm.get(key), dict) and isinstance(data.get(key), dict):
                        base = dict(data[key])
                        if key == "administration" and "dose" in arm[key]:
                            base.pop("dose", None)
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
        per_kg = self.dose_cells_per_kg
        if per_kg > MAX_DOSE_CELLS_PER_KG:
            raise _FieldError(
                "administration.dose",
                f"{per_kg:.3g} cells/kg is above the largest accepted dose "
                f"({MAX_DOSE_CELLS_PER_KG:g} cells/kg)",
            )
        if admin.route != "intravenous" and admin.into is None:
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
        last_start = (admin.repeat.count - 1) * admin.repeat.interval_h
        if last_start > self.simulation.duration_h:
            raise _FieldError(
                "administration.repeat",
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
        info = conditions.get(self.condition.name)
        allowed = [e.name for e in info.endpoints]
        if trial.primary.endpoint not in allowed:
            raise _FieldError(
                "trial.primary.endpoint",
                f"{trial.primary.endpoint!r} is not an endpoint of {info.name}; "
                f"allowed: {', '.join(allowed)}",
            )
        endpoint = info.endpoint(trial.primary.endpoint)
        change = trial.primary.responder_change
        if change is not None and change * endpoint.direction <= 0:
            better = "an increase" if endpoint.direction > 0 else "a decrease"
            sign = "positive" if endpoint.direction > 0 else "negative"
            raise _FieldError(
                "trial.primary.responder_change",
                f"improvement of {endpoint.name} is {better}: give a {sign} change",
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
        update: dict[str, Any] = {"trial": None}
        if isinstance(arm.administration, Administration):
            update["administration"] = arm.administration
        if arm.product is not None:
            update["product"] = arm.product
        variant = self.model_copy(update=update)
        type(self)._cross_checks(variant)
        return variant

    @property
    def dose_cells_per_kg(self) -> float:
        """Dose per administration, cells per kg body weight."""
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
        """Organ receiving an intra-arterial or local dose (``into``, else the condition's site)."""
        admin = self.administration
        if admin.route == "intravenous":
            return None
        return admin.into or (self.condition.site if self.condition else None)

    def warnings(self) -> list[str]:
        """Inputs that are valid but have no effect, one line each."""
        notes = []
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
        return notes

    def hash(self) -> str:
        """A SHA-256 of the validated content: equal for scenarios that mean the same thing."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
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
        raise _first_error(exc, data) from None
    except _FieldError as exc:
        raise ScenarioError(exc.field, exc.message) from None


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError("scenario", f"file not found: {path}")
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


def _refuse_duplicate_keys(node, path: str = "") -> None:
    """A key given twice in one mapping is an error (YAML would silently keep the last value)."""
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
            where = f"{path}.{name}" if path else name
            if name in seen:
                raise ScenarioError(
                    where, f"given twice (line {key.start_mark.line + 1}); give each field once"
                )
            seen.add(name)
            _refuse_duplicate_keys(value, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, f"{path}.{i}")


_ALIASES = {
    "body_weight_kg": "body_weight",
    "age_years": "age",
    "diameter_um": "diameter",
    "duration_h": "duration",
    "interval_h": "interval",
    "outputs_h": "outputs",
    "dose_cells_per_kg": "dose",
    "dose_cells": "dose",
}


def _first_error(
    exc: pydantic.ValidationError, data: dict, root: type[BaseModel] | None = None
) -> ScenarioError:
    """Turn pydantic's report into one line naming the field path and what is allowed.

    A ``_FieldError`` whose field starts with ``.`` is relative to where pydantic met it.
    """
    error = exc.errors()[0]
    location = [str(_ALIASES.get(str(p), p)) for p in error["loc"]]
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _FieldError):
        if ctx_error.field.startswith("."):
            own = bool(location) and ctx_error.field.startswith(f".{location[-1]}")
            parent = location[:-1] if own else location
            return ScenarioError(".".join(parent) + ctx_error.field, ctx_error.message)
        return ScenarioError(ctx_error.field, ctx_error.message)
    kind = error["type"]
    message = error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        section = _section_model(location[:-1], root or Scenario)
        allowed = sorted({_ALIASES.get(name, f.alias or name) for name, f in section.model_fields.items()})
        message = f"unknown field; allowed here: {', '.join(allowed)}"
    elif kind == "missing":
        message = "is required"
    elif kind == "literal_error":
        message = f"{error['input']!r} is not allowed; {message[0].lower()}{message[1:]}"
    field = ".".join(location) or "scenario"
    return ScenarioError(field, message)


def _section_model(path: list[str], root: type[BaseModel]) -> type[BaseModel]:
    model: type[BaseModel] = root
    for part in path:
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            break
        annotation = field.annotation
        candidates = getattr(annotation, "__args__", (annotation,))
        sub = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if sub is None:
            break
        model = sub
    return model
