"""Leave-one-study-out scores of the cell-kinetic cases."""

from __future__ import annotations

from infusim import case_format, kinetic_crossval, validation
from infusim.calibrate import FITTED, fit_extraction


def test_rows_informed_by_a_study_include_sources_and_notes():
    rows = kinetic_crossval.rows_informed_by("Toma2009")
    assert "loss_rate[msc]" in rows and "release_rate[msc]" in rows
    assert set(kinetic_crossval.rows_informed_by("Musialek2011")) <= set(FITTED)


def test_a_left_out_anchor_study_is_predicted_by_a_refit_and_others_stay_fitted():
    root = case_format.bundled_cases_dir()
    names = [
        "musialek2011_human_ic_cd34_tc99m",
        "toma2009_rat_ia_muscle_msc",
        "assis2010_rat_iv_msc_mi_tc99m",
    ]
    paths = [root / n for n in names]
    results = validation.validate(paths, curves=False)
    found = kinetic_crossval.cross_validate_cases(paths, results)
    status = {r["case"]: r for r in found["cases"]}
    musialek = status[names[0]]
    assert musialek["status"].startswith("held out")
    refit = fit_extraction(leave_out="Musialek2011")
    assert refit.midpoint != fit_extraction().midpoint  # the refit used Blocklet's 5.5% alone
    assert musialek["aafe"] != results[0].aafe
    assert (
        status[names[1]]["status"].startswith("fitted: the study informed")
        and "loss_rate[msc]" in (status[names[1]]["status"])
    )
    assert status[names[2]]["status"] == "prediction" and status[names[2]]["aafe"] == results[2].aafe
    assert found["overall"]["cases"] == 2
    assert set(found["by_species"]) == {"human", "rat"}
    between = found["between_study"]
    assert between["points"] == sum(len(r.comparisons) for r in (results[0], results[2]))
    assert set(between["tau_log10_by_study"]) == {"Musialek2011", names[2]}  # by source, else case name
    assert between["inside_95_with_between_study"] >= between["inside_95_parameter_only"]
