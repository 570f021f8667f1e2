"""Regulatory status: a scenario's use against the cited table of approved products and frameworks."""

from __future__ import annotations

import pytest

from infusim import regulatory
from infusim.errors import ScenarioError
from tests.cli.test_cli import run
from tests.helpers import EXAMPLES, scenario

GVHD = {
    "condition": {"name": "acute_gvhd"},
    "product": {"donor": "allogeneic", "hla_mismatches": 5},
}


def test_allogeneic_marrow_msc_for_gvhd_is_approved_where_ryoncil_temcell_and_prochymal_are():
    s = scenario(**GVHD)
    found = {x.jurisdiction: x for x in regulatory.statuses(s)}
    assert found["US"].status == "approved" and "Ryoncil" in found["US"].reason
    assert found["JP"].status == "approved" and "Temcell" in found["JP"].reason
    assert found["CA"].status == "conditional"  # NOC/c 2012
    assert found["EU"].status == "investigational"
    assert found["US"].framework.name.startswith("Section 351")  # culture-expanded: a licensed biologic


def test_a_paediatric_label_does_not_make_an_adult_use_approved():
    """Ryoncil (US) and Prochymal (CA, NZ) are labelled for children; Temcell (JP) for any age."""
    adult = {x.jurisdiction: x for x in regulatory.statuses(scenario(**GVHD, patient={"age": "50 year"}))}
    assert adult["US"].status == "investigational" and "outside the label" in adult["US"].reason
    assert "Ryoncil" in adult["US"].reason and adult["US"].matching == ()
    assert adult["CA"].status == "investigational" and adult["NZ"].status == "investigational"
    assert adult["JP"].status == "approved"
    child = {x.jurisdiction: x for x in regulatory.statuses(scenario(**GVHD, patient={"age": "8 year"}))}
    assert child["US"].status == "approved" and "paediatric" in child["US"].reason
    infant = regulatory.status(scenario(**GVHD, patient={"age": "0.1 year"}), "US")  # under 2 months
    assert infant.status == "investigational"
    unknown = regulatory.status(scenario(**GVHD), "US")
    assert unknown.status == "approved" and "gives no age" in unknown.reason


def test_a_withdrawn_approval_is_not_reported_as_approved():
    s = scenario(
        condition={"name": "crohns_perianal_fistula"},
        product={"donor": "allogeneic", "hla_mismatches": 5, "tissue_source": "adipose"},
        administration={"route": "local", "into": "gut", "duration": None},
    )
    found = {x.jurisdiction: x for x in regulatory.statuses(s, ["EU", "JP"])}
    assert found["EU"].status == "withdrawn" and "Alofisel" in found["EU"].reason  # withdrawn Dec 2024
    assert found["JP"].status == "approved"


def test_intrathecal_msc_for_ms_in_korea_is_investigational_but_names_the_approved_als_product():
    s = scenario(
        condition={"name": "multiple_sclerosis"}, administration={"route": "intrathecal", "duration": None}
    )
    korea = regulatory.status(s, "KR")
    # NeuroNata-R: autologous marrow MSC given intrathecally, approved for ALS (MFDS, July 2014)
    assert korea.status == "investigational"
    assert "NeuroNata-R" in korea.reason and "amyotrophic lateral sclerosis" in korea.reason
    intravenous = regulatory.status(scenario(condition={"name": "multiple_sclerosis"}), "KR")
    assert "NeuroNata-R" not in intravenous.reason


def test_another_product_for_the_condition_is_listed_but_does_not_make_the_use_approved():
    marrow_cells = scenario(
        condition={"name": "acute_myocardial_infarction"},
        product={"cell_type": "bm_mnc"},
        administration={"route": "intra_arterial", "into": "heart"},
    )
    korea = regulatory.status(marrow_cells, "KR")
    assert korea.status == "investigational" and next(p.name for p in korea.related).startswith(
        "Hearticellgram"
    )
    msc = scenario(
        condition={"name": "acute_myocardial_infarction"}, administration={"route": "intra_arterial"}
    )
    assert regulatory.status(msc, "kr").status == "approved"  # autologous marrow MSC, intracoronary (2011)


def test_every_row_names_its_source_and_provenance():
    for product in regulatory.products():
        assert product.source_url.startswith("http") and product.provenance in ("read", "memory")
        assert (
            product.decision in ("approved", "conditional")
            and product.jurisdiction in regulatory.JURISDICTIONS
        )
    assert {f.jurisdiction for f in regulatory.frameworks()} >= {
        "US",
        "EU",
        "UK",
        "JP",
        "KR",
        "IN",
        "CA",
        "AU",
        "CN",
    }


def test_unknown_jurisdiction_is_one_line_with_exit_2():
    with pytest.raises(ScenarioError, match="unknown jurisdiction 'XX'; allowed: US"):
        regulatory.check_jurisdiction("XX")
    result = run("regulatory", str(EXAMPLES / "condition-acute-gvhd.yaml"), "--jurisdiction", "XX")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: --jurisdiction: unknown jurisdiction")


def test_regulatory_command_prints_status_framework_and_sources():
    result = run("regulatory", str(EXAMPLES / "condition-acute-gvhd.yaml"), "--jurisdiction", "JP")
    assert result.returncode == 0, result.stderr
    assert "approved" in result.stdout and "Temcell" in result.stdout and "http" in result.stdout
    assert "not legal or medical advice" in result.stdout.replace("\n", " ")
