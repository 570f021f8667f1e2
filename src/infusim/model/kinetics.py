"""Whole-body cell kinetics: physiology + product + route + condition -> a transfer ``Model``.

Cells move with blood and stop in capillary beds. Per pass through organ ``o`` a fraction

    E_o = 1 - (1 - E_size(d / d_cap,o)) (1 - E_adhesion,o) [(1 - E_homing) in injured tissue]

is arrested, with ``E_size`` a logistic function of cell diameter over capillary diameter (cells
larger than the capillaries are held mechanically; Toma 2009, Fischer 2009) and ``E_adhesion`` the
receptor-mediated capture of the cell type (marrow homing of haematopoietic cells, macrophage
capture in liver and spleen). Venous blood meets the lungs first; arterial blood is shared by
organ flows; gut, spleen and pancreas drain through the liver (portal vein). As a linear model
every pass is a first-order rate ``Q_o E_o / V_blood``.

Arrested cells are released back to blood (lungs release downstream, into arterial blood), die in
place, are eaten by phagocytes, engraft, or (allogeneic) are rejected once an adaptive response
starts. An injured target tissue (``condition``) takes a share of its organ's flow that grows with
severity, extracts more cells (chemokine-driven homing) and releases them more slowly.
A cell product has a spread of diameters: it is represented by three size classes (Gauss-Hermite
nodes of a log-normal), which never exchange cells; a patient's result is their sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from infusim.compartments import BLOOD, CSF_ROUTES, DEATH_CAUSES, DEPOT_ROUTES, LEFT_VENTRICLE, ORGANS, PORTAL
from infusim.model.declare import Dose, Model, ParameterInfo, Process, State, Switch
from infusim.model.physiology import Physiology, physiology
from infusim.parameters import ParameterSet, bundled
from infusim.scenario import Scenario

#: Gauss-Hermite nodes and weights (3 points) for a normal variable in units of its SD.
SIZE_NODES = np.array([-np.sqrt(3.0), 0.0, np.sqrt(3.0)])
SIZE_WEIGHTS = np.array([1.0, 4.0, 1.0]) / 6.0
VENOUS, ARTERIAL = BLOOD
TARGET = "target"
TARGET_ENGRAFTED = "target:engrafted"
MARROW_ENGRAFTED = "bone_marrow:engrafted"
DEPOT = "depot"
IMPLANT = "implant"

#: Names of the per-patient rate multipliers ``assemble`` accepts (inter-individual variability).
VARIABLE_RATES = ("loss", "release", "homing", "rejection", "cardiac_output")


@dataclass(frozen=True)
class ProductProperties:
    """Diameter (um), its coefficient of variation, and the table scope of the product."""

    diameter_um: float
    diameter_cv: float
    scope: str


def product_properties(scenario: Scenario, params: ParameterSet) -> ProductProperties:
    """Cell diameter from the scenario, else from the product catalogue."""
    product = scenario.product
    scope = f"{product.cell_type}/{product.tissue_source}"
    diameter = product.diameter_um or params.get("diameter", scope, "um")
    return ProductProperties(diameter, params.get("diameter_cv", scope, ""), scope)


def viable_share(scenario: Scenario, params: ParameterSet) -> float | np.ndarray:
    """Share of a dose alive as it enters the body: ``product.viability`` (at thaw) times the mean
    survival in the bag over the hold and a constant-rate drip of the infusion's duration,
    exp(-k hold) (1 - exp(-k D)) / (k D), k = ``bag_viability_loss_rate[msc/<carrier>]`` (1/h)."""
    product = scenario.product
    if product.carrier is None:
        return product.viability
    k = params.get("bag_viability_loss_rate", f"{product.cell_type}/{product.carrier}", "1/h")
    kd = k * scenario.administration.effective_duration_h
    drip = np.where(kd > 1e-12, -np.expm1(-kd) / np.maximum(kd, 1e-300), 1.0)
    return product.viability * np.exp(-k * product.hold_h) * drip


def size_extraction(diameter_um: np.ndarray, capillary_um: float, params: ParameterSet) -> np.ndarray:
    """Fraction of cells held mechanically per pass through a capillary bed (logistic in d/d_cap)."""
    midpoint = params.get("size_extraction_midpoint", "", "")
    width = params.get("size_extraction_width", "", "")
    return 1.0 / (1.0 + np.exp(-(diameter_um / capillary_um - midpoint) / width))


class _Builder:
    """Collects states, processes and their rate parameters (arrays over rows)."""

    def __init__(self, n_rows: int) -> None:
        self.n_rows = n_rows
        self.states: list[State] = []
        self.rates: dict[tuple[str, str], np.ndarray] = {}
        self.names: dict[tuple[str, str], str] = {}
        self.info: dict[str, ParameterInfo] = {}

    def state(self, name: str, compartment: str, kind: str, description: str) -> None:
        self.states.append(State(name, compartment, kind, description))

    def flow(self, source: str, target: str, rate: np.ndarray, description: str, formula: str) -> None:
        """Add ``rate`` (1/h) to the transfer ``source -> target`` (rates of one pair add up)."""
        key = (source, target)
        rate = np.broadcast_to(np.asarray(rate, dtype=float), (self.n_rows,))
        if key in self.rates:
            self.rates[key] = self.rates[key] + rate
            name = self.names[key]
            old = self.info[name]
            self.info[name] = ParameterInfo(old.description, "1/h", f"{old.formula} + {formula}")
        else:
            name = f"k[{source}->{target}]"
            self.rates[key], self.names[key] = rate.copy(), name
            self.info[name] = ParameterInfo(description, "1/h", formula)

    def processes(self) -> tuple[tuple[Process, ...], dict[str, np.ndarray]]:
        processes, parameters = [], {}
        for key, rate in self.rates.items():
            if np.any(rate < 0) or not np.all(np.isfinite(rate)):
                raise ValueError(f"rate {self.names[key]} must be finite and non-negative")
            name = self.names[key]
            processes.append(Process(name, key[0], key[1], name))
            parameters[name] = rate
        return tuple(processes), parameters


def assemble(
    scenario: Scenario,
    *,
    patients: int = 1,
    params: ParameterSet | None = None,
    rate_factors: Mapping[str, np.ndarray] | None = None,
    body_weight_kg: np.ndarray | None = None,
    severity: np.ndarray | None = None,
    doses_taken: np.ndarray | None = None,
) -> Model:
    """Build the cell-kinetics model of ``scenario`` for ``patients`` identical or varied patients.

    ``rate_factors`` maps names in ``VARIABLE_RATES`` to per-patient multipliers (arrays of shape
    (patients,)), the hook for inter-individual variability. ``body_weight_kg`` and ``severity``
    (patients,) replace the scenario's single patient (a per-kg dose follows the weight).
    ``doses_taken`` (patients, administrations) bool: the administrations each patient receives
    (a missed one gives no cells); all by default.
    """
    params = params or bundled()
    factors = {name: np.ones(patients) for name in VARIABLE_RATES}
    for name, values in (rate_factors or {}).items():
        if name not in factors:
            raise ValueError(f"unknown rate factor {name!r}; allowed: {', '.join(VARIABLE_RATES)}")
        factors[name] = np.broadcast_to(np.asarray(values, dtype=float), (patients,))
    k = len(SIZE_NODES)
    n_rows = patients * k
    per_row = {name: np.repeat(values, k) for name, values in factors.items()}
    weight = np.broadcast_to(
        scenario.patient.body_weight_kg if body_weight_kg is None else body_weight_kg, (patients,)
    )
    condition = scenario.condition
    level = condition.severity if condition is not None else 0.0
    per_row["severity"] = np.repeat(np.broadcast_to(level if severity is None else severity, (patients,)), k)
    species = scenario.species
    body = physiology(species, np.repeat(weight, k), params)
    body = _scale_cardiac_output(body, per_row["cardiac_output"])
    product = product_properties(scenario, params)
    sigma = np.sqrt(np.log1p(product.diameter_cv**2))
    diameter = product.diameter_um * np.exp(np.tile(SIZE_NODES, patients) * sigma)
    builder = _Builder(n_rows)
    for name in (VENOUS, "lungs", ARTERIAL, *ORGANS[1:]):
        kind_text = "circulating" if name in BLOOD else "arrested"
        builder.state(name, name, "live", f"live cells {kind_text} in {name}")
    if condition is not None:
        builder.state(TARGET, TARGET, "live", f"live cells in the injured part of {condition.site}")
        builder.state(TARGET_ENGRAFTED, TARGET, "live", "cells engrafted in the injured tissue")
    builder.state(MARROW_ENGRAFTED, "bone_marrow", "live", "cells engrafted in bone marrow")
    site = scenario.site
    if scenario.administration.route in DEPOT_ROUTES:
        receiving = depot_receiver(scenario)
        if scenario.administration.route in CSF_ROUTES:
            builder.state(DEPOT, receiving, "live", "injected cells in the cerebrospinal fluid")
            builder.state(IMPLANT, receiving, "live", "cells settled on meninges and neural tissue")
        else:
            builder.state(DEPOT, receiving, "live", f"injected cells not yet settled in {site}")
            builder.state(IMPLANT, receiving, "live", f"injected cells settled in the tissue of {site}")
    for cause in DEATH_CAUSES:
        builder.state(f"dead:{cause}", "body", "dead", f"cells dead by {cause}")

    dose_times = list(scenario.administration.starts_h)
    signals = [homing_signal(scenario, params, t) * np.ones(n_rows) for t in dose_times]
    beds = [
        _beds(scenario, body, diameter, params, per_row["homing"] * h, per_row["severity"]) for h in signals
    ]
    shunt = intrapulmonary_shunt(scenario, params)
    _circulation(builder, body, beds[0], shunt)
    _fates(builder, scenario, params, per_row)
    amount = np.repeat(scenario.dose_cells_for(weight), k) * np.tile(SIZE_WEIGHTS, patients)
    taken = None if doses_taken is None else np.repeat(np.asarray(doses_taken, dtype=float), k, axis=0)
    rows_doses = _doses(scenario, beds, amount, viable_share(scenario, params), taken)
    switches = _rejection(builder, scenario, params, per_row["rejection"])
    switches += _signal_switches(builder, body, beds, signals, dose_times, shunt)
    processes, parameters = builder.processes()
    return Model(
        states=tuple(builder.states),
        processes=processes,
        parameters=parameters,
        doses=rows_doses,
        switches=switches,
        rows_per_patient=k,
        info=builder.info,
        sources=tuple(params.sources_used()),
    )


def homing_signal(scenario: Scenario, params: ParameterSet, time_h: float) -> float | np.ndarray:
    """Homing signal of the injured tissue at ``time_h`` after the first dose, relative to a recent
    injury (1): 1 until ``homing_signal_plateau`` after the injury, then falling with
    ``homing_signal_half_life`` towards ``homing_signal_chronic_fraction``, which a chronic injury
    (no ``onset``) has. Rows are read per ``site/species``; a site without a measured time course
    has chronic fraction 1 (no dependence on time)."""
    condition = scenario.condition
    if condition is None:
        return 1.0
    scope = f"{condition.site}/{scenario.species}"
    chronic = params.get("homing_signal_chronic_fraction", scope, "")
    if condition.onset_h is None:
        return chronic
    plateau = params.get("homing_signal_plateau", scope, "h")
    half_life = params.get("homing_signal_half_life", scope, "h")
    since = np.maximum(condition.onset_h + time_h - plateau, 0.0)
    return chronic + (1.0 - chronic) * np.exp2(-since / half_life)


def intrapulmonary_shunt(scenario: Scenario, params: ParameterSet) -> float | np.ndarray:
    """Share of cardiac output that passes the lungs through dilated vessels instead of capillaries
    (right-to-left intrapulmonary shunt; cirrhosis), read per named condition (0 by default)."""
    condition = scenario.condition
    name = condition.name if condition is not None and condition.name else ""
    return params.get("intrapulmonary_shunt_fraction", name, "")


def _signal_switches(
    builder: _Builder,
    body: Physiology,
    beds: list[dict],
    signals: list[np.ndarray],
    dose_times: list[float],
    shunt: float,
) -> tuple[Switch, ...]:
    """A later dose meets the homing signal of its own day: the blood-borne capture rates that
    change switch at that dose's start and hold until the next dose."""
    first = _Builder(builder.n_rows)
    _circulation(first, body, beds[0], shunt)
    switches = []
    for i in range(1, len(signals)):
        if np.array_equal(signals[i], signals[i - 1]):
            continue
        later = _Builder(builder.n_rows)
        _circulation(later, body, beds[i], shunt)
        for key, rate in later.rates.items():
            value = builder.rates[key] - first.rates[key] + rate
            switches.append(Switch(builder.names[key], np.full(builder.n_rows, dose_times[i]), value))
    return tuple(switches)


