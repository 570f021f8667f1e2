"""The README stays true: its quick start, its scenario example and the Makefile agree."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from infusim.scenario import from_dict

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_quick_start_is_exactly_make_demo_and_make_test():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    block = re.search(r"```\n(.*?)```", quick, flags=re.S).group(1).split()
    assert block == ["make", "demo", "make", "test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_scenario_example_is_valid():
    section = README.split("## Scenario file", 1)[1]
    text = re.search(r"```yaml\n(.*?)```", section, flags=re.S).group(1)
    scenario = from_dict(yaml.safe_load(text))
    assert scenario.dose_cells == 1.4e8 and scenario.simulation.label.isotope == "in111"
    assert scenario.site is None and "ignored" in scenario.warnings()[0]


def test_readme_lists_every_bundled_example():
    for path in (ROOT / "src" / "infusim" / "examples").glob("*.yaml"):
        assert path.stem in README, path.stem
