"""Bundled data: every value has a unit pint knows, a cited source and a provenance."""

from __future__ import annotations

import pytest

from infusim import calibrate
from infusim.compartments import ORGANS, SPECIES
from infusim.errors import DataError
from infusim.parameters import PROVENANCES, _bundled_entries, _data_dir, bundled, citations, read_table


def test_every_source_key_has_a_bibtex_entry_and_every_row_a_provenance():
    entries = _bundled_entries().values()
    assert len(entries) > 150
    missing = {e.source for e in entries} - set(citations())
    assert not missing
    assert {e.provenance for e in entries} <= set(PROVENANCES)


def test_assumptions_and_derivations_say_why():
    for entry in _bundled_entries().values():
        if entry.provenance in ("assumption", "derived", "calibrated"):
            assert len(entry.note) > 20, (entry.parameter, entry.scope)


@pytest.mark.parametrize("species", SPECIES)
def test_each_species_has_volumes_and_flows_that_fit_in_the_body(species):
    p = bundled()
    listed = [o for o in ORGANS if o not in ("lungs", "rest")]
    flows = sum(p.get("flow_fraction", f"{species}/{o}", "") for o in listed)
    volumes = sum(p.get("volume_fraction", f"{species}/{o}", "L/kg") for o in (*listed, "lungs"))
    assert 0.5 < flows < 1.0
    assert 0.5 < volumes + p.get("blood_volume_fraction", species, "L/kg") < 1.0


def test_units_are_converted_when_read():
    p = bundled()
    assert p.get("physical_half_life", "f18", "min") == pytest.approx(109.77)
    assert p.get("physical_half_life", "f18", "h") == pytest.approx(109.77 / 60)
    assert p.get("cardiac_output_coefficient", "human", "mL/min/kg**0.75") == pytest.approx(15.61 * 1000 / 60)


def test_lookups_fall_back_from_specific_to_general_scope_and_record_sources():
    p = bundled()
    assert p.get("loss_rate", "msc/lungs", "1/h") != p.get("loss_rate", "msc/kidneys", "1/h")
    assert p.get("loss_rate", "msc/kidneys", "1/h") == p.get("loss_rate", "msc", "1/h")
    assert set(p.sources_used()) >= {"Toma2009", "Eggenhofer2012"}
    with pytest.raises(DataError, match="no value"):
        p.get("loss_rate", "ipsc", "1/h")


def test_a_corrupt_table_is_refused_with_its_line(tmp_path):
    good = (_data_dir() / "products.csv").read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([good[0], good[1].replace(",um,", ",furlongs_per_cell,")]) + "\n")
    with pytest.raises(DataError, match=r"bad\.csv line 2: unit"):
        read_table(bad)
    bad.write_text("\n".join([good[0], good[1].replace(",Ge2014,", ",,")]) + "\n")
    with pytest.raises(DataError, match="needs a source"):
        read_table(bad)


def test_tabulated_extraction_parameters_are_what_the_calibration_command_fits():
    fit = calibrate.fit_extraction()
    p = bundled()
    for (name, scope), value in fit.values().items():
        assert p.get(name, scope, "") == pytest.approx(value, rel=2e-3), name
    assert fit.fischer_ratio > 20 and fit.toma_arrest > 0.92
    assert fit.abbott_ratio == pytest.approx(calibrate.ABBOTT2004_INFARCT_TO_HEALTHY_48H, rel=0.15)


def test_citation_lines_are_readable():
    from infusim.parameters import citation_line

    line = citation_line("Charoenphun2015")
    assert line.startswith("Charoenphun, P et al. 2015. [89Zr]Oxinate4")
    assert "Eur J Nucl Med Mol Imaging 42:278-287" in line and line.endswith("doi:10.1007/s00259-014-2945-x")
    assert citation_line("not-a-key") == "not-a-key"
