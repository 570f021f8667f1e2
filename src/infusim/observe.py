"""What instruments measure: live cells, human-DNA qPCR and radiolabel, from the cell model.

Live-cell assays (flow cytometry, bioluminescence) see the live states. DNA and radiolabel are
*markers* that ride on the cells and outlive them, so each is its own small kinetic system derived
from the cell model's declaration (no equation is written twice):

* marker in live cells follows every cell transfer at the same rate; a radiolabel also leaks out
  of live cells (efflux) into plasma as free label;
* when cells die in place or are rejected, their marker becomes debris where they died; debris is
  engulfed by phagocytes that carry it to liver and spleen (species-specific split), and when live
  cells are phagocytosed their marker goes there directly;
* DNA is degraded in debris and, faster, in phagocytes; label is released from debris and slowly
  from phagocytes as free label, which leaves plasma for isotope-specific destinations (liver and
  marrow for indium, urine and gut for technetium HMPAO, ...) or is excreted;
* physical decay is the same for every label state, so the system is solved decay-corrected and
  uncorrected values are ``exp(-ln2 t / t_half)`` times those.

Only the first dose carries the radiolabel (as in imaging studies); donor DNA comes with every dose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from infusim.compartments import DEATH_CAUSES
from infusim.model.declare import Dose, Model, ParameterInfo, Process, State, patient_sum
from infusim.parameters import ParameterSet, bundled
from infusim.scenario import Label
from infusim.solve import Trajectory, solve

PHAGOCYTE_ORGANS = ("liver", "spleen", "lungs")
FREE_DESTINATIONS = ("liver", "bone_marrow", "kidneys", "gut", "brain", "heart", "muscle", "rest")


@dataclass(frozen=True)
class MarkerRates:
    """Rates (1/h) and fractions of one marker's own kinetics."""

    name: str
    efflux: float
    debris_clearance: float
    debris_clearance_blood: float
    debris_release: float
    debris_degradation: float
    phagocyte_release: float
    phagocyte_degradation: float
    liver_share: float
    lung_local_share: float
    free_clearance: float
    free_fractions: dict[str, float]
    half_life_h: float  # physical; inf for DNA


def dna_rates(species: str, params: ParameterSet) -> MarkerRates:
    """Human-DNA (qPCR) marker: no efflux, degraded in debris and phagocytes."""
    return MarkerRates(
        name="dna",
        efflux=0.0,
        debris_clearance=params.get("debris_clearance_rate", "", "1/h"),
        debris_clearance_blood=params.get("debris_clearance_rate", "blood", "1/h"),
        debris_release=0.0,
        debris_degradation=params.get("dna_debris_degradation_rate", "", "1/h"),
        phagocyte_release=0.0,
        phagocyte_degradation=params.get("dna_phagocyte_degradation_rate", "", "1/h"),
        liver_share=params.get("phagocyte_liver_share", species, ""),
        lung_local_share=params.get("phagocyte_local_share", "lungs", ""),
        free_clearance=0.0,
        free_fractions={},
        half_life_h=np.inf,
    )


def free_label_scope(isotope: str, species: str, params: ParameterSet) -> str:
    """Scope of the free-label rows (``free_clearance_rate``, ``free_fraction[<scope>/<dest>]``):
    ``<species>/<isotope>`` where the tables give the species its own (human In-111: ICRP 151),
    else ``<isotope>``, the rows for every other species."""
    own = f"{species}/{isotope}"
    return own if params.has("free_clearance_rate", own) else isotope


