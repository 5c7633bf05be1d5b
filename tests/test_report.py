"""Results store and report: records on disk, shard merging, tables, summaries, heatmaps, CLI."""

from __future__ import annotations

import csv
import json
import re
import shutil
import struct
from pathlib import Path
from statistics import fmean

import pytest

import langtransfer.cli as cli
from langtransfer.errors import CorruptFileError, LangTransferError, OutputExistsError
from langtransfer.report.build import ReportSummary, build_report, format_tables
from langtransfer.results.records import (
    CONFIGURATIONS,
    merge_records,
    read_records,
    record_path,
    validate_record,
    write_record,
)

LANGS = ("sk", "ru", "de")  # registry order is de, ru, sk; sk/de Latin, ru Cyrillic
# Known values, chosen so the best row differs between columns and some deltas are negative.
VALUES = {
    "qa": {
        "base": (20.0, 15.0, 30.0),
        "ta": (25.5, 10.0, 35.0),
        "stp": (22.0, 12.5, 33.3),
        "la+ta": (30.0, 14.0, 40.0),
        "la+stp": (28.0, 18.0, 38.0),
        "slp+ta": (35.2, 16.0, 41.5),
        "slp+stp": (33.0, 19.5, 39.0),
    },
    "nli": {
        "base": (40.0, 42.0, 45.0),
        "ta": (50.0, 48.0, 52.0),
        "stp": (38.0, 44.0, 47.0),
        "la+ta": (55.0, 50.0, 54.0),
        "la+stp": (52.0, 53.0, 51.0),
        "slp+ta": (54.0, 51.0, 58.0),
        "slp+stp": (56.0, 49.0, 50.0),
    },
}
METRIC = {"qa": "f1", "nli": "accuracy"}
MODEL = {"name": "tiny", "model_type": "mt5", "vocab_size": 384, "d_model": 64}


def value(task: str, configuration: str, lang: str) -> float:
    return VALUES[task][configuration][LANGS.index(lang)]


def avg(task: str, configuration: str) -> float:
    return fmean(VALUES[task][configuration])


def make_record(task, configuration, target, v=None, source="en", **extra) -> dict:
    v = value(task, configuration, target) if v is None else v
    metric = METRIC[task]
    return {
        "task": task,
        "configuration": configuration,
        "source_language": source,
        "target_language": target,
        "metrics": {metric: v, "other": 1.0},
        "primary_metric": metric,
        "n_examples": 20,
        "n_unparseable": 1,
        "n_truncated": 0,
        "model": dict(MODEL),
        "representations": {
            "language": {"kind": "x", "language": target} if "+" in configuration else None,
            "task": {"kind": "y", "task": task} if configuration != "base" else None,
        },
        "settings_hash": f"h-{task}-{configuration}-{target}",
        "seed": 42,
        **extra,
    }


def all_records() -> list[dict]:
    return [make_record(t, c, lang) for t in VALUES for c in CONFIGURATIONS for lang in LANGS]


def write_all(study: Path, records) -> Path:
    for r in records:
        write_record(study, r)
    return study


@pytest.fixture
def study(tmp_path) -> Path:
    return write_all(tmp_path / "study", all_records())


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> ReportSummary:
    """One report over all records, shared by the tests that only read it."""
    study = write_all(tmp_path_factory.mktemp("shared") / "study", all_records())
    return build_report(read_records(study), study / "report")


@pytest.fixture
def report(shared) -> Path:
    return shared.out_dir


