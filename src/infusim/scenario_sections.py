"""Scenario sections: patient, condition, product, administration, label and simulation.

Each section is a pydantic model that parses quantities with units into floats in infusim's internal
units (hours, kg, cells, micrometres) and names the field and what is allowed when a value is wrong.
``scenario.Scenario`` assembles them; ``scenario_trial`` holds the virtual-trial sections.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from infusim import units
from infusim.compartments import (
    ARTERIAL_SITES,
    CSF_ROUTES,
    DEPOT_ROUTES,
    ORGANS,
    SITES,
    Carrier,
    CellType,
    Donor,
    Isotope,
    Route,
    Sex,
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

    convert.unit = unit  # read by scenario_spec.to_spec to write the value back with its unit
    return pydantic.BeforeValidator(convert)


def share(value: Any, what: str = "share", text: str | None = None) -> Any:
    """``'10%'`` or ``'0.1'`` -> 0.1; numbers pass through (``text``: the string to read, when a
    caller has stripped a suffix from ``value``)."""
    if not isinstance(value, str):
        return value
    text = (value if text is None else text).strip()
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a {what}; write e.g. 0.1 or '10%'") from None


def share_per_year(value: Any) -> Any:
    """``'3.5%'``, ``'10% per year'`` or ``'0.1/year'`` -> a fraction per year; numbers pass through."""
    if not isinstance(value, str):
        return value
    return share(value, "share per year", value.strip().removesuffix("/year").removesuffix("per year"))


def _hours():
    def convert(value: Any, info: pydantic.ValidationInfo) -> float:
        try:
            return units.hours(value, info.field_name or "value")
        except ScenarioError as exc:
            raise ValueError(exc.message) from None

    convert.unit = "h"
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
    #: Made and characterised under a regulator's oversight (false: an uncharacterised clinic product,
    #: with a higher risk of ectopic growth; safety.py).
    regulated: StrictBool = True
    #: Frozen in DMSO and thawed at the bedside (false: fresh): thawed HSC and marrow grafts cause
    #: infusion reactions (safety.py, Otrock 2017).
    cryopreserved: StrictBool = False
    #: What thawed MSC are diluted in for the drip: their viability falls in the bag at the carrier's
    #: rate (``bag_viability_loss_rate``, Nguyen 2024) from thaw to the last drop. None: not modelled.
    carrier: Carrier | None = None
    #: Time from thaw to the start of the infusion (cells wait in the carrier).
    hold_h: Hours = Field(0.0, alias="hold")

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

    @field_validator("hold_h")
    @classmethod
    def _hold_range(cls, value: float) -> float:
        if not 0.0 <= value <= 24.0:
            raise ValueError(f"{value:g} h is not a hold before infusion (allowed 0-24 h)")
        return value

    @model_validator(mode="after")
    def _carrier_needs_thawed_msc(self) -> Product:
        if self.carrier is None:
            if self.hold_h > 0:
                raise _FieldError("product.hold", "needs product.carrier (crystalloid or albumin)")
            return self
        if self.cell_type != "msc" or not self.cryopreserved:
            raise _FieldError(
                "product.carrier",
                "in-bag viability loss was measured for thawed MSC only (Nguyen 2024): "
                "needs cell_type msc and cryopreserved: true",
            )
        return self

    @model_validator(mode="after")
    def _mismatches_need_allogeneic(self) -> Product:
        if self.donor == "autologous" and self.hla_mismatches:
            raise _FieldError(
                "product.hla_mismatches", "applies to allogeneic cells only (donor: allogeneic)"
            )
        return self


def _dose_fields(data: dict, field: str) -> dict:
    """``dose: '2e6 cells/kg'`` -> ``dose_cells_per_kg``, ``dose: '1.4e8 cells'`` -> ``dose_cells``."""
    data = dict(data)
    text = data.pop("dose")
    try:
        quantity = units.parse(text, "dose") if not isinstance(text, bool) else None
    except ScenarioError as exc:
        raise _FieldError(field, exc.message) from None
    hint = "a cell count (e.g. '1.4e8 cells') or cells per body weight (e.g. '2e6 cells/kg')"
    if quantity is None:
        raise _FieldError(field, f"{text!r} is not {hint}")
    if quantity.check("[cell_count] / [mass]"):
        data["dose_cells_per_kg"] = float(quantity.to("cell/kg").magnitude)
    elif quantity.check("[cell_count]"):
        data["dose_cells"] = float(quantity.to("cell").magnitude)
    else:
        raise _FieldError(field, f"{text} is not {hint}")
    return data


def _positive_dose(cls, value: float | None) -> float | None:
    """A dose field's validator: positive or not given."""
    if value is not None and not value > 0:
        raise ValueError(f"dose must be positive, got {value:g}")
    return value