def _scale_cardiac_output(body: Physiology, factor: np.ndarray) -> Physiology:
    if np.all(factor == 1.0):
        return body
    flows = {organ: flow * factor for organ, flow in body.organ_flow_l_per_h.items()}
    return Physiology(
        body.body_weight_kg,
        body.cardiac_output_l_per_h * factor,
        body.venous_volume_l,
        body.arterial_volume_l,
        body.organ_volume_l,
        flows,
        body.capillary_diameter_um,
    )


Bed = list[tuple[str, np.ndarray, np.ndarray]]  # (state, share of organ flow, extraction per pass)


def _beds(
    scenario: Scenario,
    body: Physiology,
    diameter: np.ndarray,
    params: ParameterSet,
    homing_factor: np.ndarray,
    severity: np.ndarray,
) -> dict[str, Bed]:
    """Per organ: the states its blood meets, each with flow share and extraction per pass."""
    cell = scenario.product.cell_type
    beds: dict[str, Bed] = {}
    for organ in ORGANS:
        e_size = size_extraction(diameter, body.capillary_diameter_um[organ], params)
        e_adhesion = params.get("adhesion_extraction", f"{cell}/{organ}", "")
        extraction = 1.0 - (1.0 - e_size) * (1.0 - e_adhesion)
        beds[organ] = [(organ, np.ones_like(diameter), extraction)]
    condition = scenario.condition
    if condition is not None:
        organ = condition.site
        share = severity * params.get("lesion_fraction_max", organ, "")
        e_homing = np.clip(params.get("homing_extraction_max", cell, "") * severity * homing_factor, 0.0, 1.0)
        healthy = beds[organ][0][2]
        injured = 1.0 - (1.0 - healthy) * (1.0 - e_homing)
        beds[organ] = [
            (TARGET, share * np.ones_like(diameter), injured),
            (organ, (1.0 - share) * np.ones_like(diameter), healthy),
        ]
    return beds