def label_rates(isotope: str, species: str, params: ParameterSet) -> MarkerRates:
    """Radiolabel marker of ``isotope`` (in111, tc99m, f18, zr89)."""
    scope = free_label_scope(isotope, species, params)
    fractions = {
        dest: params.get("free_fraction", f"{scope}/{dest}", "")
        for dest in (*FREE_DESTINATIONS, "excreted")
        if params.has("free_fraction", f"{scope}/{dest}")
    }
    total = sum(fractions.values())  # a number, or one per parameter set drawn (uncertainty)
    if np.any(np.abs(np.asarray(total) - 1.0) > 1e-9):
        raise ValueError(f"free_fraction rows of {scope} sum to {total}, not 1")
    return MarkerRates(
        name="label",
        efflux=params.get("efflux_rate", isotope, "1/h"),
        debris_clearance=params.get("debris_clearance_rate", "", "1/h"),
        debris_clearance_blood=params.get("debris_clearance_rate", "blood", "1/h"),
        debris_release=params.get("debris_release_rate", isotope, "1/h"),
        debris_degradation=0.0,
        phagocyte_release=params.get("phagocyte_release_rate", isotope, "1/h"),
        phagocyte_degradation=0.0,
        liver_share=params.get("phagocyte_liver_share", species, ""),
        lung_local_share=params.get("phagocyte_local_share", "lungs", ""),
        free_clearance=params.get("free_clearance_rate", scope, "1/h"),
        free_fractions=fractions,
        half_life_h=params.get("physical_half_life", isotope, "h"),
    )


def with_marker(model: Model, rates: MarkerRates, labelled_doses: int | None = None) -> Model:
    """The cell model plus the states and processes of one marker riding on the cells."""
    m = rates.name
    live = [s for s in model.states if s.kind == "live"]
    compartments = list(dict.fromkeys(s.compartment for s in live))
    states: list[State] = [State(f"{m}:cells:{s.name}", s.compartment, m, f"{m} in {s.name}") for s in live]
    states += [State(f"{m}:debris:{c}", c, m, f"{m} in dead-cell debris in {c}") for c in compartments]
    states += [State(f"{m}:phagocytes:{o}", o, m, f"{m} in phagocytes of {o}") for o in PHAGOCYTE_ORGANS]
    if rates.free_fractions:
        states.append(State(f"{m}:free:plasma", "venous_blood", m, f"free {m} in plasma"))
        for dest in rates.free_fractions:
            if dest != "excreted":
                states.append(State(f"{m}:free:{dest}", dest, m, f"free {m} taken up by {dest}"))
        states.append(State(f"{m}:excreted", "excreted", m, f"{m} excreted"))
    if _nonzero(rates.debris_degradation) or _nonzero(rates.phagocyte_degradation):
        states.append(State(f"{m}:degraded", "degraded", m, f"{m} degraded"))
    names = {s.name for s in states}
    compartment_of = {s.name: s.compartment for s in live}
    n_rows = model.n_rows
    parameters = dict(model.parameters)
    info = dict(model.info)
    processes = list(model.processes)

    def constant(name: str, value: float, description: str) -> str:
        key = f"{m}:{name}"
        parameters[key] = np.full(n_rows, value)
        info[key] = ParameterInfo(description, "1/h", "")
        return key

    def scaled(rate: str, factor: float, label: str) -> str:
        key = f"{rate}*{m}:{label}"
        parameters[key] = model.parameters[rate] * factor
        info[key] = ParameterInfo(f"{info[rate].description} ({label})", "1/h", f"{rate}*{_text(factor)}")
        return key

    for p in model.processes:
        source = f"{m}:cells:{p.source}"
        if source not in names:
            continue
        if p.target in compartment_of:
            processes.append(Process(f"{m}:{p.name}", source, f"{m}:cells:{p.target}", p.rate))
        elif p.target in ("dead:death", "dead:rejection"):
            debris = f"{m}:debris:{compartment_of[p.source]}"
            processes.append(Process(f"{m}:{p.name}", source, debris, p.rate))
        elif p.target == "dead:phagocytosis":
            for organ, share in _phagocyte_destinations(compartment_of[p.source], rates):
                rate = scaled(p.rate, share, f"to {organ}")
                processes.append(Process(f"{m}:{p.name}:{organ}", source, f"{m}:phagocytes:{organ}", rate))
    if _nonzero(rates.efflux):
        efflux = constant("efflux", rates.efflux, "label efflux from live cells")
        for s in live:
            processes.append(
                Process(f"{m}:efflux:{s.name}", f"{m}:cells:{s.name}", f"{m}:free:plasma", efflux)
            )
    for c in compartments:
        debris = f"{m}:debris:{c}"
        in_blood = c in ("venous_blood", "arterial_blood")
        clearance = rates.debris_clearance_blood if in_blood else rates.debris_clearance
        for organ, share in _phagocyte_destinations(c, rates):
            rate = constant(f"debris_{c}_to_{organ}", clearance * share, f"debris of {c} carried to {organ}")
            processes.append(Process(f"{m}:clear:{c}:{organ}", debris, f"{m}:phagocytes:{organ}", rate))
        if _nonzero(rates.debris_release):
            rate = constant("debris_release", rates.debris_release, "label released from debris")
            processes.append(Process(f"{m}:release:{c}", debris, f"{m}:free:plasma", rate))
        if _nonzero(rates.debris_degradation):
            rate = constant("debris_degradation", rates.debris_degradation, "degradation in debris")
            processes.append(Process(f"{m}:degrade:{c}", debris, f"{m}:degraded", rate))
    for organ in PHAGOCYTE_ORGANS:
        phagocytes = f"{m}:phagocytes:{organ}"
        if _nonzero(rates.phagocyte_release):
            rate = constant("phagocyte_release", rates.phagocyte_release, "label released by phagocytes")
            processes.append(Process(f"{m}:release:{organ}", phagocytes, f"{m}:free:plasma", rate))
        if _nonzero(rates.phagocyte_degradation):
            rate = constant("phagocyte_degradation", rates.phagocyte_degradation, "degradation in phagocytes")
            processes.append(Process(f"{m}:degrade:{organ}", phagocytes, f"{m}:degraded", rate))
    for dest, fraction in rates.free_fractions.items():
        target = f"{m}:excreted" if dest == "excreted" else f"{m}:free:{dest}"
        rate = constant(f"free_to_{dest}", rates.free_clearance * fraction, f"free {m} to {dest}")
        processes.append(Process(f"{m}:free:{dest}", f"{m}:free:plasma", target, rate))

    cell_doses = [d for d in model.doses if d.marker == "cells"]
    doses = list(model.doses)
    for i, dose in enumerate(cell_doses):
        if dose.marker != "cells" or (labelled_doses is not None and i >= labelled_doses):
            continue
        split = {}
        for state, fraction in dose.split.items():
            if state in compartment_of:
                split[f"{m}:cells:{state}"] = fraction
            elif state == "dead:nonviable":
                split[f"{m}:debris:venous_blood"] = fraction
        doses.append(Dose(dose.time_h, dose.duration_h, dose.amount, split, marker=m))
    return Model(
        states=(*model.states, *states),
        processes=tuple(processes),
        parameters=parameters,
        doses=tuple(doses),
        switches=model.switches,
        rows_per_patient=model.rows_per_patient,
        info=info,
        sources=model.sources,
    )


