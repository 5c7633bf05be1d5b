"""NLI and check-worthiness: formats, label parsing, accuracy and macro F1 by hand."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langtransfer.errors import DataFormatError, UnknownNameError
from langtransfer.tasks import get_task
from langtransfer.tasks.checkworthiness import clean_claim

NLI = get_task("nli")
CW = get_task("checkworthiness")
E, N, C = "entailment", "neutral", "contradiction"


def test_nli_format_is_the_papers():
    raw = {"premise": "It rains.", "hypothesis": "It is wet.", "label": 0}
    assert NLI.format_input(raw) == (
        'It rains. \n\nQuestion: Does this imply that "It is wet."? Yes, no, or maybe?'
    )
    assert [NLI.format_target({**raw, "label": i}) for i in range(3)] == ["Yes", "Maybe", "No"]
    # The text the reference's shell passed (its quote marks stripped by the shell).
    assert NLI.prompt_init("Slovak") == (
        "Select Yes, No or Maybe based on the implication of the premise on the hypothesis "
        "in Slovak:"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Yes", E), ("yes.", E), (" Maybe, not sure", N), ("NO", C), ("no!", C),
     ("entailment", E), ("Yesterday", None), ("", None), ("  ...", None),
     ("The answer is yes", None), ("Nein", None)],
)
def test_nli_parse(text, expected):
    assert NLI.parse(text) == expected


@pytest.mark.parametrize("label", [2, "2", "contradiction", "No", " no "])
def test_nli_data_labels(label):
    assert NLI.gold({"premise": "p", "hypothesis": "h", "label": label}) == C


def test_nli_accuracy_and_macro_f1_by_hand():
    m = NLI.score([E, None, E, E], [E, N, C, E])
    # E: tp 2, fp 1, fn 0 -> 0.8; N: fn 1 -> 0; C: fn 1 -> 0; macro over 3 classes
    assert m["accuracy"] == 50.0
    assert m["macro_f1"] == pytest.approx(80 / 3)
    assert m["n_unparseable"] == 1 and m["n_examples"] == 4


def test_macro_f1_averages_over_classes_that_occur():
    # scikit-learn's default label set: a class absent from golds and predictions is not
    # averaged in (averaging it as 0 would give 66.7 here).
    assert NLI.score([E, N], [E, N])["macro_f1"] == 100.0
    cw = CW.score(["not_checkworthy"] * 2, ["not_checkworthy"] * 2)
    assert (cw["accuracy"], cw["macro_f1"]) == (100.0, 100.0)
    # A class only predicted (never gold) counts, with F1 0.
    assert NLI.score([C, E], [E, E])["macro_f1"] == pytest.approx((200 / 3 + 0) / 2)


def test_all_unparseable_is_zero_not_a_class():
    m = NLI.score([None, None, None], [E, N, C])
    assert (m["accuracy"], m["macro_f1"], m["n_unparseable"]) == (0.0, 0.0, 3)


def test_unknown_data_label_names_the_value_and_line(tmp_path):
    path = tmp_path / "en.jsonl"
    rows = [{"premise": "p", "hypothesis": "h", "label": 1},
            {"premise": "p", "hypothesis": "h", "label": 7}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        NLI.load("en", "test", path)
    assert err.value.line == 2 and "7" in str(err.value)


def test_original_xnli_tsv_is_filtered_by_language(tmp_path):
    path = tmp_path / "xnli.test.tsv"
    path.write_text(
        "language\tgold_label\tsentence1\tsentence2\tpairID\n"
        'en\tentailment\tHe said "hi".\tHe spoke.\t1\n'
        "de\tneutral\tEr sagte \"hallo\".\tEr ist nett.\t1\n"
        "de\tcontradiction\tEs regnet.\tEs ist trocken.\t2\n",
        encoding="utf-8",
    )
    de = NLI.load("de", "test", path)
    assert [e.gold for e in de] == [N, C] and [e.id for e in de] == ["1", "2"]
    assert de[0].input.startswith('Er sagte "hallo". \n\nQuestion')  # quotes kept (no quoting)
    with pytest.raises(UnknownNameError) as err:
        NLI.load("sk", "test", path)
    assert "de, en" in str(err.value)


def test_clean_claim_drops_urls_and_newlines():
    # The reference's cleaning exactly: http URLs dropped, newlines/tabs -> spaces, no more.
    assert clean_claim("Fact!\nSee https://x.org/a?b=1 and\twww.y.com/z  now") == (
        "Fact! See  and www.y.com/z  now"
    )
    raw = {"text": "Bread costs more.\nhttps://e.org", "label": 1}
    assert CW.format_input(raw) == "checkworthiness claim: Bread costs more. "
    assert CW.format_target(raw) == "Checkworthy"
    assert CW.format_target({"text": "x", "label": "0"}) == "Not checkworthy"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Checkworthy", "checkworthy"), ("check-worthy.", "checkworthy"),
     ("Not checkworthy", "not_checkworthy"), ("not check worthy", "not_checkworthy"),
     ("NOT CHECKWORTHY!", "not_checkworthy"), ("maybe", None), ("", None), ("No", None)],
)
def test_checkworthiness_parse(text, expected):
    assert CW.parse(text) == expected


@pytest.mark.parametrize(("label", "cls"), [
    (1, "checkworthy"), ("0", "not_checkworthy"), (True, "checkworthy"), ("Yes", "checkworthy"),
    ("false", "not_checkworthy"), ("not check-worthy", "not_checkworthy")])
def test_checkworthiness_data_labels(label, cls):
    assert CW.gold({"text": "t", "label": label}) == cls


def test_checkworthiness_macro_f1_by_hand():
    cw, no = "checkworthy", "not_checkworthy"
    m = CW.score([cw, no, no, None], [cw, cw, no, no])
    # cw: tp 1, fn 1 -> 2/3; not: tp 1, fp 1, fn 1 -> 1/2
    assert m["accuracy"] == 50.0
    assert m["macro_f1"] == pytest.approx((200 / 3 + 50) / 2)
    # The primary metric is the reference's: binary F1 of Checkworthy (2 / (2 + 0 + 1)).
    assert CW.primary_metric == "f1_checkworthy"
    assert m["f1_checkworthy"] == pytest.approx(200 / 3)


def test_checkworthiness_shapes(tmp_path):
    one_col = tmp_path / "all.csv"
    one_col.write_text('id,text,label,language\n1,"Claim A\nmore",1,en\n2,Hi,0,sk\n3,B,0,en\n',
                       encoding="utf-8")
    en = CW.load("en", "test", one_col)
    assert [(e.id, e.gold) for e in en] == [("1", "checkworthy"), ("3", "not_checkworthy")]
    assert en[0].input == "checkworthiness claim: Claim A more"

    per_lang = tmp_path / "multiclaim.csv"
    per_lang.write_text("post_id,text_en,text_sk,label\n7,Taxes rose,Dane stúpli,1\n8,Hi,,0\n",
                        encoding="utf-8")
    sk = CW.load("sk", "test", per_lang)
    assert [(e.id, e.input) for e in sk] == [("7", "checkworthiness claim: Dane stúpli")]
    assert len(CW.load("en", "test", per_lang)) == 2
    with pytest.raises(DataFormatError, match="multiclaim.csv: no text column for language 'ru'"
                       r" \(column 'ru'\); language columns: en, sk"):
        CW.load("ru", "test", per_lang)

    checkthat = tmp_path / "checkthat.tsv"
    checkthat.write_text("tweet_id\tTweet_Text\tclass_label\n5\tIt is 40%\tYes\n6\tlol\tNo\n",
                         encoding="utf-8")
    assert [e.gold for e in CW.load("en", "test", checkthat)] == ["checkworthy", "not_checkworthy"]


def test_checkworthiness_missing_label_column(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("text,score\nA claim,3\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"missing column\(s\): label"):
        CW.load("en", "test", path)


def test_csv_row_with_wrong_field_count_names_its_line(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('text,label\n"two\nlines",1\nA,0,extra\n', encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        CW.load("en", "test", path)
    assert err.value.line == 4


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_label_parsers_never_crash(text):
    assert NLI.parse(text) in (*NLI.classes, None)
    assert CW.parse(text) in (*CW.classes, None)
