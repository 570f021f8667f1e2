"""Controlled clinical evidence: one row per treated arm against its control, at one visit.

The table (``data/evidence.csv``, or a user's file of the same columns) holds each trial's
treated-minus-control estimate with its 95% CI, design, comparator, product, route, dose, number of
doses, follow-up and size. ``infusim.synthesis`` fits the condition's potencies to all of it; every
row is turned into the trial's own scenario (``scenario_for``) so the cell model sees its product,
route, dose and schedule.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from infusim import conditions
from infusim.compartments import DEPOT_ROUTES, CellType, Donor, Route, TissueSource
from infusim.errors import DataError, InfusimError
from infusim.scenario import Scenario, from_dict

#: Study designs, and whether the comparison is blinded (``rct_blinded`` only).
DESIGNS = ("rct_blinded", "rct_open", "nonrandomised_controlled", "single_arm_external", "meta_analysis")
#: What the treated arm is compared with. ``active_addon``: both arms get an active therapy.
COMPARATORS = ("placebo", "sham", "usual_care", "active_addon", "external")
PROVENANCE = ("read", "derived", "memory", "assumption")
DOSE_UNITS = ("cells", "cells/kg")
COLUMNS = (
    "study",
    "condition",
    "endpoint",
    "arm",
    "time_d",
    "estimate",
    "ci_low",
    "ci_high",
    "design",
    "comparator",
    "cell_type",
    "tissue_source",
    "donor",
    "route",
    "dose",
    "dose_unit",
    "doses",
    "interval_d",
    "onset_d",
    "n_treated",
    "n_control",
    "baseline",
    "source_key",
    "citation",
    "doi",
    "provenance",
    "note",
)
#: Optional columns: the conditioning regimen of a transplant arm (default none), and the control
#: arm's own change from baseline in an add-on trial (endpoint unit; both arms get an active therapy).
OPTIONAL = ("conditioning", "control_change")
#: Body weight (kg) used to express a dose given in cells as cells/kg when the trial reports none.
ADULT_WEIGHT_KG = 70.0
_ALLOWED = {
    "design": DESIGNS,
    "comparator": COMPARATORS,
    "provenance": PROVENANCE,
    "dose_unit": DOSE_UNITS,
    "cell_type": CellType.__args__,
    "tissue_source": TissueSource.__args__,
    "donor": Donor.__args__,
    "route": Route.__args__,
    "conditioning": conditions.CONDITIONING,
}
Z95 = 1.959963984540054


@dataclass(frozen=True)
class EvidenceRow:
    """One treated arm against its control at one visit (estimate and CI in the endpoint's unit)."""

    study: str
    condition: str
    endpoint: str
    arm: str
    time_d: float
    estimate: float
    ci_low: float
    ci_high: float
    design: str
    comparator: str
    cell_type: str
    tissue_source: str
    donor: str
    route: str
    dose: float
    dose_unit: str
    doses: int
    interval_d: float
    onset_d: float
    n_treated: float
    n_control: float
    baseline: float
    source_key: str
    citation: str
    provenance: str
    note: str
    conditioning: str = "none"
    control_change: float = math.nan
    line: int = 0

    @property
    def se(self) -> float:
        """Standard error of the estimate from its 95% CI (normal approximation)."""
        return (self.ci_high - self.ci_low) / (2 * Z95)

    @property
    def key(self) -> str:
        """``study/arm/endpoint@day``: unique within a table."""
        return f"{self.study}/{self.arm}/{self.endpoint}@{self.time_d:g}"


def bundled_path() -> Path:
    """The evidence table shipped with infusim."""
    return Path(str(resources.files("infusim") / "data" / "evidence.csv"))


@cache
def studied_doses(condition: str) -> int:
    """The most administrations any bundled trial of ``condition`` with an estimate gave (0: none)."""
    return max((row.doses for row in load() if row.condition == condition), default=0)


@cache
def studied_products(condition: str) -> tuple[conditions.Evidence, ...]:
    """Product, route, conditioning and dose range (cells/kg; a count at 70 kg) of every bundled trial
    of ``condition`` with an estimate: what ``conditions.yaml`` lists, kept from drifting apart."""
    ranges: dict[tuple[str, str, str], list[float]] = {}
    for row in load():
        if row.condition != condition:
            continue
        per_kg = row.dose if row.dose_unit == "cells/kg" else row.dose / ADULT_WEIGHT_KG
        low_high = ranges.setdefault((row.cell_type, row.route, row.conditioning), [per_kg, per_kg])
        low_high[0], low_high[1] = min(low_high[0], per_kg), max(low_high[1], per_kg)
    return tuple(
        conditions.Evidence(cell, route, low, high, (conditioning,))
        for (cell, route, conditioning), (low, high) in sorted(ranges.items())
    )


def load(path: Path | str | None = None) -> list[EvidenceRow]:
    """Read and check an evidence table; a bad row raises ``DataError`` naming file, line and field.

    Rows without a CI (nothing to fit) must say so with an empty ``estimate``; they are skipped.
    """
    path = Path(path) if path is not None else bundled_path()
    name = path.name
    if not path.is_file():
        raise DataError("--evidence", f"{path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(name, f"cannot be read as UTF-8 text: {exc}") from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{name}: header", f"missing column {missing[0]}; needed: {', '.join(COLUMNS)}")
    rows, seen = [], set()
    for line, raw in enumerate(reader, start=2):
        if not (raw.get("estimate") or "").strip():
            continue
        row = _row(name, line, raw)
        if row.key in seen:
            raise DataError(f"{name}:{line}: study", f"{row.key} appears twice")
        seen.add(row.key)
        rows.append(row)
    return rows


def _row(name: str, line: int, raw: dict) -> EvidenceRow:
    where = f"{name}:{line}"

    def text(field: str) -> str:
        return (raw.get(field) or "").strip()

    def number(field: str, default: float | None = None, positive: bool = False) -> float:
        value = text(field)
        if not value:
            if default is None:
                raise DataError(f"{where}: {field}", "is required (a number)")
            return default
        try:
            result = float(value)
        except ValueError:
            raise DataError(f"{where}: {field}", f"must be a number, got {value!r}") from None
        if not math.isfinite(result) or (positive and result <= 0):
            raise DataError(
                f"{where}: {field}", f"must be a {'positive ' if positive else ''}number, got {value}"
            )
        return result

    for field, allowed in _ALLOWED.items():
        if field in OPTIONAL and not text(field):
            continue
        if text(field) not in allowed:
            raise DataError(f"{where}: {field}", f"unknown {text(field)!r}; allowed: {', '.join(allowed)}")
    condition = text("condition")
    if condition not in conditions.names():
        raise DataError(
            f"{where}: condition", f"unknown {condition!r}; allowed: {', '.join(conditions.names())}"
        )
    info = conditions.get(condition)
    endpoint = text("endpoint")
    if endpoint not in [e.name for e in info.endpoints]:
        allowed = ", ".join(e.name for e in info.endpoints)
        raise DataError(
            f"{where}: endpoint", f"{endpoint!r} is not an endpoint of {condition}; allowed: {allowed}"
        )
    estimate, low, high = number("estimate"), number("ci_low"), number("ci_high")
    if not low <= estimate <= high or low == high:
        raise DataError(
            f"{where}: {'ci_high' if estimate > high else 'ci_low'}",
            f"the 95% CI ({low:g} to {high:g}) must be a non-empty interval holding "
            f"the estimate {estimate:g}",
        )
    doses = number("doses", 1.0, positive=True)
    if doses != int(doses):
        raise DataError(f"{where}: doses", f"must be a whole number of administrations, got {doses:g}")
    interval = number("interval_d", 0.0)
    if doses > 1 and interval <= 0:
        raise DataError(f"{where}: interval_d", "must be positive (days) when doses > 1")
    for field in ("n_treated", "n_control"):
        if text(field) and number(field) < 0:
            raise DataError(f"{where}: {field}", f"must not be negative, got {text(field)}")
    if text("control_change") and text("comparator") != "active_addon":
        raise DataError(f"{where}: control_change", "applies to add-on trials only (comparator active_addon)")
    if not text("study") or not text("source_key"):
        raise DataError(f"{where}: {'study' if not text('study') else 'source_key'}", "is required")
    return EvidenceRow(
        study=text("study"),
        condition=condition,
        endpoint=endpoint,
        arm=text("arm") or "cells",
        time_d=number("time_d", positive=True),
        estimate=estimate,
        ci_low=low,
        ci_high=high,
        design=text("design"),
        comparator=text("comparator"),
        cell_type=text("cell_type"),
        tissue_source=text("tissue_source"),
        donor=text("donor"),
        route=text("route"),
        dose=number("dose", positive=True),
        dose_unit=text("dose_unit"),
        doses=int(doses),
        interval_d=interval,
        onset_d=number("onset_d", math.nan),
        n_treated=number("n_treated", math.nan),
        n_control=number("n_control", math.nan),
        baseline=number("baseline", math.nan),
        source_key=text("source_key"),
        citation=text("citation"),
        provenance=text("provenance"),
        note=text("note"),
        conditioning=text("conditioning") or "none",
        control_change=number("control_change", math.nan),
        line=line,
    )


def scenario_for(row: EvidenceRow) -> Scenario:
    """The trial's treated arm as a scenario: its condition, product, route, dose and schedule,
    simulated one day past the visit. Severity comes from the control baseline where reported."""
    info = conditions.get(row.condition)
    endpoint = info.endpoint(row.endpoint)
    severity: float | str = "moderate"
    if endpoint.primary and endpoint.by_severity and math.isfinite(row.baseline):
        from infusim.model.disease import severity_of
        from infusim.parameters import bundled

        severity = float(min(max(severity_of(info, endpoint, row.baseline, bundled()), 0.05), 1.0))
    weight = ADULT_WEIGHT_KG
    administration: dict = {"route": row.route, "dose": f"{row.dose:g} {row.dose_unit}"}
    if row.route not in DEPOT_ROUTES:
        administration["duration"] = "30 min"
    if row.conditioning != "none":
        administration["conditioning"] = row.conditioning
    if row.doses > 1:
        administration["repeat"] = {"count": row.doses, "interval": f"{row.interval_d:g} day"}
    product = {"cell_type": row.cell_type, "tissue_source": row.tissue_source, "donor": row.donor}
    if row.donor == "allogeneic":
        product["hla_mismatches"] = 5
    last_dose_d = (row.doses - 1) * row.interval_d
    # the trial's injury-to-cells time where reported; else the condition's default
    onset = {"onset": f"{row.onset_d:g} day"} if math.isfinite(row.onset_d) else {}
    spec = {
        "name": f"evidence {row.key}",
        "species": "human",
        "patient": {"body_weight": f"{weight} kg"},
        "condition": {"name": row.condition, "severity": severity, **onset},
        "product": product,
        "administration": administration,
        "simulation": {
            "duration": f"{max(row.time_d, last_dose_d) + 1:g} day",
            "outputs": [f"{row.time_d:g} day"],
        },
    }
    try:
        return from_dict(spec)
    except InfusimError as exc:
        raise DataError(f"evidence line {row.line}: {row.study}", f"cannot be simulated: {exc}") from None