def _pass(bed: Bed) -> np.ndarray:
    """Fraction of the blood's cells that crosses a bed without being held."""
    return sum(share * (1.0 - extraction) for _state, share, extraction in bed)


def _circulation(builder: _Builder, body: Physiology, beds: dict[str, Bed], shunt: float = 0.0) -> None:
    """Blood-borne transfers: the lung first pass (a ``shunt`` share of cardiac output bypasses the
    lung capillaries), systemic organ beds and the portal route."""
    v_ven, v_art = body.venous_volume_l, body.arterial_volume_l
    co = body.cardiac_output_l_per_h
    perfused = co * (1.0 - shunt)
    for state, share, extraction in beds["lungs"]:
        builder.flow(
            VENOUS,
            state,
            perfused * share * extraction / v_ven,
            "lung first pass",
            "Q_co*(1-s)*share*E/V_ven",
        )
    builder.flow(
        VENOUS,
        ARTERIAL,
        perfused * _pass(beds["lungs"]) / v_ven,
        "lung passage",
        "Q_co*(1-s)*(1-E_lung)/V_ven",
    )
    if np.any(shunt > 0):
        builder.flow(VENOUS, ARTERIAL, co * shunt / v_ven, "intrapulmonary shunt", "Q_co*s/V_ven")
    for organ in ORGANS[1:]:
        flow = body.organ_flow_l_per_h[organ]
        for state, share, extraction in beds[organ]:
            builder.flow(
                ARTERIAL, state, flow * share * extraction / v_art, f"arrest in {organ}", f"Q_{organ}*E/V_art"
            )
        passing = flow * _pass(beds[organ])
        if organ in PORTAL:
            for state, share, extraction in beds["liver"]:
                builder.flow(
                    ARTERIAL,
                    state,
                    passing * share * extraction / v_art,
                    "arrest in liver via portal vein",
                    f"Q_{organ}*(1-E_{organ})*E_liver/V_art",
                )
            passing = passing * _pass(beds["liver"])
        builder.flow(ARTERIAL, VENOUS, passing / v_art, "passage to venous blood", f"Q_{organ}*(1-E)/V_art")


