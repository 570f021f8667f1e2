"""Posteriors of the case-based kinetic fits (emcee), replacing their Jacobian intervals.

Four kinetic fits were made by least squares to one study each (``infusim calibrate``): the
Tc-99m label efflux (Couto 2011), the marrow and spleen homing of haematopoietic progenitors
(Szilvassy 1999), the marrow homing of whole marrow cells (Asiedu 2017) and the lung phagocytes'
share of engulfed label (Gholamrezanezhad 2011). A
Jacobian interval from two to six points is a poor description of what those points allow; this
module samples each fit's posterior with the sampler the other fits use::

    python -m infusim.case_posterior [--write] [--fit NAME]

Likelihood: every observation's signed log fold error (``validation.fold_errors``; 0 when a ``<x``
or ``>x`` bound is respected) is normal with SD sigma, sampled too (log sigma ~ N(log 0.3, 0.7):
an assumption, biodistribution numbers of one study scatter about 30% around a curve, 95% range
x0.08-1.2 on the log scale). Priors on the rows are broad: N(log table value, 2) for rates,
N(0, 1.6) on the logit scale for shares (near uniform on 0-1). Every walker is one patient of one
batched model, so a step costs one assembly per case. Draws: ``data/kinetic_posteriors/<fit>.csv``,
the record in ``fits.json``; uncertainty analyses and prediction intervals then draw these rows from them.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import emcee
import numpy as np

from infusim import posterior
from infusim.calibrate import _is_share
from infusim.kinetic_posterior import folder
from infusim.parameters import ParameterSet, bundled

SIGMA_PRIOR = (np.log(0.3), 0.7)
#: Rates: N(log table value, 2); shares: N(0, 1.6) on the logit scale, close to uniform on (0, 1), so a
#: share fitted to the boundary (marrow-homing spleen share 1) is not held there by its prior.
RATE_PRIOR_SD, SHARE_PRIOR = 2.0, (0.0, 1.6)
WALKERS, STEPS, BURN = 16, 1500, 500


@dataclass(frozen=True)
class CaseFit:
    """One case-based fit: its name, the rows it fitted and the case folders it was fitted to."""

    name: str
    rows: tuple[tuple[str, str], ...]
    cases: tuple[str, ...]
    steps: int = STEPS


FITS = (
    CaseFit("tc99m_efflux", (("efflux_rate", "tc99m"),), ("couto2011_human_hepatic_artery_bmmc_tc99m",)),
    CaseFit(
        "hsc_marrow_homing",
        (("adhesion_extraction", "hsc/bone_marrow"), ("adhesion_extraction", "hsc/spleen")),
        ("szilvassy1999_mouse_iv_hspc",),
    ),
    CaseFit(
        "bm_marrow_homing",
        (("adhesion_extraction", "bm_mnc/bone_marrow"),),
        ("asiedu2017_mouse_iv_bm_zr89",),
    ),
    CaseFit(
        "lung_phagocyte_share",
        (("phagocyte_local_share", "lungs"),),
        ("gholamrezanezhad2011_human_iv_msc_in111",),
        # four times the steps: at 1500 its three seeds' medians spread 0.22 posterior SD (2026-12-03)
        steps=4 * STEPS,
    ),
)


class Problem:
    """The log posterior of one fit, evaluated for a batch of walkers at once."""

    def __init__(self, fit: CaseFit, params: ParameterSet | None = None):
        from infusim.case_format import bundled_cases_dir, load_case

        self.fit = fit
        self.params = params or bundled()
        self.cases = [load_case(bundled_cases_dir() / name) for name in fit.cases]
        self.shares = np.array([_is_share(self.params, key) for key in fit.rows])
        self.table = np.array([float(self.params.entry(*key).value) for key in fit.rows])
        # a share fitted to 0 or 1 starts just inside (the logit of the boundary is infinite)
        self.start = np.where(
            self.shares, self.to_x(np.clip(self.table, 1e-3, 1 - 1e-3)), self.to_x(self.table)
        )
        self.centre = np.where(self.shares, SHARE_PRIOR[0], self.to_x(self.table))
        self.prior_sd = np.where(self.shares, SHARE_PRIOR[1], RATE_PRIOR_SD)

    def to_x(self, values: np.ndarray) -> np.ndarray:
        clipped = np.clip(values, 1e-12, 1 - 1e-12)
        return np.where(self.shares, np.log(clipped / (1 - clipped)), np.log(np.maximum(values, 1e-300)))

    def from_x(self, x: np.ndarray) -> np.ndarray:
        return np.where(self.shares, 1 / (1 + np.exp(-x)), np.exp(x))

    def residuals(self, values: np.ndarray) -> np.ndarray:
        """Signed log fold errors, (walkers, observations), for row values (walkers, rows)."""
        from infusim.validation import _series, fold_errors

        count = len(values)
        drawn = {key: values[:, j] for j, key in enumerate(self.fit.rows)}
        out = []
        for case in self.cases:
            obs = case.observations.reset_index(drop=True)
            times = np.unique(obs.time_h.to_numpy())
            series = _series(case, times, self.params, drawn, count)
            predicted = np.stack(
                [
                    series[(row.quantity, row.compartment, row.unit)][:, np.searchsorted(times, row.time_h)]
                    for row in obs.itertuples()
                ],
                axis=1,
            )
            for i in range(count):
                rows = obs.assign(predicted=predicted[i])
                signed = np.sign(np.log(rows.predicted.to_numpy() / rows.observed.to_numpy()))
                predicted[i] = signed * np.log(fold_errors(rows))
            out.append(predicted)
        return np.concatenate(out, axis=1)

    def log_posterior(self, theta: np.ndarray) -> np.ndarray:
        """theta: (walkers, rows + 1): the rows on the log/logit scale, then log sigma."""
        theta = np.atleast_2d(theta)
        x, log_sigma = theta[:, :-1], theta[:, -1]
        total = -0.5 * np.sum(((x - self.centre) / self.prior_sd) ** 2, axis=1)
        total -= 0.5 * ((log_sigma - SIGMA_PRIOR[0]) / SIGMA_PRIOR[1]) ** 2
        r = self.residuals(self.from_x(x))
        sigma = np.exp(log_sigma)[:, None]
        total += np.sum(-0.5 * (r / sigma) ** 2 - np.log(sigma), axis=1)
        return np.where(np.isfinite(total), total, -np.inf)


def sample(fit: CaseFit, seed: int = 1, burn: int = BURN) -> tuple[dict, dict]:
    """Posterior draws of the fit's rows (natural scale, ``posterior.STORED_DRAWS`` each) and the record."""
    from infusim.synthesis import _split_rhat

    steps = fit.steps
    problem = Problem(fit)
    dim = len(fit.rows) + 1
    rng = np.random.default_rng(seed)
    start = np.concatenate([problem.start, [SIGMA_PRIOR[0]]])
    p0 = start + 0.05 * rng.standard_normal((WALKERS, dim))
    sampler = emcee.EnsembleSampler(WALKERS, dim, problem.log_posterior, vectorize=True)
    sampler.random_state = np.random.RandomState(seed).get_state()
    sampler.run_mcmc(p0, steps, progress=False)
    chain = sampler.get_chain(discard=burn)
    logging.getLogger("emcee.autocorr").setLevel(logging.ERROR)
    tau = emcee.autocorr.integrated_time(chain, quiet=True)
    flat = chain.reshape(-1, dim)
    pick = np.random.default_rng(seed).choice(
        len(flat), size=min(posterior.STORED_DRAWS, len(flat)), replace=False
    )
    natural = problem.from_x(flat[pick, :-1])
    names = [f"{p}[{s}]" if s else p for p, s in fit.rows]
    draws = {name: natural[:, j] for j, name in enumerate(names)}
    labels = [*names, "sigma"]
    record = {
        "command": "python -m infusim.case_posterior --write",
        "sampler": f"emcee {emcee.__version__} EnsembleSampler (stretch move)",
        "cases": list(fit.cases),
        "walkers": WALKERS,
        "steps": steps,
        "burn_in": burn,
        "seed": seed,
        "likelihood": "signed log fold error ~ N(0, sigma); log sigma ~ N(log 0.3, 0.7) (assumption)",
        "row_prior": f"rates N(log table value, {RATE_PRIOR_SD}); shares N{SHARE_PRIOR} on the logit scale",
        "table_values": {n: float(v) for n, v in zip(names, problem.table, strict=True)},
        "sigma_median": round(float(np.exp(np.median(flat[:, -1]))), 4),
        "ess": {n: round(float(len(chain) * WALKERS / t), 1) for n, t in zip(labels, tau, strict=True)},
        "split_rhat": {n: round(float(r), 4) for n, r in zip(labels, _split_rhat(chain), strict=True)},
        "acceptance": round(float(np.mean(sampler.acceptance_fraction)), 3),
    }
    return draws, record


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = [f.name for f in FITS]
    chosen = argv[argv.index("--fit") + 1 :][:1] if "--fit" in argv else names
    if not chosen or chosen[0] not in names:
        print(f"--fit: give one of {', '.join(names)}", file=sys.stderr)
        return 2
    for fit in (f for f in FITS if f.name in chosen):
        draws, record = sample(fit)
        if "--write" in argv or "--check" in argv:
            runs = [draws] + [sample(fit, seed=s)[0] for s in posterior.CHECK_SEEDS]
            record["seed_check"] = posterior.seed_check(runs, [record["seed"], *posterior.CHECK_SEEDS])
            print(
                f"  medians of seeds {record['seed_check']['seeds']} within "
                f"{record['seed_check']['worst_median_range_sd']:.2f} SD (log scale)"
            )
        for name, values in draws.items():
            low, mid, high = np.percentile(values, [2.5, 50, 97.5])
            print(
                f"{fit.name}: {name} median {mid:.4g}, 95% {low:.4g}-{high:.4g} "
                f"(table {record['table_values'][name]:.4g})"
            )
        print(
            f"  sigma {record['sigma_median']}, ESS {record['ess']}, R-hat {record['split_rhat']}, "
            f"acceptance {record['acceptance']}"
        )
        if "--write" in argv:
            print(f"  wrote {posterior.write(folder(), fit.name, draws, record)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
