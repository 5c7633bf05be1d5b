"""Metrics as the paper's reference code computed them, and the stricter ones beside them.

Hand-computed values for every reading, the QA metrics against the official SQuAD
algorithm (transformers ships the official script's functions) and against the official
MLQA evaluation algorithm (written out below in the script's own steps) on the real
XQuAD files.
"""

from __future__ import annotations

import json
import re
import string
import sys
import unicodedata
from collections import Counter

import pytest
from transformers import ByT5Tokenizer
from transformers.data.metrics import squad_metrics

from langtransfer.inference.scoring import metrics_record, score_predictions
from langtransfer.tasks import Example, get_task
from langtransfer.tasks.qa import exact_match, f1, f1_mlqa, normalize_answer_mlqa

QA, NER, NLI, CW = (get_task(t) for t in ("qa", "ner", "nli", "checkworthiness"))
E, N, C = "entailment", "neutral", "contradiction"
YES, NO = "checkworthy", "not_checkworthy"


def _examples(task, golds, targets=None, language="en"):
    targets = targets or [""] * len(golds)
    return [Example(str(i), language, "", t, g)
            for i, (g, t) in enumerate(zip(golds, targets, strict=True))]


# --- check-worthiness -------------------------------------------------------------------


@pytest.mark.parametrize(("text", "reference", "strict"), [
    ("Checkworthy", YES, YES),
    ("Not checkworthy", NO, NO),
    ("No idea", NO, None),          # unrecognised, contains "No" -> 0
    ("not checkworthy", YES, NO),   # unrecognised and no capital "No" -> 1 (the reference)
    ("maybe", YES, None),
    ("", YES, None),
])
def test_checkworthiness_readings(text, reference, strict):
    assert CW.parse_reference(text) == reference
    assert CW.parse(text) == strict


def test_checkworthiness_metrics_by_hand():
    golds = [YES, YES, NO, NO, YES]
    generated = ["Checkworthy", "garbage", "No", "Not checkworthy", "Not sure"]
    m = CW.score_examples(generated, _examples(CW, golds))
    # Reference reading: YES YES NO NO NO -> TP 2, FN 1, FP 0 for Checkworthy.
    assert m["f1_checkworthy"] == pytest.approx(80.0)   # 2*2 / (2*2 + 0 + 1)
    assert m["accuracy"] == pytest.approx(80.0)
    assert m["macro_f1"] == pytest.approx(80.0)          # not: 2*2 / (4 + 1 + 0)
    # Strict reading: YES None None NO None.
    assert m["strict_f1_checkworthy"] == pytest.approx(50.0)  # 2 / (2 + 0 + 2)
    assert m["strict_accuracy"] == pytest.approx(40.0)
    assert m["strict_macro_f1"] == pytest.approx((50.0 + 200 / 3) / 2)
    assert m["n_unparseable"] == 3 and m["n_examples"] == 5
    assert CW.primary_metric == "f1_checkworthy"


def test_binary_f1_with_no_positive_anywhere_is_zero():
    # scikit-learn's f1_score(average="binary") with zero_division's default gives 0.0.
    m = CW.score([NO, NO], [NO, NO])
    assert m["f1_checkworthy"] == 0.0 and m["accuracy"] == 100.0


# --- NLI --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "reference", "strict"), [
    ("Yes", E, E), ("yes", E, E), ("NO", C, C), ("Maybe", N, N),
    ("Yes.", N, E),      # the reference compares the whole output: unrecognised -> Maybe
    ("garbage", N, None), ("", N, None),
])
def test_nli_readings(text, reference, strict):
    assert NLI.parse_reference(text) == reference
    assert NLI.parse(text) == strict


def test_nli_accuracy_by_hand_both_readings():
    m = NLI.score_examples(["Yes", "No.", "xyz", "Maybe"], _examples(NLI, [E, C, C, N]))
    assert m["accuracy"] == 50.0          # E, N, N, N
    assert m["strict_accuracy"] == 75.0   # E, C, None, N
    assert m["n_unparseable"] == 1


def test_missing_predictions_are_wrong_in_both_readings():
    examples = _examples(NLI, [N, N])
    m = score_predictions(NLI, examples, {"0": "Maybe"})
    assert (m["accuracy"], m["strict_accuracy"], m["n_missing"]) == (50.0, 50.0, 1)


# --- NER --------------------------------------------------------------------------------


def test_ner_reference_parse_ignores_pieces_without_exactly_one_colon():
    assert NER.parse_reference("PER: Ann$$TIME: 10:30$$LOC:$$ per : bob $$junk$$") == (
        ("PER", "Ann"), ("LOC", ""), ("per", "bob"))
    # The strict reader keeps the colon inside the text and counts junk as malformed.
    assert NER.parse("TIME: 10:30") == (("TIME", "10:30"),)


def test_ner_reference_gold_is_the_target_cut_to_30_tokens():
    target = "PER: Ann$$LOC: Paris$$ORG: United Nations"
    gold = (("PER", "Ann"), ("LOC", "Paris"), ("ORG", "United Nations"))
    examples = _examples(NER, [gold], [target])
    # ByT5: one token per byte; 30 tokens = 29 bytes + the end token.
    assert NER.reference_golds(examples, ByT5Tokenizer()) == [
        (("PER", "Ann"), ("LOC", "Paris"), ("ORG", "Un"))]
    assert NER.reference_golds(examples) == [gold]  # no tokenizer: the full target
    m = NER.score_examples([target], examples, tokenizer=ByT5Tokenizer())
    # Reference: TP 2 (PER, LOC), FP 1 (ORG United Nations), FN 1 (ORG Un).
    assert (m["precision"], m["recall"]) == pytest.approx((200 / 3, 200 / 3))
    assert m["f1"] == pytest.approx(200 / 3)
    assert (m["strict_precision"], m["strict_recall"], m["strict_f1"]) == (100.0, 100.0, 100.0)


def test_ner_malformed_pieces_ignored_by_reference_counted_by_strict():
    gold = (("PER", "Ann"),)
    examples = _examples(NER, [gold], ["PER: Ann"])
    m = NER.score_examples(["PER: Ann$$oops$$per: Ann"], examples)
    # Reference: PER Ann (TP), "oops" ignored, ("per", "Ann") is a wrong type (FP).
    assert (m["precision"], m["recall"]) == (50.0, 100.0)
    # Strict: PER Ann TP, <malformed> FP, PER Ann (upper-cased) a second FP.
    assert m["strict_precision"] == pytest.approx(100 / 3) and m["strict_recall"] == 100.0
    assert m["n_unparseable"] == 1


def test_metrics_json_names_the_primary_and_defines_every_variant(tmp_path):
    examples = NER.load("en", "test", source="fixtures")
    scores = score_predictions(NER, examples, {ex.id: ex.target for ex in examples})
    record = metrics_record(scores, NER)
    assert record["primary_metric"] == "f1"
    assert {"f1", "strict_f1", "precision", "strict_recall"} <= set(record["metrics"])
    notes = record["metric_definitions"]
    assert "reference reading" in notes["f1"] and "strict reading" in notes["strict_f1"]
    json.dumps(record)  # serialisable as written


# --- QA: SQuAD v1.1 and the language-aware MLQA metric ---------------------------------


def test_mlqa_normalisation_by_hand():
    assert normalize_answer_mlqa("The «Quick» brown fox!", "en") == "quick brown fox"
    assert normalize_answer_mlqa("El río de la Plata", "es") == "río de plata"
    assert normalize_answer_mlqa("Die Deutsche Bank", "de") == "deutsche bank"
    # Arabic: every "ال" goes, inside words too (the official script's regex).
    assert normalize_answer_mlqa("الكتاب جمال", "ar") == "كتاب جم"
    # Chinese: Unicode punctuation dropped, Han characters one token each.
    assert normalize_answer_mlqa("北京大学，2008年", "zh") == "北 京 大 学 2008 年"
    # Languages outside MLQA: Unicode punctuation and whitespace only, no articles.
    assert normalize_answer_mlqa("«Москва» — the столица", "ru") == "москва the столица"


def test_language_aware_f1_differs_where_squad_cannot_see():
    assert f1("北京大学", "北京") == 0.0                 # one "word" each: no overlap
    assert f1_mlqa("北京大学", "北京", "zh") == pytest.approx(2 / 3)
    assert exact_match("«Москва»", "Москва") == 0.0      # guillemets are not ASCII
    m = QA.score_examples(["«Москва»"], _examples(QA, [("Москва",)], language="ru"))
    assert (m["exact_match"], m["mlqa_exact_match"]) == (0.0, 100.0)


