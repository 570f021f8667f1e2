"""The explorer's scenario from its controls, without a browser (tests/test_browser.py drives the page)."""

from __future__ import annotations

import pytest

from infusim import explorer
from infusim.scenario import from_dict


def test_controls_make_a_valid_scenario_and_mismatches_apply_to_allogeneic_cells_only():
    allogeneic = from_dict(explorer.spec_from_controls({"hla_mismatches": 2}))
    assert allogeneic.product.hla_mismatches == 2 and allogeneic.condition.name == "copd"
    autologous = from_dict(explorer.spec_from_controls({"donor": "autologous", "hla_mismatches": 2}))
    assert autologous.product.hla_mismatches == 0
    local = from_dict(explorer.spec_from_controls({"route": "local", "condition": "knee_osteoarthritis"}))
    assert local.administration.into == "joints"


@pytest.mark.parametrize(
    ("values", "control", "words"),
    [
        ({"dose": -5}, "dose", "administration.dose"),
        ({"hla_mismatches": 11}, "hla_mismatches", "product.hla_mismatches"),
        ({"cell_type": "hsc", "tissue_source": "adipose"}, "tissue_source", "product.tissue_source"),
    ],
)
def test_a_bad_control_gets_the_one_line_message_beside_it(values, control, words):
    view = explorer.evaluate(values)
    assert view.fate is None and list(view.errors) == [control]
    assert view.errors[control].startswith(words) and "\n" not in view.errors[control]


def test_the_risk_table_orders_by_serious_risk_and_prints_tiny_and_unmodelled_ones_as_such():
    """The default view (COPD, IV MSC): fever has no modelled grade 3-5, lung obstruction is tiny."""
    view = explorer.evaluate({})
    assert view.fate is not None and view.risks
    rows = {r["event"]: r for r in view.risks}
    assert rows["fever"]["serious"] == "not modelled"
    assert rows["lung_obstruction"]["serious"] == "<1e-10"
    assert [r["event"] for r in view.risks][:2] == ["ectopic_growth", "lung_obstruction"]
    assert view.risks[-1]["event"] == "background_death"  # the condition's own risk comes last
