"""check_data: the source of each cell and, when it cannot work, the problem and the fix."""

from __future__ import annotations

import json

from langtransfer.study.data_check import check_data


def test_a_hub_cell_names_id_config_split_revision_and_carve():
    c = check_data("qa", "de", "validation", None)
    assert c.ok and c.problem is None
    assert c.source == ("hub:facebook/mlqa[mlqa-translate-train.de]:train@refs/convert/parquet"
                        " (15% part of train_test_split(test_size=0.15, seed=42))")
    assert check_data("ner", "sk", "test", "hub").source == (
        "hub:unimelb-nlp/wikiann[sk]:test@refs/convert/parquet")


def test_a_local_path_that_does_not_exist(tmp_path):
    c = check_data("qa", "cs", "test", str(tmp_path / "CSSQuAD"))
    assert not c.ok and "does not exist" in c.problem and "CSSQuAD" in c.problem
    assert "data.qa.cs" in c.fix
    # the files go in the directory; the docs pointer does not split the sentence
    assert c.fix.startswith("put Czech SQuAD 2.0")
    assert f"squad-2.0-cs/dev-v2.0.json in {tmp_path / 'CSSQuAD'} (docs/data.md" in c.fix


def test_a_release_dir_missing_the_file_the_reference_read(tmp_path):
    (tmp_path / "squad-2.0-cs").mkdir()
    (tmp_path / "squad-2.0-cs" / "train-v2.0.json").write_text(json.dumps({"data": []}))
    assert check_data("qa", "cs", "validation", str(tmp_path)).ok
    c = check_data("qa", "cs", "test", str(tmp_path))
    assert not c.ok and "not found" in c.problem and "dev-v2.0.json" in c.problem


def test_a_split_the_source_lacks():
    c = check_data("qa", "el", "train", None)
    assert not c.ok and "no train split" in c.problem and "test" in c.problem
    assert "target" in c.fix


def test_a_language_the_task_has_no_source_for():
    c = check_data("qa", "bg", "test", None)
    assert not c.ok and "no source for 'bg'" in c.problem and "mlqa" in c.problem
    assert "leave qa/bg out" in c.fix and c.no_source
    assert not check_data("nli", "xx", "test", None).ok
    assert not check_data("qa", "sk", "test", None).no_source  # local data would do


def test_a_local_only_set_without_data_says_where_it_goes():
    c = check_data("checkworthiness", "en", "train", None)
    assert not c.ok and "MultiClaim" in c.problem
    assert "data.checkworthiness.en" in c.fix and "train-all.csv" in c.fix


def test_fixtures_and_a_refused_single_file(tmp_path):
    assert check_data("nli", "en", "train", "fixtures").ok
    c = check_data("nli", "bg", "train", "fixtures")
    assert not c.ok and "bg" in c.problem
    f = tmp_path / "all.jsonl"
    f.write_text("{}\n")
    assert check_data("nli", "en", "test", str(f)).ok
    c = check_data("nli", "en", "train", str(f))
    assert not c.ok and "refusing" in c.problem and c.line().startswith("nli en train  MISSING")
