"""The one pint registry, and conversions at the boundary.

Inside infusim every number is a plain float in fixed units: time in hours, cells as counts,
volumes in litres, flows in L/h, body weight in kg, lengths in micrometres.
"""

from __future__ import annotations

import re
from functools import cache

import pint

from infusim.errors import ScenarioError


@cache
def registry() -> pint.UnitRegistry:
    """The shared unit registry, with a ``cell`` count dimension and word multipliers."""
    ureg = pint.UnitRegistry()
    ureg.define("cell = [cell_count] = cells")
    ureg.define("thousand = 1e3")
    ureg.define("million = 1e6")
    ureg.define("billion = 1e9")
    return ureg


#: Money in a table: a currency code with its price year (``GBP2018``; the year may be left out of a
#: policy value such as ``GBP/QALY``), optionally per one thing (``/dose``, ``/year``, ``/million_cells``).
#: pint does not convert between currencies or years, and infusim does not either.
MONEY = re.compile(r"[A-Z]{3}(\d{4})?(/[A-Za-z_]+)?")


def is_money(unit: str) -> bool:
    """Whether a table unit is money (see ``MONEY``)."""
    return MONEY.fullmatch(unit) is not None


def parse(text: str | float | int, field: str) -> pint.Quantity:
    """Parse ``'2e6 cells/kg'`` or ``'30 min'`` into a pint quantity, or raise ``ScenarioError``."""
    ureg = registry()
    if isinstance(text, bool):
        raise ScenarioError(field, f"{text!r} is not a quantity with a unit")
    if isinstance(text, int | float):
        return ureg.Quantity(float(text))
    try:
        quantity = ureg.parse_expression(str(text))
    except pint.errors.UndefinedUnitError as exc:
        unknown = ", ".join(map(str, exc.unit_names))
        raise ScenarioError(
            field, f"cannot read {text!r} as a quantity: unknown unit {unknown} (e.g. '2e6 cells/kg')"
        ) from None
    except (pint.errors.PintError, SyntaxError, TypeError, ValueError, AttributeError):
        raise ScenarioError(
            field, f"cannot read {text!r} as a quantity with a unit (e.g. '2e6 cells/kg', '30 min')"
        ) from None
    if not isinstance(quantity, pint.Quantity):
        quantity = ureg.Quantity(float(quantity))
    return quantity


def to_float(text: str | float | int, unit: str, field: str, what: str) -> float:
    """Parse ``text`` and return its magnitude in ``unit``; ``what`` names the expected kind in errors."""
    quantity = parse(text, field)
    try:
        return float(quantity.to(unit).magnitude)
    except pint.errors.DimensionalityError:
        raise ScenarioError(field, f"{text} is not {what} (expected a unit like {unit})") from None


def hours(text: str | float | int, field: str) -> float:
    """A duration in hours; a bare number is an error (the unit would be a guess)."""
    quantity = parse(text, field)
    if quantity.dimensionless:
        raise ScenarioError(field, f"{text!r} has no time unit (write e.g. '30 min', '24 h', '28 day')")
    return to_float(text, "hour", field, "a duration")


def time_label(hours: float) -> str:
    """'5 min', '24 h', '7 d': how summary.json keys and the console name an output time (minutes
    below 1 h, hours below 3 days, days after; six significant digits, as ``f"{x:g}"``)."""
    if hours < 1:
        return f"{hours * 60:g} min"
    if hours < 72:
        return f"{hours:g} h"
    return f"{hours / 24:g} d"
