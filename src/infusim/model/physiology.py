"""Species physiology: organ volumes, blood flows and capillary sizes for given body weights.

Volumes scale with body weight, cardiac output allometrically (``Q = QCC * BW^0.75``). ``rest``
takes whatever flow and volume the listed organs leave, so flows always sum to cardiac output.
The liver's own flow is the hepatic artery; portal blood (gut, spleen, pancreas) is added by the
kinetic model after those beds have had their pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infusim.compartments import ORGANS
from infusim.errors import DataError
from infusim.parameters import ParameterSet

#: Organs with their own volume and flow rows; ``rest`` is the remainder, ``lungs`` get all of CO.
LISTED = tuple(o for o in ORGANS if o not in ("lungs", "rest"))


@dataclass(frozen=True)
class Physiology:
    """Arrays over patients: volumes (L), flows (L/h), capillary diameters (um)."""

    body_weight_kg: np.ndarray
    cardiac_output_l_per_h: np.ndarray
    venous_volume_l: np.ndarray
    arterial_volume_l: np.ndarray
    organ_volume_l: dict[str, np.ndarray]
    organ_flow_l_per_h: dict[str, np.ndarray]
    capillary_diameter_um: dict[str, float]


def physiology(species: str, body_weight_kg: np.ndarray, params: ParameterSet) -> Physiology:
    """Volumes and flows of ``species`` for each body weight (kg) in ``body_weight_kg``."""
    weight = np.asarray(body_weight_kg, dtype=float)
    qcc = params.get("cardiac_output_coefficient", species, "L/h/kg**0.75")
    cardiac_output = qcc * weight**0.75
    blood = params.get("blood_volume_fraction", species, "L/kg") * weight
    arterial_share = params.get("arterial_blood_fraction", species, "")
    volumes: dict[str, np.ndarray] = {
        "lungs": params.get("volume_fraction", f"{species}/lungs", "L/kg") * weight
    }
    flows: dict[str, np.ndarray] = {}
    for organ in LISTED:
        volumes[organ] = params.get("volume_fraction", f"{species}/{organ}", "L/kg") * weight
        flows[organ] = params.get("flow_fraction", f"{species}/{organ}", "") * cardiac_output
    flow_left = cardiac_output - sum(flows.values())
    volume_left = weight * 1.0 - blood - sum(volumes.values())  # 1 L/kg: tissue density taken as water
    if np.any(flow_left <= 0) or np.any(volume_left <= 0):
        raise DataError(f"physiology[{species}]", "listed organ flows or volumes exceed the whole body")
    flows["rest"] = flow_left
    volumes["rest"] = volume_left
    diameters = {organ: params.get("capillary_diameter", f"{species}/{organ}", "um") for organ in ORGANS}
    return Physiology(
        weight,
        cardiac_output,
        blood * (1.0 - arterial_share),
        blood * arterial_share,
        volumes,
        flows,
        diameters,
    )