def _nonzero(value) -> bool:
    """Whether a rate (a number, or an array over rows of a sampled set) is anywhere non-zero."""
    return bool(np.any(np.asarray(value) != 0))


def _text(value) -> str:
    return f"{value:g}" if np.ndim(value) == 0 else "(per row)"


def _phagocyte_destinations(compartment: str, rates: MarkerRates) -> list[tuple[str, float]]:
    """Where phagocytes take material from ``compartment``: resident lung macrophages keep a share."""
    local = rates.lung_local_share if compartment == "lungs" else 0.0
    carried = 1.0 - local
    shares = [("liver", carried * rates.liver_share), ("spleen", carried * (1 - rates.liver_share))]
    return [*shares, ("lungs", local)] if _nonzero(local) else shares


@dataclass(frozen=True)
class Observed:
    """The solved cell model with its marker systems, and what each instrument reads."""

    trajectory: Trajectory
    isotope: str | None
    decay_corrected: bool
    half_life_h: float


def observe(
    model: Model,
    times_h: np.ndarray,
    species: str,
    label: Label | None = None,
    params: ParameterSet | None = None,
    method: str = "eig",
    dna: bool = True,
) -> Observed:
    """Solve the cell model together with its DNA and (optionally) radiolabel markers.

    ``label`` names the isotope and whether readings are decay-corrected (``simulation.label``).
    ``dna=False`` leaves the DNA marker out (a caller that reads no qPCR saves its states).
    ``method`` is passed to ``solve``; rows whose augmented matrix is near-defective (markers mirror
    the cells' eigenvalues) fall back to the matrix exponential automatically.
    """
    params = params or bundled()
    augmented = with_marker(model, dna_rates(species, params)) if dna else model
    half_life = np.inf
    if label is not None:
        rates = label_rates(label.isotope, species, params)
        augmented = with_marker(augmented, rates, labelled_doses=1)
        half_life = rates.half_life_h
    trajectory = solve(augmented, times_h, method=method)
    isotope = label.isotope if label else None
    return Observed(trajectory, isotope, label.decay_corrected if label else True, half_life)