def _fates(
    builder: _Builder, scenario: Scenario, params: ParameterSet, per_row: dict[str, np.ndarray]
) -> None:
    """Release, death in place, phagocytosis and engraftment of cells where they are."""
    cell = scenario.product.cell_type
    loss_factor, release_factor = per_row["loss"], per_row["release"]
    organs_here = list(ORGANS)
    condition = scenario.condition
    for compartment in (*BLOOD, *organs_here, *([TARGET] if condition else [])):
        organ = condition.site if compartment == TARGET else compartment
        scope = f"{cell}/{'blood' if compartment in BLOOD else organ}"
        loss = params.get("loss_rate", scope, "1/h") * loss_factor
        eaten = params.get("phagocytosed_share", scope, "")
        builder.flow(compartment, "dead:death", loss * (1 - eaten), "death in place", "k_loss*(1-f_phag)")
        builder.flow(compartment, "dead:phagocytosis", loss * eaten, "phagocytosis", "k_loss*f_phag")
        if compartment in BLOOD:
            continue
        release = params.get("release_rate", scope, "1/h") * release_factor
        if compartment == TARGET:
            gain = params.get("injury_retention_gain", cell, "")
            release = release / (1.0 + gain * per_row["severity"])
        downstream = ARTERIAL if organ == "lungs" else VENOUS
        builder.flow(compartment, downstream, release, "release to blood", "k_release")
    engrafting = [("bone_marrow", MARROW_ENGRAFTED, "bone_marrow")]
    if condition is not None:
        engrafting.append((TARGET, TARGET_ENGRAFTED, condition.site))
    for compartment, engrafted, organ in engrafting:
        rate = params.get("engraftment_rate", f"{cell}/{organ}", "1/h")
        builder.flow(compartment, engrafted, np.full(builder.n_rows, rate), "engraftment", "k_engraft")
        death = params.get("engrafted_loss_rate", f"{cell}/{organ}", "1/h") * loss_factor
        builder.flow(engrafted, "dead:death", death, "death of engrafted cells", "k_loss_engrafted")
    if scenario.administration.route in DEPOT_ROUTES:
        site = scenario.site
        receiving = depot_receiver(scenario)
        retained, settling, scope = depot_rates(scenario, params)
        builder.flow(DEPOT, IMPLANT, np.full(builder.n_rows, retained / settling), "settling", "f_ret/tau")
        builder.flow(
            DEPOT, VENOUS, np.full(builder.n_rows, (1 - retained) / settling), "wash-out", "(1-f_ret)/tau"
        )
        loss = params.get("implant_loss_rate", scope, "1/h") * loss_factor
        eaten = params.get("phagocytosed_share", f"{cell}/{site}", "")
        builder.flow(
            IMPLANT, "dead:death", loss * (1 - eaten), "death of implanted cells", "k_implant*(1-f_phag)"
        )
        builder.flow(
            IMPLANT, "dead:phagocytosis", loss * eaten, "phagocytosis of implanted cells", "k_implant*f_phag"
        )
        if receiving == TARGET:
            rate = params.get("engraftment_rate", f"{cell}/{site}", "1/h")
            builder.flow(IMPLANT, TARGET_ENGRAFTED, np.full(builder.n_rows, rate), "engraftment", "k_engraft")


