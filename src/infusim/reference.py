"""A plain, independent reference model of one patient's cell kinetics, for tests only.

Written from the equations of docs/model.md (States, Physiology, Extraction per pass, Blood-borne
transfers, Fates, Rejection, Routes, Size classes) and the parameter tables, without using the
production model (``model/kinetics.py``, ``model/declare.py``, ``solve.py``). It exists so that a
test can compare two implementations of the model, not two integrators of one assembled matrix: a
wrong routing rule in either shows up as a disagreement.

Slow on purpose: every transfer is spelled out, by name, in a Python right-hand side (``make_rhs``),
and the result is integrated with scipy's Radau at rtol 1e-10 (atol 1e-12 of a dose), restarting at
every breakpoint (dose starts and ends, rejection onset, output times) with boluses applied there.
Within a segment all rates are constant, so the readable right-hand side is affine in the state;
Radau is handed the same function as ``A x + u`` with ``A`` read off it column by column.
Units: hours (h), rates 1/h, volumes L, flows L/h, diameters um, cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp
from scipy.linalg import block_diag

from infusim.compartments import BLOOD, DEATH_CAUSES, ORGANS, PORTAL
from infusim.parameters import ParameterSet, for_scenario

#: Organs with a row in ``flow_fraction``/``volume_fraction``: all but the lungs (they take the whole
#: cardiac output) and ``rest`` (the remainder).
SYSTEMIC = tuple(o for o in ORGANS if o not in ("lungs", "rest"))
#: Gauss-Hermite nodes and weights of the three size classes (share of the dose).
SIZE_NODES = (-math.sqrt(3.0), 0.0, math.sqrt(3.0))
SIZE_WEIGHTS = (1 / 6, 2 / 3, 1 / 6)


@dataclass(frozen=True)
class Patient:
    """Physiology of one patient (docs/model.md, Physiology)."""

    body_weight: float  # kg
    q_co: float  # cardiac output, L/h
    flow: dict[str, float]  # arterial flow into each systemic organ incl. rest, L/h
    v_art: float  # arterial blood, L
    v_ven: float  # venous blood, L
    d_cap: dict[str, float]  # capillary diameter per organ (lungs included), um


def physiology(species: str, body_weight: float, p: ParameterSet) -> Patient:
    """Cardiac output QCC*BW^0.75, organ flows q_o*Q_co, rest the remainder, blood pools.

    Organ volumes are not needed: states are cell counts and every transfer is a flow over a
    blood volume or a per-cell rate.
    """
    q_co = p.get("cardiac_output_coefficient", species, "L/h/kg**0.75") * body_weight**0.75
    flow = {o: p.get("flow_fraction", f"{species}/{o}", "") * q_co for o in SYSTEMIC}
    flow["rest"] = q_co - sum(flow.values())
    v_blood = p.get("blood_volume_fraction", species, "L/kg") * body_weight
    v_art = p.get("arterial_blood_fraction", species, "") * v_blood
    d_cap = {o: p.get("capillary_diameter", f"{species}/{o}", "um") for o in ORGANS}
    return Patient(body_weight, q_co, flow, v_art, v_blood - v_art, d_cap)


@dataclass(frozen=True)
class Cells:
    """Cell-type parameters of one size class (docs/model.md, Extraction per pass and Fates)."""

    diameter: float  # um
    extraction: dict[str, float]  # E_o per organ, and "target" (E_target) when there is a condition
    release: dict[str, float]  # 1/h, per organ and "target" (already divided by 1 + g*severity)
    loss: dict[str, float]  # 1/h, per organ, "target" and "blood"
    phag: dict[str, float]  # phagocytosed share of the loss, same keys as ``loss``
    engraft: dict[str, float]  # 1/h, "target" and "bone_marrow"
    engrafted_loss: float  # 1/h


def homing_signal(scenario, p: ParameterSet, dose_start: float) -> float:
    """s(tau) of docs/model.md (Time since injury) for a dose starting at ``dose_start`` h."""
    condition = scenario.condition
    scope = f"{condition.site}/{scenario.species}"
    c = p.get("homing_signal_chronic_fraction", scope, "")
    if condition.onset_h is None:  # a chronic injury
        return c
    tau = condition.onset_h + dose_start  # time since the injury, h
    plateau = p.get("homing_signal_plateau", scope, "h")
    if tau <= plateau:
        return 1.0
    return c + (1.0 - c) * 0.5 ** ((tau - plateau) / p.get("homing_signal_half_life", scope, "h"))


def cells(scenario, patient: Patient, diameter: float, p: ParameterSet, dose_start: float = 0.0) -> Cells:
    """Extraction per pass of a cell of ``diameter`` um and the fates of arrested cells, with the
    homing signal in force after a dose starting at ``dose_start`` h."""
    cell = scenario.product.cell_type
    m = p.get("size_extraction_midpoint", "", "")
    w = p.get("size_extraction_width", "", "")
    extraction = {}
    for o in ORGANS:
        e_size = 1.0 / (1.0 + math.exp(-(diameter / patient.d_cap[o] - m) / w))
        e_adhesion = p.get("adhesion_extraction", f"{cell}/{o}", "")
        extraction[o] = 1.0 - (1.0 - e_size) * (1.0 - e_adhesion)
    places = [*ORGANS, "blood"]
    release = {o: p.get("release_rate", f"{cell}/{o}", "1/h") for o in ORGANS}
    loss = {o: p.get("loss_rate", f"{cell}/{o}", "1/h") for o in places}
    phag = {o: p.get("phagocytosed_share", f"{cell}/{o}", "") for o in places}
    engraft = {"bone_marrow": p.get("engraftment_rate", f"{cell}/bone_marrow", "1/h")}
    condition = scenario.condition
    if condition is not None:
        site, severity = condition.site, condition.severity
        h = p.get("homing_extraction_max", "", "")
        g = p.get("injury_retention_gain", "", "")
        signal = homing_signal(scenario, p, dose_start)
        extraction["target"] = 1.0 - (1.0 - extraction[site]) * (1.0 - h * severity * signal)
        release["target"] = release[site] / (1.0 + g * severity)
        loss["target"] = loss[site]
        phag["target"] = phag[site]
        engraft["target"] = p.get("engraftment_rate", f"{cell}/{site}", "1/h")
    return Cells(
        diameter, extraction, release, loss, phag, engraft, p.get("engrafted_loss_rate", cell, "1/h")
    )


def size_classes(scenario, p: ParameterSet) -> list[tuple[float, float]]:
    """(diameter um, share of the dose) of the three log-normal Gauss-Hermite size classes."""
    product = scenario.product
    scope = f"{product.cell_type}/{product.tissue_source}"
    d = product.diameter_um if product.diameter_um is not None else p.get("diameter", scope, "um")
    sigma = math.sqrt(math.log1p(p.get("diameter_cv", scope, "") ** 2))
    return [(d * math.exp(sigma * z), wt) for z, wt in zip(SIZE_NODES, SIZE_WEIGHTS, strict=True)]


def state_names(local: bool) -> list[str]:
    """Live states then the dead sinks (docs/model.md, States)."""
    live = [*BLOOD, *ORGANS, "target", "target:engrafted", "bone_marrow:engrafted"]
    if local:
        live += ["depot", "implant"]
    return live + [f"dead:{c}" for c in DEATH_CAUSES]


@dataclass(frozen=True)
class Dose:
    """One administration: start (h), duration (h, 0 for a bolus), cells."""

    start: float
    duration: float
    cells: float


def alive_at_entry(scenario, p: ParameterSet) -> float:
    """Viability at thaw times the average, over the drip, of exp(-k (hold + s)), s from 0 to the
    infusion's duration D (docs/model.md, Routes: in-bag viability)."""
    product = scenario.product
    if product.carrier is None:
        return product.viability
    k = p.get("bag_viability_loss_rate", f"msc/{product.carrier}", "1/h")
    drip = scenario.administration.effective_duration_h
    mean_over_drip = 1.0 if drip == 0 else (1.0 - math.exp(-k * drip)) / (k * drip)
    return product.viability * math.exp(-k * product.hold_h) * mean_over_drip


