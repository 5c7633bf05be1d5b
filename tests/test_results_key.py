"""The record key (contract 2): optional ``model_label`` and ``variant`` fields, paths that
gain segments only when they are set, cell names, and report rows for variants."""

from __future__ import annotations

import json

import pytest

from langtransfer.errors import CorruptFileError, LangTransferError
from langtransfer.report.build import build_report
from langtransfer.results.records import (
    Key,
    cell_name,
    merge_records,
    read_records,
    record_key,
    record_path,
    write_record,
)
from tests.test_report import make_record, md_table


def test_a_record_without_the_fields_has_an_empty_model_label_and_variant():
    key = record_key(make_record("qa", "slp+ta", "sk"))
    assert key == Key("qa", "slp+ta", "en", "sk", "", "")
    assert (key.model_label, key.variant) == ("", "")
    assert record_key(make_record("qa", "slp+ta", "sk", model_label="", variant="")) == key


def test_paths_gain_segments_only_when_set(tmp_path):
    old = record_path(tmp_path, make_record("qa", "slp+ta", "sk"))
    assert old == tmp_path / "results" / "qa" / "slp+ta" / "en__sk.json"
    assert record_path(tmp_path, Key("qa", "slp+ta", "en", "sk")) == old
    assert record_path(tmp_path, ("qa", "slp+ta", "en", "sk")) == old
    cases = {
        ("tiny", ""): "tiny/qa/slp+ta/en__sk.json",
        ("", "init=vocab"): "init=vocab/qa/slp+ta/en__sk.json",
        ("tiny-causal", "corpus=10k"): "tiny-causal/corpus=10k/qa/slp+ta/en__sk.json",
    }
    for (label, variant), rel in cases.items():
        record = make_record("qa", "slp+ta", "sk", model_label=label, variant=variant)
        assert record_path(tmp_path, record) == tmp_path / "results" / rel


def test_empty_fields_are_stored_as_absent_so_old_records_are_unchanged(tmp_path):
    plain = write_record(tmp_path / "a", make_record("nli", "ta", "de"))
    empty = write_record(tmp_path / "b", make_record("nli", "ta", "de", model_label="", variant=""))
    assert plain.relative_to(tmp_path / "a") == empty.relative_to(tmp_path / "b")
    assert plain.read_bytes() == empty.read_bytes()
    assert "model_label" not in json.loads(empty.read_text())


def test_cells_of_different_models_and_variants_coexist_and_read_back(tmp_path):
    records = [
        make_record("qa", "slp+ta", "sk"),
        make_record("qa", "slp+ta", "sk", v=1.0, model_label="tiny"),
        make_record("qa", "slp+ta", "sk", v=2.0, model_label="tiny-causal"),
        make_record("qa", "slp+ta", "sk", v=3.0, model_label="tiny", variant="init=vocab"),
        make_record("qa", "slp+ta", "sk", v=4.0, variant="init=vocab"),
    ]
    for r in records:
        write_record(tmp_path, r)
    back = read_records(tmp_path)
    assert len(back) == 5
    by_key = {record_key(r): r["metrics"]["f1"] for r in back}
    assert by_key[Key("qa", "slp+ta", "en", "sk", "tiny", "init=vocab")] == 3.0
    assert by_key[Key("qa", "slp+ta", "en", "sk", "", "init=vocab")] == 4.0
    # model label first in the order, then the default variant before the others
    assert [record_key(r)[4:6] for r in back] == [
        ("", ""), ("", "init=vocab"), ("tiny", ""), ("tiny", "init=vocab"), ("tiny-causal", "")
    ]


def test_a_record_moved_to_another_models_directory_is_refused(tmp_path):
    path = write_record(tmp_path, make_record("qa", "ta", "sk", model_label="tiny"))
    moved = tmp_path / "results" / "other" / "qa" / "ta" / "en__sk.json"
    moved.parent.mkdir(parents=True)
    path.rename(moved)
    with pytest.raises(CorruptFileError, match="tiny:qa/ta/en->sk.*belongs at"):
        read_records(tmp_path)


def test_same_cell_twice_conflicts_only_within_one_model_and_variant():
    a = make_record("qa", "ta", "sk", model_label="tiny")
    merged = merge_records([a, make_record("qa", "ta", "sk", v=9.0, model_label="other")])
    assert len(merged) == 2
    with pytest.raises(LangTransferError, match=r"cell tiny:qa/ta/en->sk"):
        merge_records([a, make_record("qa", "ta", "sk", v=9.0, model_label="tiny")])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_label", "../up"),
        ("model_label", ".hidden"),
        ("model_label", "a/b"),
        ("model_label", "init=vocab"),  # would read as a variant segment
        ("model_label", 3),
        ("variant", "vocab"),  # not axis=value
        ("variant", "init=a b"),
        ("variant", "=x"),
        ("variant", None),
    ],
)
def test_unsafe_labels_are_refused_naming_the_value(tmp_path, field, value):
    with pytest.raises(CorruptFileError, match=rf"{field} must be empty or .*{value!r:.20}"):
        write_record(tmp_path, make_record("qa", "ta", "sk", **{field: value}))
    assert not (tmp_path / "results").exists()


def test_cell_names_show_model_and_variant_only_when_set():
    assert cell_name(Key("qa", "slp+ta", "en", "sk")) == "qa/slp+ta/en->sk"
    assert cell_name(("qa", "slp+ta", "en", "sk")) == "qa/slp+ta/en->sk"
    assert cell_name(Key("qa", "slp+ta", "en", "sk", "tiny")) == "tiny:qa/slp+ta/en->sk"
    named = cell_name(Key("qa", "slp+ta", "en", "sk", "tiny", "init=vocab"))
    assert named == "tiny:qa/slp+ta [init=vocab]/en->sk"


def test_a_variant_is_its_own_report_row_after_its_configuration(tmp_path):
    records = [make_record("qa", c, "sk", v=v) for c, v in (("base", 10.0), ("slp+ta", 20.0),
                                                            ("la+ta", 15.0))]
    records += [
        make_record("qa", "slp+ta", "sk", v=30.0, variant="init=vocab"),
        make_record("qa", "slp+ta", "sk", v=25.0, variant="corpus=10k"),
    ]
    summary = build_report(records, tmp_path / "report")
    table = md_table(tmp_path / "report" / "tables" / "qa.en.md")
    assert list(table) == [
        "base", "la+ta", "slp+ta", "slp+ta [corpus=10k]", "slp+ta [init=vocab]"
    ]
    assert table["slp+ta [init=vocab]"]["sk"] == "**30.0**"
    assert table["slp+ta [corpus=10k]"]["sk"] == "25.0"
    deltas = md_table(tmp_path / "report" / "deltas" / "qa.en.md")
    assert deltas["slp+ta [init=vocab]"]["sk"] == "+20.0"
    assert summary.best_configuration == "slp+ta [init=vocab]"
