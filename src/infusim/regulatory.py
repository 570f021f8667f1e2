"""Where a use is allowed: approved cell products and the frameworks that govern a product, by
jurisdiction, and the status of a scenario's use in each (docs/regulatory.md).

The tables (``data/regulatory_products.csv``, ``data/regulatory_frameworks.csv``) hold approved and
conditionally approved products (withdrawals included) and the legal routes, each row with its
source and provenance, checked on ``CHECKED`` (the newest source found is from ``NEWEST_SOURCE``).
A scenario's use in a jurisdiction is:

* ``approved`` / ``conditional``: a product of the same cell type, donor, tissue source and route is
  approved (or conditionally approved) there for the scenario's condition;
* ``investigational``: no such approval; a product for the condition may exist with another cell
  type, donor, source or route (listed), but this use would need a trial or an approval;
* a withdrawn or expired approval is reported as such, not as approved.

The governing framework follows each jurisdiction's own criteria as the tables summarise them
(culture-expanded MSC are more than minimally manipulated everywhere; marrow cells given to another
organ are not a homologous use). This is orientation for research, not legal or medical advice.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

from infusim.errors import ScenarioError
from infusim.scenario import Scenario

CHECKED = "2026-12-02"
NEWEST_SOURCE = "2026-03-06"
JURISDICTIONS = {
    "US": "United States",
    "EU": "European Union",
    "UK": "United Kingdom",
    "JP": "Japan",
    "KR": "South Korea",
    "IN": "India",
    "CA": "Canada",
    "AU": "Australia",
    "CN": "China",
    "NZ": "New Zealand",
}
NOTE = "Orientation for research from cited public sources, not legal or medical advice."


@dataclass(frozen=True)
class Product:
    """One decision on one product in one jurisdiction (a row of the products table)."""

    jurisdiction: str
    name: str
    cell_type: str
    tissue_source: str
    donor: str
    route: str
    indication: str
    condition: str
    decision: str
    date: str
    status: str
    framework: str
    source_url: str
    provenance: str
    min_age_years: float | None = None
    max_age_years: float | None = None

    @property
    def active(self) -> bool:
        return self.status not in ("withdrawn", "expired", "suspended")

    def covers_age(self, age_years: float | None) -> bool:
        """Whether the label's age range holds a patient of this age (an unknown age: True)."""
        if age_years is None:
            return True
        return (self.min_age_years is None or age_years >= self.min_age_years) and (
            self.max_age_years is None or age_years <= self.max_age_years
        )

    def describe(self) -> str:
        state = self.decision + (f", {self.status}" if self.status else "")
        route = self.route or "route not read"
        return f"{self.name} ({self.cell_type}, {self.donor}, {route}; {state} {self.date})"


@dataclass(frozen=True)
class Framework:
    jurisdiction: str
    name: str
    applies_when: str
    summary: str
    law: str
    source_url: str


@dataclass(frozen=True)
class Status:
    """A scenario's use in one jurisdiction."""

    jurisdiction: str
    status: str
    matching: tuple[Product, ...]
    related: tuple[Product, ...]
    framework: Framework | None
    reason: str

    def to_dict(self) -> dict:
        return {
            "jurisdiction": self.jurisdiction,
            "name": JURISDICTIONS[self.jurisdiction],
            "status": self.status,
            "reason": self.reason,
            "approved_products": [p.describe() for p in self.matching],
            "related_products": [p.describe() for p in self.related],
            "framework": self.framework.name if self.framework else None,
            "framework_summary": self.framework.summary if self.framework else None,
            "sources": sorted(
                {p.source_url for p in (*self.matching, *self.related)} | self._framework_source()
            ),
        }

    def _framework_source(self) -> set[str]:
        return {self.framework.source_url} if self.framework and self.framework.source_url else set()


def _read(name: str) -> list[dict]:
    path = resources.files("infusim") / "data" / name
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _source_word(text: str) -> str:
    """The products table's tissue wording in infusim's vocabulary."""
    text = text.lower()
    for needle, word in (
        ("cord blood", "cord_blood"),
        ("umbilical cord", "umbilical_cord"),
        ("bone marrow", "bone_marrow"),
        ("adipose", "adipose"),
        ("peripheral blood", "peripheral_blood"),
    ):
        if needle in text:
            return word
    return "other"


@cache
def products() -> tuple[Product, ...]:
    """Every row of the products table."""
    return tuple(
        Product(
            r["jurisdiction"],
            r["product"],
            r["cell_type"],
            _source_word(r["tissue_source"]),
            r["donor"],
            r["route"],
            r["indication"],
            r["condition_hint"],
            r["decision"],
            r["date"],
            r["status"],
            r["framework"],
            r["source_url"],
            r["provenance"],
            float(r["min_age_years"]) if r.get("min_age_years") else None,
            float(r["max_age_years"]) if r.get("max_age_years") else None,
        )
        for r in _read("regulatory_products.csv")
    )


@cache
def frameworks() -> tuple[Framework, ...]:
    """Every row of the frameworks table."""
    return tuple(
        Framework(
            r["jurisdiction"],
            r["framework"],
            r["applies_when"],
            r["summary"],
            r["law_or_guidance"],
            r["source_url"],
        )
        for r in _read("regulatory_frameworks.csv")
    )