def doses(scenario) -> list[Dose]:
    """One dose event per administration, starting at t = 0: ``repeat`` (equal doses at equal
    intervals) or ``schedule`` (given times, each with ``administration.dose`` or its own)."""
    admin = scenario.administration
    weight = scenario.patient.body_weight_kg
    cells_per_dose = float(scenario.dose_cells_for(np.array(weight)))
    if not admin.schedule:
        return [
            Dose(k * admin.repeat.interval_h, admin.effective_duration_h, cells_per_dose)
            for k in range(admin.repeat.count)
        ]
    events = []
    for entry in admin.schedule:
        if entry.dose_cells_per_kg is not None:
            cells = entry.dose_cells_per_kg * weight
        else:
            cells = cells_per_dose if entry.dose_cells is None else entry.dose_cells
        events.append(Dose(entry.at_h, admin.effective_duration_h, cells))
    return events


def given(ev: Dose, t: float) -> float:
    """Cells of dose ``ev`` administered by time ``t`` (h)."""
    if ev.duration == 0:
        return ev.cells if t >= ev.start else 0.0
    return ev.cells * min(max((t - ev.start) / ev.duration, 0.0), 1.0)


def lesion_share(scenario, p: ParameterSet) -> float:
    """Share of the condition organ's flow and mass that is injured: severity * lesion_fraction_max."""
    condition = scenario.condition
    return condition.severity * p.get("lesion_fraction_max", "", "") if condition is not None else 0.0


