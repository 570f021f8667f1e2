"""Fit an effect modifier's potency ratio to a subgroup analysis (``python -m infusim.modifier_fit``).

The source reports the effect of cells in patients below and at or above a cut; the ratio of the two
is the target. In infusim the effect of a patient also depends on the covariate through the mechanism
(the entry value sets severity, which sets homing and the room left to improve), so the potency ratio
is not the source's ratio: it is the value for which a virtual population given the source's typical
design shows the source's subgroup ratio. Effects are noise-free (treated minus the untreated twin of
each patient), so the fit is deterministic; the kinetics are solved once and only the potency factors
change between iterations.

    python -m infusim.modifier_fit            # print the fits next to the table values
    python -m infusim.modifier_fit --write    # also write them into data/variability.csv (checkout)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.optimize

from infusim import conditions, modifiers, outcomes
from infusim.model import disease
from infusim.model.disease import Variation
from infusim.parameters import ParameterSet, bundled, with_values
from infusim.population import cohort_model, sample_cohort
from infusim.scenario import Scenario

FIT_SEED = 20140911  # Delewi 2014 was first published online on 11 September 2013; any fixed seed
PATIENTS = 20_000


@dataclass(frozen=True, eq=False)
class Target:
    """One subgroup finding: effects below and at or above the cut, at ``day`` of the design."""

    condition: str
    covariate: str
    below: float
    above: float
    day: float
    design: dict

    @property
    def ratio(self) -> float:
        return self.above / self.below


#: Delewi 2014 (Eur Heart J 35:989; 16 RCTs of intracoronary marrow cells after STEMI, 1641 patients,
#: summary data per pre-specified subgroup): LVEF benefit 3.38 (2.36-4.39) below 55 years, 1.77
#: (0.80-2.74) at 55 or more (P = 0.03); 5.30 (4.27-6.33) at baseline LVEF < 40%, 1.45 (0.60-2.31) at 40%
#: or more. Design: the trials' typical intracoronary marrow-cell infusion (1e8 cells, 5 days after
#: reperfusion), LVEF read at 6 months (the trials' usual primary time; the paper's was not read).
AMI_DESIGN = {
    "name": "delewi2014-reference-design",
    "species": "human",
    "condition": {"name": "acute_myocardial_infarction", "severity": "moderate", "onset": "5 day"},
    "product": {"cell_type": "bm_mnc", "tissue_source": "bone_marrow", "donor": "autologous"},
    "administration": {"route": "intra_arterial", "into": "heart", "dose": "1e8 cells", "duration": "10 min"},
    "simulation": {"duration": "183 day"},
}
TARGETS = (
    Target("acute_myocardial_infarction", "age_years", 3.38, 1.77, 182.6, AMI_DESIGN),
    Target("acute_myocardial_infarction", "baseline", 5.30, 1.45, 182.6, AMI_DESIGN),
)


@dataclass(frozen=True)
class Fit:
    """A fitted potency ratio and the virtual subgroup effects it gives."""

    target: Target
    ratio: float  # fitted potency ratio
    below: float  # model effect below the cut at the fit (endpoint unit)
    above: float
    share_above: float  # of the virtual population


def subgroup_effects(
    target: Target, params: ParameterSet, patients: int = PATIENTS
) -> tuple[Callable[[float], tuple[float, float]], float]:
    """(effects, share): ``effects(ratio)`` gives the virtual population's mean effect below and at or
    above the cut for a potency ratio (kinetics solved once); ``share`` is the share at or above."""
    scenario = Scenario.model_validate(target.design)
    info = conditions.get(target.condition)
    cohort = sample_cohort(scenario, FIT_SEED, np.arange(patients), params)
    model = cohort_model(scenario, cohort, params)
    grid = outcomes.grid_days(scenario, target.day, np.array([target.day]))
    found = outcomes.responses(
        scenario, model, grid, params, cohort.body_weight_kg, cohort.severity, patients
    )
    at = int(np.searchsorted(grid, target.day))
    entry = disease.baseline(info, info.primary, cohort.severity, params)
    value = cohort.age_years if target.covariate == "age_years" else entry
    above = value >= modifiers.cut(info, target.covariate, params)
    endpoint = info.primary.name
    unmodified = cohort.variation.potency_factor / modifiers.factors(info, params, cohort.age_years, entry)

    def effects(ratio: float) -> tuple[float, float]:
        key = ("effect_modifier_ratio", f"{target.condition}/{target.covariate}")
        trial_params = with_values(params, {key: ratio})
        factor = unmodified * modifiers.factors(info, trial_params, cohort.age_years, entry)
        variation = Variation(cohort.severity, factor, cohort.variation.annual_change)
        paths = disease.trajectories(scenario, info, found, grid, trial_params, variation)
        effect = (paths.treated[endpoint] - paths.untreated[endpoint])[:, at] * info.primary.direction
        return float(effect[~above].mean()), float(effect[above].mean())

    return effects, float(above.mean())


def fit(target: Target, params: ParameterSet | None = None, patients: int = PATIENTS) -> Fit:
    """The potency ratio whose virtual subgroup effects have the source's ratio."""
    params = params or bundled()
    effects, share = subgroup_effects(target, params, patients)

    def gap(log_ratio: float) -> float:
        below, above = effects(float(np.exp(log_ratio)))
        return np.log(above / below) - np.log(target.ratio)

    log_ratio = scipy.optimize.brentq(gap, np.log(1e-3), np.log(1e3), xtol=1e-6)
    below, above = effects(float(np.exp(log_ratio)))
    return Fit(target, float(np.exp(log_ratio)), below, above, share)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infusim.modifier_fit", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--write", action="store_true", help="write the fits into data/variability.csv")
    parser.add_argument("--patients", type=int, default=PATIENTS)
    args = parser.parse_args(argv)
    params = bundled()
    fits: dict[Target, Fit] = {}
    for _ in range(2):  # each fit holds the others at their latest values; two passes settle them
        for target in TARGETS:
            fits[target] = fit(target, params, args.patients)
            key = ("effect_modifier_ratio", f"{target.condition}/{target.covariate}")
            params = with_values(params, {key: fits[target].ratio})
    for target, found in fits.items():
        scope = f"{target.condition}/{target.covariate}"
        print(
            f"{scope}: potency ratio {found.ratio:.4g} "
            f"(table {bundled().get('effect_modifier_ratio', scope, ''):.4g}); "
            f"virtual effects {found.below:.3g} below, {found.above:.3g} at or above the cut "
            f"(ratio {found.above / found.below:.3f}, source {target.ratio:.3f}); "
            f"{found.share_above:.0%} of the population at or above"
        )
    if args.write:
        _write(list(fits.values()))
    return 0


def _write(fits: list[Fit]) -> None:
    """Replace the value field of each fitted row, leaving every other byte of the table as it is."""
    path = Path(__file__).parent / "data" / "variability.csv"
    if not (Path(__file__).parents[2] / "pyproject.toml").is_file():
        sys.exit("error: --write: only in a source checkout (the installed package is never written)")
    lines = path.read_text(encoding="utf-8").split("\n")
    for found in fits:
        head = f"effect_modifier_ratio,{found.target.condition}/{found.target.covariate},"
        at = next(i for i, line in enumerate(lines) if line.startswith(head))
        rest = lines[at][len(head) :].split(",", 1)[1]
        lines[at] = f"{head}{found.ratio:.4g},{rest}"
    path.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
