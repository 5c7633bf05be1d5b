"""The report of a study on several base models: one table set per model and a
cross-model summary (best configuration per base, where the bases disagree)."""

from __future__ import annotations

import json

import pytest

from langtransfer.errors import LangTransferError
from langtransfer.report.build import build_report, format_tables
from langtransfer.results.records import CONFIGURATIONS
from tests.test_report import LANGS, MODEL, VALUES, csv_table, make_record, md_table

OTHER = {**MODEL, "name": "other", "d_model": 48}


def model_records(label: str, model: dict, changes: dict | None = None) -> list[dict]:
    """The records of test_report's grid for one model; ``changes``: (task, configuration,
    language) -> another value."""
    changes = changes or {}
    return [
        make_record(t, c, lang, v=changes.get((t, c, lang)), model_label=label, model=dict(model))
        for t in VALUES for c in CONFIGURATIONS for lang in LANGS
    ]


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """m1 is test_report's grid; m2 the same except ta on nli in sk, now the best there
    and on nli's average (slp+ta stays best overall on both)."""
    records = model_records("m1", MODEL) + model_records("m2", OTHER, {("nli", "ta", "sk"): 70.0})
    out = tmp_path_factory.mktemp("two") / "report"
    return build_report(records, out), out, records


def test_each_model_has_its_own_tables(two):
    summary, out, _ = two
    assert summary.tables == ("m1/nli.en", "m1/qa.en", "m2/nli.en", "m2/qa.en")
    assert md_table(out / "m2" / "tables" / "nli.en.md")["ta"]["sk"] == "**70.0**"
    assert md_table(out / "m1" / "tables" / "nli.en.md")["ta"]["sk"] == "50.0"
    for label in ("m1", "m2"):
        for rel in ("heatmaps/qa.en.png", "deltas/qa.en.csv", "summary/configurations.md"):
            assert (out / label / rel).is_file(), rel
    assert not (out / "tables").exists()  # nothing of one model at the top level
    data = json.loads((out / "report.json").read_text())
    assert data["models"]["m2"]["model"] == OTHER and data["n_records"] == 2 * 2 * 7 * 3


def test_the_cross_model_table_gives_each_bases_average_and_best(two):
    summary, out, _ = two
    table = md_table(out / "summary" / "models.md")
    assert list(table) == list(CONFIGURATIONS)
    assert table["slp+ta"] == {"m1": "**42.6**", "m2": "**42.6**"}
    # ta: qa avg 23.5; nli avg 50.0 on m1, (70+48+52)/3 on m2
    assert table["ta"] == {"m1": "36.8", "m2": f"{(23.5 + 170 / 3) / 2:.1f}"}
    assert summary.best_by_model == {"m1": "slp+ta", "m2": "slp+ta"}
    deltas = csv_table(out / "summary" / "models.deltas.csv")
    # base: qa 65/3, nli 127/3, overall 32.0; ta on m1: (23.5 + 50) / 2
    assert "base" not in deltas
    assert float(deltas["ta"]["m1"]) == pytest.approx(36.75 - 32.0, abs=0.051)
    assert (out / "summary" / "models.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_agreement_table_names_where_the_bases_disagree(two):
    _, out, _ = two
    rows = {(r["table"], r["target"]): r
            for r in csv_table_rows(out / "summary" / "models.agreement.csv")}
    assert len(rows) == 2 * 4  # two tables x (three languages + avg)
    assert rows[("nli", "sk")] == {"table": "nli", "target": "sk", "m1": "slp+stp", "m2": "ta",
                                   "same best": "no"}
    assert rows[("nli", "avg")]["m2"] == "ta" and rows[("nli", "avg")]["m1"] == "slp+ta"
    assert [k for k, r in rows.items() if r["same best"] == "no"] == [("nli", "sk"),
                                                                     ("nli", "avg")]
    assert rows[("qa", "ru")]["m1"] == rows[("qa", "ru")]["m2"] == "slp+stp"


def csv_table_rows(path):
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_report_md_says_how_to_read_it_and_what_it_found(two):
    _, out, _ = two
    text = (out / "report.md").read_text()
    assert "of 2 base models: `m1` (tiny), `m2` (other)" in text
    assert text.index("## Across base models") < text.index("## Model `m1`") < text.index(
        "## Model `m2`")
    assert "**How to read this.**" in text and "Read it down a column" in text
    assert "Best configuration on average: slp+ta on every base." in text
    assert "agree on the best configuration in 6 of 8 cells" in text
    assert "They disagree on: nli -> de" not in text
    assert ("They disagree on: nli -> sk (m1: slp+stp; m2: ta), nli -> avg (m1: slp+ta; "
            "m2: ta).") in text
    assert "](m2/heatmaps/nli.en.png)" in text and "](summary/models.png)" in text


def test_a_different_winner_and_ties_are_said_so(tmp_path):
    boost = {("qa", "ta", lang): 90.0 for lang in LANGS}
    boost.update({("nli", "ta", lang): 90.0 for lang in LANGS})
    boost[("qa", "slp+ta", "sk")] = 90.0  # tied with ta in qa/sk on m2
    records = model_records("a", MODEL) + model_records("b", OTHER, boost)
    summary = build_report(records, tmp_path / "r")
    assert summary.best_by_model == {"a": "slp+ta", "b": "ta"}
    text = (tmp_path / "r" / "report.md").read_text()
    assert ("The best configuration on average differs between bases: a: slp+ta (42.6); "
            "b: ta (90.0).") in text
    rows = {(r["table"], r["target"]): r
            for r in csv_table_rows(tmp_path / "r" / "summary" / "models.agreement.csv")}
    assert rows[("qa", "sk")]["b"] == "ta = slp+ta"
    assert rows[("qa", "sk")]["same best"] == "yes"  # a's slp+ta is tied best on b


def test_only_tables_every_model_has_are_compared(tmp_path):
    records = model_records("a", MODEL) + [
        r for r in model_records("b", OTHER) if r["task"] == "qa"
    ]
    build_report(records, tmp_path / "r")
    data = json.loads((tmp_path / "r" / "report.json").read_text())["cross_model"]
    assert data["common_tables"] == ["qa.en"]
    assert {a["table"] for a in data["agreement"]} == {"qa"}
    assert "over the tables all have: qa.en" in data["by_model"]["title"]
    assert (tmp_path / "r" / "a" / "tables" / "nli.en.md").is_file()


def test_one_label_with_two_different_bases_is_still_refused(tmp_path):
    records = model_records("a", MODEL)
    records[0] = {**records[0], "model": dict(OTHER)}
    with pytest.raises(LangTransferError, match="different base models"):
        build_report(records, tmp_path / "r")


def test_a_single_labelled_model_keeps_the_single_model_layout(tmp_path):
    summary = build_report(model_records("tiny", MODEL), tmp_path / "r")
    assert summary.tables == ("nli.en", "qa.en") and summary.best_configuration == "slp+ta"
    assert (tmp_path / "r" / "tables" / "qa.en.md").is_file()
    assert not (tmp_path / "r" / "summary" / "models.md").exists()


def test_text_tables_show_each_model_then_the_comparison(two):
    _, _, records = two
    text = format_tables(records)
    assert text.index("== model m1 (tiny) ==") < text.index("== model m2 (other) ==") < (
        text.index("== across models =="))
    assert "Best configuration on average: slp+ta on every base." in text
    assert "metric f1" in text
