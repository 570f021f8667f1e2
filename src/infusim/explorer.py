"""`infusim explore`: a local web app (Dash, optional extra ``infusim[app]``) bound to 127.0.0.1.

Choose species, condition, product, donor, dose, route and schedule; the cell fate, the endpoint
effect with its 95% interval and the main adverse-event risks of one patient update on each
change; a small virtual cohort runs on request; the scenario YAML behind the screen downloads.
Invalid input shows the command line's one-line message next to its field. The page's scripts are
served from the installed Dash package (nothing is fetched from the web).

Research use only: model predictions, not advice for any patient.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import yaml

from infusim import safety
from infusim.compartments import ROUTES
from infusim.errors import InfusimError
from infusim.safety import BACKGROUND_EVENTS
from infusim.simulation import DISCLAIMER

#: Controls, their defaults (one IV infusion of allogeneic marrow MSC in COPD, inside its trials) and choices.
DEFAULTS: dict[str, Any] = {
    "species": "human",
    "condition": "copd",
    "cell_type": "msc",
    "tissue_source": "bone_marrow",
    "donor": "allogeneic",
    "hla_mismatches": 5,
    "dose": 1e6,
    "route": "intravenous",
    "count": 1,
    "interval_d": 30,
    "duration_d": 365,
}
CHOICES = {
    "species": ("human", "mouse", "rat"),
    "cell_type": ("msc", "hsc", "bm_mnc"),
    "tissue_source": ("bone_marrow", "adipose", "umbilical_cord", "cord_blood", "peripheral_blood"),
    "donor": ("autologous", "allogeneic"),
    "route": ROUTES,
}
#: Which control a scenario error belongs beside (the first field prefix that matches).
ERROR_FIELDS = (
    ("administration.dose", "dose"),
    ("administration.repeat", "count"),
    ("administration.schedule", "count"),
    ("administration", "route"),
    ("product.tissue_source", "tissue_source"),
    ("product.hla_mismatches", "hla_mismatches"),
    ("product.donor", "donor"),
    ("product", "cell_type"),
    ("condition", "condition"),
    ("species", "species"),
    ("simulation", "duration_d"),
)
OUTPUT_DAYS = (1 / 24, 1, 7, 30, 90, 180, 365)


def spec_from_controls(values: dict[str, Any]) -> dict:
    """The scenario (as a YAML mapping) for the controls' ``values``; missing ones take ``DEFAULTS``."""
    v = {**DEFAULTS, **{k: x for k, x in values.items() if x not in (None, "")}}
    condition = v["condition"] if v["condition"] != "none" else None
    site = _site(condition)
    admin: dict[str, Any] = {"route": v["route"], "dose": f"{v['dose']} cells/kg"}
    if v["route"] == "intravenous":
        admin["duration"] = "30 min"
    elif v["route"] == "intra_arterial":
        admin["into"] = site or "heart"
        admin["duration"] = "10 min"
    elif v["route"] == "local":
        admin["into"] = site or "joints"
    if int(v["count"]) > 1:
        admin["repeat"] = {"count": int(v["count"]), "interval": f"{v['interval_d']} day"}
    duration = float(v["duration_d"])
    outputs = sorted({d for d in OUTPUT_DAYS if d < duration} | {duration})
    spec: dict[str, Any] = {
        "name": "explorer",
        "species": v["species"],
        "product": {"cell_type": v["cell_type"], "tissue_source": v["tissue_source"], "donor": v["donor"]},
        "administration": admin,
        "simulation": {
            "duration": f"{duration:g} day",
            "outputs": [f"{d * 24:g} h" for d in outputs],
            "seed": 1,
        },
    }
    if v["donor"] == "allogeneic":  # default 5: an unrelated donor differs at most HLA-A/B/DR loci
        spec["product"]["hla_mismatches"] = int(v["hla_mismatches"])
    if condition:
        spec["condition"] = {"name": condition}
    return spec


def _site(condition: str | None) -> str | None:
    if not condition:
        return None
    from infusim import conditions

    try:
        return conditions.get(condition).site
    except InfusimError:
        return None


@dataclass
class View:
    """What the page shows for one set of controls."""

    fate: go.Figure | None = None
    effect: go.Figure | None = None
    risks: list[dict] = field(default_factory=list)
    note: str = ""
    warnings: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    scenario_yaml: str = ""


def evaluate(values: dict[str, Any]) -> View:
    """Simulate one patient for the controls; a bad input gives ``errors`` keyed by control."""
    import infusim
    from infusim.scenario_spec import to_spec

    spec = spec_from_controls(values)
    try:
        result = infusim.simulate(infusim.from_dict(spec))
    except InfusimError as exc:
        return View(errors={_control_of(exc.field): f"{exc.field}: {exc.message}"})
    summary = result.summary
    view = View(
        fate=result.plot(),
        scenario_yaml=yaml.safe_dump(to_spec(result.scenario), sort_keys=False),
        warnings=list(summary.get("warnings", [])),
    )
    view.fate.update_xaxes(title="time after first dose (h)")
    if summary.get("endpoints"):
        view.effect = _effect_figure(summary)
    events = (summary.get("adverse_events") or {}).get("events", {})
    # the treatment's risks by serious risk, largest first; the condition's own (background) last
    ordered = sorted(events.items(), key=lambda x: (x[0] in BACKGROUND_EVENTS, -x[1]["probability_serious"]))
    view.risks = [
        {
            "event": name,
            "any": safety.probability_text(e["probability"]),
            "serious": safety.serious_text(e),
            "basis": e["basis"],
        }
        for name, e in ordered
    ]
    load = (summary.get("adverse_events") or {}).get("lung_load")
    if load:
        view.note = (
            f"Peak lung load {100 * load['share_of_lethal']:.3g}% of the lethal load of a mouse bolus."
        )
    return view


def _control_of(field_name: str) -> str:
    for prefix, control in ERROR_FIELDS:
        if field_name.startswith(prefix):
            return control
    return "general"


def _effect_figure(summary: dict) -> go.Figure:
    """Effect (treated minus untreated twin) of each endpoint at the output times, with its 95% interval."""
    from infusim import units

    figure = go.Figure()
    by_endpoint: dict[str, list] = {}
    for key, endpoints in summary["endpoints"].items():
        days = units.hours(key, "time") / 24.0
        for name, e in endpoints.items():
            if e["effect"] is not None:  # not estimated: no controlled evidence
                by_endpoint.setdefault(name, []).append((days, e))
    for name, rows in by_endpoint.items():
        rows.sort(key=lambda r: r[0])
        x = [d for d, _ in rows]
        y = [e["effect"] for _, e in rows]
        low = [e["low"] if e.get("low") is not None else e["effect"] for _, e in rows]
        high = [e["high"] if e.get("high") is not None else e["effect"] for _, e in rows]
        figure.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                name=f"{name} ({rows[0][1]['unit']})",
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [h - m for h, m in zip(high, y, strict=True)],
                    "arrayminus": [m - lo for m, lo in zip(y, low, strict=True)],
                },
            )
        )
    figure.add_hline(y=0, line={"color": "#888", "width": 1})
    figure.update_layout(
        title=f"{summary['condition']}: effect against the untreated twin (95% interval)",
        xaxis_title="days after first dose",
        yaxis_title="treated - untreated",
        height=380,
    )
    return figure


def cohort(values: dict[str, Any], patients: int = 100) -> go.Figure:
    """A two-arm virtual trial (cells against no treatment) of ``patients`` for the controls: the
    primary endpoint's change from baseline per arm with 95% CIs."""
    import infusim
    from infusim import conditions

    spec = spec_from_controls(values)
    if "condition" not in spec:
        raise InfusimError(
            "condition", "a cohort needs a named condition (its endpoints are what a trial measures)"
        )
    primary = conditions.get(spec["condition"]["name"]).primary.name
    end = spec["simulation"]["duration"]
    spec["trial"] = {
        "patients": patients,
        "arms": [{"name": "untreated", "administration": "none"}, {"name": "cells"}],
        "visits": [end],
        "primary": {"endpoint": primary, "at": end},
    }
    with tempfile.TemporaryDirectory(prefix="infusim-explore-") as folder:
        return infusim.trial(spec, f"{folder}/trial").plot()