class ScheduledDose(_Section):
    """One administration of a schedule: its start, counted from the first administration, and its
    own dose (default: ``administration.dose``)."""

    at_h: Hours = Field(alias="at")
    dose_cells_per_kg: float | None = None
    dose_cells: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        if isinstance(data, dict) and "dose" in data:
            return _dose_fields(data, ".dose")
        return data

    @field_validator("at_h")
    @classmethod
    def _not_before_first(cls, value: float) -> float:
        if value < 0:
            raise ValueError("must be 0 or later (times count from the first administration)")
        return value

    _positive_dose = field_validator("dose_cells_per_kg", "dose_cells")(_positive_dose)


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
    #: Administrations at given times, each with its own dose if it says one (instead of ``repeat``).
    schedule: tuple[ScheduledDose, ...] = Field((), max_length=100)
    conditioning: Literal["none", "cy_atg", "beam_atg"] = "none"
    #: Heparin given with the cells, international units (0: none); it lowers the risk of lung
    #: obstruction by clotting cells (safety.py).
    heparin_iu: float = Field(0.0, alias="heparin")

    @field_validator("heparin_iu", mode="before")
    @classmethod
    def _heparin(cls, value: Any) -> float:
        text = str(value).strip()
        number = text.removesuffix("IU").strip() if isinstance(value, str) else text
        try:
            amount = float(number)
        except ValueError:
            raise ValueError(f"{value!r} is not an amount of heparin (write e.g. '5000 IU' or 0)") from None
        if isinstance(value, bool) or amount < 0:
            raise ValueError(f"{value!r} is negative or not an amount; allowed: 0 or more IU")
        return amount

    @model_validator(mode="before")
    @classmethod
    def _split_dose(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "dose" not in data:
            if isinstance(data, dict):
                raise _FieldError("administration.dose", "is required (e.g. '2e6 cells/kg' or '1.4e8 cells')")
            return data
        return _dose_fields(data, "administration.dose")

    _positive_dose = field_validator("dose_cells_per_kg", "dose_cells")(_positive_dose)

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
        if self.route in CSF_ROUTES and self.into is not None:
            raise _FieldError(
                "administration.into",
                f"{self.into!r} is not used: an {self.route} dose enters the cerebrospinal fluid; remove it",
            )
        if self.route in DEPOT_ROUTES and "duration_h" in self.model_fields_set and self.duration_h > 0:
            raise _FieldError(
                "administration.duration",
                f"applies to intravenous and intra_arterial infusions, not {self.route} injection",
            )
        if self.repeat.count > 1 and self.repeat.interval_h <= self.effective_duration_h:
            raise _FieldError("administration.repeat.interval", "must be longer than the infusion duration")
        if self.schedule:
            self._check_schedule()
        return self

    def _check_schedule(self) -> None:
        if "repeat" in self.model_fields_set:
            raise _FieldError("administration.schedule", "give repeat or schedule, not both")
        if self.schedule[0].at_h != 0:
            raise _FieldError(
                "administration.schedule.0.at",
                f"the first administration starts the simulation: give 0 day, got "
                f"{self.schedule[0].at_h:g} h",
            )
        per_kg = self.dose_cells_per_kg is not None
        for i, (before, entry) in enumerate(zip(self.schedule, self.schedule[1:], strict=False), start=1):
            if entry.at_h - before.at_h <= self.effective_duration_h:
                raise _FieldError(
                    f"administration.schedule.{i}.at",
                    f"{entry.at_h:g} h must be later than the previous start ({before.at_h:g} h) plus the "
                    f"infusion duration ({self.effective_duration_h:g} h); list the administrations in order",
                )
        for i, entry in enumerate(self.schedule):
            own_per_kg = entry.dose_cells_per_kg is not None
            if (own_per_kg or entry.dose_cells is not None) and own_per_kg != per_kg:
                unit = "cells/kg" if per_kg else "cells"
                raise _FieldError(
                    f"administration.schedule.{i}.dose", f"give it in {unit}, like administration.dose"
                )

    @property
    def starts_h(self) -> tuple[float, ...]:
        """Start of every administration (h after the first): the schedule's times, else ``repeat``."""
        if self.schedule:
            return tuple(entry.at_h for entry in self.schedule)
        return tuple(i * self.repeat.interval_h for i in range(self.repeat.count))

    @property
    def dose_scales(self) -> tuple[float, ...]:
        """Each administration's dose as a multiple of ``dose`` (1 unless the schedule gives its own)."""
        if not self.schedule:
            return (1.0,) * self.repeat.count
        reference = self.dose_cells_per_kg if self.dose_cells_per_kg is not None else self.dose_cells
        own = [
            e.dose_cells_per_kg if e.dose_cells_per_kg is not None else e.dose_cells for e in self.schedule
        ]
        return tuple(1.0 if dose is None else dose / reference for dose in own)

    @property
    def count(self) -> int:
        """Number of administrations."""
        return len(self.starts_h)

    @property
    def effective_duration_h(self) -> float:
        """Infusion time (h); a local, intrathecal or intraventricular injection is a bolus."""
        return 0.0 if self.route in DEPOT_ROUTES else self.duration_h


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
