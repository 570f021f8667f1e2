"""Scenario errors: pydantic's report turned into one line naming the field and what is allowed,
and YAML mappings that give a key twice refused."""

from __future__ import annotations

import difflib

import pydantic
import yaml
from pydantic import BaseModel

from infusim.errors import ScenarioError
from infusim.scenario_sections import _FieldError


def _refuse_duplicate_keys(node, path: str = "") -> None:
    """A key given twice in one mapping is an error (YAML would silently keep the last value)."""
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
            where = f"{path}.{name}" if path else name
            if name in seen:
                raise ScenarioError(
                    where, f"given twice (line {key.start_mark.line + 1}); give each field once"
                )
            seen.add(name)
            _refuse_duplicate_keys(value, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, f"{path}.{i}")


_ALIASES = {
    "body_weight_kg": "body_weight",
    "age_years": "age",
    "diameter_um": "diameter",
    "duration_h": "duration",
    "interval_h": "interval",
    "outputs_h": "outputs",
    "dose_cells_per_kg": "dose",
    "dose_cells": "dose",
    "heparin_iu": "heparin",
}


def _first_error(exc: pydantic.ValidationError, data: dict, root: type[BaseModel]) -> ScenarioError:
    """Turn pydantic's report into one line naming the field path and what is allowed.

    A ``_FieldError`` whose field starts with ``.`` is relative to where pydantic met it.
    """
    errors = exc.errors()
    error = errors[0]
    if error["type"] == "missing":  # a misspelt required field: name the misspelling, not the gap
        section = error["loc"][:-1]
        error = next(
            (e for e in errors if e["type"] == "extra_forbidden" and tuple(e["loc"][:-1]) == tuple(section)),
            error,
        )
    location = [str(_ALIASES.get(str(p), p)) for p in error["loc"]]
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _FieldError):
        if ctx_error.field.startswith("."):
            own = bool(location) and ctx_error.field.startswith(f".{location[-1]}")
            parent = location[:-1] if own else location
            return ScenarioError(".".join(parent) + ctx_error.field, ctx_error.message)
        return ScenarioError(ctx_error.field, ctx_error.message)
    kind = error["type"]
    message = error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        section = _section_model(location[:-1], root)
        allowed = sorted({_ALIASES.get(name, f.alias or name) for name, f in section.model_fields.items()})
        close = difflib.get_close_matches(location[-1], allowed, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        message = f"unknown field; {hint}allowed here: {', '.join(allowed)}"
    elif kind == "missing":
        message = "is required"
    elif kind in ("tuple_type", "list_type"):
        message = f"give a list (YAML '- item' lines or [a, b]), got {type(error['input']).__name__}"
    elif kind == "model_type":
        section = _section_model(
            location[:-1] if location[-1:] and location[-1].isdigit() else location, root
        )
        fields = sorted({_ALIASES.get(name, f.alias or name) for name, f in section.model_fields.items()})
        message = f"give a mapping of {', '.join(fields)}"
    elif kind == "literal_error":
        message = f"{error['input']!r} is not allowed; {message[0].lower()}{message[1:]}"
    field = ".".join(location) or "scenario"
    return ScenarioError(field, message)


def _section_model(path: list[str], root: type[BaseModel]) -> type[BaseModel]:
    model: type[BaseModel] = root
    for part in path:
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            break
        annotation = field.annotation
        candidates = getattr(annotation, "__args__", (annotation,))
        sub = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if sub is None:
            break
        model = sub
    return model