def entry_split(scenario, c: Cells, share: float) -> dict[str, float]:
    """Where the live cells of a dose go first, as shares (docs/model.md, Routes)."""
    route, site = scenario.administration.route, scenario.site
    if route == "intravenous":
        return {"venous_blood": 1.0}
    if route in ("local", "intrathecal", "intraventricular"):
        return {"depot": 1.0}
    if site == "left_ventricle":  # systemic arterial blood: every bed by its flow, lungs skipped
        return {"arterial_blood": 1.0}
    # intra-arterial into `site`: its bed first, split over target and healthy part by flow share
    target_share = share if scenario.condition is not None and scenario.condition.site == site else 0.0
    split = {
        site: (1.0 - target_share) * c.extraction[site],
        "target": target_share * c.extraction.get("target", 0.0),
    }
    passing = 1.0 - split[site] - split["target"]
    if site in PORTAL:  # through the liver first
        liver_target = share if scenario.condition is not None and scenario.condition.site == "liver" else 0.0
        e_t = c.extraction.get("target", 0.0)
        split["liver"] = passing * (1.0 - liver_target) * c.extraction["liver"]
        split["target"] += passing * liver_target * e_t
        split["venous_blood"] = passing * (
            (1 - liver_target) * (1 - c.extraction["liver"]) + liver_target * (1 - e_t)
        )
    else:
        split["venous_blood"] = passing
    return split


