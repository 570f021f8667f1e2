"""The validation case format: a case folder read and checked (docs/validation.md, "Case format").

A case is a folder:

* ``scenario.yaml``: the experiment as a scenario;
* ``observations.csv``: ``time_h, quantity, compartment, value, unit, sd, source``; ``value`` may be
  ``<x`` or ``>x`` for a detection limit or a bound;
* ``case.yaml`` (optional): ``description``, ``citation``, ``tolerance_fold`` (2), ``calibration``
  (false), ``label: {isotope, decay_corrected, leakage_corrected}`` for radiolabel rows, ``region``,
  ``background_risk``.

A case that cannot be used raises ``CaseError`` naming the case and the reason, in one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from infusim import regions
from infusim.compartments import COMPARTMENTS, LABELS
from infusim.errors import InfusimError
from infusim.regions import Region
from infusim.scenario import Label, Scenario, load

QUANTITIES = ("live_cells", "dna", "radiolabel")
UNITS = (
    "fraction_of_dose",
    "percent_of_dose",
    "percent_of_dose_per_g",
    "percent_of_body_activity",
    "cells",
    "cells_per_g",
)
COLUMNS = ("time_h", "quantity", "compartment", "value", "unit", "sd", "source")
CASE_KEYS = (
    "description",
    "citation",
    "source",
    "tolerance_fold",
    "calibration",
    "label",
    "notes",
    "fits",
    "null_result",
    "region",
    "background_risk",
)


class CaseError(InfusimError):
    """A validation case folder that cannot be used (named, with the reason)."""


@dataclass(frozen=True)
class Case:
    """One validation case, read and checked."""

    name: str
    path: Path
    scenario: Scenario
    observations: pd.DataFrame
    skipped: pd.DataFrame
    tolerance_fold: float = 2.0
    calibration: bool = False
    label: Label | None = None
    leakage_corrected: bool = False
    description: str = ""
    citation: str = ""
    source: str = ""
    fits: str = ""
    null_result: bool = False
    regions: dict[str, Region] = field(default_factory=dict)
    background_risk: dict[str, float] = field(default_factory=dict)


def bundled_cases_dir() -> Path:
    """Folder of the validation cases shipped with infusim."""
    return Path(str(resources.files("infusim") / "data" / "validation"))


def case_dirs(paths: list[Path] | None = None, cases_root: Path | None = None) -> list[Path]:
    """Case folders to run: the given ones, those under ``cases_root``, or the bundled suite."""
    found: list[Path] = [Path(p) for p in paths or []]
    if cases_root is not None:
        root = Path(cases_root)
        if not root.is_dir():
            raise CaseError("--cases", f"{root} is not a folder")
        found += sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        root = bundled_cases_dir()
        found = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return found


def load_case(path: Path) -> Case:
    """Read and check one case folder, or raise ``CaseError`` naming the case and the reason."""
    path = Path(path)
    name = path.name
    if not path.is_dir():
        raise CaseError(name, f"{path} is not a folder")
    meta: dict = {}
    meta_path = path / "case.yaml"
    if meta_path.exists():
        try:
            meta = yaml.safe_load(meta_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise CaseError(name, f"case.yaml is malformed: {str(exc).splitlines()[0]}") from None
        if not isinstance(meta, dict):
            raise CaseError(name, "case.yaml must hold a mapping")
        unknown = set(meta) - set(CASE_KEYS)
        if unknown:
            raise CaseError(
                name, f"case.yaml: unknown field {sorted(unknown)[0]}; allowed: {', '.join(CASE_KEYS)}"
            )
    if not (path / "scenario.yaml").is_file():
        raise CaseError(name, "scenario.yaml is missing")
    try:
        scenario = load(path / "scenario.yaml")
    except InfusimError as exc:
        raise CaseError(name, f"scenario.yaml: {exc}") from None
    label = _label(name, meta.get("label"), scenario)
    leakage = _leakage_corrected(name, meta.get("label"))
    observations, skipped = _observations(name, path / "observations.csv", scenario, label)
    try:
        case_regions = regions.parse(meta.get("region"))
    except ValueError as exc:
        raise CaseError(name, f"case.yaml: {exc}") from None
    background = _background_risk(name, meta.get("background_risk"), observations)
    tolerance = meta.get("tolerance_fold", 2.0)
    if not isinstance(tolerance, int | float) or tolerance < 1:
        raise CaseError(name, "case.yaml: tolerance_fold must be a number >= 1")
    return Case(
        name=name,
        path=path,
        scenario=scenario,
        observations=observations,
        skipped=skipped,
        tolerance_fold=float(tolerance),
        calibration=bool(meta.get("calibration", False)),
        label=label,
        leakage_corrected=leakage,
        description=str(meta.get("description", "")),
        citation=str(meta.get("citation", "")),
        source=str(meta.get("source", "")),
        fits=str(meta.get("fits", "")),
        null_result=bool(meta.get("null_result", False)),
        regions=case_regions,
        background_risk=background,
    )


def _background_risk(name: str, spec, observations: pd.DataFrame) -> dict[str, float]:
    """``background_risk`` of case.yaml: per compared event, its risk from causes infusim does not
    model (the same in both arms of the trial)."""
    if spec is None:
        return {}
    compared = {q.split(":", 1)[1] for q in observations.quantity if q.startswith("event:")}
    if not isinstance(spec, dict):
        raise CaseError(name, "case.yaml: background_risk must map event names to risks (0-1)")
    out = {}
    for event, risk in spec.items():
        if event not in compared:
            allowed = ", ".join(sorted(compared)) or "none (no event rows)"
            raise CaseError(
                name, f"case.yaml: background_risk.{event}: not an event of this case; allowed: {allowed}"
            )
        if isinstance(risk, bool) or not isinstance(risk, int | float) or not 0 <= risk < 1:
            raise CaseError(name, f"case.yaml: background_risk.{event}: {risk!r} is not a risk in [0, 1)")
        out[event] = float(risk)
    return out


def _label(name: str, spec, scenario: Scenario) -> Label | None:
    if spec is None:
        return scenario.simulation.label
    if isinstance(spec, str):
        spec = {"isotope": spec}
    if not isinstance(spec, dict) or spec.get("isotope") not in LABELS:
        raise CaseError(name, f"case.yaml: label.isotope must be one of {', '.join(LABELS)}")
    return Label(isotope=spec["isotope"], decay_corrected=bool(spec.get("decay_corrected", True)))


def _leakage_corrected(name: str, spec) -> bool:
    """``label.leakage_corrected`` of case.yaml: the source divided each organ's activity by the share
    of label that labelled cells keep in vitro at that time (its estimate of labelled cells left)."""
    value = spec.get("leakage_corrected", False) if isinstance(spec, dict) else False
    if not isinstance(value, bool):
        raise CaseError(name, f"case.yaml: label.leakage_corrected must be true or false, not {value!r}")
    return value


def _observations(
    name: str, path: Path, scenario: Scenario, label: Label | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not path.is_file():
        raise CaseError(name, "observations.csv is missing")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, comment=None)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise CaseError(name, f"observations.csv cannot be read: {str(exc).splitlines()[0]}") from None
    if tuple(table.columns) != COLUMNS:
        raise CaseError(name, f"observations.csv columns must be {', '.join(COLUMNS)}")
    rows, skipped = [], []
    compartments = (*COMPARTMENTS, "whole_body")
    for number, row in enumerate(table.itertuples(index=False), start=2):
        where = f"observations.csv line {number}"
        quantity, compartment, unit = row.quantity.strip(), row.compartment.strip(), row.unit.strip()
        if quantity.startswith(("endpoint:", "effect:")):
            rows.append(_endpoint_row(name, where, row, scenario))
            continue
        if quantity.startswith("event:"):
            rows.append(_event_row(name, where, row, scenario))
            continue
        if quantity not in QUANTITIES:
            raise CaseError(
                name,
                f"{where}: unknown quantity {quantity!r}; allowed: {', '.join(QUANTITIES)}, "
                "endpoint:<name>, effect:<name>, event:<name>",
            )
        if compartment not in compartments:
            raise CaseError(
                name, f"{where}: unknown compartment {compartment!r}; allowed: {', '.join(compartments)}"
            )
        if compartment == "target" and scenario.condition is None:
            raise CaseError(name, f"{where}: compartment 'target' needs a condition in scenario.yaml")
        if unit not in UNITS:
            raise CaseError(
                name, f"{where}: unit {unit!r} does not fit {quantity}; allowed: {', '.join(UNITS)}"
            )
        if quantity != "radiolabel" and unit == "percent_of_body_activity":
            raise CaseError(name, f"{where}: percent_of_body_activity is a unit of radiolabel rows only")
        if quantity == "radiolabel" and unit in ("cells", "cells_per_g"):
            raise CaseError(
                name, f"{where}: radiolabel is measured as a share of the injected activity, not {unit}"
            )
        if quantity == "radiolabel" and label is None:
            raise CaseError(name, f"{where}: radiolabel rows need label: {{isotope: ...}} in case.yaml")
        bound, value = _value(name, where, row.value)
        try:
            time_h = float(row.time_h)
        except ValueError:
            raise CaseError(name, f"{where}: time_h {row.time_h!r} is not a number of hours") from None
        if not 0 <= time_h <= scenario.simulation.duration_h:
            raise CaseError(
                name,
                f"{where}: time_h {time_h:g} lies outside the scenario's "
                f"0-{scenario.simulation.duration_h:g} h",
            )
        sd = _float_or_nan(row.sd)
        rows.append(
            {
                "time_h": time_h,
                "quantity": quantity,
                "compartment": compartment,
                "observed": value,
                "bound": bound,
                "unit": unit,
                "sd": sd,
                "source": row.source,
            }
        )
    if not rows:
        raise CaseError(name, "observations.csv has no rows infusim can compare")
    return pd.DataFrame(rows), pd.DataFrame(skipped)


def _endpoint_row(name: str, where: str, row, scenario: Scenario) -> dict:
    """A clinical row: ``endpoint:<name>`` (treated value) or ``effect:<name>`` (treated - untreated)."""
    from infusim import conditions

    quantity = row.quantity.strip()
    endpoint_name = quantity.split(":", 1)[1]
    condition = scenario.condition
    if condition is None or condition.name is None:
        raise CaseError(name, f"{where}: {quantity} needs a named condition in scenario.yaml")
    if not scenario.clinical:
        raise CaseError(name, f"{where}: {quantity} needs species human (conditions come from human trials)")
    info = conditions.get(condition.name)
    names = [e.name for e in info.endpoints]
    if endpoint_name not in names:
        allowed = ", ".join(names)
        raise CaseError(
            name, f"{where}: {condition.name} has no endpoint {endpoint_name!r}; allowed: {allowed}"
        )
    endpoint = info.endpoint(endpoint_name)
    if row.unit.strip() != endpoint.unit:
        raise CaseError(
            name, f"{where}: unit {row.unit.strip()!r} does not fit {endpoint_name}; allowed: {endpoint.unit}"
        )
    if row.compartment.strip():
        raise CaseError(name, f"{where}: compartment must be empty for {quantity}")
    try:
        value, time_h = float(row.value), float(row.time_h)
    except ValueError:
        raise CaseError(name, f"{where}: value and time_h must be numbers") from None
    sd = _float_or_nan(row.sd)
    if quantity.startswith("effect:") and not sd > 0:
        raise CaseError(name, f"{where}: effect rows need sd (95% CI half-width / 1.96)")
    if not 0 <= time_h <= scenario.simulation.duration_h:
        raise CaseError(name, f"{where}: time_h {time_h:g} lies outside the scenario's duration")
    return {
        "time_h": time_h,
        "quantity": quantity,
        "compartment": "",
        "observed": value,
        "bound": "",
        "unit": endpoint.unit,
        "sd": sd,
        "source": row.source,
    }


#: What an ``event:<name>`` row compares: the simulated trial's odds ratio or risk ratio.
EVENT_UNITS = ("odds_ratio", "risk_ratio")


def _event_row(name: str, where: str, row, scenario: Scenario) -> dict:
    """An adverse-event row: ``event:<name>``, the odds ratio or risk ratio (``unit``) of a trial's cells
    arm against its control with ``sd`` the standard error of its natural log ((ln high - ln low) / 3.92)."""
    from infusim.safety import COMPARABLE

    quantity = row.quantity.strip()
    event = quantity.split(":", 1)[1]
    if event not in COMPARABLE:
        raise CaseError(name, f"{where}: unknown event {event!r}; allowed: {', '.join(COMPARABLE)}")
    unit = row.unit.strip()
    if unit not in EVENT_UNITS or row.compartment.strip():
        raise CaseError(
            name, f"{where}: {quantity} rows have unit odds_ratio or risk_ratio and an empty compartment"
        )
    trial = scenario.trial
    if trial is None or not any(a.kind == "cells" and a.name != trial.control.name for a in trial.arms):
        raise CaseError(name, f"{where}: {quantity} needs a trial with a cells arm and a control arm")
    bound, value = _value(name, where, row.value)
    sd = _float_or_nan(row.sd)
    if bound or not sd > 0:
        raise CaseError(name, f"{where}: event rows need a value and sd (log-scale standard error)")
    return {
        "time_h": scenario.simulation.duration_h,
        "quantity": quantity,
        "compartment": "",
        "observed": value,
        "bound": "",
        "unit": unit,
        "sd": sd,
        "source": row.source,
    }


def _value(name: str, where: str, text: str) -> tuple[str, float]:
    text = text.strip()
    bound = text[0] if text[:1] in ("<", ">") else ""
    try:
        value = float(text[1:] if bound else text)
    except ValueError:
        raise CaseError(name, f"{where}: value {text!r} is not a number, <number or >number") from None
    if not value > 0 or not math.isfinite(value):
        raise CaseError(name, f"{where}: value must be positive (write <x for a value below detection x)")
    return bound, value


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan
