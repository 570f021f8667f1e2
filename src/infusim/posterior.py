"""Posterior samples of each condition's effect parameters: stored as data, reloaded, never refitted.

``data/posteriors/<condition>.csv`` holds the draws (one column per parameter, on the table's scale:
``potency[...]``, ``effect_ratio[...]``, ``half_saturation[<mechanism>/<condition>]``, ``tau_smd``,
``bias_open_smd``, ``bias_external_smd``); ``data/posteriors/fits.json`` holds, per condition, the
command that produced them, the evidence rows behind them and the sampler's diagnostics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from infusim.errors import DataError

#: Draws kept per condition in the package (enough for 2.5/97.5 percentiles to about 0.5%).
STORED_DRAWS = 2000


def bundled_dir() -> Path:
    return Path(str(resources.files("infusim") / "data" / "posteriors"))


@dataclass(frozen=True)
class Posterior:
    """Draws of one condition's parameters (name -> (draws,)) and the fit's record."""

    condition: str
    samples: dict[str, np.ndarray]
    record: dict

    @property
    def draws(self) -> int:
        return len(next(iter(self.samples.values())))

    def pick(self, count: int, seed: int) -> np.ndarray:
        """``count`` draw indices, a pure function of ``seed`` (with replacement past the stored draws)."""
        rng = np.random.default_rng(seed)
        if count <= self.draws:
            return np.sort(rng.choice(self.draws, size=count, replace=False))
        return rng.integers(0, self.draws, size=count)

    def drawn(self, index: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
        """Potencies and effect ratios of the draws ``index``, keyed ``(parameter, scope)``."""
        out = {}
        for name, values in self.samples.items():
            parameter, scope = split(name)
            if parameter in ("potency", "effect_ratio"):
                out[(parameter, scope)] = values[index]
        return out

    def half_saturation(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """Fitted K by mechanism for the draws ``index`` (empty where K was not fitted)."""
        out = {}
        for name, values in self.samples.items():
            parameter, scope = split(name)
            if parameter == "half_saturation":
                out[scope.split("/")[0]] = values[index]
        return out


def split(name: str) -> tuple[str, str]:
    """``'potency[lupus/systemic]'`` -> ``('potency', 'lupus/systemic')``; no brackets: empty scope."""
    if name.endswith("]") and "[" in name:
        parameter, scope = name[:-1].split("[", 1)
        return parameter, scope
    return name, ""


def records(folder: Path | None = None) -> dict[str, dict]:
    """``fits.json`` of ``folder`` (the bundled one by default): condition -> fit record."""
    path = Path(folder or bundled_dir()) / "fits.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(str(path), f"is not valid JSON: {exc}") from None


@cache
def _bundled(condition: str) -> Posterior | None:
    return _read(condition, bundled_dir())


def load(condition: str, folder: Path | None = None) -> Posterior | None:
    """The posterior of ``condition`` (bundled, or from a folder written by ``infusim fit-effects``)."""
    return _bundled(condition) if folder is None else _read(condition, Path(folder))


def _read(condition: str, folder: Path) -> Posterior | None:
    path = folder / f"{condition}.csv"
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    if frame.empty or frame.isna().any().any():
        raise DataError(str(path), "posterior draws must be complete numbers")
    return Posterior(
        condition, {c: frame[c].to_numpy(float) for c in frame.columns}, records(folder).get(condition, {})
    )


def write(folder: Path, condition: str, samples: dict[str, np.ndarray], record: dict) -> Path:
    """Write one condition's draws and update ``fits.json`` in ``folder`` (atomic replace)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{condition}.csv"
    tmp = path.with_suffix(".csv.tmp")
    pd.DataFrame(samples).to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)
    all_records = records(folder)
    all_records[condition] = record
    meta = folder / "fits.json"
    tmp = meta.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(sorted(all_records.items())), indent=1) + "\n", encoding="utf-8")
    tmp.replace(meta)
    _bundled.cache_clear()
    return path


#: Seeds of the Monte Carlo check stored with a sampled fit (the stored draws come from seed 1).
CHECK_SEEDS = (2, 3)


def seed_check(runs: list[dict[str, np.ndarray]], seeds: list[int]) -> dict:
    """Monte Carlo check of a sampled fit: ``runs`` are the same fit's draws from ``seeds`` (stored
    seed first). Per parameter: median and 95% bounds per seed, and the range of the medians in SDs
    of the stored draws, on the log scale (every parameter checked this way is positive)."""
    out: dict = {"seeds": list(seeds), "parameters": {}}
    for name in runs[0]:
        logs = [np.log(np.asarray(run[name], dtype=float)) for run in runs]
        medians = [float(np.median(x)) for x in logs]
        sd = max(float(np.std(logs[0])), 1e-300)
        out["parameters"][name] = {
            "median": [round(float(np.median(run[name])), 6) for run in runs],
            "low": [round(float(np.percentile(run[name], 2.5)), 6) for run in runs],
            "high": [round(float(np.percentile(run[name], 97.5)), 6) for run in runs],
            "median_range_sd": round((max(medians) - min(medians)) / sd, 3),
        }
    out["worst_median_range_sd"] = max(p["median_range_sd"] for p in out["parameters"].values())
    return out