def check_jurisdiction(code: str) -> str:
    """``code`` upper-cased, or a one-line error naming the allowed codes."""
    upper = code.strip().upper()
    if upper not in JURISDICTIONS:
        raise ScenarioError(
            "--jurisdiction", f"unknown jurisdiction {code!r}; allowed: {', '.join(JURISDICTIONS)}"
        )
    return upper


def status(scenario: Scenario, jurisdiction: str) -> Status:
    """The scenario's use in ``jurisdiction`` (see the module docstring)."""
    jurisdiction = check_jurisdiction(jurisdiction)
    product = scenario.product
    condition = scenario.condition.name if scenario.condition and scenario.condition.name else ""
    here = [p for p in products() if p.jurisdiction == jurisdiction]
    for_condition = [p for p in here if condition and p.condition == condition]
    same_kind = [
        p
        for p in here
        if p.cell_type == product.cell_type
        and p.donor == product.donor
        and p.route == scenario.administration.route
        and (p.tissue_source == product.tissue_source or p.tissue_source == "other")
    ]
    age = scenario.patient.age_years
    labelled = [p for p in same_kind if p in for_condition]
    matching = [p for p in labelled if p.covers_age(age)]
    other_ages = [p for p in labelled if p not in matching and p.active]
    elsewhere = [p for p in same_kind if p not in for_condition and p.active]
    related = [p for p in for_condition if p not in matching]
    active = [p for p in matching if p.active]
    framework = governing_framework(scenario, jurisdiction)
    if active:
        best = "approved" if any(p.decision == "approved" for p in active) else "conditional"
        reason = (
            f"{best} for {condition} with a product of the same kind ("
            + "; ".join(f"{p.name}: {p.indication}" for p in active)
            + "): the label's line of therapy and population are the product's, check them"
            + (
                "; the scenario gives no age and the label has an age range"
                if age is None and any(p.min_age_years or p.max_age_years for p in active)
                else ""
            )
        )
    elif other_ages:
        best = "investigational"
        reason = (
            f"approved for {condition} only in another age group ("
            + "; ".join(f"{p.name}: {p.indication}" for p in other_ages)
            + f"): a patient of {age:g} years is outside the label (off-label use)"
        )
    elif matching:
        best = "withdrawn"
        names = ", ".join(p.name for p in matching)
        reason = f"a product of the same kind was approved and is no longer ({names})"
    else:
        best = "investigational"
        what = f"for {condition}" if condition else "without a named condition"
        reason = (
            f"no approved {product.donor} {product.cell_type} product by the {scenario.administration.route} "
            f"route {what} in this table"
            + (f"; other products for the condition: {', '.join(p.name for p in related)}" if related else "")
            + (
                "; a product of the same kind is approved for another indication, so this use would be "
                "outside its label: " + ", ".join(f"{p.name} ({p.indication})" for p in elsewhere)
                if elsewhere
                else ""
            )
        )
    return Status(jurisdiction, best, tuple(matching), tuple(related), framework, reason)


def governing_framework(scenario: Scenario, jurisdiction: str) -> Framework | None:
    """The legal route a product like the scenario's would take in ``jurisdiction``."""
    product, admin = scenario.product, scenario.administration
    expanded = product.cell_type == "msc"  # culture-expanded: more than minimal manipulation
    homologous = product.cell_type == "hsc" and (admin.conditioning != "none" or scenario.condition is None)
    minimal = not expanded and homologous
    wanted = {
        "US": (
            "Cord blood (HPC-C) licensure requirement"
            if minimal and product.tissue_source == "cord_blood" and product.donor == "allogeneic"
            else "Section 361 HCT/P (no premarket approval)"
            if minimal
            else "Section 351 biologic: IND then BLA"
        ),
        "EU": "ATMP Regulation: centralised marketing authorisation",
        "UK": "GB ATMP marketing authorisation (post-Brexit, MHRA)",
        "JP": "PMD Act conditional and time-limited approval",
        "IN": "New Drugs and Clinical Trials Rules 2019: cell and stem cell products as new drugs",
        "CA": (
            "Safety of Human Cells, Tissues and Organs for Transplantation Regulations (CTO)"
            if minimal and product.donor == "allogeneic"
            else "Food and Drug Regulations: cell therapy as a biologic drug (NDS then NOC)"
        ),
        "AU": "TGA Biologicals Regulatory Framework",
        "CN": "NMPA drug route (stem cell products as drugs)",
    }.get(jurisdiction)
    if jurisdiction in ("EU", "UK") and minimal:
        return None  # minimally manipulated cells for homologous use are not ATMPs (not in the table)
    for framework in frameworks():
        if framework.jurisdiction == jurisdiction and (wanted is None or framework.name == wanted):
            return framework
    return None


def statuses(scenario: Scenario, jurisdictions: list[str] | None = None) -> list[Status]:
    """The scenario's use in each jurisdiction (default: all in ``JURISDICTIONS``)."""
    return [status(scenario, j) for j in (jurisdictions or list(JURISDICTIONS))]


def note(scenario: Scenario) -> dict:
    """The summary.json section: status per jurisdiction, when the tables were checked, the caveat."""
    return {
        "checked": CHECKED,
        "newest_source": NEWEST_SOURCE,
        "note": NOTE,
        "by_jurisdiction": {
            s.jurisdiction: {"status": s.status, "reason": s.reason} for s in statuses(scenario)
        },
    }
