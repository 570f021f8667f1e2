"""What an image region counts: like is compared with like.

A region of interest drawn over an organ on a planar, SPECT or PET image counts more than the
organ's tissue: the blood inside the region (for the heart, its chambers) and, on a planar image,
whatever lies in front of or behind the organ. A validation case declares this per compartment in
``case.yaml`` (docs/validation.md, "Image regions"):

    region:
      heart:
        blood: true                # + regional_blood_fraction[species/heart] x label in blood
        overlap: {lungs: 0.1}      # + 0.1 x label in the lungs (needs a basis)
        basis: "anterior planar image; the heart ROI covers lung in front of the heart (...)"

``blood`` reads the share of the body's blood inside the region from the physiology table; an
``overlap`` share is the case's own statement about its images and must say where it comes from.
Regions apply to radiolabel rows only (what an image measures). Units: shares are fractions (0-1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from infusim.compartments import BLOOD, ORGANS
from infusim.parameters import ParameterSet

#: Compartments a region can be drawn over: organs (an organ's region holds its injured part too).
REGION_COMPARTMENTS = ORGANS
FIELDS = ("blood", "overlap", "basis")


@dataclass(frozen=True)
class Region:
    """What the image region over ``compartment`` adds to the compartment's own activity."""

    compartment: str
    blood: bool = False
    overlap: dict[str, float] = field(default_factory=dict)
    basis: str = ""


def parse(spec) -> dict[str, Region]:
    """Regions of a case's ``region:`` mapping; raises ``ValueError`` with a one-line reason."""
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise ValueError("region must map compartments to {blood, overlap, basis}")
    regions = {}
    for compartment, options in spec.items():
        where = f"region.{compartment}"
        if compartment not in REGION_COMPARTMENTS:
            raise ValueError(f"{where}: not an organ; allowed: {', '.join(REGION_COMPARTMENTS)}")
        if not isinstance(options, dict) or set(options) - set(FIELDS):
            raise ValueError(f"{where}: allowed fields: {', '.join(FIELDS)}")
        blood = options.get("blood", False)
        if not isinstance(blood, bool):
            raise ValueError(f"{where}.blood: true or false")
        overlap = options.get("overlap") or {}
        if not isinstance(overlap, dict):
            raise ValueError(f"{where}.overlap: a mapping of compartment to share, e.g. {{lungs: 0.1}}")
        for other, share in overlap.items():
            if other not in REGION_COMPARTMENTS or other == compartment:
                raise ValueError(f"{where}.overlap: {other!r} is not another organ")
            if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
                raise ValueError(f"{where}.overlap.{other}: {share!r} is not a share 0-1")
        basis = str(options.get("basis", "")).strip()
        if overlap and not basis:
            raise ValueError(f"{where}.basis: say where the overlap shares come from")
        regions[compartment] = Region(compartment, blood, {k: float(v) for k, v in overlap.items()}, basis)
    return regions


def extra_activity(
    region: Region,
    states: np.ndarray,
    compartments: list[str],
    members,
    species: str,
    params: ParameterSet,
) -> np.ndarray:
    """Activity (patients, times) the region counts beyond its compartment's own.

    ``states``: (patients, times, states) amounts; ``compartments``: each state's compartment;
    ``members(name)``: the state compartments a compartment name covers (an organ includes its
    injured target).
    """
    compartments = np.asarray(compartments)
    extra = np.zeros(states.shape[:2])
    if region.blood:
        organ = region.compartment
        share = np.reshape(params.get("regional_blood_fraction", f"{species}/{organ}", ""), (-1, 1))
        extra = extra + share * states[:, :, np.isin(compartments, BLOOD)].sum(axis=2)
    for other, share in region.overlap.items():
        extra = extra + share * states[:, :, np.isin(compartments, list(members(other)))].sum(axis=2)
    return extra
