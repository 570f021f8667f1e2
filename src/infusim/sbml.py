"""SBML Level 3 export of one patient's assembled model, generated from the model declaration.

Every state of every size class becomes a species (amounts in cells, ``item``), every process a
mass-action reaction ``k * source``, every rate a global parameter (1/h). Doses become initial
amounts (boluses at time 0), events (later boluses) or zero-order reactions switched on and off by
events (infusions); a rate ``Switch`` (the start of adaptive rejection) is an event that assigns
the new value. Time is in hours. The same declaration drives the batched solver, so the export and
infusim's own trajectories agree (tested against libroadrunner to 1e-6).
"""

from __future__ import annotations

import re

import numpy as np

from infusim import __version__
from infusim.errors import InfusimError
from infusim.model.declare import Model


def species_id(state: str, size_class: int) -> str:
    """SBML id of a state in one size class (``x_<state>_c<k>``)."""
    return f"x_{_sanitize(state)}_c{size_class}"


def parameter_id(name: str, size_class: int) -> str:
    """SBML id of a rate parameter in one size class (``k_<name>_c<k>``)."""
    return f"k_{_sanitize(name)}_c{size_class}"


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def to_sbml(model: Model, patient: int = 0, model_id: str = "infusim") -> str:
    """SBML L3V2 text of ``patient``'s rows of ``model`` (cells only: observation markers excluded)."""
    import libsbml

    if not 0 <= patient < model.n_patients:
        raise InfusimError("patient", f"{patient} is not in the model (0..{model.n_patients - 1})")
    if any(d.marker != "cells" for d in model.doses):
        raise ValueError("export the cell model (assemble), not an observation model")
    k = model.rows_per_patient
    rows = range(patient * k, (patient + 1) * k)
    document = libsbml.SBMLDocument(3, 2)
    sbml = document.createModel()
    sbml.setId(_sanitize(model_id) or "infusim")
    sbml.setName(f"{model_id} (infusim {__version__}, patient {patient})")
    _units(sbml)
    compartment = sbml.createCompartment()
    _check(compartment.setId("body"))
    compartment.setConstant(True)
    compartment.setSize(1.0)
    compartment.setSpatialDimensions(3)
    compartment.setUnits("dimensionless")

    values = patient_values(model, patient)
    for c in range(k):
        for state in model.states:
            species = sbml.createSpecies()
            sid = species_id(state.name, c)
            _check(species.setId(sid))
            species.setName(f"{state.name} (size class {c + 1} of {k}): {state.description}")
            species.setCompartment("body")
            species.setInitialAmount(values[sid])
            species.setHasOnlySubstanceUnits(True)
            species.setBoundaryCondition(False)
            species.setConstant(False)
            species.setSubstanceUnits("item")

    switched = {s.name for s in model.switches}
    for name in model.parameters:
        info = model.info.get(name)
        for c in range(k):
            parameter = sbml.createParameter()
            _check(parameter.setId(parameter_id(name, c)))
            parameter.setName(f"{name}: {info.description} ({info.formula})" if info else name)
            parameter.setValue(values[parameter_id(name, c)])
            parameter.setUnits("per_hour")
            parameter.setConstant(name not in switched)

    for process in model.processes:
        for c in range(k):
            reaction = sbml.createReaction()
            _check(reaction.setId(f"r_{_sanitize(process.name)}_c{c}"))
            reaction.setName(process.name)
            reaction.setReversible(False)
            source, target = species_id(process.source, c), species_id(process.target, c)
            _reference(reaction.createReactant(), source)
            _reference(reaction.createProduct(), target)
            law = reaction.createKineticLaw()
            _check(law.setMath(libsbml.parseL3Formula(f"{parameter_id(process.rate, c)} * {source}")))

    for i, (switch, suffix) in enumerate(_switch_suffixes(model)):
        for c, row in enumerate(rows):
            target = parameter_id(switch.name, c)
            if switch.time_h[row] <= 0:
                continue
            after, at = f"{target}_after{suffix}", f"{target}_at{suffix}"
            _parameter(sbml, after, values[after], "per_hour")
            _parameter(sbml, at, values[at], "hour")
            _event(sbml, f"switch{i}_c{c}", at, {target: after})

    for i, dose in enumerate(model.doses):
        if dose.duration_h == 0:
            if dose.time_h > 0:
                assignments = {}
                for state in dose.split:
                    for c in range(k):
                        amount_id = f"bolus{i}_{_sanitize(state)}_c{c}"
                        _parameter(sbml, amount_id, values[amount_id], "item")
                        assignments[species_id(state, c)] = f"{species_id(state, c)} + {amount_id}"
                _event(sbml, f"bolus{i}", dose.time_h, assignments)
            continue
        switch_id = f"infusing{i}"
        _parameter(sbml, switch_id, values[switch_id], "dimensionless", constant=False)
        if dose.time_h > 0:
            _event(sbml, f"start{i}", dose.time_h, {switch_id: "1"})
        _event(sbml, f"stop{i}", dose.time_h + dose.duration_h, {switch_id: "0"})
        for state in dose.split:
            for c in range(k):
                rate_id = f"infusion{i}_{_sanitize(state)}_c{c}"
                _parameter(sbml, rate_id, values[rate_id], "item_per_hour")
                reaction = sbml.createReaction()
                _check(reaction.setId(f"r_{rate_id}"))
                reaction.setName(f"infusion {i + 1} into {state}")
                reaction.setReversible(False)
                _reference(reaction.createProduct(), species_id(state, c))
                law = reaction.createKineticLaw()
                _check(law.setMath(libsbml.parseL3Formula(f"{switch_id} * {rate_id}")))
    return libsbml.writeSBMLToString(document)


