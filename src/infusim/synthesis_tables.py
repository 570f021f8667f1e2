"""Writing the evidence synthesis: fitted posteriors to ``data/posteriors``, their medians into the
parameter tables, and the refit command ``python -m infusim.synthesis [--write] [--check]``.

The fit itself is ``infusim.synthesis``; this module only runs it per condition and writes.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import tempfile
import time
from pathlib import Path

from infusim import evidence, posterior
from infusim.evidence import EvidenceRow
from infusim.parameters import ParameterSet
from infusim.synthesis import CHECK_SEEDS, evidence_conditions, fit_condition


def write_fits(
    folder,
    rows: list[EvidenceRow],
    only: list[str] | None = None,
    params: ParameterSet | None = None,
    command: str = "",
    source: str = "",
    progress=None,
    check_seeds: tuple[int, ...] = (),
    **sampling,
) -> dict[str, dict]:
    """Fit every condition with evidence (or those in ``only``) and write draws and records
    (``sampling``: walkers, steps, burn of ``fit``)."""
    written = {}
    for condition in only or evidence_conditions(rows):
        result, _problem, record = fit_condition(
            condition, rows, params, command, source, check_seeds, **sampling
        )
        if progress is not None:
            progress(condition, record)
        posterior.write(folder, condition, result.table_values(), record)
        written[condition] = record
    return written


def update_tables(records: dict[str, dict], data_dir=None) -> list[str]:
    """Write posterior medians into conditions.csv (potencies, effect ratios) and mechanisms.csv
    (fitted K, one row per condition), provenance ``calibrated``, with the interval and the command."""
    from infusim.parameters import _bundled_entries, _data_dir

    folder = Path(data_dir or _data_dir())
    changed = []
    for table in ("conditions.csv", "mechanisms.csv"):
        path = folder / table
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
        index = {(r[0], r[1]): r for r in rows[1:]}
        for record in records.values():
            for name, s in record["summary"].items():
                parameter, _, scope = name[:-1].partition("[") if name.endswith("]") else (name, "", "")
                if (parameter in ("potency", "effect_ratio")) != (table == "conditions.csv"):
                    continue
                if parameter not in ("potency", "effect_ratio", "half_saturation"):
                    continue
                note = (
                    f"posterior median of `{record['command']}` over {record['n_studies']} studies "
                    f"({record['n_rows']} rows of data/evidence.csv); 95% interval {s['low']:.3g} to "
                    f"{s['high']:.3g}; between-trial SD {record['summary']['tau_smd']['median']:.2f} SMD; "
                    "draws in data/posteriors"
                )
                row = index.get((parameter, scope))
                if row is None:
                    unit = (
                        index[(parameter, scope.split("/")[0])][3] if parameter == "half_saturation" else ""
                    )
                    row = [parameter, scope, "", unit, "", "", ""]
                    rows.append(row)
                    index[(parameter, scope)] = row
                row[2] = f"{s['median']:.4g}"
                row[4] = "infusim"
                row[5] = "calibrated"
                row[6] = note
                changed.append(f"{table}:{parameter}[{scope}]")
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        path.write_text(buffer.getvalue(), encoding="utf-8")
    _bundled_entries.cache_clear()
    return changed


def main(argv: list[str] | None = None) -> int:
    """``python -m infusim.synthesis [--write] [--check] [CONDITION ...]``: refit the bundled posteriors.

    With ``--write``: draws to ``data/posteriors``, medians into the tables of a source checkout; a
    written fit always carries its Monte Carlo check (``--check``: the fit from ``CHECK_SEEDS`` too).
    """
    parser = argparse.ArgumentParser(
        prog="python -m infusim.synthesis",
        description="Refit the bundled posteriors of the clinical evidence.",
    )
    parser.add_argument("conditions", nargs="*", help="conditions to fit (default: every one with evidence)")
    parser.add_argument(
        "--write", action="store_true", help="write draws and table medians (source checkout)"
    )
    parser.add_argument(
        "--check", action="store_true", help="also fit from CHECK_SEEDS (always with --write)"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    write = args.write
    check = CHECK_SEEDS if write or args.check else ()
    rows = evidence.load()
    unknown = sorted(set(args.conditions) - set(evidence_conditions(rows)))
    if unknown:
        allowed = ", ".join(evidence_conditions(rows))
        parser.exit(2, f"error: conditions: no evidence for {', '.join(unknown)}; allowed: {allowed}\n")
    only = args.conditions or None
    command = "python -m infusim.synthesis --write"

    def report(condition: str, record: dict) -> None:
        d = record["diagnostics"]
        worst = min(d["effective_sample_size"].values())
        print(
            f"{condition}: {record['n_studies']} studies, {record['n_rows']} rows; "
            f"min ESS {worst}, acceptance {d['acceptance']}",
            flush=True,
        )
        for name, s in record["summary"].items():
            print(f"    {name} = {s['median']:.4g} ({s['low']:.3g} to {s['high']:.3g})")
        if "seed_check" in d:
            c = d["seed_check"]
            print(f"    medians of seeds {c['seeds']} within {c['worst_median_range_sd']:.2f} posterior SD")
        if "importance_check" in d:
            c = d["importance_check"]
            print(
                f"    against importance sampling (ESS {c['effective_size']:,}): medians within "
                f"{c['worst_median_off_sd']:.2f} SD, 95% bounds within {c['worst_bounds_off_sd']:.2f} SD"
            )

    start = time.perf_counter()
    folder = posterior.bundled_dir() if write else _scratch_folder()
    records = write_fits(
        folder, rows, only, command=command, source="data/evidence.csv", progress=report, check_seeds=check
    )
    if write:
        for line in update_tables(records):
            print(f"updated {line}")
    print(f"{len(records)} conditions in {time.perf_counter() - start:.1f} s")
    return 0


def _scratch_folder():
    return Path(tempfile.mkdtemp(prefix="infusim-fit-"))
