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
