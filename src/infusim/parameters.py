"""Parameter tables shipped with infusim: every value with its unit, its source and its provenance.

Tables live in ``infusim/data/*.csv`` in one long format::

    parameter,scope,value,unit,source,provenance,note

``scope`` says what a value applies to, most general last: ``human/lungs``, ``msc/adipose``,
``in111``. ``source`` is a key of ``data/CITATIONS.bib``. ``provenance`` is ``read`` (the number is
in the source), ``derived`` (computed from read numbers; the note says how), ``calibrated``
(fitted; the note names the data and the command) or ``assumption`` (the note says why).
Units are checked with pint when a value is read, so a table in mL/min serves a model in L/h.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from infusim import units
from infusim.errors import DataError

PROVENANCES = ("read", "derived", "calibrated", "assumption")
TABLES = (
    "physiology.csv",
    "products.csv",
    "kinetics.csv",
    "labels.csv",
    "conditions.csv",
    "mechanisms.csv",
    "population.csv",
    "variability.csv",
    "safety.csv",
    "synthesis.csv",
    "economics.csv",
)
COLUMNS = ("parameter", "scope", "value", "unit", "source", "provenance", "note")


@dataclass(frozen=True)
class Entry:
    """One row of a parameter table."""

    parameter: str
    scope: str
    value: float | np.ndarray
    unit: str
    source: str
    provenance: str
    note: str
    table: str


@dataclass
class ParameterSet:
    """All bundled parameter rows, looked up by name and scope; remembers which sources were used."""

    entries: dict[tuple[str, str], Entry]
    used: dict[str, set[str]] = field(default_factory=dict)
    #: Rows read so far, as (parameter, scope) keys of the rows themselves.
    read_keys: set[tuple[str, str]] = field(default_factory=set)

    def get(self, parameter: str, scope: str, unit: str) -> float:
        """Value of ``parameter`` for ``scope`` in ``unit``; falls back to shorter scopes.

        ``get('death_rate', 'msc/lungs', '1/h')`` tries ``msc/lungs``, then ``msc``, then ``''``.
        A sampled set (``sampled``) returns an array over rows or patients instead of a number.
        """
        entry = self.entry(parameter, scope)
        self.used.setdefault(entry.source, set()).add(parameter)
        self.read_keys.add((entry.parameter, entry.scope))
        if entry.unit == unit:
            return entry.value
        try:
            return entry.value * _conversion(entry.unit, unit)
        except Exception as exc:
            raise DataError(
                f"{entry.table}:{parameter}[{entry.scope}]",
                f"unit {entry.unit!r} cannot be converted to {unit!r}",
            ) from exc

    def entry(self, parameter: str, scope: str) -> Entry:
        """The most specific row for ``parameter`` and ``scope`` (see ``get``)."""
        parts = scope.split("/") if scope else []
        for n in range(len(parts), -1, -1):
            key = (parameter, "/".join(parts[:n]))
            if key in self.entries:
                return self.entries[key]
        raise DataError(f"parameter {parameter}", f"no value for scope {scope!r} in the bundled tables")

    def has(self, parameter: str, scope: str) -> bool:
        """Whether a row exists for ``parameter`` at exactly ``scope``."""
        return (parameter, scope) in self.entries

    def sources_used(self) -> list[str]:
        """Citation keys of the values read so far, sorted."""
        return sorted(self.used)


@cache
def _conversion(source: str, target: str) -> float:
    """Factor that turns a value in unit ``source`` into unit ``target`` (multiplicative units)."""
    return float(units.registry().Quantity(1.0, source).to(target).magnitude)


def sampled(
    params: ParameterSet, values: Mapping[tuple[str, str], np.ndarray], *, repeat: int
) -> ParameterSet:
    """A copy of ``params`` whose rows ``values`` hold one value per patient (arrays, row unit).

    ``get`` then returns, for those rows, each patient's value repeated ``repeat`` times (an array over
    a model's rows: ``repeat`` is the rows per patient, 1 for per-patient quantities). Other rows stay
    numbers.
    """
    entries = dict(params.entries)
    for key, per_patient in values.items():
        old = params.entries[key]
        value = np.repeat(np.asarray(per_patient, dtype=float), repeat)
        entries[key] = Entry(
            old.parameter, old.scope, value, old.unit, old.source, old.provenance, old.note, old.table
        )
    return ParameterSet(entries)


def _data_dir() -> Path:
    return Path(str(resources.files("infusim") / "data"))


def read_table(path: Path) -> list[Entry]:
    """Read one table; every row must have a number, a pint unit, a source and a provenance."""
    rows: list[Entry] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(row for row in handle if not row.startswith("#"))
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise DataError(path.name, f"columns must be {', '.join(COLUMNS)}")
        for number, row in enumerate(reader, start=2):
            where = f"{path.name} line {number}"
            try:
                value = float(row["value"])
            except (TypeError, ValueError):
                raise DataError(where, f"value {row['value']!r} is not a number") from None
            if row["provenance"] not in PROVENANCES:
                raise DataError(where, f"provenance must be one of {', '.join(PROVENANCES)}")
            if not row["source"]:
                raise DataError(where, "every value needs a source")
            try:
                units.is_money(row["unit"]) or units.registry().Unit(row["unit"])
            except Exception:
                raise DataError(
                    where, f"unit {row['unit']!r} is neither a unit pint knows nor money (GBP2018/dose)"
                ) from None
            rows.append(
                Entry(
                    row["parameter"],
                    row["scope"],
                    value,
                    row["unit"],
                    row["source"],
                    row["provenance"],
                    row["note"],
                    path.name,
                )
            )
    return rows


@cache
def _bundled_entries() -> dict[tuple[str, str], Entry]:
    entries: dict[tuple[str, str], Entry] = {}
    for name in TABLES:
        for entry in read_table(_data_dir() / name):
            key = (entry.parameter, entry.scope)
            if key in entries:
                raise DataError(f"{name}:{entry.parameter}[{entry.scope}]", "defined twice")
            entries[key] = entry
    return entries


def bundled() -> ParameterSet:
    """A fresh ``ParameterSet`` over the bundled tables (its record of used sources starts empty)."""
    return ParameterSet(dict(_bundled_entries()))


def reference_body_weight_kg(species: str) -> float:
    """Reference body weight of a species (kg), used when a scenario gives none."""
    return bundled().get("reference_body_weight", species, "kg")


@cache
def citations() -> dict[str, str]:
    """BibTeX entries of ``data/CITATIONS.bib`` by key."""
    text = (_data_dir() / "CITATIONS.bib").read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for match in re.finditer(r"@\w+\{([^,]+),(.*?)\n\}", text, flags=re.S):
        found[match.group(1).strip()] = match.group(0)
    return found


def citation_line(key: str) -> str:
    """A one-line human-readable citation for a BibTeX key."""
    if key == SCENARIO_SOURCE:
        return "values set in the scenario's parameters section (see overrides)"
    entry = citations().get(key)
    if entry is None:
        return key

    def grab(name: str) -> str:
        m = re.search(rf"\b{name}\s*=\s*\{{((?:[^{{}}]|\{{[^{{}}]*\}})*)\}}", entry)
        return re.sub(r"\s+", " ", m.group(1).replace("{", "").replace("}", "")).strip() if m else ""

    authors = grab("author").split(" and ")
    first = f"{authors[0]} et al" if len(authors) > 1 else authors[0]
    where = " ".join(p for p in (grab("journal"), grab("volume")) if p)
    pages = grab("pages").replace("--", "-")
    parts = [first, grab("year"), grab("title"), f"{where}:{pages}" if pages else where]
    doi = grab("doi")
    line = ". ".join(p for p in parts if p)
    return f"{line}. doi:{doi}" if doi else line


def scopes(entries: Iterable[Entry], parameter: str) -> list[str]:
    """All scopes that define ``parameter``."""
    return [e.scope for e in entries if e.parameter == parameter]


def with_values(params: ParameterSet, values: dict[tuple[str, str], float]) -> ParameterSet:
    """A copy of ``params`` with some values replaced (same unit, provenance 'calibrated')."""
    entries = dict(params.entries)
    for key, value in values.items():
        old = params.entry(*key)
        entries[key] = Entry(
            key[0], key[1], float(value), old.unit, old.source, "calibrated", old.note, old.table
        )
    return ParameterSet(entries)


#: Source key of values set in a scenario's ``parameters`` section.
SCENARIO_SOURCE = "scenario"


def parse_name(text: str) -> tuple[str, str]:
    """``'loss_rate[msc/lungs]'`` -> ``('loss_rate', 'msc/lungs')``; no brackets: the empty scope."""
    text = text.strip()
    if text.endswith("]") and "[" in text:
        name, scope = text[:-1].split("[", 1)
        return name.strip(), scope.strip()
    return text, ""


def with_overrides(params: ParameterSet, overrides: Mapping[str, object]) -> ParameterSet:
    """A copy of ``params`` with rows replaced by a scenario's ``parameters`` section.

    Keys name an existing row exactly (``name[scope]``, as ``infusim parameters`` lists them); values
    are quantities with a unit that converts to the row's unit (a plain number for dimensionless
    rows). The new rows keep their unit, cite ``scenario`` and say what they replaced.
    """
    from infusim.errors import ScenarioError

    entries = dict(params.entries)
    registry = units.registry()
    for text, raw in overrides.items():
        field = f"parameters.{text}"
        key = parse_name(text)
        if key not in params.entries:
            close = sorted(f"{p}[{s}]" if s else p for p, s in params.entries if p == key[0])
            hint = (
                f"; rows of {key[0]}: {', '.join(close[:8])}"
                if close
                else "; see `infusim parameters --grep`"
            )
            raise ScenarioError(field, f"not a parameter row{hint}")
        old = params.entries[key]
        try:
            quantity = registry.Quantity(raw) if isinstance(raw, str) else registry.Quantity(float(raw), "")
            value = float(quantity.to(old.unit or "dimensionless").magnitude)
        except Exception:
            raise ScenarioError(field, f"{raw!r} is not a quantity in {old.unit or 'no unit'}") from None
        if not math.isfinite(value):
            raise ScenarioError(field, f"{raw!r} is not a finite number")
        note = (
            f"set in the scenario to {raw} (table: {old.value:g} {old.unit}, {old.source}, {old.provenance})"
        )
        entries[key] = Entry(key[0], key[1], value, old.unit, SCENARIO_SOURCE, "assumption", note, old.table)
    return ParameterSet(entries)


def for_scenario(scenario) -> ParameterSet:
    """The bundled parameters with the scenario's ``parameters`` overrides applied."""
    overrides = getattr(scenario, "parameters", None) or {}
    return with_overrides(bundled(), overrides) if overrides else bundled()


def informed_studies(keys: Iterable[str] = ()) -> dict[str, str]:
    """Source keys of studies that informed a parameter row -> the first such row (name[scope]).

    A study counts when it is a row's source or when a row's note names it ("Toma 2009" for the
    key ``Toma2009``); the BibTeX keys and ``keys`` (for example evidence rows' sources) are checked.
    """
    entries = bundled().entries.values()
    found: dict[str, str] = {}
    for e in entries:
        found.setdefault(e.source, f"{e.parameter}[{e.scope}]")
    for key in sorted(set(citations()) | set(keys)):
        match = re.fullmatch(r"([A-Za-z]+)(\d{4})", key)
        if match is None or key in found:
            continue
        words = f"{match.group(1)} {match.group(2)}"
        for e in entries:
            if words in e.note:
                found[key] = f"{e.parameter}[{e.scope}]"
                break
    return found