def make_rhs(scenario, pt: Patient, c: Cells, p: ParameterSet, names: list[str]):
    """The right-hand side ``rhs(t, x, k_rej, entry)`` of one size class: dx/dt (cells/h) for cells
    ``x``, rejection rate ``k_rej`` (1/h) and dose input ``entry`` (cells/h per state)."""
    condition = scenario.condition
    site = condition.site if condition is not None else None
    share = lesion_share(scenario, p)
    route = scenario.administration.route
    into_csf = route in ("intrathecal", "intraventricular")  # a lumbar puncture or a lateral ventricle
    local_site = scenario.site if route == "local" or into_csf else None
    if route == "local":
        f_ret = p.get("local_retained_fraction", local_site, "")
        tau = p.get("local_settling_time", local_site, "h")
        k_settle, k_wash = f_ret / tau, (1 - f_ret) / tau
        k_implant_loss = p.get("implant_loss_rate", local_site, "1/h")
        f_phag_implant = c.phag[local_site]
        k_implant_engraft = c.engraft["target"] if site == local_site else 0.0
    elif into_csf:
        # cerebrospinal fluid: the dose leaves with its bulk flow Q_csf / V_csf, and settles on the
        # meninges at the rate that makes f_ret of it settle, k_settle / (k_settle + k_wash) = f_ret
        f_ret = p.get("local_retained_fraction", route, "")
        V_csf = p.get("csf_volume", scenario.species, "mL")
        k_wash = p.get("csf_production_rate", scenario.species, "mL/min") * 60.0 / V_csf
        k_settle = k_wash * f_ret / (1 - f_ret)
        k_implant_loss = p.get("implant_loss_rate", route, "1/h")
        f_phag_implant = c.phag["brain"]
        k_implant_engraft = 0.0  # settled on the meninges, not in a lesion
    index = {n: i for i, n in enumerate(names)}
    E, Q, V_art, V_ven, Q_co = c.extraction, pt.flow, pt.v_art, pt.v_ven, pt.q_co
    name = condition.name if condition is not None and condition.name else ""
    shunt = p.get("intrapulmonary_shunt_fraction", name, "")  # share of cardiac output
    E_t = E.get("target", 0.0)

    def rhs(t: float, x: np.ndarray, k_rej: float, entry: dict[str, float]) -> np.ndarray:
        dx = np.zeros_like(x)

        def move(src: str, dst: str, rate: float) -> None:
            """First-order transfer of cells from ``src`` to ``dst`` at ``rate`` (1/h)."""
            flux = rate * x[index[src]]
            dx[index[src]] -= flux
            dx[index[dst]] += flux

        # --- doses: live cells enter where the route puts them (cells/h; boluses are applied apart)
        for state, rate in entry.items():
            dx[index[state]] += rate

        # --- venous blood: through the right heart into the lungs' capillary bed, except a shunted
        # share s of the cardiac output that reaches arterial blood through dilated vessels
        lung_target = share if site == "lungs" else 0.0
        Q_cap = Q_co * (1 - shunt)
        move("venous_blood", "lungs", Q_cap * (1 - lung_target) * E["lungs"] / V_ven)
        if site == "lungs":
            move("venous_blood", "target", Q_cap * lung_target * E_t / V_ven)
        passing_lungs = (1 - lung_target) * (1 - E["lungs"]) + lung_target * (1 - E_t)
        move("venous_blood", "arterial_blood", Q_cap * passing_lungs / V_ven)
        move("venous_blood", "arterial_blood", Q_co * shunt / V_ven)

        # --- arterial blood: into every systemic bed (the target takes its share of its organ's flow)
        liver_target = share if site == "liver" else 0.0
        passing_liver = (1 - liver_target) * (1 - E["liver"]) + liver_target * (1 - E_t)
        for o in (*SYSTEMIC, "rest"):
            o_target = share if site == o else 0.0
            move("arterial_blood", o, Q[o] * (1 - o_target) * E[o] / V_art)
            if o_target:
                move("arterial_blood", "target", Q[o] * o_target * E_t / V_art)
            passing = (1 - o_target) * (1 - E[o]) + o_target * (1 - E_t)
            if o in PORTAL:  # portal vein: the liver's bed next (its target takes its share)
                move("arterial_blood", "liver", Q[o] * passing * (1 - liver_target) * E["liver"] / V_art)
                if liver_target:
                    move("arterial_blood", "target", Q[o] * passing * liver_target * E_t / V_art)
                move("arterial_blood", "venous_blood", Q[o] * passing * passing_liver / V_art)
            else:
                move("arterial_blood", "venous_blood", Q[o] * passing / V_art)

        # --- loss in blood (complement, monocytes)
        for pool in BLOOD:
            move(pool, "dead:death", c.loss["blood"] * (1 - c.phag["blood"]))
            move(pool, "dead:phagocytosis", c.loss["blood"] * c.phag["blood"])

        # --- fates of arrested cells: release (lungs to arterial blood, others to venous), loss
        arrested = [*ORGANS, "target"] if site is not None else list(ORGANS)
        for o in arrested:
            in_lungs = o == "lungs" or (o == "target" and site == "lungs")
            move(o, "arterial_blood" if in_lungs else "venous_blood", c.release[o])
            move(o, "dead:death", c.loss[o] * (1 - c.phag[o]))
            move(o, "dead:phagocytosis", c.loss[o] * c.phag[o])

        # --- engraftment in the injured target and in marrow; engrafted cells die slowly
        move("bone_marrow", "bone_marrow:engrafted", c.engraft["bone_marrow"])
        move("bone_marrow:engrafted", "dead:death", c.engrafted_loss)
        if site is not None:
            move("target", "target:engrafted", c.engraft["target"])
            move("target:engrafted", "dead:death", c.engrafted_loss)

        # --- local injection or a dose into the CSF: the depot settles or washes out to venous blood
        if local_site is not None:
            move("depot", "implant", k_settle)
            move("depot", "venous_blood", k_wash)
            move("implant", "dead:death", k_implant_loss * (1 - f_phag_implant))
            move("implant", "dead:phagocytosis", k_implant_loss * f_phag_implant)
            move("implant", "target:engrafted", k_implant_engraft)

        # --- allogeneic rejection of every live cell
        for state in names:
            if not state.startswith("dead:"):
                move(state, "dead:rejection", k_rej)
        return dx

    return rhs


def rejection_rate(scenario, t: float, p: ParameterSet) -> float:
    """k_rej(t) = HR^(m - m_ref) * (k_innate before the onset, k_adaptive after), 1/h."""
    product = scenario.product
    if product.donor != "allogeneic":
        return 0.0
    hr = p.get("mismatch_hazard_ratio", "", "") ** (
        product.hla_mismatches - p.get("reference_mismatches", "", "")
    )
    onset = p.get("allo_response_onset", "", "h")  # after the first dose, at t = 0
    k = p.get("allo_adaptive_rate", "", "1/h") if t >= onset else p.get("allo_innate_rate", "", "1/h")
    return hr * k


