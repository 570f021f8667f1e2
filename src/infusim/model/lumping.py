"""Exact lumping of parallel leaves: fewer states for the solver, the same answer.

Many organs hold cells the same way: they receive cells from one blood pool only, and lose them
(release, death, phagocytosis, rejection) at the same rates to the same places. Such states
``i = 1..m`` obey ``x_i' = a_i s(t) - d x_i`` with a common source ``s`` and common outflow ``d``;
started empty, ``x_i(t) = (a_i / sum_j a_j) L(t)`` exactly, where ``L = sum_i x_i`` obeys
``L' = (sum_i a_i) s - d L``. ``lump`` replaces every such group by one state ``L`` and
``expand`` recovers the members; the reduced model has the same dynamics for every other state,
so the solver's work (an eigen-decomposition per row, O(n^3)) shrinks and degenerate eigenvalues
(identical organs) disappear.

A group qualifies only when, in every row, its members: are not dosed into, take cells from a
single common state by processes without rate switches, and send identical rates (switched values
included) to the same targets.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from infusim.model.declare import Model, ParameterInfo, Process, State


@dataclass(frozen=True)
class Lumping:
    """A reduced model and how to map its states back to the full model's states."""

    full: Model
    reduced: Model
    #: For every full state: its index in the reduced model.
    position: np.ndarray
    #: For every full state: its share of the reduced state, per row (1 for unlumped states).
    share: np.ndarray  # (rows, full states)

    def expand(self, reduced_states: np.ndarray) -> np.ndarray:
        """Full states from reduced ones: (rows, times, reduced) -> (rows, times, full)."""
        return reduced_states[:, :, self.position] * self.share[:, None, :]


def lump(model: Model) -> Lumping:
    """Lump every group of parallel leaves of ``model`` (identity when there is none)."""
    groups = _groups(model)
    n_rows, names = model.n_rows, model.state_names
    if not groups:
        return Lumping(model, model, np.arange(len(names)), np.ones((n_rows, len(names))))
    inflow = _inflow(model)
    member_of = {i: g for g, members in enumerate(groups) for i in members}
    kept = [i for i in range(len(names)) if i not in member_of]
    states = [model.states[i] for i in kept]
    position = np.zeros(len(names), dtype=int)
    position[kept] = np.arange(len(kept))
    share = np.ones((n_rows, len(names)))
    parameters = dict(model.parameters)
    info = dict(model.info)
    grouped = {names[i] for i in member_of}
    processes = [p for p in model.processes if p.source not in grouped and p.target not in grouped]
    for members in groups:
        lumped = f"lumped:{'+'.join(names[i] for i in members)}"
        position[list(members)] = len(states)
        kind = model.states[members[0]].kind
        states.append(State(lumped, "lumped", kind, "exactly lumped parallel leaves"))
        source = inflow[members[0]][0]
        total = sum(inflow[i][1] for i in members)
        for i in members:
            share[:, i] = np.divide(inflow[i][1], total, out=np.zeros(n_rows), where=total > 0)
        rate_name = f"{lumped}:inflow"
        parameters[rate_name] = total
        info[rate_name] = ParameterInfo(f"total inflow to {lumped}", "1/h", "sum of member inflow rates")
        processes.append(Process(f"{source}->{lumped}", source, lumped, rate_name))
        first = names[members[0]]
        processes.extend(
            Process(f"{lumped}->{p.target}:{p.name}", lumped, p.target, p.rate)
            for p in model.processes
            if p.source == first
        )
    used = {p.rate for p in processes}
    reduced = Model(
        states=tuple(states),
        processes=tuple(processes),
        parameters={k: v for k, v in parameters.items() if k in used},
        doses=model.doses,
        switches=tuple(s for s in model.switches if s.name in used),
        rows_per_patient=model.rows_per_patient,
        info=info,
        sources=model.sources,
    )
    return Lumping(model, reduced, position, share)


def _inflow(model: Model) -> dict[int, tuple[str, np.ndarray]]:
    """States fed by exactly one other state through unswitched processes: (source, total rate)."""
    switched = {s.name for s in model.switches}
    sources: dict[int, set[str]] = defaultdict(set)
    totals: dict[int, np.ndarray] = {}
    blocked: set[int] = set()
    for p in model.processes:
        target = model.index(p.target)
        sources[target].add(p.source)
        totals[target] = totals.get(target, 0.0) + model.parameters[p.rate]
        if p.rate in switched:
            blocked.add(target)
    return {i: (next(iter(s)), totals[i]) for i, s in sources.items() if len(s) == 1 and i not in blocked}


def _groups(model: Model) -> list[tuple[int, ...]]:
    """Groups (two or more states) that can be lumped exactly."""
    dosed = {name for dose in model.doses for name in dose.split}
    sinks = set(model.sinks())
    inflow = _inflow(model)
    outflows: dict[str, list[Process]] = defaultdict(list)
    for p in model.processes:
        outflows[p.source].append(p)
    switch_of: dict[str, list] = defaultdict(list)
    for switch in model.switches:
        switch_of[switch.name].append(switch)
    candidates: dict[tuple, list[int]] = defaultdict(list)
    for i, state in enumerate(model.states):
        if i in sinks or state.name in dosed or i not in inflow:
            continue
        out = outflows[state.name]
        key = (inflow[i][0], state.kind, tuple(sorted(p.target for p in out)))
        candidates[key].append(i)
    groups = []
    for members in candidates.values():
        remaining = list(members)
        while len(remaining) > 1:
            first = remaining[0]
            same = [i for i in remaining if _same_outflows(model, outflows, switch_of, first, i)]
            if len(same) > 1:
                groups.append(tuple(same))
            remaining = [i for i in remaining if i not in same]
    member = {i for g in groups for i in g}
    # A member must not feed another member's source chain within its own group (leaves only).
    return [g for g in groups if not any(inflow[i][0] in {model.states[j].name for j in member} for i in g)]


def _same_outflows(model: Model, outflows, switch_of, a: int, b: int) -> bool:
    """Whether states ``a`` and ``b`` send identical rates (and switched rates) to each target."""

    def table(i: int) -> dict[str, list[tuple[np.ndarray, tuple]]]:
        out: dict[str, list] = defaultdict(list)
        for p in outflows[model.states[i].name]:
            key = tuple((s.time_h, s.value) for s in switch_of.get(p.rate, ()))
            out[p.target].append((model.parameters[p.rate], key))
        return out

    ta, tb = table(a), table(b)
    if ta.keys() != tb.keys():
        return False
    for target in ta:
        if len(ta[target]) != len(tb[target]):
            return False
        for (ra, sa), (rb, sb) in zip(ta[target], tb[target], strict=True):
            if not np.array_equal(ra, rb) or len(sa) != len(sb):
                return False
            for (ta_h, va), (tb_h, vb) in zip(sa, sb, strict=True):
                if not (np.array_equal(ta_h, tb_h) and np.array_equal(va, vb)):
                    return False
    return True
