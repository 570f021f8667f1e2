"""Scenario section of a cost-effectiveness analysis of a virtual trial (``economics:``).

Amounts are in ``currency`` (a three-letter code such as GBP); bundled cost rows of that currency are
the defaults, and ``costs`` replaces any of them. Discount rates are per year, as fractions or with
a percent sign (``3.5%``); unset, they and the thresholds come from the currency's reference-case rows
(``data/economics.csv``).
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from infusim.scenario_sections import _FieldError, _Section, share_per_year

#: Largest discount rate accepted per year (an input guard: reference cases use 1.5-5%).
MAX_DISCOUNT = 0.2


class Costs(_Section):
    """Unit costs that replace the bundled rows, in the section's currency (each optional)."""

    product_per_dose: float | None = Field(None, ge=0)
    product_per_million_cells: float | None = Field(None, ge=0)
    delivery_per_dose: float | None = Field(None, ge=0)
    harvest: float | None = Field(None, ge=0)
    conditioning: float | None = Field(None, ge=0)
    #: Cost of one serious (grade 3-5) episode of an adverse event, by event name.
    events: dict[str, float] = Field(default_factory=dict)
    #: Cost per year alive in an arm, by arm name (ongoing care such as a control arm's drugs).
    annual: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_product_price(self) -> Costs:
        if self.product_per_dose is not None and self.product_per_million_cells is not None:
            raise _FieldError(
                "economics.costs.product_per_dose",
                "give product_per_dose or product_per_million_cells, not both",
            )
        for event, cost in self.events.items():
            if cost < 0:
                raise _FieldError(
                    f"economics.costs.events.{event}", f"{cost:g} is negative; allowed: 0 or more"
                )
        return self


class Economics(_Section):
    """Cost-effectiveness of each cells arm against the trial's control, within the trial's horizon."""

    currency: str = "GBP"
    discount: float | None = Field(None, ge=0, le=MAX_DISCOUNT)
    discount_qalys: float | None = Field(None, ge=0, le=MAX_DISCOUNT)
    thresholds: tuple[float, ...] | None = Field(None, min_length=1, max_length=10)
    endpoint: str | None = None
    costs: Costs = Costs()
    draws: int = Field(2000, ge=200, le=100_000)
    #: Replicate trials whose truth (potencies, fitted K, the trial's own effect) is drawn from the
    #: condition's posterior, as for assurance: the intervals then carry how uncertain the treatment
    #: effect is. 0: the effect at its posterior median, uncertain through the trial's sample only.
    evidence_draws: int = Field(100, ge=0, le=10_000)
    #: Patients in each of those replicate trials (at most the trial's own).
    evidence_patients: int = Field(1000, ge=2, le=100_000)

    _rates = field_validator("discount", "discount_qalys", mode="before")(lambda value: share_per_year(value))

    @field_validator("currency")
    @classmethod
    def _code(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{3}", value):
            raise ValueError(f"{value!r} is not a three-letter currency code (e.g. GBP, USD, EUR)")
        return value.upper()

    @field_validator("thresholds")
    @classmethod
    def _positive(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None and any(v <= 0 for v in value):
            raise ValueError("willingness-to-pay thresholds per QALY must be positive")
        return value
