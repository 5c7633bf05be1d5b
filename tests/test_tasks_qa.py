"""QA: the SQuAD v1.1 metric by hand, loaders on real XQuAD files, SQuAD-style variants."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from langtransfer.errors import DataFormatError
from langtransfer.inference.scoring import score_predictions
from langtransfer.tasks import get_task
from langtransfer.tasks.qa import exact_match, f1, normalize_answer

QA = get_task("qa")
XQUAD_LANGS = ("en", "de", "es", "ru", "zh")


def test_normalisation_is_the_official_one():
    assert normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("the theatre") == "theatre"  # articles only as whole words
    # ASCII punctuation only, as the official script: guillemets stay.
    assert normalize_answer("«Москва»") == "«москва»"


def test_exact_match_and_f1_by_hand():
    assert exact_match("Paris.", "paris") == 1.0
    assert exact_match("in Paris", "Paris") == 0.0
    # pred [cat, sat] vs gold [cat, sat, down]: P = 1, R = 2/3, F1 = 0.8
    assert f1("the cat sat", "a cat sat down") == pytest.approx(0.8)
    assert f1("dog", "cat") == 0.0
    # Empty prediction: F1 0; the official v1.1 script gives 0 even for an empty gold.
    assert f1("", "cat") == 0.0
    assert f1("", "") == 0.0
    assert exact_match("", "the") == 1.0  # both normalise to ""


def test_score_takes_the_max_over_gold_answers():
    preds = ["Paris", "New York City", ""]
    golds = [("paris",), ("New York", "York City", "NYC"), ("Oslo", "the Oslo")]
    m = QA.score(preds, golds)
    # EM: 1 + 0 + 0; F1: 1 + max(0.8, 0.8, 0) + 0
    assert m["exact_match"] == pytest.approx(100 / 3)
    assert m["f1"] == pytest.approx(100 * 1.8 / 3)
    assert m["n_examples"] == 3
    assert m["n_unparseable"] == 0


def test_score_rejects_misaligned_lists():
    with pytest.raises(ValueError, match="align"):
        QA.score(["a"], [("a",), ("b",)])


@pytest.mark.parametrize("lang", XQUAD_LANGS)
def test_xquad_perfect_and_empty_predictions(xquad_dir, lang):
    examples = QA.load(lang, "test", xquad_dir / f"xquad.{lang}.json")
    assert len(examples) == 1190
    assert len({ex.id for ex in examples}) == 1190
    assert all(ex.language == lang and ex.gold and ex.target == ex.gold[0] for ex in examples)
    assert examples[0].input.startswith("question: ") and " context: " in examples[0].input

    perfect = score_predictions(QA, examples, {ex.id: ex.target for ex in examples})
    assert perfect["exact_match"] == 100.0 and perfect["f1"] == 100.0
    assert perfect["n_missing"] == 0 and perfect["language"] == lang

    empty = score_predictions(QA, examples, {ex.id: "" for ex in examples})
    assert empty["exact_match"] == 0.0 and empty["f1"] == 0.0


def test_xquad_ids_are_parallel_across_languages(xquad_dir):
    en = QA.load("en", "test", xquad_dir / "xquad.en.json")
    de = QA.load("de", "test", xquad_dir / "xquad.de.json")
    assert [e.id for e in en] == [d.id for d in de]
    # English answers scored against German gold: not a perfect score.
    cross = score_predictions(QA, de, {e.id: e.target for e in en})
    assert cross["exact_match"] < 50


def test_xquad_missing_predictions_count_as_zero(xquad_dir):
    examples = QA.load("ru", "test", xquad_dir / "xquad.ru.json")
    half = {ex.id: ex.target for ex in examples[:595]}
    m = score_predictions(QA, examples, half)
    assert m["n_missing"] == 595
    assert m["exact_match"] == pytest.approx(50.0)


def test_flattened_jsonl_and_parquet_in_the_hub_schema(tmp_path):
    rows = [
        {"id": "q1", "title": "t", "context": "Bratislava is on the Danube.",
         "question": "Which river?", "answers": {"text": ["the Danube", "Danube"],
                                                  "answer_start": [17, 21]}},
        {"id": "q2", "context": "Ann is 30.", "question": "Age?",
         "answers": [{"text": "30", "answer_start": 7}]},
    ]
    jsonl = tmp_path / "sk.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    examples = QA.load("sk", "test", jsonl)
    assert [e.gold for e in examples] == [("the Danube", "Danube"), ("30",)]
    assert examples[0].input == "question: Which river? context: Bratislava is on the Danube."

    parquet = tmp_path / "sk.parquet"
    pq.write_table(pa.Table.from_pylist(rows[:1]), parquet)
    assert QA.load("sk", "test", parquet)[0].gold == ("the Danube", "Danube")


def test_broken_squad_json_and_answerless_questions(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"paragraphs": [{"qas": [{"id": "x"}]}]}]}),
                   encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"not SQuAD v1.1 JSON \(question 1\): missing"):
        QA.load("en", "test", bad)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"data": [{"paragraphs": [{"context": "c", "qas": []}]}]}),
                     encoding="utf-8")
    with pytest.raises(DataFormatError, match="no qa examples"):
        QA.load("en", "test", empty)
    unanswerable = tmp_path / "v2.json"
    unanswerable.write_text(json.dumps({"data": [{"paragraphs": [{"context": "c", "qas": [
        {"id": "x", "question": "q", "answers": []}]}]}]}), encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"v2.json: all 1 questions are unanswerable"):
        QA.load("en", "test", unanswerable)
    truncated = tmp_path / "cut.json"
    truncated.write_text('{"data": [', encoding="utf-8")
    with pytest.raises(DataFormatError, match="invalid JSON"):
        QA.load("en", "test", truncated)