def md_table(path: Path) -> dict[str, dict[str, str]]:
    """The first Markdown table of a file as row -> column -> cell text."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header[1:], cells[1:], strict=True))
    return rows


def csv_table(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return {row["configuration"]: row for row in csv.DictReader(f)}


# --- records -------------------------------------------------------------------------------


def test_records_live_one_file_per_cell_and_read_back(study):
    path = record_path(study, make_record("qa", "slp+ta", "sk"))
    assert path == study / "results" / "qa" / "slp+ta" / "en__sk.json"
    assert json.loads(path.read_text())["metrics"]["f1"] == 35.2
    records = read_records(study)
    assert len(records) == 2 * 7 * 3
    assert sorted(map(json.dumps, records)) == sorted(map(json.dumps, all_records()))
    # sorted by task, source, configuration in the paper's order, target
    assert [r["configuration"] for r in records[:21:3]] == list(CONFIGURATIONS)


def test_configuration_order_is_the_papers_and_reading_results_imports_no_torch():
    """The store and the report read the one table in configurations.py; none of the
    three imports torch (a subprocess: this one has imported it already)."""
    import subprocess
    import sys

    from langtransfer.configurations import CONFIGURATIONS as TABLE

    assert CONFIGURATIONS == tuple(TABLE) == (
        "base", "ta", "stp", "la+ta", "la+stp", "slp+ta", "slp+stp"
    )
    code = (
        "import sys, langtransfer.configurations, langtransfer.results.records, "
        "langtransfer.report.build; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_shards_merge_to_the_same_records_and_report_as_one_directory(tmp_path, report):
    records = all_records()
    one = write_all(tmp_path / "one", records)
    a = write_all(tmp_path / "a", records[::2])
    # shard b holds the other half plus some cells shard a also evaluated (identically,
    # but on another host at another time: the volatile "run" field differs)
    b = write_all(
        tmp_path / "b", records[1::2] + [{**r, "run": {"host": "b"}} for r in records[:6:2]]
    )
    merged = read_records([a, b])
    assert merged == read_records(one)
    build_report(merged, tmp_path / "r_merged")  # `report` was built from one directory
    for name in ("tables/qa.en.md", "tables/nli.en.csv", "summary/scripts.csv", "report.md"):
        assert (tmp_path / "r_merged" / name).read_text() == (report / name).read_text()


def test_same_cell_with_different_results_in_two_shards_is_an_error(tmp_path):
    a = write_all(tmp_path / "a", [make_record("qa", "slp+ta", "sk")])
    b = write_all(tmp_path / "b", [make_record("qa", "slp+ta", "sk", v=12.0)])
    with pytest.raises(LangTransferError, match=re.escape("qa/slp+ta/en->sk")) as e:
        read_records([a, b])
    assert "metrics.f1: 35.2 vs 12.0" in str(e.value)
    assert str(a / "results") in str(e.value) and str(b / "results") in str(e.value)
    with pytest.raises(LangTransferError, match="conflicting"):
        merge_records([make_record("qa", "ta", "sk"), make_record("qa", "ta", "sk", seed=1)])


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"task": "qa", "configur', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ("", "not valid JSON"),
    ],
)
def test_unreadable_record_names_the_file(study, content, message):
    path = record_path(study, make_record("nli", "la+stp", "ru"))
    path.write_text(content)
    with pytest.raises(CorruptFileError, match=message) as e:
        read_records(study)
    assert str(path) in str(e.value)


def test_missing_fields_are_named_with_the_file(study):
    path = record_path(study, make_record("qa", "stp", "de"))
    record = json.loads(path.read_text())
    del record["seed"], record["n_truncated"]
    path.write_text(json.dumps(record))
    with pytest.raises(CorruptFileError, match="missing field.*n_truncated, seed") as e:
        read_records(study)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"configuration": "xx+ta"}, "unknown configuration 'xx\\+ta'; valid: base, ta"),
        ({"primary_metric": "em"}, "primary_metric 'em' is not among the metrics"),
        ({"metrics": {"f1": float("nan")}}, "finite numbers; not so: f1"),
        ({"n_unparseable": 21}, "n_unparseable \\(21\\) exceeds n_examples"),
        ({"representations": {"language": None, "task": None}}, "uses a task representation"),
        ({"target_language": "../x"}, "target_language must be a lower-case language code"),
    ],
)
def test_invalid_records_are_refused_on_write(tmp_path, change, message):
    record = {**make_record("qa", "ta", "sk"), **change}
    with pytest.raises(CorruptFileError, match=message):
        write_record(tmp_path, record)
    assert not (tmp_path / "results").exists()
    validate_record(make_record("qa", "ta", "sk"))  # the unchanged record is fine


def test_temporary_and_non_json_files_are_ignored(study):
    cell_dir = study / "results" / "qa" / "ta"
    (cell_dir / ".en__sk.json.x1y2.tmp").write_text('{"trunc')
    (cell_dir / ".partial.json").write_text("{")
    (cell_dir / "en__sk.predictions.jsonl").write_text('{"id": 1}\n')
    (study / "results" / ".tmp-dir").mkdir()
    (study / "results" / ".tmp-dir" / "x.json").write_text("{")
    assert len(read_records(study)) == 42


def test_a_record_at_another_cells_path_is_refused(study):
    src = record_path(study, make_record("qa", "ta", "sk"))
    wrong = src.with_name("en__de.json")
    shutil.copy(src, wrong)
    with pytest.raises(CorruptFileError, match=re.escape(str(wrong))) as e:
        read_records(study)
    assert "qa/ta/en->sk" in str(e.value)


def test_write_record_replaces_stale_but_not_conflicting_results(tmp_path):
    rec = make_record("qa", "ta", "sk")
    path = write_record(tmp_path, rec)
    write_record(tmp_path, {**rec, "run": {"host": "other"}})  # identical result: fine
    stale = {**rec, "settings_hash": "new", "metrics": {"f1": 1.0}}
    write_record(tmp_path, stale)  # new settings: the runner re-evaluated, old one is stale
    assert json.loads(path.read_text())["metrics"] == {"f1": 1.0}
    with pytest.raises(OutputExistsError, match="qa/ta/en->sk.*metrics.f1: 1.0 vs 2.0"):
        write_record(tmp_path, {**stale, "metrics": {"f1": 2.0}})
    assert json.loads(path.read_text())["metrics"] == {"f1": 1.0}
    write_record(tmp_path, {**stale, "metrics": {"f1": 2.0}}, overwrite=True)
    assert json.loads(path.read_text())["metrics"] == {"f1": 2.0}
    assert [p.name for p in path.parent.iterdir()] == ["en__sk.json"]  # no temp files left


# --- tables --------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["qa", "nli"])
def test_task_tables_hold_every_cell_and_mark_only_the_best(report, task):
    md = md_table(report / "tables" / f"{task}.en.md")
    rows = csv_table(report / "tables" / f"{task}.en.csv")
    assert list(md) == list(rows) == list(CONFIGURATIONS)
    assert list(md["base"]) == ["de", "ru", "sk", "avg"]  # registry order, then avg
    columns = {lang: {c: value(task, c, lang) for c in CONFIGURATIONS} for lang in LANGS}
    columns["avg"] = {c: avg(task, c) for c in CONFIGURATIONS}
    for col, by_cfg in columns.items():
        top = max(round(v, 1) for v in by_cfg.values())
        for cfg, v in by_cfg.items():
            expected = f"{v:.1f}"
            is_best = round(v, 1) == top
            assert md[cfg][col] == (f"**{expected}**" if is_best else expected), (cfg, col)
            assert rows[cfg][col] == expected
            assert (col in rows[cfg]["best_in"].split(";")) == is_best, (cfg, col)
    # spot checks against hand-computed numbers
    if task == "qa":
        assert md["slp+ta"]["sk"] == "**35.2**" and md["slp+stp"]["ru"] == "**19.5**"
        assert md["base"]["avg"] == "21.7" and rows["slp+ta"]["best_in"] == "de;sk;avg"


def test_missing_cells_are_shown_not_dropped(tmp_path):
    records = [
        r
        for r in all_records()
        if (r["task"], r["configuration"], r["target_language"]) != ("qa", "stp", "ru")
    ]
    study = write_all(tmp_path / "s", records)
    build_report(read_records(study), tmp_path / "r")
    md = md_table(tmp_path / "r" / "tables" / "qa.en.md")
    rows = csv_table(tmp_path / "r" / "tables" / "qa.en.csv")
    assert md["stp"] == {"de": "33.3", "ru": "–", "sk": "22.0", "avg": "–"}
    assert rows["stp"]["ru"] == "" and rows["stp"]["avg"] == "" and rows["stp"]["de"] == "33.3"
    assert md["ta"]["avg"] == f"{avg('qa', 'ta'):.1f}"  # other rows unaffected
    summary = md_table(tmp_path / "r" / "summary" / "configurations.md")
    assert summary["stp"]["qa"] == "–" and summary["stp"]["avg"] == "–"
    assert summary["stp"]["nli"] == f"{avg('nli', 'stp'):.1f}"
    scripts = md_table(tmp_path / "r" / "summary" / "scripts.md")
    assert scripts["stp"]["Cyrillic"] == "–" and scripts["stp"]["Latin"] != "–"
    text = format_tables(read_records(study))
    qa = text[text.index("qa — source en") :].splitlines()
    assert next(ln for ln in qa if ln.startswith("stp ")).split() == [
        "stp",
        "33.3",
        "–",
        "22.0",
        "–",
    ]


def test_rows_follow_the_paper_order_and_only_present_configurations():
    keep = ("slp+stp", "base", "la+ta")
    text = format_tables([r for r in all_records() if r["configuration"] in keep])
    nli = text[text.index("nli — source en") :].split("\n\n")[0].splitlines()
    assert [ln.split()[0] for ln in nli[3:]] == ["base", "la+ta", "slp+stp"]


def test_delta_to_base_tables_have_the_right_signs(report):
    md = md_table(report / "deltas" / "qa.en.md")
    rows = csv_table(report / "deltas" / "qa.en.csv")
    assert "base" not in md and list(md) == list(CONFIGURATIONS[1:])
    for cfg in CONFIGURATIONS[1:]:
        for lang in LANGS:
            d = value("qa", cfg, lang) - value("qa", "base", lang)
            assert rows[cfg][lang] == md[cfg][lang] == f"{d:+.1f}"
        assert rows[cfg]["avg"] == f"{avg('qa', cfg) - avg('qa', 'base'):+.1f}"
    assert md["ta"]["ru"] == "-5.0" and md["stp"]["ru"] == "-2.5"  # negative transfer
    assert md["slp+ta"]["sk"] == "+15.2"
    assert md_table(report / "deltas" / "nli.en.md")["stp"]["sk"] == "-2.0"
    assert "**" not in (report / "deltas" / "qa.en.md").read_text()
    assert "negative transfer" in (report / "deltas" / "qa.en.md").read_text()
    summary = csv_table(report / "summary" / "deltas.csv")
    for cfg in CONFIGURATIONS[1:]:
        per_task = {t: avg(t, cfg) - avg(t, "base") for t in VALUES}
        assert summary[cfg]["qa"] == f"{per_task['qa']:+.1f}"
        assert summary[cfg]["avg"] == f"{fmean(per_task.values()):+.1f}"


def test_summary_per_configuration_averages_tasks(report):
    rows = csv_table(report / "summary" / "configurations.csv")
    overall = {c: fmean([avg("qa", c), avg("nli", c)]) for c in CONFIGURATIONS}
    for cfg in CONFIGURATIONS:
        assert rows[cfg]["qa"] == f"{avg('qa', cfg):.1f}"
        assert rows[cfg]["nli"] == f"{avg('nli', cfg):.1f}"
        assert rows[cfg]["avg"] == f"{overall[cfg]:.1f}"
    best = max(overall, key=overall.get)
    assert best == "slp+ta" and "avg" in rows[best]["best_in"].split(";")
    assert sum("avg" in r["best_in"].split(";") for r in rows.values()) == 1


def test_script_and_family_groupings(report):
    scripts = csv_table(report / "summary" / "scripts.csv")
    families = csv_table(report / "summary" / "families.csv")
    assert list(next(iter(scripts.values())))[1:3] == ["Cyrillic", "Latin"]
    assert list(next(iter(families.values())))[1:3] == ["Germanic", "Slavic"]
    for cfg in CONFIGURATIONS:

        def per_task(langs, cfg=cfg):
            return fmean(fmean(value(t, cfg, lang) for lang in langs) for t in VALUES)

        assert scripts[cfg]["Latin"] == f"{per_task(['sk', 'de']):.1f}"
        assert scripts[cfg]["Cyrillic"] == f"{per_task(['ru']):.1f}"
        assert families[cfg]["Slavic"] == f"{per_task(['sk', 'ru']):.1f}"
        assert families[cfg]["Germanic"] == f"{per_task(['de']):.1f}"
    assert scripts["slp+ta"]["Latin"] == f"{fmean([(35.2 + 41.5) / 2, (54 + 58) / 2]):.1f}"
    assert scripts["slp+ta"]["best_in"] == "Latin" and scripts["la+stp"]["best_in"] == "Cyrillic"


def test_languages_the_registry_does_not_know_are_grouped_as_unknown(tmp_path):
    records = all_records() + [
        make_record("qa", c, "xx", v=10.0 + i) for i, c in enumerate(CONFIGURATIONS)
    ]
    build_report(records, tmp_path / "r")
    qa = md_table(tmp_path / "r" / "tables" / "qa.en.md")
    assert list(qa["base"]) == ["de", "ru", "sk", "xx", "avg"]  # unknown codes last
    scripts = csv_table(tmp_path / "r" / "summary" / "scripts.csv")
    assert list(scripts["base"])[-2:] == ["unknown", "best_in"]
    assert scripts["la+ta"]["unknown"] == "13.0"  # only qa has xx: no averaging over tasks
    assert csv_table(tmp_path / "r" / "summary" / "families.csv")["base"]["unknown"] == "10.0"


def test_several_source_languages_give_separate_tables(tmp_path):
    records = all_records() + [
        make_record("qa", c, "sk", v=5.0, source="de") for c in CONFIGURATIONS
    ]
    summary = build_report(records, tmp_path / "r")
    assert summary.tables == ("nli.en", "qa.de", "qa.en")
    assert list(md_table(tmp_path / "r" / "tables" / "qa.de.md")["ta"]) == ["sk", "avg"]
    assert md_table(tmp_path / "r" / "tables" / "qa.en.md")["ta"]["sk"] == "25.5"  # not mixed
    overview = csv_table(tmp_path / "r" / "summary" / "configurations.csv")
    assert overview["ta"]["qa/de"] == "5.0" and overview["ta"]["nli"] == "50.0"


def test_heatmaps_are_real_pngs(report):
    for task in VALUES:
        data = (report / "heatmaps" / f"{task}.en.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
        width, height = struct.unpack(">II", data[16:24])
        assert width > 200 and height > 200 and len(data) > 5000


def test_index_links_every_file_and_report_json_holds_the_numbers(shared):
    summary = shared
    index = summary.index.read_text(encoding="utf-8")
    links = set(re.findall(r"\]\(([^)]+)\)", index))
    written = {p.relative_to(summary.out_dir).as_posix() for p in summary.files}
    assert written - {"report.md", "report.json"} <= links
    assert all((summary.out_dir / link).is_file() for link in links)
    data = json.loads((summary.out_dir / "report.json").read_text())
    assert data["tables"][1]["rows"]["slp+ta"]["sk"] == 35.2
    assert summary.best_configuration == "slp+ta" and summary.n_records == 42


def test_report_output_is_replaced_only_if_it_is_a_report(study, tmp_path):
    records = read_records(study)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="not a langtransfer report"):
        build_report(records, precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    build_report(records, tmp_path / "r")
    build_report([r for r in records if r["task"] == "nli"], tmp_path / "r")
    assert not (tmp_path / "r" / "tables" / "qa.en.md").exists()  # no stale tables
    assert (tmp_path / "r" / "tables" / "nli.en.md").exists()


def test_mixing_base_models_or_metrics_in_one_report_is_refused(tmp_path):
    other = make_record("qa", "ta", "sk", model={**MODEL, "name": "mt0-base"})
    records = [r for r in all_records() if r["settings_hash"] != other["settings_hash"]]
    with pytest.raises(LangTransferError, match="different base models.*mt0-base"):
        build_report([*records, other], tmp_path / "r")
    em = make_record("qa", "ta", "sk")
    em["primary_metric"] = "other"
    with pytest.raises(LangTransferError, match="mixes primary metrics f1, other"):
        build_report([*records, em], tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_format_tables_prints_every_task_with_best_marked():
    text = format_tables(all_records())
    assert "qa — source en, metric f1" in text and "nli — source en, metric accuracy" in text
    qa = text[text.index("qa — source en") :]
    slp_ta = next(ln for ln in qa.splitlines() if ln.startswith("slp+ta "))
    assert slp_ta.split() == ["slp+ta", "41.5*", "16.0", "35.2*", "30.9*"]
    assert "Average primary metric per configuration" in text


# --- CLI -----------------------------------------------------------------------------------


@pytest.fixture
def only_report_verb(monkeypatch):
    """Parse with the report verb alone, so this test does not depend on other verbs."""
    assert "report" in cli.VERBS
    monkeypatch.setattr(cli, "VERBS", ["report"])


def test_cli_reports_on_shards_end_to_end(tmp_path, capsys, only_report_verb):
    records = all_records()
    a = write_all(tmp_path / "a", records[:20])
    b = write_all(tmp_path / "b", records[20:])
    assert cli.main(["report", str(a), str(b), "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "qa — source en, metric f1" in out and "35.2*" in out
    assert "report of 42 records written to" in out and "best on average: slp+ta" in out
    assert md_table(tmp_path / "out" / "tables" / "qa.en.md")["slp+ta"]["sk"] == "**35.2**"
    assert (tmp_path / "out" / "heatmaps" / "nli.en.png").stat().st_size > 0
    assert cli.main(["report", str(a), "--quiet"]) == 0  # default output: DIR/report
    assert "metric f1" not in capsys.readouterr().out
    assert md_table(a / "report" / "tables" / "qa.en.md")["base"]["sk"] == "20.0"


def test_cli_without_records_fails_clearly(tmp_path, capsys, only_report_verb):
    (tmp_path / "empty").mkdir()
    assert cli.main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no result records in" in err and "results/<task>/<configuration>" in err
    assert cli.main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    study = write_all(tmp_path / "s", all_records()[:3])
    assert cli.main(["report", str(study), "-o", str(study / "results" / "r")]) == 2
    assert "inside" in capsys.readouterr().err


def test_a_task_can_show_another_metric_than_its_primary(tmp_path, capsys):
    """metrics.json holds the reference's figure (primary) and variants beside it; the
    report shows the primary unless a metric is chosen per task."""
    study = write_all(tmp_path / "study", all_records())
    out = tmp_path / "r"
    build_report(read_records(study), out, metrics={"nli": "other"})
    nli_md = (out / "tables" / "nli.en.md").read_text()
    qa_md = (out / "tables" / "qa.en.md").read_text()
    assert "metric other" in nli_md and "metric f1" in qa_md
    assert "1.0" in nli_md and "35.2" in qa_md and "54.0" not in nli_md
    text = format_tables(read_records(study), {"qa": "other"})
    assert "metric other" in text and "metric accuracy" in text
    # A metric a record lacks, a task not in the records, a malformed option: named errors.
    with pytest.raises(LangTransferError, match="unknown metric of task qa.*'mlqa_f1'.*f1, other"):
        build_report(read_records(study), tmp_path / "r2", metrics={"qa": "mlqa_f1"})
    with pytest.raises(LangTransferError, match="task for --metric 'ner'.*nli, qa"):
        format_tables(read_records(study), {"ner": "f1"})
    assert cli.main(["report", str(study), "-o", str(tmp_path / "r3"), "--quiet",
                     "--metric", "nli=other"]) == 0
    assert "metric other" in (tmp_path / "r3" / "tables" / "nli.en.md").read_text()
    assert cli.main(["report", str(study), "-o", str(tmp_path / "r4"), "--metric", "nli"]) == 2
    assert "must look like TASK=METRIC" in capsys.readouterr().err
