"""NER: IOB2 -> spans, the span micro F1 by hand, and a parser that never crashes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langtransfer.errors import DataFormatError
from langtransfer.inference.scoring import score_predictions
from langtransfer.tasks import get_task
from langtransfer.tasks.ner import MALFORMED, tags_to_spans

NER = get_task("ner")


def test_iob2_ids_and_strings_to_spans():
    tokens = ["John", "Smith", "visited", "New", "York", "with", "Acme", "Corp", "."]
    assert tags_to_spans(tokens, [1, 2, 0, 5, 6, 0, 3, 4, 0]) == [
        ("PER", "John Smith"), ("LOC", "New York"), ("ORG", "Acme Corp")]
    tags = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-ORG", "I-ORG", "O"]
    assert tags_to_spans(tokens, tags) == tags_to_spans(tokens, [1, 2, 0, 5, 6, 0, 3, 4, 0])
    # B after B of the same type: two spans; a stray I- starts a span (conlleval).
    assert tags_to_spans(["A", "B", "C", "D"], [5, 5, 0, 2]) == [
        ("LOC", "A"), ("LOC", "B"), ("PER", "D")]
    # I- of another type starts a new span.
    assert tags_to_spans(["A", "B"], [1, 4]) == [("PER", "A"), ("ORG", "B")]


@pytest.mark.parametrize("tags", [[7], [-1], ["X-PER"], [True], [None]])
def test_bad_tags_are_errors(tags):
    with pytest.raises(ValueError):
        tags_to_spans(["a"], tags)


def test_format_input_target_and_empty_target():
    raw = {"tokens": ["Anna", "lives", "in", "Oslo", "."], "ner_tags": [1, 0, 0, 5, 0]}
    assert NER.format_input(raw) == "tag: Anna lives in Oslo ."
    assert NER.format_target(raw) == "PER: Anna$$LOC: Oslo"
    assert NER.format_target({"tokens": ["No", "names"], "ner_tags": [0, 0]}) == ""
    assert NER.parse("") == ()


def test_spans_column_forms():
    tokens = ["Eva", "Mraz", "met", "Ivan", "in", "Brno"]
    offsets = {"tokens": tokens, "spans": [{"type": "per", "start": 0, "end": 2},
                                          {"type": "LOC", "start": 5, "end": 6}]}
    texts = {"tokens": tokens, "spans": [{"type": "PER", "text": "Eva  Mraz"}, "LOC: Brno"]}
    assert NER.gold(offsets) == NER.gold(texts) == (("PER", "Eva Mraz"), ("LOC", "Brno"))
    with pytest.raises(ValueError, match="offsets"):
        NER.gold({"tokens": tokens, "spans": [{"type": "PER", "start": 4, "end": 9}]})
    with pytest.raises(ValueError, match="TYPE: text"):
        NER.gold({"tokens": tokens, "spans": ["Brno"]})


def test_bad_span_offsets_in_a_file_name_the_line(tmp_path):
    path = tmp_path / "sk.test.jsonl"
    rows = [{"tokens": ["a", "b"], "spans": []},
            {"tokens": ["a", "b"], "spans": [{"type": "PER", "start": 1, "end": 5}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        NER.load("sk", "test", path)
    assert err.value.line == 2 and "offsets" in str(err.value)


def test_parse_pieces():
    assert NER.parse("PER: John Smith$$LOC: Paris") == (("PER", "John Smith"), ("LOC", "Paris"))
    assert NER.parse(" per:  John \n Smith $$") == (("PER", "John Smith"),)
    assert NER.parse("ORG: Star Wars: Episode") == (("ORG", "Star Wars: Episode"),)
    assert NER.parse("garbage$$: x$$PER:") == (
        (MALFORMED, "garbage"), (MALFORMED, ": x"), (MALFORMED, "PER:"))


def test_micro_f1_by_hand_with_duplicates():
    golds = [(("PER", "John Smith"), ("LOC", "Paris")), (("LOC", "Oslo"), ("LOC", "Oslo"))]
    preds = [(("PER", "John Smith"), ("ORG", "Paris")),
             (("LOC", "Oslo"), ("LOC", "Oslo"), ("LOC", "Oslo"))]
    m = NER.score(preds, golds)
    # tp = 1 + 2 (each gold Oslo matched once), predicted 5, gold 4
    assert (m["n_correct_spans"], m["n_predicted_spans"], m["n_gold_spans"]) == (3, 5, 4)
    assert m["precision"] == pytest.approx(60.0)
    assert m["recall"] == pytest.approx(75.0)
    assert m["f1"] == pytest.approx(2 * 60 * 75 / 135)


def test_repeated_prediction_of_one_gold_span_counts_once():
    m = NER.score([(("LOC", "Oslo"), ("LOC", "Oslo"))], [(("LOC", "Oslo"),)])
    assert (m["precision"], m["recall"]) == (50.0, 100.0)


def test_malformed_pieces_are_false_positives():
    m = NER.score([NER.parse("PER: Ann$$oops")], [(("PER", "Ann"),)])
    assert (m["precision"], m["recall"]) == (50.0, 100.0)
    assert m["n_unparseable"] == 1 and m["n_malformed_spans"] == 1


def test_nothing_to_find_and_nothing_found_scores_zero_without_crashing():
    m = NER.score([(), ()], [(), ()])
    assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)
    m = NER.score([()], [(("PER", "Ann"),)])
    assert m["recall"] == 0.0 and m["n_gold_spans"] == 1


def test_already_parsed_predictions_and_unparseable_count():
    examples = NER.load("en", "test", source="fixtures")
    preds = {ex.id: [list(s) for s in ex.gold] for ex in examples}  # parsed lists
    preds[examples[0].id] = "not a span"
    preds[examples[1].id] = [{"type": "LOC", "text": "x"}, 42]
    m = score_predictions(NER, examples, preds)
    assert m["n_unparseable"] == 2
    assert m["n_correct_spans"] == m["n_gold_spans"] - len(examples[0].gold) - len(
        examples[1].gold)


_SPAN_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="$", blacklist_categories=("Cs",)),
    min_size=1, max_size=20,
).map(lambda s: " ".join(s.split())).filter(bool)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_parser_never_crashes(text):
    spans = NER.parse(text)
    assert isinstance(spans, tuple)
    assert all(isinstance(k, str) and isinstance(t, str) and k and t for k, t in spans)
    NER.score([spans], [()])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["PER", "ORG", "LOC"]), _SPAN_TEXT), max_size=5))
def test_target_round_trips_through_the_parser(spans):
    target = NER.format_target({"tokens": ["x"], "spans": [list(s) for s in spans]})
    assert NER.parse(target) == tuple(spans)