def observe_only(
    model: Model, times_h: np.ndarray, species: str, label: Label | None, params: ParameterSet, read: set[str]
) -> Observed:
    """``observe`` with just the markers the quantities ``read`` need (``radiolabel``, ``dna``)."""
    return observe(
        model,
        times_h,
        species,
        label=label if "radiolabel" in read else None,
        params=params,
        dna="dna" in read,
    )


def cell_states(observed: Observed) -> np.ndarray:
    """Cell states only, summed per patient: (patients, times, cell states)."""
    model = observed.trajectory.model
    columns = [i for i, s in enumerate(model.states) if s.kind in ("live", "dead")]
    return observed.trajectory.patient_states()[:, :, columns]


def observation_table(observed: Observed) -> pd.DataFrame:
    """Long table ``patient, time_h, quantity, compartment, value, unit`` for every instrument."""
    trajectory = observed.trajectory
    model = trajectory.model
    states = trajectory.patient_states()
    times = trajectory.times_h
    frames = []
    quantities = [("live_cells", "live", "cells"), ("dna", "dna", "cell_equivalents")]
    if observed.isotope is not None:
        unit = "fraction_injected_activity" + ("_decay_corrected" if observed.decay_corrected else "")
        quantities.append(("radiolabel", "label", unit))
    injected_label = None
    if observed.isotope is not None:
        first = next(d for d in model.doses if d.marker == "label")
        injected_label = patient_sum(first.amount, model.rows_per_patient)
    for quantity, kind, unit in quantities:
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(model.states):
            if s.kind == kind and s.compartment not in ("excreted", "degraded", "body"):
                groups.setdefault(s.compartment, []).append(i)
        values = {c: states[:, :, idx].sum(axis=2) for c, idx in groups.items()}
        values["whole_body"] = sum(values.values())
        for compartment, value in values.items():
            if quantity == "radiolabel":
                value = value / injected_label[:, None]
                if not observed.decay_corrected:
                    value = value * np.exp(-np.log(2) * times / observed.half_life_h)[None, :]
            frames.append(_long(value, times, quantity, compartment, unit))
    return pd.concat(frames, ignore_index=True)


def _long(values: np.ndarray, times: np.ndarray, quantity: str, compartment: str, unit: str) -> pd.DataFrame:
    patients, n_times = values.shape
    return pd.DataFrame(
        {
            "patient": np.repeat(np.arange(patients), n_times),
            "time_h": np.tile(times, patients),
            "quantity": quantity,
            "compartment": compartment,
            "value": values.reshape(-1),
            "unit": unit,
        }
    )


def cells_table(observed: Observed) -> pd.DataFrame:
    """Long table ``patient, time_h, compartment, state, cells``: live by compartment, dead by cause."""
    model = observed.trajectory.model
    states = observed.trajectory.patient_states()
    times = observed.trajectory.times_h
    frames = []
    live: dict[str, list[int]] = {}
    for i, s in enumerate(model.states):
        if s.kind == "live":
            live.setdefault(s.compartment, []).append(i)
    for compartment, idx in live.items():
        frame = _long(states[:, :, idx].sum(axis=2), times, "", compartment, "")
        frames.append(frame.assign(state="live"))
    for cause in DEATH_CAUSES:
        i = model.index(f"dead:{cause}")
        frames.append(_long(states[:, :, i], times, "", "body", "").assign(state=f"dead:{cause}"))
    table = pd.concat(frames, ignore_index=True)
    return table.rename(columns={"value": "cells"})[["patient", "time_h", "compartment", "state", "cells"]]
