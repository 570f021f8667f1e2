"""A validated scenario written back as the mapping a YAML file holds (every quantity with its unit),
so that ``from_dict(to_spec(s))`` is ``s`` again (same hash): what the explorer's download and the
Python API's dose variants use."""

from __future__ import annotations

import typing
from typing import Any

import pydantic
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from infusim.scenario import Scenario


def to_spec(scenario: Scenario) -> dict[str, Any]:
    """The scenario as a YAML-ready mapping with units (``yaml.safe_dump`` writes it)."""
    return _section(scenario)


def _section(model: BaseModel) -> dict[str, Any]:
    """Fields at their default are left out (a local injection has no duration); the onset is always
    written, as ``chronic`` or a time, because a named condition's own onset is its default."""
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        key = info.alias or name
        if name == "onset_h":
            out[key] = "chronic" if value is None else f"{value!r} h"
        elif name in ("dose_cells_per_kg", "dose_cells"):
            if value is not None:
                out["dose"] = f"{value!r} cells/kg" if name == "dose_cells_per_kg" else f"{value!r} cells"
        elif (
            value is not None
            and value != {}
            and not (info.default is not PydanticUndefined and value == info.default)
        ):
            out[key] = _value(value, _unit(info.metadata, info.annotation))
    return out


def _value(value: Any, unit: str | None) -> Any:
    if isinstance(value, BaseModel):
        return _section(value)
    if isinstance(value, tuple | list):
        return [_value(v, unit) for v in value]
    if isinstance(value, dict):
        return {k: _value(v, None) for k, v in value.items()}
    if unit == "h" and isinstance(value, float) and value >= 24 and (value / 24).is_integer():
        return f"{int(value // 24)} day"
    if unit is not None and isinstance(value, float):
        return f"{value!r} {unit}"
    return value


def _unit(metadata: list, annotation: Any) -> str | None:
    """The unit a field's before-validator parses (``_parsed``/``_hours``), also inside ``tuple[...]``."""
    for item in metadata:
        if isinstance(item, pydantic.BeforeValidator) and hasattr(item.func, "unit"):
            return item.func.unit
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Annotated:
            found = _unit(list(arg.__metadata__), None)
            if found:
                return found
    return None