def depot_receiver(scenario: Scenario) -> str:
    """Compartment of a local or CSF depot and of the cells it settles: the injected organ (its
    injured part when the condition sits there); for an intrathecal or intraventricular dose the
    central nervous system's healthy part, ``brain`` (cells settle on the meninges and ventricle
    walls, not in a lesion)."""
    site = scenario.site
    condition = scenario.condition
    if scenario.administration.route == "local" and condition is not None and site == condition.site:
        return TARGET
    return site


def depot_rates(scenario: Scenario, params: ParameterSet) -> tuple[float, float, str]:
    """Settled share ``f_ret``, time constant ``tau`` (h) and the parameter scope of a depot dose.

    Local: both read for the injected tissue. Into the CSF (intrathecal, intraventricular): ``f_ret``
    read for the route; the rest leaves with the cerebrospinal fluid's bulk flow, rate
    ``k_csf = production / volume`` of the species, so ``(1 - f_ret) / tau = k_csf`` (docs/model.md,
    Routes).
    """
    route = scenario.administration.route
    if route in CSF_ROUTES:
        retained = params.get("local_retained_fraction", route, "")
        species = scenario.species
        k_csf = params.get("csf_production_rate", species, "mL/h") / params.get("csf_volume", species, "mL")
        return retained, (1.0 - retained) / k_csf, route
    site = scenario.site
    return params.get("local_retained_fraction", site, ""), params.get("local_settling_time", site, "h"), site


