"""The conditions infusim models: names, target sites, mechanisms, endpoints and evidence ranges.

Structure comes from ``data/conditions.yaml``; every number (baselines, natural history, placebo
responses, potencies) comes from ``data/conditions.csv`` through the parameter tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from infusim import units
from infusim.errors import DataError

MECHANISMS = ("local", "systemic", "apoptotic", "differentiation", "reset")
SEVERITY_WORDS = ("mild", "moderate", "severe")
CONDITIONING = ("none", "cy_atg", "beam_atg")


@dataclass(frozen=True)
class Endpoint:
    """A clinical endpoint: display unit, valid range and which direction is better."""

    name: str
    label: str
    unit: str
    low: float
    high: float
    better: str  # 'lower' or 'higher'
    primary: bool
    by_severity: bool = True

    @property
    def direction(self) -> float:
        """+1 when higher is better, -1 when lower is better."""
        return 1.0 if self.better == "higher" else -1.0


@dataclass(frozen=True)
class Evidence:
    """A product, route, dose range (cells/kg) and conditioning that trials of the condition used."""

    cell_type: str
    route: str
    dose_low: float
    dose_high: float
    conditioning: tuple[str, ...] = ("none",)


@dataclass(frozen=True)
class ConditionInfo:
    """One condition: where its injured tissue is, which mechanisms act, what trials measure."""

    name: str
    label: str
    area: str
    site: str
    mechanisms: tuple[str, ...]
    endpoints: tuple[Endpoint, ...]
    evidence: tuple[Evidence, ...]
    onset_h: float | None = None  # injury to first dose when a scenario does not say (None: chronic)

    @property
    def primary(self) -> Endpoint:
        return next(e for e in self.endpoints if e.primary)

    def endpoint(self, name: str) -> Endpoint:
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        allowed = ", ".join(e.name for e in self.endpoints)
        raise DataError(f"endpoint {name}", f"not an endpoint of {self.name}; allowed: {allowed}")


def _path() -> Path:
    return Path(str(resources.files("infusim") / "data" / "conditions.yaml"))


@cache
def registry() -> dict[str, ConditionInfo]:
    """All conditions by name."""
    raw = yaml.safe_load(_path().read_text(encoding="utf-8"))
    conditions = {}
    for name, spec in raw.items():
        endpoints = tuple(
            Endpoint(
                key,
                e["label"],
                e["unit"],
                float(e["range"][0]),
                float(e["range"][1]),
                e["better"],
                bool(e.get("primary", False)),
                bool(e.get("by_severity", True)),
            )
            for key, e in spec["endpoints"].items()
        )
        if sum(e.primary for e in endpoints) != 1:
            raise DataError(f"conditions.yaml:{name}", "needs exactly one primary endpoint")
        unknown = set(spec["mechanisms"]) - set(MECHANISMS)
        if unknown:
            raise DataError(f"conditions.yaml:{name}", f"unknown mechanism {sorted(unknown)[0]}")
        evidence = tuple(
            Evidence(
                e["cell_type"],
                e["route"],
                float(e["dose_per_kg"][0]),
                float(e["dose_per_kg"][1]),
                tuple(e.get("conditioning", ["none"])),
            )
            for e in spec.get("evidence", [])
        )
        onset = spec.get("onset", "chronic")
        conditions[name] = ConditionInfo(
            name,
            spec["label"],
            spec["area"],
            spec["site"],
            tuple(spec["mechanisms"]),
            endpoints,
            evidence,
            None if onset == "chronic" else units.hours(onset, f"conditions.yaml:{name}.onset"),
        )
    return conditions


def names() -> tuple[str, ...]:
    """Condition names, in the order of the data file."""
    return tuple(registry())


def get(name: str) -> ConditionInfo:
    """The condition called ``name``."""
    try:
        return registry()[name]
    except KeyError:
        raise DataError(
            "condition.name", f"unknown condition {name!r}; allowed: {', '.join(names())}"
        ) from None
