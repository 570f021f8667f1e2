"""Global sensitivity of named outputs to the parameter rows a scenario reads (SALib).

Each varied row ranges over the central 95% of its prior (``uncertainty``), with the prior's
density: SALib's unit-hypercube design ``u`` is mapped through ``q = 0.025 + 0.95 u`` and the
prior's quantile function. Sobol (Saltelli's design, Jansen/Saltelli estimators as SALib implements
them; N (D + 2) evaluations without second-order terms) gives first-order and total indices with
bootstrap 95% confidence half-widths; Morris (elementary effects, N trajectories, 4 levels) gives
mu* and sigma. Inputs are treated as independent: rows with a posterior vary over their marginal
(the fit's correlations are dropped here; ``simulate --uncertainty`` keeps them).

All sets are evaluated by ``ensemble.evaluate`` in batches (one assembled model per batch);
batches go to ``workers`` processes. The numbers do not depend on batch size or worker count.
"""

from __future__ import annotations

import fnmatch
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
import pandas as pd
from SALib.analyze import morris as morris_analyze
from SALib.analyze import sobol as sobol_analyze
from SALib.sample import morris as morris_sample
from SALib.sample import sobol as sobol_sample

from infusim import ensemble, uncertainty
from infusim.errors import ScenarioError
from infusim.parameters import for_scenario
from infusim.scenario import Scenario

METHODS = ("sobol", "morris")
#: Share of each prior the design spans (central interval).
PRIOR_COVERAGE = 0.95
MORRIS_LEVELS = 4
#: Parameter sets per batch (one assembled model): bounds memory at about 0.5 GB.
BATCH = 4096
COLUMNS = (
    "parameter",
    "output",
    "method",
    "first_order",
    "first_order_conf",
    "total",
    "total_conf",
    "mu_star",
    "mu_star_conf",
    "sigma",
    "prior_low",
    "prior_high",
    "unit",
)


@dataclass(frozen=True)
class Analysis:
    """Indices (``table``, columns ``COLUMNS``; conf = half-width of the 95% CI), the priors varied,
    each output at the table values and over the design, and the cost."""

    table: pd.DataFrame
    priors: dict[tuple[str, str], uncertainty.Prior]
    outputs: list[ensemble.Output]
    base: np.ndarray
    spread: np.ndarray  # (2, outputs): 2.5 and 97.5 percentiles over the design
    evaluations: int
    seconds: float
    method: str
    n: int
    seed: int

    def ranking(self, output: str, top: int = 10) -> pd.DataFrame:
        """The ``top`` parameters of one output, by total index (Sobol) or mu* (Morris)."""
        key = "total" if self.method == "sobol" else "mu_star"
        rows = self.table[self.table["output"] == output]
        return rows.sort_values(key, ascending=False, na_position="last").head(top)


def varied_priors(
    scenario: Scenario, outputs: list[ensemble.Output], patterns: tuple[str, ...] = ()
) -> dict[tuple[str, str], uncertainty.Prior]:
    """Priors of the rows the scenario reads that vary, filtered by glob ``patterns`` on
    ``name[scope]`` (any match keeps a row); an empty selection is an error naming the patterns."""
    params = for_scenario(scenario)
    found = uncertainty.priors(params, ensemble.read_keys(scenario, outputs))
    kept = {k: p for k, p in found.items() if p.varies and p.distribution != "dirichlet"}  # see uncertainty
    if patterns:
        kept = {k: p for k, p in kept.items() if any(fnmatch.fnmatchcase(p.name, g) for g in patterns)}
        if not kept:
            raise ScenarioError(
                "--parameters", f"{', '.join(patterns)} matches no varying row this scenario reads"
            )
    return kept


def design(method: str, priors: dict, n: int, seed: int) -> tuple[dict, np.ndarray]:
    """SALib problem and unit-hypercube design (rows = parameter sets)."""
    if method not in METHODS:
        raise ScenarioError("--method", f"{method!r}; allowed: {', '.join(METHODS)}")
    names = [p.name for p in priors.values()]
    problem = {"num_vars": len(names), "names": names, "bounds": [[0.0, 1.0]] * len(names)}
    if method == "sobol":
        if n < 2 or n & (n - 1):
            raise ScenarioError("--n", f"{n} must be a power of 2 for Sobol (e.g. 256, 1024)")
        return problem, sobol_sample.sample(problem, n, calc_second_order=False, seed=seed)
    if n < 2:
        raise ScenarioError("--n", f"{n}: Morris needs at least 2 trajectories")
    return problem, morris_sample.sample(problem, n, num_levels=MORRIS_LEVELS, seed=seed)