def _perturbed(examples):
    """Predictions of every kind of overlap: exact, partial, extended, other answers."""
    out = []
    for i, ex in enumerate(examples):
        gold, other = ex.gold[0], examples[(i + 7) % len(examples)].gold[0]
        words = gold.split()
        out.append([gold, " ".join(words[: max(1, len(words) // 2)]), f"{gold} {other}",
                    other, f"the {gold}.", ""][i % 6])
    return out


@pytest.mark.parametrize("lang", ["en", "de", "es", "ru", "zh"])
def test_squad_metric_equals_the_official_algorithm_on_xquad(xquad_dir, lang):
    examples = QA.load(lang, "test", xquad_dir / f"xquad.{lang}.json")
    preds = _perturbed(examples)
    em = f = 0.0
    for p, ex in zip(preds, examples, strict=True):
        ours_em = max(exact_match(p, g) for g in ex.gold)
        ours_f1 = max(f1(p, g) for g in ex.gold)
        # transformers' squad_metrics holds the official script's functions; its F1 of an
        # empty side is the v2.0 rule (1 if both empty), v1.1 gives 0 when nothing overlaps.
        official_f1 = max(
            squad_metrics.compute_f1(g, p) if squad_metrics.get_tokens(p)
            and squad_metrics.get_tokens(g) else 0.0 for g in ex.gold)
        assert ours_em == max(squad_metrics.compute_exact(g, p) for g in ex.gold)
        assert ours_f1 == pytest.approx(official_f1, abs=1e-12)
        em, f = em + ours_em, f + ours_f1
    m = score_predictions(QA, examples, {ex.id: p for ex, p in zip(examples, preds, strict=True)})
    assert m["exact_match"] == pytest.approx(100 * em / len(examples))
    assert m["f1"] == pytest.approx(100 * f / len(examples))
    assert 0 < m["exact_match"] < m["f1"] < 100


# The official MLQA evaluation (mlqa_evaluation_v1.py), step by step as the script does it.
_OFFICIAL_PUNCT = {chr(i) for i in range(sys.maxunicode)
                   if unicodedata.category(chr(i)).startswith("P")}.union(string.punctuation)


def _official_mlqa_normalize(s, lang):
    def remove_articles(text, lang):
        if lang == "en":
            return re.sub(r"\b(a|an|the)\b", " ", text)
        if lang == "es":
            return re.sub(r"\b(un|una|unos|unas|el|la|los|las)\b", " ", text)
        if lang == "de":
            return re.sub(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
                          " ", text)
        if lang == "ar":
            return re.sub(r"\sال^|ال", " ", text)
        return text  # zh, hi

    def mixed_segmentation(text):
        segs_out, temp_str = [], ""
        for char in text:
            if re.search(r"[\u4e00-\u9fa5]", char) or char in _OFFICIAL_PUNCT:
                if temp_str != "":
                    segs_out.extend(temp_str.split())
                    temp_str = ""
                segs_out.append(char)
            else:
                temp_str += char
        if temp_str != "":
            segs_out.extend(temp_str.split())
        return segs_out

    def white_space_fix(text, lang):
        tokens = mixed_segmentation(text) if lang == "zh" else text.split()
        return " ".join([t for t in tokens if t.strip() != ""])

    def remove_punc(text):
        return "".join(ch for ch in text if ch not in _OFFICIAL_PUNCT)

    return white_space_fix(remove_articles(remove_punc(s.lower()), lang), lang)


def _official_mlqa_f1(prediction, ground_truth, lang):
    prediction_tokens = _official_mlqa_normalize(prediction, lang).split()
    ground_truth_tokens = _official_mlqa_normalize(ground_truth, lang).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


@pytest.mark.parametrize("lang", ["en", "de", "es", "zh"])
def test_mlqa_metric_equals_the_official_algorithm_on_xquad(xquad_dir, lang):
    examples = QA.load(lang, "test", xquad_dir / f"xquad.{lang}.json")
    preds = _perturbed(examples)
    em = f = 0.0
    for p, ex in zip(preds, examples, strict=True):
        for g in ex.gold:
            assert normalize_answer_mlqa(p, lang) == _official_mlqa_normalize(p, lang)
            assert normalize_answer_mlqa(g, lang) == _official_mlqa_normalize(g, lang)
        em += max(float(_official_mlqa_normalize(p, lang) == _official_mlqa_normalize(g, lang))
                  for g in ex.gold)
        f += max(_official_mlqa_f1(p, g, lang) for g in ex.gold)
    m = score_predictions(QA, examples, {ex.id: p for ex, p in zip(examples, preds, strict=True)})
    assert m["mlqa_exact_match"] == pytest.approx(100 * em / len(examples))
    assert m["mlqa_f1"] == pytest.approx(100 * f / len(examples))
    assert m["mlqa_f1"] != pytest.approx(m["f1"])  # a different normalisation, not a copy


def test_score_cli_reads_ner_reference_golds_through_the_tokenizer(tmp_path, capsys):
    from langtransfer.cli import main
    from langtransfer.tasks.base import FIXTURES_DIR

    data = FIXTURES_DIR / "ner" / "ru.test.jsonl"
    examples = NER.load("ru", "test", data)
    assert any(len(e.target.encode()) > 29 for e in examples)  # some cut at 30 byte tokens
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": e.id, "prediction": e.target}) + "\n"
                             for e in examples), encoding="utf-8")
    runs = {}
    for name, extra in (("full", []), ("cut", ["--tokenizer", "tiny"])):
        assert main(["score", "--task", "ner", "--data", str(data), "--predictions", str(preds),
                     "--output", str(tmp_path / name), *extra]) == 0
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())["metrics"]
    assert runs["full"]["f1"] == runs["full"]["strict_f1"] == 100.0
    assert runs["cut"]["strict_f1"] == 100.0 and runs["cut"]["f1"] < 100.0
    assert main(["score", "--task", "ner", "--data", str(data), "--predictions", str(preds),
                 "--tokenizer", str(tmp_path / "nowhere")]) == 2
    assert "cannot load tokenizer" in capsys.readouterr().err
