"""Names of the whole-body compartments and the choices a scenario may make.

Plain data shared by the scenario schema (what a user may write) and the model (what it builds).
"""

from __future__ import annotations

from typing import Literal

SPECIES = ("human", "mouse", "rat")

#: Blood pools, in the order the model lists them.
BLOOD = ("venous_blood", "arterial_blood")

#: Organ compartments (tissue cells can be arrested in), in the order the model lists them.
ORGANS = (
    "lungs",
    "heart",
    "brain",
    "liver",
    "spleen",
    "kidneys",
    "gut",
    "pancreas",
    "muscle",
    "bone_marrow",
    "adipose",
    "skin",
    "joints",
    "rest",
)

#: Organs whose venous outflow drains into the liver through the portal vein.
PORTAL = ("gut", "spleen", "pancreas")

#: Every compartment that holds live cells (``target`` only when a condition is given).
COMPARTMENTS = (BLOOD[0], "lungs", BLOOD[1], *ORGANS[1:], "target")

#: Where a condition can sit: any organ, lungs included; never a blood pool.
SITES = ORGANS

#: Injection into the left ventricle or the aorta: cells enter systemic arterial blood and meet every
#: organ bed by its share of cardiac output, skipping the lungs' first pass.
LEFT_VENTRICLE = "left_ventricle"

#: Organs that can be reached through their own artery (intra-arterial delivery), and the systemic
#: arterial circulation as a whole (``left_ventricle``).
ARTERIAL_SITES = (*(o for o in ORGANS if o not in ("lungs", "rest")), LEFT_VENTRICLE)

CELL_TYPES = ("msc", "hsc", "bm_mnc")
TISSUE_SOURCES = ("bone_marrow", "adipose", "umbilical_cord", "cord_blood", "peripheral_blood")
ROUTES = ("intravenous", "intra_arterial", "local", "intrathecal", "intraventricular")
#: Routes into the cerebrospinal fluid: a lumbar puncture (intrathecal) or a lateral ventricle
#: (intraventricular, through a reservoir such as an Ommaya).
CSF_ROUTES = ("intrathecal", "intraventricular")
#: Routes whose cells enter a depot that settles into a tissue or washes out to venous blood.
DEPOT_ROUTES = ("local", *CSF_ROUTES)
#: Where a dose into the cerebrospinal fluid settles: the fluid bathes the brain and spinal cord, and
#: infusim's ``brain`` compartment stands for the central nervous system with its meninges.
CSF_SITE = "brain"
LABELS = ("in111", "tc99m", "f18", "zr89")

#: Causes of cell death, each with its own sink.
DEATH_CAUSES = ("nonviable", "death", "phagocytosis", "rejection")

Species = Literal["human", "mouse", "rat"]
CellType = Literal["msc", "hsc", "bm_mnc"]
TissueSource = Literal["bone_marrow", "adipose", "umbilical_cord", "cord_blood", "peripheral_blood"]
Route = Literal["intravenous", "intra_arterial", "local", "intrathecal", "intraventricular"]
Isotope = Literal["in111", "tc99m", "f18", "zr89"]
Donor = Literal["autologous", "allogeneic"]
#: What thawed cells are diluted in for a drip (crystalloid: Ringer's or saline; albumin: 5% human albumin).
Carrier = Literal["crystalloid", "albumin"]
Sex = Literal["female", "male"]