def to_values(priors: dict, unit_design: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    """Map a unit-hypercube design to parameter values through each prior's central 95%."""
    tail = (1.0 - PRIOR_COVERAGE) / 2.0
    q = tail + PRIOR_COVERAGE * unit_design
    return {key: prior.quantile(q[:, j]) for j, (key, prior) in enumerate(priors.items())}


def _evaluate_batch(task: tuple) -> np.ndarray:
    scenario, outputs, values, count = task
    return ensemble.evaluate(scenario, outputs, values, count)


def evaluate_all(
    scenario: Scenario, outputs: list, values: dict, workers: int = 1, batch: int = BATCH
) -> np.ndarray:
    """Outputs (sets, outputs) for every parameter set in ``values``, in batches over ``workers``."""
    total = len(next(iter(values.values())))
    tasks = [
        (scenario, outputs, {k: v[i : i + batch] for k, v in values.items()}, min(batch, total - i))
        for i in range(0, total, batch)
    ]
    if workers <= 1 or len(tasks) == 1:
        return np.concatenate([_evaluate_batch(t) for t in tasks])
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return np.concatenate(list(pool.map(_evaluate_batch, tasks)))


def analyse(
    scenario: Scenario,
    outputs: list[ensemble.Output],
    *,
    method: str = "sobol",
    n: int = 1024,
    patterns: tuple[str, ...] = (),
    seed: int | None = None,
    workers: int = 1,
) -> Analysis:
    """Run the design, evaluate every set and compute the indices of every output."""
    seed = scenario.simulation.seed if seed is None else seed
    priors = varied_priors(scenario, outputs, patterns)
    problem, unit_design = design(method, priors, n, seed)
    start = time.perf_counter()
    values = to_values(priors, unit_design)
    results = evaluate_all(scenario, outputs, values, workers)
    base = ensemble.evaluate(scenario, outputs, {}, 1)[0]
    frames = []
    for j, output in enumerate(outputs):
        y = results[:, j]
        frames.append(_indices(method, problem, unit_design, y, priors, output, seed))
    seconds = time.perf_counter() - start
    table = pd.concat(frames, ignore_index=True)[list(COLUMNS)]
    spread = np.percentile(results, [2.5, 97.5], axis=0)
    return Analysis(table, priors, outputs, base, spread, len(unit_design), seconds, method, n, seed)


def _indices(method, problem, unit_design, y, priors, output, seed) -> pd.DataFrame:
    d = len(priors)
    nan = np.full(d, np.nan)
    columns = {c: nan for c in COLUMNS[3:10]}
    if np.ptp(y) > 1e-12 * max(np.abs(y).max(), 1e-300):
        if method == "sobol":
            s = sobol_analyze.analyze(problem, y, calc_second_order=False, conf_level=0.95, seed=seed)
            columns.update(
                first_order=s["S1"], first_order_conf=s["S1_conf"], total=s["ST"], total_conf=s["ST_conf"]
            )
        else:
            s = morris_analyze.analyze(
                problem, unit_design, y, conf_level=0.95, num_levels=MORRIS_LEVELS, seed=seed
            )
            columns.update(
                mu_star=np.asarray(s["mu_star"]),
                mu_star_conf=np.asarray(s["mu_star_conf"]),
                sigma=np.asarray(s["sigma"]),
            )
    intervals = [p.interval(PRIOR_COVERAGE) for p in priors.values()]
    return pd.DataFrame(
        {
            "parameter": [p.name for p in priors.values()],
            "output": output.text,
            "method": method,
            **{k: np.asarray(v, dtype=float) for k, v in columns.items()},
            "prior_low": [i[0] for i in intervals],
            "prior_high": [i[1] for i in intervals],
            "unit": [p.unit for p in priors.values()],
        }
    )
