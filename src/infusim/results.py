"""Result objects of the Python API: each has ``summary`` (what the command writes as summary.json),
``to_pandas()`` (its main table), ``plot()`` (a plotly figure) and ``write_report(path)``.

Research use only: these are model predictions, not advice for any patient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from infusim.sensitivity_analysis import Analysis
    from infusim.validation import CaseResult


def _write(html_text: str, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_text, encoding="utf-8")
    return path


@dataclass(frozen=True)
class TrialResult:
    """A virtual trial: ``summary`` (per arm, comparisons, power, adverse events) and the output
    ``folder`` holding its patient rows (``patients/``) and events (``adverse_events/``)."""

    summary: dict[str, Any]
    folder: Path

    def to_pandas(self, columns: list[str] | None = None) -> pd.DataFrame:
        """One row per patient and visit (``patients/``), optionally only ``columns``."""
        return pd.read_parquet(self.folder / "patients", columns=columns)

    def adverse_events(self) -> pd.DataFrame:
        """One row per adverse event (``patient, arm, event, time_d, grade, serious``)."""
        folder = self.folder / "adverse_events"
        columns = ["patient", "arm", "event", "time_d", "grade", "serious"]
        if not folder.exists() or not any(folder.glob("*.parquet")):
            return pd.DataFrame(columns=columns)
        return pd.read_parquet(folder)

    def plot(self, endpoint: str | None = None) -> go.Figure:
        """Mean change from baseline per arm with 95% CIs (default: the primary endpoint)."""
        from infusim.report.trial import _endpoint_figure

        return _endpoint_figure(self.summary, endpoint or self.summary["primary"]["endpoint"])

    def write_report(self, path: str | Path) -> Path:
        from infusim.report.trial import render

        return _write(render(self.summary), path)


@dataclass(frozen=True)
class PowerResult:
    """Power and assurance of the primary comparison per total sample size and treated arm."""

    scenario_name: str
    endpoint: str
    time_d: float
    replicates: int
    curve: dict[int, dict[str, dict]]
    multiplicity: str = "none"  # trial.multiplicity: power counts adjusted successes
    target: float | None = None  # power to find the total sample size for (``sample_sizes``)

    def sample_sizes(self, target: float | None = None) -> dict[str, dict]:
        """Per arm (and analysis) label, the total sample size that reaches ``target`` power (0-1;
        default ``self.target``) with its 95% interval, read from the simulated curve
        (``infusim.sample_size.for_target``: a probit in the square root of n)."""
        from infusim.sample_size import for_target

        target = self.target if target is None else target
        if target is None:
            raise ValueError("give a target power, e.g. 0.8")
        sizes = sorted(self.curve)
        labels = list(self.curve[sizes[0]])
        return {
            label: for_target(sizes, [self.curve[n][label]["power"] for n in sizes], self.replicates, target)
            for label in labels
        }

    @property
    def summary(self) -> dict:
        from infusim import __version__
        from infusim.simulation import DISCLAIMER

        return {
            "infusim_version": __version__,
            "disclaimer": DISCLAIMER,
            "scenario_name": self.scenario_name,
            "endpoint": self.endpoint,
            "time_d": self.time_d,
            "replicates": self.replicates,
            "multiplicity": self.multiplicity,
            "power": [
                {k: None if isinstance(v, float) and v != v else v for k, v in row.items()}
                for row in self.to_pandas().to_dict("records")
            ],  # no NaN in JSON: a column without a value for this analysis is null
            **(
                {
                    "target_power": self.target,
                    "sample_size": self.sample_sizes(),
                    "sample_size_note": "total patients for the target power: a probit in sqrt(n) fitted "
                    "to the simulated powers (binomial GLM); 95% interval from the fit; an interpolation "
                    "between the simulated sizes unless extrapolated",
                }
                if self.target is not None
                else {}
            ),
        }

    def to_pandas(self) -> pd.DataFrame:
        """Columns ``patients, arm, analysis, power, assurance`` (shares of replicates, 0-1) and the
        estimated difference against control over the replicates at the posterior-median effect
        (``difference_mean``, ``difference_p2.5``, ``difference_p97.5``; endpoint units); for ``mmrm``,
        ``tipping_delta_sd_median``: the median tipping point of the successful replicates, in SDs of
        the change (``stats.tipping_point``; None otherwise); with ``trial.key_secondary``,
        ``key_secondary_<i>_power``: the share of replicates claiming the i-th key secondary;
        ``power_low``/``power_high`` and ``assurance_low``/``assurance_high``: Wilson 95% intervals of
        the Monte Carlo error of each share over the replicates (statsmodels)."""
        return pd.DataFrame(
            [
                {
                    "patients": n,
                    "arm": v.get("arm", label),
                    "analysis": v.get("analysis", ""),
                    "power": v["power"],
                    "assurance": v["assurance"],
                    **monte_carlo("power", v["power"], self.replicates),
                    **monte_carlo("assurance", v["assurance"], self.replicates),
                    **{k: v.get(k) for k in ("difference_mean", "difference_p2.5", "difference_p97.5")},
                    "tipping_delta_sd_median": v.get("tipping_delta_sd_median"),
                    **{
                        f"key_secondary_{i + 1}_power": x
                        for i, x in enumerate(v.get("key_secondary_power") or [])
                    },
                }
                for n, labels in self.curve.items()
                for label, v in labels.items()
            ]
        )

    def write_report(self, path: str | Path) -> Path:
        from infusim.report.power import render

        return _write(render(self.summary, self.to_pandas()), path)

    def plot(self) -> go.Figure:
        import plotly.graph_objects as go

        table = self.to_pandas()
        several = table.analysis.nunique() > 1
        table["label"] = table.arm + (" (" + table.analysis + ")" if several else "")
        figure = go.Figure()
        for arm, rows in table.groupby("label", sort=False):
            figure.add_trace(
                go.Scatter(x=rows.patients, y=rows.power, mode="lines+markers", name=f"{arm}: power")
            )
            figure.add_trace(
                go.Scatter(
                    x=rows.patients,
                    y=rows.assurance,
                    mode="lines+markers",
                    name=f"{arm}: assurance",
                    line={"dash": "dot"},
                )
            )
        figure.update_layout(
            title=f"{self.scenario_name}: {self.endpoint} at day {self.time_d:g} "
            f"({self.replicates} replicates)",
            xaxis_title="patients (total)",
            yaxis_title="share of replicate trials with p < 0.05",
            yaxis_range=[0, 1.02],
        )
        return figure


@dataclass(frozen=True)
class ValidationResult:
    """Every case's scores (``cases``) and ``validation.json`` (``summary``)."""

    cases: list[CaseResult]
    summary: dict[str, Any]

    def to_pandas(self) -> pd.DataFrame:
        """One row per observation: case, fitted or not, and observed against predicted with its
        95% prediction interval."""
        rows = [
            {"case": r.name, "calibration": r.calibration, "species": r.species, **p}
            for r in self.cases
            if r.error is None
            for p in r.points()
        ]
        return pd.DataFrame(rows)

    def plot(self) -> go.Figure | None:
        """Observed against predicted for the whole suite (1:1, 2- and 3-fold lines)."""
        from infusim.report.validation import suite_figure

        return suite_figure(self.cases)

    def write_report(self, path: str | Path) -> Path:
        from infusim.report.validation import render

        return _write(render(self.cases, self.summary), path)


