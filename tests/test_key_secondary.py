"""Key secondary comparisons tested after the primary in a fixed sequence (``trial.key_secondary``)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from infusim import stats
from infusim.errors import ScenarioError
from infusim.runner import run_trial, with_size
from infusim.scenario import from_dict
from infusim.virtual_trial import design, simulate_chunk
from tests.helpers import EXAMPLES

OA = EXAMPLES / "trial-knee-osteoarthritis.yaml"  # saline against two doses of MSC, WOMAC at day 180
SEQUENCE = [{"endpoint": "pain_vas", "at": "180 day"}, {"endpoint": "womac_total", "at": "365 day"}]


def _oa(patients: int = 120, sequence=SEQUENCE, **trial):
    spec = yaml.safe_load(OA.read_text())
    spec["trial"] |= {"patients": patients, "key_secondary": sequence, **trial}
    return from_dict(spec)


def _claims_by_hand(totals, plan, arm: int, level: float, primary_p: str) -> list[bool]:
    """The fixed sequence from its definition: claim while every test so far favoured cells below
    its level; the primary at 0.05 on ``primary_p`` (``p_value`` or ``p_adjusted``)."""
    primary = stats.primary_comparisons(totals, plan)[plan.arms[arm]]
    # WOMAC and pain VAS: lower is better
    going = primary[primary_p] < 0.05 and primary["difference"] < 0
    claims = []
    for e, v in plan.key_secondary:
        found = stats.compare(totals, plan, arm, e, v)
        going = going and found["p_value"] < level and found["difference"] < 0
        claims.append(going)
    return claims


@pytest.mark.parametrize(
    ("multiplicity", "level", "primary_p"), [("none", 0.05, "p_value"), ("bonferroni", 0.025, "p_adjusted")]
)
def test_each_key_secondary_is_claimed_only_after_every_test_before_it(multiplicity, level, primary_p):
    s = _oa(multiplicity=multiplicity)
    plan = design(s)
    assert [plan.endpoints[e].name for e, _v in plan.key_secondary] == ["pain_vas", "womac_total"]
    seen = set()
    for replicate in range(12):
        totals = simulate_chunk(s, replicate, 0, 120, table=False)[1].sums
        found = stats.primary_comparisons(totals, plan)
        for a, arm in enumerate(plan.arms):
            if a == plan.control:
                continue
            entries = found[arm]["key_secondary"]
            assert [x["claimed"] for x in entries] == _claims_by_hand(totals, plan, a, level, primary_p)
            assert all(x["level"] == level for x in entries)
            for x, (e, v) in zip(entries, plan.key_secondary, strict=True):
                assert x["difference"] == stats.compare(totals, plan, a, e, v)["difference"]
            seen.add(tuple(x["claimed"] for x in entries))
    assert len(seen) > 1  # the draws exercise more than one outcome of the sequence


def test_key_secondary_power_is_the_share_of_replicates_claiming_it_and_falls_along_the_sequence():
    from infusim.runner import power_curve

    s = _oa()
    plan = design(s)
    curve = power_curve(s, [120], 30)[120]
    claims = {arm: [] for arm in ("msc_5e7", "msc_1e8")}
    sized = with_size(s, 120, 30)
    for r in range(30):  # the same replicate trials power_curve ran (one chunk each)
        totals = simulate_chunk(sized, r, 0, 120, table=False)[1].sums
        for a, arm in enumerate(plan.arms):
            if a != plan.control:
                claims[arm].append(_claims_by_hand(totals, plan, a, 0.05, "p_value"))
    for arm, found in claims.items():
        expected = np.mean(found, axis=0)
        assert curve[arm]["key_secondary_power"] == pytest.approx(list(expected))
        assert curve[arm]["power"] >= expected[0] >= expected[1]


@pytest.mark.parametrize(
    ("sequence", "trial", "field", "words"),
    [
        ([{"endpoint": "grip", "at": "180 day"}], {}, "trial.key_secondary[0].endpoint", "womac_total"),
        ([{"endpoint": "pain_vas", "at": "200 day"}], {}, "trial.key_secondary[0].at", "180 day"),
        ([{"endpoint": "womac_total", "at": "180 day"}], {}, "trial.key_secondary[0]", "already tested"),
        (SEQUENCE, {"multiplicity": "holm"}, "trial.key_secondary", "bonferroni"),
    ],
)
def test_a_bad_key_secondary_is_a_one_line_error_naming_the_field(sequence, trial, field, words):
    with pytest.raises(ScenarioError) as caught:
        _oa(sequence=sequence, **trial)
    assert caught.value.field == field and words in caught.value.message
    assert "\n" not in caught.value.message


def test_the_summary_report_and_terminal_give_the_sequence(tmp_path):
    from typer.testing import CliRunner

    from infusim.cli import app
    from infusim.scenario_spec import to_spec

    s = _oa(60)
    summary = run_trial(s, tmp_path / "t")
    entries = summary["primary"]["comparisons"]["msc_5e7"]["key_secondary"]
    assert [(x["endpoint"], x["time_d"], x["unit"]) for x in entries] == [
        ("pain_vas", "180", "mm (0-100)"),
        ("womac_total", "365", "points (0-96)"),
    ]
    assert "Key secondary comparisons (fixed sequence)" in (tmp_path / "t" / "report.html").read_text()
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(to_spec(s)))
    printed = CliRunner().invoke(app, ["trial", str(tmp_path / "s.yaml"), "-o", str(tmp_path / "cli")])
    assert printed.exit_code == 0 and "key secondary 2, womac_total at day 365" in printed.output
    plain = run_trial(_oa(60, sequence=[]), tmp_path / "plain")
    assert "key_secondary" not in plain["primary"]["comparisons"]["msc_5e7"]


def test_the_power_table_and_page_give_each_key_secondary(tmp_path):
    from infusim import api

    found = api.power(_oa(), [60], replicates=6)
    table = found.to_pandas()
    assert list(table.columns[-2:]) == ["key_secondary_1_power", "key_secondary_2_power"]
    assert (table.key_secondary_1_power <= table.power).all()
    assert (table.key_secondary_2_power <= table.key_secondary_1_power).all()
    assert "key secondary 2 claimed" in found.write_report(tmp_path / "p.html").read_text()
    assert "key_secondary_1_power" not in api.power(_oa(sequence=[]), [60], replicates=2).to_pandas()
