"""The model declaration every backend reads: states, transfer processes, parameters, doses.

A model is data. Each ``Process`` moves cells (or label) from one state to another at a first-order
rate named by a parameter (1/h). Sinks (dead cells by cause, excreted label) are states with no
outgoing process. From this one declaration ``solve`` derives the batched rate matrices, the
reference right-hand side and the conservation check; nothing else restates the equations.

Rows and patients: every parameter is an array over *rows*. A row is one patient, or one size class
of one patient's cell product (``rows_per_patient`` > 1); rows never exchange cells, so results of
a patient are the sum over its rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class State:
    """A pool of cells or label: ``name`` is unique, ``compartment`` is where outputs report it."""

    name: str
    compartment: str
    kind: str  # 'live', 'dead', or an observation kind ('label', 'dna', ...)
    description: str = ""


@dataclass(frozen=True)
class Process:
    """First-order transfer ``source -> target`` at rate ``parameters[rate]`` (1/h)."""

    name: str
    source: str
    target: str
    rate: str


@dataclass(frozen=True)
class Switch:
    """From ``time_h`` on (per row), parameter ``name`` takes ``value`` (both arrays over rows)."""

    name: str
    time_h: np.ndarray
    value: np.ndarray


@dataclass(frozen=True)
class Dose:
    """``amount`` (per row) entering over ``[time_h, time_h + duration_h]``, split over states.

    ``split`` maps state names to fractions (arrays over rows) that sum to one; a zero duration is
    a bolus. ``marker`` says what is given: ``'cells'``, or a marker riding on them (``'dna'``, ...).
    """

    time_h: float
    duration_h: float
    amount: np.ndarray
    split: Mapping[str, np.ndarray]
    marker: str = "cells"

    def __post_init__(self) -> None:
        if self.duration_h < 0 or (self.duration_h > 0 and self.time_h + self.duration_h == self.time_h):
            raise ValueError("a dose lasts zero hours (a bolus) or long enough to end after it starts")


@dataclass(frozen=True)
class ParameterInfo:
    """What a derived parameter means, its unit and how it was computed (for reports and SBML)."""

    description: str
    unit: str = "1/h"
    formula: str = ""


@dataclass(frozen=True)
class Model:
    """A linear transfer network with piecewise-constant rates and inputs, over many rows."""

    states: tuple[State, ...]
    processes: tuple[Process, ...]
    parameters: Mapping[str, np.ndarray]
    doses: tuple[Dose, ...] = ()
    switches: tuple[Switch, ...] = ()
    rows_per_patient: int = 1
    info: Mapping[str, ParameterInfo] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [s.name for s in self.states]
        if len(set(names)) != len(names):
            raise ValueError("state names must be unique")
        known = set(names)
        for p in self.processes:
            if p.source not in known or p.target not in known:
                raise ValueError(f"process {p.name} refers to an unknown state")
            if p.rate not in self.parameters:
                raise ValueError(f"process {p.name} uses unknown parameter {p.rate}")
        for d in self.doses:
            unknown = set(d.split) - known
            if unknown:
                raise ValueError(f"dose splits into unknown states {sorted(unknown)}")

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.parameters.values())))

    @property
    def n_patients(self) -> int:
        return self.n_rows // self.rows_per_patient

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    def index(self, name: str) -> int:
        """Position of a state in the state vector."""
        return self.state_names.index(name)

    def sinks(self) -> tuple[int, ...]:
        """Indices of states with no outgoing process."""
        sources = {p.source for p in self.processes}
        return tuple(i for i, s in enumerate(self.states) if s.name not in sources)

    def parameters_at(
        self, time_h: float | np.ndarray, rows: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Parameter values (arrays over rows) in force at ``time_h`` (switches applied); with ``rows``,
        only those rows, each at its own time if ``time_h`` is an array over them."""
        take = (lambda v: v) if rows is None else (lambda v: v[rows])
        values = {name: take(v) for name, v in self.parameters.items()}
        for switch in self.switches:
            values[switch.name] = np.where(
                time_h >= take(switch.time_h), take(switch.value), values[switch.name]
            )
        return values

    def rate_matrix(self, parameters: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Rate matrices ``A`` with ``dx/dt = A x``, shape (rows, states, states), in 1/h (rows: the
        length of the parameter arrays, so a subset of rows can be built from sliced parameters)."""
        parameters = self.parameters if parameters is None else parameters
        n = len(self.states)
        index = {name: i for i, name in enumerate(self.state_names)}
        matrix = np.zeros((len(next(iter(parameters.values()))), n, n))
        for p in self.processes:
            rate = parameters[p.rate]
            source, target = index[p.source], index[p.target]
            matrix[:, target, source] += rate
            matrix[:, source, source] -= rate
        return matrix

    def input_rate(self, t0_h: float, t1_h: float) -> np.ndarray:
        """Input from infusions running throughout ``[t0_h, t1_h]``, shape (rows, states), per h."""
        rate = np.zeros((self.n_rows, len(self.states)))
        for dose in self.doses:
            if dose.duration_h > 0 and dose.time_h <= t0_h and t1_h <= dose.time_h + dose.duration_h:
                for name, fraction in dose.split.items():
                    rate[:, self.index(name)] += dose.amount * fraction / dose.duration_h
        return rate

    def boluses_at(self, time_h: float) -> np.ndarray:
        """Cells added instantaneously at ``time_h``, shape (rows, states)."""
        added = np.zeros((self.n_rows, len(self.states)))
        for dose in self.doses:
            if dose.duration_h == 0 and dose.time_h == time_h:
                for name, fraction in dose.split.items():
                    added[:, self.index(name)] += dose.amount * fraction
        return added

    def breakpoints(self, end_h: float, row_switches: bool = True) -> np.ndarray:
        """Times (h) where an input or a rate changes, within ``[0, end_h]``.

        ``row_switches=False`` leaves out the times of switches that differ between rows (a solver
        can step each row to its own switch; see ``solve``)."""
        times = {0.0, end_h}
        for dose in self.doses:
            times.update((dose.time_h, dose.time_h + dose.duration_h))
        for switch in self.switches:
            unique = np.unique(switch.time_h)
            if row_switches or len(unique) == 1:
                times.update(unique.tolist())
        return np.array(sorted(t for t in times if 0.0 <= t <= end_h))

    def administered(self, until_h: float, marker: str = "cells") -> np.ndarray:
        """Amount of ``marker`` given up to ``until_h`` per row (the conservation reference)."""
        total = np.zeros(self.n_rows)
        for dose in self.doses:
            if dose.marker != marker:
                continue
            if dose.duration_h == 0:
                if dose.time_h <= until_h:
                    total += dose.amount
            else:
                fraction = np.clip((until_h - dose.time_h) / dose.duration_h, 0.0, 1.0)
                total += dose.amount * fraction
        return total

    def take_patients(self, patients: np.ndarray) -> Model:
        """The sub-model of some patients (all their rows), in the order given."""
        k = self.rows_per_patient
        rows = (np.asarray(patients, dtype=int)[:, None] * k + np.arange(k)).reshape(-1)

        def take(values) -> np.ndarray:
            return np.broadcast_to(np.asarray(values, dtype=float), (self.n_rows,))[rows]

        doses = tuple(
            Dose(d.time_h, d.duration_h, take(d.amount), {s: take(f) for s, f in d.split.items()}, d.marker)
            for d in self.doses
        )
        switches = tuple(Switch(s.name, take(s.time_h), take(s.value)) for s in self.switches)
        parameters = {name: take(values) for name, values in self.parameters.items()}
        return Model(self.states, self.processes, parameters, doses, switches, k, self.info, self.sources)

    def with_parameters(self, **updates: np.ndarray) -> Model:
        """A copy with some parameter arrays replaced."""
        parameters = dict(self.parameters)
        parameters.update(updates)
        return Model(
            self.states,
            self.processes,
            parameters,
            self.doses,
            self.switches,
            self.rows_per_patient,
            self.info,
            self.sources,
        )


def patient_sum(values: np.ndarray, rows_per_patient: int) -> np.ndarray:
    """Sum an array shaped (rows, ...) over each patient's rows -> (patients, ...)."""
    shape = values.shape
    return values.reshape(shape[0] // rows_per_patient, rows_per_patient, *shape[1:]).sum(axis=1)


def merge_states(*groups: Sequence[State]) -> tuple[State, ...]:
    """Concatenate state lists, keeping order."""
    return tuple(s for group in groups for s in group)