@dataclass(frozen=True)
class SensitivityResult:
    """A global sensitivity analysis: ``analysis`` (indices table, priors) and its ``summary``."""

    analysis: Analysis
    summary: dict[str, Any]
    rankings: dict[str, list[dict]] = field(default_factory=dict)

    def to_pandas(self) -> pd.DataFrame:
        """One row per parameter and output with the indices and their 95% CI half-widths."""
        return self.analysis.table

    def plot(self, output: str | None = None, top: int = 10) -> go.Figure:
        """The ``top`` parameters of one output (default: the first)."""
        from infusim.report.sensitivity import _figure

        output = output or self.analysis.outputs[0].text
        rows = self.analysis.ranking(output, top).to_dict("records")
        return _figure(output, rows, self.analysis.method == "sobol")

    def write_report(self, path: str | Path) -> Path:
        from infusim.report.sensitivity import render

        return _write(render(self.summary, self.rankings), path)


@dataclass(frozen=True)
class DoseWindowResult:
    """The therapeutic window: effect and serious-event risks per dose and route (``rows``)."""

    summary: dict[str, Any]
    rows: pd.DataFrame

    def to_pandas(self) -> pd.DataFrame:
        return self.rows

    def plot(self, route: str | None = None) -> go.Figure:
        """Effect with its 95% interval and serious-event probabilities against dose, for one route."""
        from infusim.report.doses import _figure

        route = route or str(self.rows.route.iloc[0])
        return _figure(self.summary, route, self.rows[self.rows.route == route])

    def write_report(self, path: str | Path) -> Path:
        from infusim.report.doses import render

        return _write(render(self.summary, self.rows), path)


@dataclass(frozen=True)
class BridgeResult:
    """A dose carried between species: per output the matched dose, then the two classic rules
    (``summary``), and per output the matched dose of each parameter draw (``draws``, cells)."""

    summary: dict[str, Any]
    draws: dict[str, Any] = field(default_factory=dict)

    def to_pandas(self) -> pd.DataFrame:
        return pd.DataFrame(self.summary["doses"])

    def plot(self) -> go.Figure:
        """The matched dose per kg over the parameter draws, per output, with the classic rules marked."""
        from infusim.report.bridge import _figure

        return _figure(self.summary, self.draws)

    def write_report(self, path: str | Path) -> Path:
        from infusim.report.bridge import render

        return _write(render(self.summary, self.draws), path)


def monte_carlo(name: str, share: float, replicates: int) -> dict[str, float]:
    """Wilson 95% interval of a share of ``replicates`` replicate trials (Monte Carlo error only)."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(round(share * replicates), replicates, alpha=0.05, method="wilson")
    return {f"{name}_low": float(low), f"{name}_high": float(high)}