def _rejection(
    builder: _Builder, scenario: Scenario, params: ParameterSet, factor: np.ndarray
) -> tuple[Switch, ...]:
    """Allogeneic cells: a host-level killing rate that switches on when the adaptive response starts."""
    live = [s.name for s in builder.states if s.kind == "live"]
    product = scenario.product
    if product.donor == "autologous":
        return ()
    hazard = params.get("mismatch_hazard_ratio", "", "")
    reference = params.get("reference_mismatches", "", "")
    scale = hazard ** (product.hla_mismatches - reference) * factor
    innate = params.get("allo_innate_rate", "", "1/h") * scale
    adaptive = params.get("allo_adaptive_rate", "", "1/h") * scale
    onset = params.get("allo_response_onset", "", "h")
    first_dose = 0.0
    for state in live:
        builder.flow(state, "dead:rejection", innate, "rejection of allogeneic cells", "k_rej(t)")
    switches = []
    for state in live:
        name = builder.names[(state, "dead:rejection")]
        switches.append(Switch(name, np.full(builder.n_rows, first_dose + onset), adaptive.copy()))
    return tuple(switches)


def _doses(
    scenario: Scenario,
    beds: list[dict[str, Bed]],
    amount: np.ndarray,
    viability: float | np.ndarray,
    taken: np.ndarray | None = None,
) -> tuple[Dose, ...]:
    """The dose event table: one ``Dose`` per administration (``amount`` cells per row times the
    administration's ``dose_scales``, times ``taken[:, i]`` per row where given), each split over
    states by the capture in force at its start (``beds``, one per dose) and the share alive
    (``viability``)."""
    admin = scenario.administration
    duration = admin.effective_duration_h
    return tuple(
        Dose(
            start,
            duration,
            amount * scale * (1.0 if taken is None else taken[:, i]),
            _entry_split(scenario, beds_i, len(amount), viability),
        )
        for i, (start, scale, beds_i) in enumerate(zip(admin.starts_h, admin.dose_scales, beds, strict=True))
    )


def _entry_split(
    scenario: Scenario, beds: dict[str, Bed], n_rows: int, viability: float | np.ndarray
) -> dict[str, np.ndarray]:
    """Where the viable cells of one dose enter (fractions per row; the non-viable share is dead)."""
    admin = scenario.administration
    split: dict[str, np.ndarray] = {"dead:nonviable": np.full(n_rows, 1.0 - viability)}
    if admin.route == "intravenous":
        split[VENOUS] = np.full(n_rows, viability)
    elif admin.route in DEPOT_ROUTES:
        split[DEPOT] = np.full(n_rows, viability)
    elif scenario.site == LEFT_VENTRICLE:
        split[ARTERIAL] = np.full(n_rows, viability)
    else:
        site = scenario.site
        for state, share, extraction in beds[site]:
            split[state] = viability * share * extraction
        passing = _pass(beds[site])
        if site in PORTAL:
            for state, share, extraction in beds["liver"]:
                split[state] = split.get(state, 0.0) + viability * passing * share * extraction
            passing = passing * _pass(beds["liver"])
        split[VENOUS] = viability * passing
    return split
