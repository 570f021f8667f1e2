"""Scenario sections of a virtual trial: arms (cells, placebo or no treatment, with overrides), the
primary comparison and the trial itself."""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

import pydantic
from pydantic import BaseModel, Field, StrictBool, field_validator, model_validator

from infusim.scenario_errors import _first_error
from infusim.scenario_sections import (
    Administration,
    Hours,
    Product,
    _FieldError,
    _Section,
    share,
    share_per_year,
)


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


class Subgroup(_Section):
    """A subgroup analysis: patients below ``cut`` against those at or above it, ``cut`` in the
    covariate's unit (``age_years``: years; ``body_weight_kg``: kg; ``baseline``: the entry value of the
    primary endpoint, in its unit, as measured at the day-0 visit)."""

    covariate: Literal["age_years", "body_weight_kg", "baseline"]
    cut: float


class Lots(_Section):
    """Manufacturing lots (or donors) of an allogeneic product that a trial's patients share: each
    patient gets one of ``count`` lots at random, and each lot's potency is its own mean-one
    log-normal factor with coefficient of variation ``potency_cv`` (a design assumption: donor and
    lot differences in MSC function are documented, none as an in-vivo CV), drawn anew per
    replicate trial. It multiplies the patient's own potency factor."""

    count: int = Field(ge=1, le=1000)
    potency_cv: float = Field(ge=0.0, le=3.0)


class Eligibility(_Section):
    """Inclusion ranges of a trial: its patients are drawn from the condition's population within them
    (``age`` in years; ``baseline``: the entry value of the condition's primary endpoint, in its
    unit), in place of the population rows' bounds."""

    age_years: tuple[float, float] | None = Field(None, alias="age")
    baseline: tuple[float, float] | None = None

    @field_validator("age_years", "baseline")
    @classmethod
    def _range(cls, value: tuple[float, float] | None, info: pydantic.ValidationInfo):
        if value is None:
            return value
        low, high = value
        if not low < high:
            raise ValueError(f"give [low, high] with low below high, got [{low:g}, {high:g}]")
        if info.field_name == "age_years" and not (0 <= low and high <= 120):
            raise ValueError(f"[{low:g}, {high:g}] is outside 0-120 years")
        return value


class Primary(_Section):
    """The primary comparison: endpoint, visit, and the change (endpoint units) defining a responder."""

    endpoint: str
    at_h: Hours = Field(alias="at")
    responder_change: float | None = None


class Secondary(_Section):
    """A key secondary comparison (endpoint and visit), tested after the primary in a fixed sequence."""

    endpoint: str
    at_h: Hours = Field(alias="at")


#: How a trial compares continuous endpoints (``Trial.analysis``).
Analysis = Literal["change", "ancova", "mmrm"]
ANALYSES: tuple[str, ...] = get_args(Analysis)

#: Most visits (day 0 included) an ``mmrm`` analysis takes: its partial sums grow as visits cubed.
MMRM_VISITS = 25


class Trial(_Section):
    """A virtual randomised trial (see README, "Virtual trials")."""

    patients: int = Field(ge=2, le=10_000_000)
    arms: tuple[Arm, ...] = Field(min_length=1, max_length=20)
    visits_h: tuple[Hours, ...] = Field(alias="visits", min_length=1, max_length=400)
    primary: Primary
    replicates: int = Field(1, ge=1, le=100_000)
    #: Share of patients lost to follow-up per year (withdrawal at a constant hazard; 0-0.9): a design
    #: assumption of the trial, with no default but none.
    dropout: float = Field(0.0, ge=0.0, le=0.9)
    #: Missing at random: the dropout hazard times this ratio per measurement SD by which the primary
    #: endpoint has worsened since baseline at the patient's last visit (below 1 for improvement). 1:
    #: completely at random. A design assumption (a sensitivity analysis), not a measured value.
    dropout_hazard_ratio: float = Field(1.0, ge=0.1, le=20.0)
    #: What the hazard ratio acts on: ``at_random``, the worsening measured at the last visit (missing
    #: at random); ``not_at_random``, the true worsening at the next visit, the value the dropout then
    #: leaves unmeasured (a simulated departure from MAR; with ``mmrm`` the summary's tipping point asks
    #: how large a departure would overturn the result).
    dropout_missing: Literal["at_random", "not_at_random"] = "at_random"
    #: Chance that a patient misses each administration after the first (cells or sham), independently:
    #: non-adherence, a product lot that fails release, a visit missed. Patients stay in their arm
    #: (intention to treat). A design assumption, like ``dropout``.
    missed_doses: float = Field(0.0, ge=0.0, le=0.9)
    #: Write each patient's exposure to live cells up to each visit (``exposure.to_visits``: columns
    #: target_cell_days_per_g and live_cell_days_per_kg); off by default: it multiplies the run time
    #: by about 1.8 (benchmarks/bench_exposure.py).
    exposure: StrictBool = False
    #: How a continuous endpoint is compared with control at each visit: ``change``, the change from
    #: the day-0 visit by Welch's t-test; ``ancova``, the same change adjusted for the day-0 value
    #: (analysis of covariance, the two arms compared, a common slope): the analysis regulators
    #: expect when the baseline predicts the outcome (EMA 2015 guideline on baseline covariates);
    #: ``mmrm``, the change estimated by maximum likelihood from every visit a patient was seen at (a
    #: mixed model for repeated measures: valid when dropout is missing at random).
    analysis: Analysis = "change"
    #: Adjustment of the primary comparisons of several treated arms against control for multiple
    #: testing (family-wise error at 5%): ``bonferroni``, ``holm`` or ``hochberg`` (statsmodels'
    #: multipletests); power then counts an arm's success only where its adjusted p is below 0.05.
    multiplicity: Literal["none", "bonferroni", "holm", "hochberg"] = "none"
    #: Key secondary comparisons, tested in this order after the primary, each only if every one before
    #: it succeeded (fixed sequence: the family-wise error stays at the primary's level).
    key_secondary: tuple[Secondary, ...] = Field((), max_length=10)
    #: Lots of an allogeneic product that patients share (their potencies differ); none: every patient's
    #: cells are alike but for the between-patient potency CV.
    lots: Lots | None = None
    #: Inclusion ranges (an enriched trial); none: the condition's trial population as tabulated.
    eligibility: Eligibility | None = None
    #: Subgroup analyses of the primary comparison (effect below and at or above each cut, interaction).
    subgroups: tuple[Subgroup, ...] = Field((), max_length=10)

    _dropout = field_validator("dropout", mode="before")(lambda value: share_per_year(value))
    _missed = field_validator("missed_doses", mode="before")(lambda value: share(value))

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
        if self.analysis == "mmrm" and len(visits) > MMRM_VISITS:
            raise _FieldError(
                "trial.analysis",
                f"mmrm needs at most {MMRM_VISITS} visits with day 0 (it keeps each visit's cross-products "
                f"of all earlier ones), got {len(visits)}; use change or ancova",
            )
        times = [("trial.primary.at", self.primary.at_h)]
        times += [(f"trial.key_secondary[{i}].at", s.at_h) for i, s in enumerate(self.key_secondary)]
        for where, at in times:
            if at not in visits:
                raise _FieldError(
                    where,
                    f"{at / 24:g} day is not a visit; allowed: "
                    + ", ".join(f"{v / 24:g} day" for v in visits),
                )
        return self

    @property
    def control(self) -> Arm:
        """The arm others are compared with: the first placebo or no-treatment arm, else the first."""
        return next((a for a in self.arms if a.kind != "cells"), self.arms[0])
