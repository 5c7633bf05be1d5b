"""The report's intervals and paired tests, on study directories holding records and
per-example scores built here (no model): best marks only where a configuration is
significantly better, tied sets named, negative transfer marked only where the test
finds it, intervals in Markdown and CSV, cells without scores named, seed sets checked."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import numpy as np
import pytest

from langtransfer.cli import main
from langtransfer.inference.scoring import ExampleScores, write_example_scores
from langtransfer.report.build import build_report
from langtransfer.results.records import read_records, record_path, scores_path, write_record
from langtransfer.tasks import get_task

QA = get_task("qa")
N = 200


def write_cell(study: Path, configuration: str, target: str, f1: np.ndarray, *,
               label: str = "", seed: int = 42, scores: bool = True, **extra) -> dict:
    """A QA cell whose per-example F1 is ``f1`` (exact match the same), written as a
    study writes it: the record and its scores beside it."""
    columns = {"exact_match": f1, "f1": f1, "mlqa_exact_match": f1, "mlqa_f1": f1}
    metrics = QA.metrics_from_stats({k: float(v.sum()) for k, v in columns.items()}, len(f1))
    record = {
        "task": "qa", "configuration": configuration, "source_language": "en",
        "target_language": target, "metrics": metrics, "primary_metric": "f1",
        "n_examples": len(f1), "n_unparseable": 0, "n_truncated": 0,
        "model": {"name": label or "tiny"},
        "representations": {
            "language": {"kind": "x"} if "+" in configuration else None,
            "task": {"kind": "y"} if configuration != "base" else None},
        "settings_hash": f"h-{label}-{configuration}-{target}-{seed}", "seed": seed,
        **({"model_label": label} if label else {}), **extra,
    }
    write_record(study, record)
    if scores:
        write_example_scores(scores_path(study, record),
                             ExampleScores("qa", columns, f"ids-{target}-{len(f1)}"),
                             settings_hash=record["settings_hash"])
    return record


def md_rows(path: Path) -> dict[str, dict[str, str]]:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(header[1:], cells[1:], strict=True))
            for ln in lines[2:] if (cells := [c.strip() for c in ln.strip("|").split("|")])}


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """en/de/sk: base; ta (right on 30% more examples than base: clearly better); la+ta
    and slp+ta (ta's outcomes with a handful flipped: tied with ta); stp much worse than
    base in sk (negative transfer) and equal to base elsewhere."""
    study = tmp_path_factory.mktemp("intervals") / "study"
    rng = np.random.default_rng(0)
    for target in ("en", "de", "sk"):
        base = (rng.random(N) < 0.3).astype(float)
        ta = base.copy()
        ta[np.flatnonzero(base == 0)[:60]] = 1.0
        near = ta.copy()
        near[np.flatnonzero(ta == 1)[:2]] = 0.0
        stp = base.copy()
        if target == "sk":
            stp[np.flatnonzero(base == 1)[:30]] = 0.0
        write_cell(study, "base", target, base)
        write_cell(study, "ta", target, ta)
        write_cell(study, "la+ta", target, near)
        write_cell(study, "slp+ta", target, near)
        write_cell(study, "stp", target, stp)
    build_report(read_records(study), study / "report", study_dirs=[study])
    return study


def test_best_is_bold_only_where_significant_and_the_tied_set_is_named(grid):
    report = grid / "report"
    rows = md_rows(report / "tables" / "qa.en.md")
    # ta is ahead of la+ta/slp+ta by 2 of 200 examples: tied, none bold
    assert not any(cell.startswith("**") for row in rows.values() for cell in row.values())
    assert rows["ta"]["en"].startswith("*") and rows["la+ta"]["en"].startswith("*")
    assert rows["base"]["en"][0].isdigit()  # not among the best
    text = (report / "tables" / "qa.en.md").read_text(encoding="utf-8")
    assert "tied best (the paired test cannot separate them; *italic*): de: ta, la+ta, " \
           "slp+ta; en: ta, la+ta, slp+ta;" in text
    wide = {r["configuration"]: r for r in csv_rows(report / "tables" / "qa.en.csv")}
    assert wide["ta"]["best_in"] == "" and wide["ta"]["tied_best_in"] == "de;en;sk;avg"
    assert wide["base"]["tied_best_in"] == ""


def test_intervals_are_in_markdown_and_in_the_intervals_csv(grid):
    report = grid / "report"
    rows = md_rows(report / "tables" / "qa.en.md")
    assert "[" in rows["base"]["de"] and "," in rows["base"]["de"]
    long = {(r["configuration"], r["column"]): r
            for r in csv_rows(report / "tables" / "qa.en.intervals.csv")}
    cell = long[("base", "de")]
    assert list(cell)[:6] == ["configuration", "column", "value", "low", "high", "n"]
    assert float(cell["low"]) < float(cell["value"]) < float(cell["high"])
    assert cell["n"] == str(N) and long[("base", "avg")]["n"] == str(3 * N)
    assert long[("ta", "en")]["best"] == "tied" and long[("base", "en")]["best"] == ""
    summary = csv_rows(report / "summary" / "configurations.intervals.csv")
    assert all(r["low"] and r["high"] for r in summary)


def test_negative_transfer_is_marked_only_where_the_test_finds_it(grid):
    report = grid / "report"
    deltas = md_rows(report / "deltas" / "qa.en.md")
    assert "▼" in deltas["stp"]["sk"]  # 30 of 60 right answers lost
    assert deltas["stp"]["en"].startswith("0.0") and "▼" not in deltas["stp"]["en"]
    assert all("▲" in deltas["ta"][c] for c in ("en", "de", "sk", "avg"))
    low, high = (float(x) for x in deltas["stp"]["sk"].split("[")[1].rstrip("]").split(","))
    assert high < 0  # the interval excludes 0
    long = {(r["configuration"], r["column"]): r
            for r in csv_rows(report / "deltas" / "qa.en.intervals.csv")}
    assert long[("stp", "sk")]["significant"] == "lower"
    md = (report / "report.md").read_text(encoding="utf-8")
    assert "**How to read this.**" in md and "## Sample size" in md


def test_the_sample_size_table_gives_the_detectable_difference(grid):
    md = (grid / "report" / "report.md").read_text(encoding="utf-8")
    line = next(ln for ln in md.splitlines() if ln.startswith("| qa | sk |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == str(N) and cells[3] == "1"
    # 2.8 x the SE of a paired difference of ~0.1-0.3 per example on 200: a few points
    assert 3 < float(cells[4]) < 15


def test_a_cell_without_scores_or_predictions_is_named_and_shown_without_interval(tmp_path):
    study = tmp_path / "study"
    rng = np.random.default_rng(1)
    write_cell(study, "base", "en", (rng.random(50) < 0.5).astype(float))
    old = write_cell(study, "ta", "en", (rng.random(50) < 0.6).astype(float), scores=False)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["report", str(study)]) == 0
    (line,) = [ln for ln in err.getvalue().splitlines() if "qa/ta/en->en" in ln]
    assert line.startswith("qa/ta/en->en: no per-example scores and no predictions")
    assert f"delete {record_path(study, old)} and rerun the study" in line
    rows = md_rows(study / "report" / "tables" / "qa.en.md")
    assert "[" not in rows["ta"]["en"] and "[" in rows["base"]["en"]
    assert "[" not in rows["ta"]["avg"]  # an average over a cell without one has none
    assert "qa/ta/en->en: no per-example scores" in (study / "report" / "report.md").read_text(
        encoding="utf-8")


def test_cells_with_different_seed_sets_are_refused_in_one_line(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    f1 = np.ones(10)
    write_cell(a, "base", "en", f1, seed=42)
    write_cell(b, "ta", "en", f1, seed=7)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["report", str(a), str(b), "--output", str(tmp_path / "r")]) == 2
    (line,) = err.getvalue().strip().splitlines()
    assert "different training seeds: qa/base/en->en with 42, qa/ta/en->en with 7" in line


def test_several_seeds_are_averaged_and_resampled(tmp_path):
    """Two seeds per cell (the second in its replicate directory): the value is their
    mean; the interval is wider than either seed's alone when the seeds disagree."""
    study = tmp_path / "study"
    rng = np.random.default_rng(2)
    for seed, p in ((42, 0.3), (43, 0.6)):
        replicate = {} if seed == 42 else {"replicate": f"seed={seed}"}
        write_cell(study, "base", "en", (rng.random(300) < p).astype(float), seed=seed,
                   **replicate)
    records = read_records(study)
    assert {r.get("replicate", "") for r in records} == {"", "seed=43"}
    assert (study / "results" / "seed=43" / "qa" / "base" / "en__en.json").is_file()
    build_report(records, study / "report", study_dirs=[study])
    (row,) = [r for r in csv_rows(study / "report" / "tables" / "qa.en.intervals.csv")
              if r["column"] == "en"]
    value = np.mean([r["metrics"]["f1"] for r in records])
    assert float(row["value"]) == pytest.approx(value, abs=1e-3) and row["seeds"] == "2"
    assert float(row["high"]) - float(row["low"]) > 15  # seeds 30 points apart


def test_cross_model_agreement_counts_tied_sets(tmp_path):
    """On one base ta is clearly best; on the other ta and la+ta are tied: they agree."""
    study = tmp_path / "study"
    rng = np.random.default_rng(3)
    base = (rng.random(N) < 0.3).astype(float)
    ta = base.copy()
    ta[np.flatnonzero(base == 0)[:60]] = 1.0
    near = ta.copy()
    near[np.flatnonzero(ta == 1)[:2]] = 0.0
    for label, second in (("one", base), ("two", near)):
        write_cell(study, "base", "en", base, label=label)
        write_cell(study, "ta", "en", ta, label=label)
        write_cell(study, "la+ta", "en", second, label=label)
    build_report(read_records(study), study / "report", study_dirs=[study])
    agreement = csv_rows(study / "report" / "summary" / "models.agreement.csv")
    en = next(r for r in agreement if r["target"] == "en")
    assert en["one"] == "ta" and en["two"] == "ta = la+ta" and en["same best"] == "yes"
    one = md_rows(study / "report" / "one" / "tables" / "qa.en.md")
    assert one["ta"]["en"].startswith("**") and one["la+ta"]["en"][0].isdigit()
    assert "tied best" not in (study / "report" / "one" / "tables" / "qa.en.md").read_text(
        encoding="utf-8")


def test_the_demo_guidance_names_the_differences_the_test_finds(grid):
    from langtransfer.cli.demo import guidance

    text = guidance(grid)
    assert f"the demo's test sets have {N} examples per language" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("  qa.en: "))
    assert "ta ▲ on de, en, sk, avg" in line and "stp ▼ on sk" in line
    assert "Every other difference in the tables is within what chance leaves" in text