def compartment_of(state: str, scenario) -> str:
    """Output compartment of a state (docs/model.md, States); dead states keep their name."""
    if state.startswith("dead:"):
        return state
    if state in ("depot", "implant"):
        site = scenario.site
        if scenario.administration.route in ("intrathecal", "intraventricular"):
            return "brain"  # the central nervous system's healthy part: meninges, ventricle walls
        return "target" if scenario.condition is not None and scenario.condition.site == site else site
    return state.split(":")[0]


def reference_cells(scenario, times_h, params: ParameterSet | None = None) -> dict[str, np.ndarray]:
    """Cells per output compartment at ``times_h`` (h after the first dose), summed over size classes.

    Keys: ``venous_blood``, ``arterial_blood``, each organ, ``target`` (with a condition; engrafted
    cells included), ``dead:<cause>`` for each cause, and ``given`` (cells administered so far).
    At a breakpoint time, boluses given then are included.
    """
    p = params if params is not None else for_scenario(scenario)
    times = np.asarray(times_h, dtype=float)
    pt = physiology(scenario.species, scenario.patient.body_weight_kg, p)
    events = doses(scenario)
    viability = alive_at_entry(scenario, p)
    share = lesion_share(scenario, p)
    names = state_names(scenario.administration.route in ("local", "intrathecal", "intraventricular"))
    n = len(names)
    # per dose period (from a dose's start to the next dose's; capture follows the homing signal
    # at the dose's start) and size class: (share of the dose, rhs, where the dose goes as shares)
    periods = []
    for ev in events:
        classes = []
        for diameter, weight in size_classes(scenario, p):
            c = cells(scenario, pt, diameter, p, ev.start)
            split = {state: viability * s for state, s in entry_split(scenario, c, share).items()}
            split["dead:nonviable"] = 1.0 - viability  # the non-viable share of every dose
            classes.append((weight, make_rhs(scenario, pt, c, p, names), split))
        periods.append((ev.start, classes))

    def period(t: float) -> list:
        return [classes for start, classes in periods if start <= t][-1]

    breaks = {0.0, *times.tolist()}
    for ev in events:
        breaks |= {ev.start, ev.start + ev.duration}
    if scenario.product.donor == "allogeneic":
        breaks.add(p.get("allo_response_onset", "", "h"))
    end = float(times.max()) if times.size else 0.0
    breaks = sorted(b for b in breaks if b <= end)
    scale = max(ev.cells for ev in events)
    totals = np.zeros((times.size, n))
    # the three size classes side by side: x[k * n + i] is state i of class k
    x = np.zeros(len(SIZE_WEIGHTS) * n)
    for a, b in zip(breaks, [*breaks[1:], None], strict=True):
        for ev in events:  # boluses at the breakpoint they start at
            if ev.duration == 0 and ev.start == a:
                for k, (weight, _, split) in enumerate(period(a)):
                    for state, s in split.items():
                        x[k * n + names.index(state)] += weight * ev.cells * s
        totals[times == a] += x.reshape(len(SIZE_WEIGHTS), n).sum(axis=0)
        if b is None:
            break
        k_rej = rejection_rate(scenario, a, p)
        infusing = [ev for ev in events if ev.duration > 0 and ev.start <= a < ev.start + ev.duration]
        rate = sum(ev.cells / ev.duration for ev in infusing)  # cells/h
        # Rates are constant within a segment, so each class's rhs is affine in x: read its matrix
        # and input off unit vectors (exactly) and let Radau call the equivalent ``A x + u``.
        blocks, inputs = [], []
        for weight, rhs, split in period(a):
            entry = {state: weight * rate * s for state, s in split.items()}
            inputs.append(rhs(a, np.zeros(n), k_rej, entry))
            blocks.append(np.column_stack([rhs(a, e, k_rej, {}) for e in np.eye(n)]))
        A = block_diag(*blocks)
        u = np.concatenate(inputs)
        sol = solve_ivp(
            lambda t, y, A=A, u=u: A @ y + u,
            (a, b),
            x,
            method="Radau",
            rtol=1e-10,
            atol=1e-12 * scale,
            jac=A,
        )
        if not sol.success:
            raise RuntimeError(f"reference integration failed on [{a}, {b}] h: {sol.message}")
        x = sol.y[:, -1]
    out: dict[str, np.ndarray] = {}
    for i, state in enumerate(names):
        key = compartment_of(state, scenario)
        out[key] = out.get(key, 0.0) + totals[:, i]
    if scenario.condition is None:
        out.pop("target", None)
    out["given"] = np.array([sum(given(ev, t) for ev in events) for t in times])
    return out
