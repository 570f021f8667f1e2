"""`infusim doses`: the therapeutic window from the command line, and its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.cli.test_cli import run
from tests.helpers import EXAMPLES


def test_doses_reports_effect_and_serious_harm_over_doses_and_routes(tmp_path):
    out = tmp_path / "window"
    result = run(
        "doses",
        str(EXAMPLES / "msc-iv-human.yaml"),
        "--doses",
        "1e6,1e8",
        "--routes",
        "intravenous,intra_arterial",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    rows = pd.read_parquet(out / "doses.parquet")
    assert len(rows) == 4 and set(rows.route) == {"intravenous", "intra_arterial"}
    iv = rows[rows.route == "intravenous"].set_index("dose_cells_per_kg")
    # 1e8 MSC/kg IV puts a lung load near the lethal one of the mouse bolus: serious harm rises
    assert iv.loc[1e8, "serious_lung_obstruction"] > 10 * iv.loc[1e6, "serious_lung_obstruction"]
    # an intracoronary dose skips the lung first pass (less lung harm) but adds catheterisation risk
    ia = rows[rows.route == "intra_arterial"].set_index("dose_cells_per_kg")
    assert ia.loc[1e8, "serious_lung_obstruction"] < iv.loc[1e8, "serious_lung_obstruction"]
    assert ia.loc[1e6, "serious_delivery_complication"] > 0 == iv.loc[1e6, "serious_delivery_complication"]
    summary = json.loads((out / "summary.json").read_text())
    assert "research tool" in summary["disclaimer"] and (out / "doses.html").is_file()
    html = (out / "doses.html").read_text()
    assert '<script src="http' not in html and "research tool" in html


def test_the_window_of_a_condition_saturates_in_benefit():
    import yaml

    from infusim import dose_window as doses

    spec = yaml.safe_load((EXAMPLES / "condition-ischemic-heart-failure.yaml").read_text())
    found = doses.window(spec, [1e5, 1e6, 1e7, 1e8])
    effect = found.rows.effect_mean.to_numpy()
    assert found.endpoint == "lvef" and (effect[1:] >= effect[:-1]).all()
    gains = effect[1:] - effect[:-1]
    assert gains[-1] < 0.5 * gains.max()  # diminishing returns past the steepest decade
    assert (found.rows.effect_low <= found.rows.effect_mean).all()
    # marrow mononuclear cells marginate in the lungs and are never counted as obstructing
    assert (found.rows.serious_lung_obstruction == 0).all()
    # heart failure kills about 10% a year without cells (STICH): the window's harms leave that out
    # and show it beside them, the same at every dose
    assert not [c for c in found.rows.columns if c.startswith("serious_background")]
    assert (found.rows.serious_any < 0.05).all()
    assert found.rows.background_serious.nunique() == 1  # the example runs a year
    assert found.rows.background_serious.iloc[0] == pytest.approx(1 - np.exp(-0.1104), rel=0.01)


def test_the_intracarotid_window_shows_the_brain_load_and_stroke_rising_with_dose():
    import yaml

    from infusim import dose_window as doses

    spec = yaml.safe_load((EXAMPLES / "safety-rat-intracarotid-msc.yaml").read_text())
    found = doses.window(spec, [1e5, 1e6, 2e6, 4e6], per_kg=False)
    share = found.rows.brain_load_share.to_numpy()
    # cells held in the brain scale with the dose (a linear model), and the stroke risk follows
    assert share[1:] / share[:-1] == pytest.approx([10, 2, 2], rel=1e-6)
    stroke = found.rows.serious_arterial_occlusion.to_numpy()
    assert (
        stroke[0] < 1e-6 and stroke[2] == pytest.approx(0.69, abs=0.05) and (stroke[1:] > stroke[:-1]).all()
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--doses", ""], "--doses: give at least one dose"),
        (["--doses", "1e6,-3"], "--doses: '1e6,-3': every dose must be a positive number"),
        (["--doses", "many"], "--doses: 'many' is not a comma-separated list"),
        (["--doses", "1e6", "--routes", "oral"], "--routes: 'oral'; allowed: intravenous"),
        (["--doses", "1e6", "--per", "gram"], "--per: 'gram'; allowed: kg, patient"),
        (["--doses", "1e11"], "administration.dose"),
    ],
)
def test_bad_doses_input_is_one_line_with_exit_2_and_no_output(tmp_path, args, words):
    out = tmp_path / "never"
    result = run("doses", str(EXAMPLES / "msc-iv-human.yaml"), *args, "-o", str(out))
    assert result.returncode == 2
    assert words in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not out.exists()


def test_doses_help_names_every_route():
    from infusim.compartments import ROUTES

    result = run("doses", "--help")
    assert result.returncode == 0 and all(route in result.stdout for route in ROUTES), result.stdout


def test_a_schedules_own_doses_move_with_the_window_dose():
    """Each dose of the window gives every administration of a schedule the same multiple of it."""
    import yaml

    from infusim import dose_window as doses
    from infusim.scenario import from_dict

    spec = yaml.safe_load((EXAMPLES / "msc-schedule-copd-human.yaml").read_text())
    base = from_dict(spec)
    assert base.administration.dose_scales == (2.0, 1.0, 0.5, 0.5)
    for dose in (1e5, 3e6):
        variant = doses._variant(spec, base, dose, True, "intravenous")
        assert variant.dose_cells_per_kg == dose
        assert variant.administration.dose_scales == pytest.approx(base.administration.dose_scales)
        per_patient = doses._variant(spec, base, dose * 70, False, "intravenous")
        assert per_patient.administration.dose_scales == pytest.approx(base.administration.dose_scales)