def build_app():
    """The Dash app (imported here: Dash is an optional extra)."""
    try:
        import dash
        from dash import Input, Output, State, dash_table, dcc, html
    except ImportError:
        raise InfusimError("explore", "needs Dash: pip install 'infusim[app]'") from None
    from infusim import conditions

    app = dash.Dash(__name__, title="infusim explorer", serve_locally=True)
    condition_names = ["none", *conditions.names()]

    def control(label: str, name: str, widget) -> Any:
        return html.Div(
            [
                html.Label(label, htmlFor=name),
                widget,
                html.Div(id=f"{name}-error", className="field-error", style={"color": "#b00020"}),
            ],
            style={"marginBottom": "0.6em"},
        )

    def dropdown(name: str, options) -> Any:
        return dcc.Dropdown(id=name, options=list(options), value=DEFAULTS[name], clearable=False)

    controls = [
        control("species", "species", dropdown("species", CHOICES["species"])),
        control("condition", "condition", dropdown("condition", condition_names)),
        control("cell type", "cell_type", dropdown("cell_type", CHOICES["cell_type"])),
        control("tissue source", "tissue_source", dropdown("tissue_source", CHOICES["tissue_source"])),
        control("donor", "donor", dropdown("donor", CHOICES["donor"])),
        control(
            "HLA mismatches (allogeneic)",
            "hla_mismatches",
            dcc.Input(id="hla_mismatches", type="number", value=DEFAULTS["hla_mismatches"], debounce=True),
        ),
        control(
            "dose (cells/kg)",
            "dose",
            dcc.Input(id="dose", type="number", value=DEFAULTS["dose"], debounce=True),
        ),
        control("route", "route", dropdown("route", CHOICES["route"])),
        control(
            "doses", "count", dcc.Input(id="count", type="number", value=1, min=1, step=1, debounce=True)
        ),
        control(
            "days between doses",
            "interval_d",
            dcc.Input(id="interval_d", type="number", value=30, debounce=True),
        ),
        control(
            "follow-up (days)",
            "duration_d",
            dcc.Input(id="duration_d", type="number", value=365, debounce=True),
        ),
        html.Button("Run a cohort of 100", id="run-cohort"),
        html.Button("Download scenario YAML", id="download-button", style={"marginLeft": "0.5em"}),
        dcc.Download(id="download"),
        html.Div(id="general-error", className="field-error", style={"color": "#b00020"}),
    ]
    names = list(DEFAULTS)
    app.layout = html.Div(
        [
            html.H1("infusim explorer"),
            html.P(DISCLAIMER, className="warn", style={"background": "#fff4d6", "padding": ".6em 1em"}),
            html.Div(
                [
                    html.Div(controls, style={"width": "260px", "flex": "none"}),
                    html.Div(
                        [
                            dcc.Graph(id="fate"),
                            dcc.Graph(id="effect"),
                            html.H3("Adverse-event risks for this patient"),
                            html.P(id="note"),
                            html.Ul(id="warnings", style={"color": "#8a5a00"}),
                            dash_table.DataTable(
                                id="risks",
                                columns=[{"name": c, "id": c} for c in ("event", "any", "serious", "basis")],
                                style_cell={"textAlign": "left", "fontFamily": "system-ui"},
                            ),
                            dcc.Loading(
                                dcc.Graph(
                                    id="cohort",
                                    figure=go.Figure(
                                        layout={"title": "Run a cohort: a virtual two-arm trial"}
                                    ),
                                )
                            ),
                        ],
                        style={"flex": "1", "minWidth": 0},
                    ),
                ],
                style={"display": "flex", "gap": "1.5em"},
            ),
            dcc.Store(id="scenario-yaml"),
        ],
        style={"fontFamily": "system-ui, sans-serif", "margin": "1em 2em"},
    )
    error_ids = [*(f"{n}-error" for n in names), "general-error"]

    @app.callback(
        [
            Output("fate", "figure"),
            Output("effect", "figure"),
            Output("risks", "data"),
            Output("note", "children"),
            Output("warnings", "children"),
            Output("scenario-yaml", "data"),
            *(Output(e, "children") for e in error_ids),
        ],
        [Input(n, "value") for n in names],
    )
    def update(*args):
        view = evaluate(dict(zip(names, args, strict=True)))
        empty = go.Figure(layout={"title": "(no result: see the message beside the field)"})
        messages = [view.errors.get(e.removesuffix("-error"), "") for e in error_ids]
        effect = view.effect or go.Figure(
            layout={"title": "no endpoint effect (no named condition, or not a human)"}
        )
        return (
            view.fate or empty,
            effect if view.fate else empty,
            view.risks,
            view.note,
            [html.Li(f"warning: {w}") for w in view.warnings],
            view.scenario_yaml,
            *messages,
        )

    @app.callback(
        Output("cohort", "figure"),
        Input("run-cohort", "n_clicks"),
        [State(n, "value") for n in names],
        prevent_initial_call=True,
    )
    def run_cohort(_, *args):
        try:
            return cohort(dict(zip(names, args, strict=True)))
        except InfusimError as exc:
            return go.Figure(layout={"title": f"{exc.field}: {exc.message}"})

    @app.callback(
        Output("download", "data"),
        Input("download-button", "n_clicks"),
        State("scenario-yaml", "data"),
        prevent_initial_call=True,
    )
    def download(_, text):
        return {"content": text or "", "filename": "scenario.yaml"}

    return app