def patient_values(model: Model, patient: int) -> dict[str, float]:
    """Every number of ``patient``'s SBML model by id: initial amounts, rates, switched values.

    What ``to_sbml`` writes; a peer simulator can set these to move from one patient to the next.
    """
    k = model.rows_per_patient
    rows = list(range(patient * k, (patient + 1) * k))
    initial = np.zeros((k, len(model.states)))
    for dose in model.doses:
        if dose.duration_h == 0 and dose.time_h == 0:
            for state, fraction in dose.split.items():
                initial[:, model.index(state)] += (dose.amount * fraction)[rows]
    values = {
        species_id(state.name, c): float(initial[c, j])
        for c in range(k)
        for j, state in enumerate(model.states)
    }
    start = model.parameters_at(0.0)
    for name in model.parameters:
        values.update({parameter_id(name, c): float(start[name][row]) for c, row in enumerate(rows)})
    for switch, suffix in _switch_suffixes(model):
        for c, row in enumerate(rows):
            if switch.time_h[row] > 0:
                values[f"{parameter_id(switch.name, c)}_after{suffix}"] = float(switch.value[row])
                values[f"{parameter_id(switch.name, c)}_at{suffix}"] = float(switch.time_h[row])
    for i, dose in enumerate(model.doses):
        if dose.duration_h == 0:
            if dose.time_h > 0:
                for state, fraction in dose.split.items():
                    for c, row in enumerate(rows):
                        values[f"bolus{i}_{_sanitize(state)}_c{c}"] = float(dose.amount[row] * fraction[row])
            continue
        values[f"infusing{i}"] = 1.0 if dose.time_h == 0 else 0.0
        for state, fraction in dose.split.items():
            for c, row in enumerate(rows):
                rate = dose.amount[row] * fraction[row] / dose.duration_h
                values[f"infusion{i}_{_sanitize(state)}_c{c}"] = float(rate)
    return values


def validation_errors(text: str) -> list[str]:
    """libsbml consistency messages of severity error or fatal (empty when the document is valid)."""
    import libsbml

    document = libsbml.readSBMLFromString(text)
    document.checkConsistency()
    log = document.getErrorLog()
    return [
        log.getError(i).getMessage().strip()
        for i in range(log.getNumErrors())
        if log.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR
    ]


def _units(sbml) -> None:
    import libsbml

    def define(unit_id: str, parts: list[tuple[int, float, float]]) -> None:
        definition = sbml.createUnitDefinition()
        _check(definition.setId(unit_id))
        for kind, exponent, multiplier in parts:
            unit = definition.createUnit()
            unit.setKind(kind)
            unit.setExponent(exponent)
            unit.setScale(0)
            unit.setMultiplier(multiplier)

    define("hour", [(libsbml.UNIT_KIND_SECOND, 1, 3600.0)])
    define("per_hour", [(libsbml.UNIT_KIND_SECOND, -1, 1 / 3600.0)])
    define("item_per_hour", [(libsbml.UNIT_KIND_ITEM, 1, 1.0), (libsbml.UNIT_KIND_SECOND, -1, 1 / 3600.0)])
    sbml.setTimeUnits("hour")
    sbml.setSubstanceUnits("item")
    sbml.setExtentUnits("item")


def _parameter(sbml, parameter_id: str, value: float, units: str, constant: bool = True) -> None:
    parameter = sbml.createParameter()
    _check(parameter.setId(parameter_id))
    parameter.setValue(value)
    parameter.setUnits(units)
    parameter.setConstant(constant)


def _reference(reference, species: str) -> None:
    _check(reference.setSpecies(species))
    reference.setStoichiometry(1.0)
    reference.setConstant(True)


def _event(sbml, event_id: str, time_h: float | str, assignments: dict[str, str]) -> None:
    """An event at ``time_h`` (hours, a number or the id of a parameter holding it)."""
    import libsbml

    event = sbml.createEvent()
    _check(event.setId(event_id))
    event.setUseValuesFromTriggerTime(True)
    trigger = event.createTrigger()
    trigger.setInitialValue(False)
    trigger.setPersistent(True)
    when = time_h if isinstance(time_h, str) else repr(float(time_h))
    _check(trigger.setMath(libsbml.parseL3Formula(f"time >= {when}")))
    for variable, formula in assignments.items():
        assignment = event.createEventAssignment()
        _check(assignment.setVariable(variable))
        _check(assignment.setMath(libsbml.parseL3Formula(formula)))


def _check(code: int) -> None:
    import libsbml

    if code != libsbml.LIBSBML_OPERATION_SUCCESS:
        raise RuntimeError(f"libsbml operation failed: {libsbml.OperationReturnValue_toString(code)}")


def _switch_suffixes(model: Model) -> list[tuple]:
    """Each switch with the id suffix of its parameters: '' for a rate's first switch, '_2', '_3'
    for the later ones (a capture rate switches again at every later dose)."""
    seen: dict[str, int] = {}
    out = []
    for switch in model.switches:
        seen[switch.name] = seen.get(switch.name, 0) + 1
        out.append((switch, "" if seen[switch.name] == 1 else f"_{seen[switch.name]}"))
    return out
