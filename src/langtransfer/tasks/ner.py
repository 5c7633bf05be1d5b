"""Named entity recognition as span generation (WikiANN), scored by span-level micro F1.

Accepted data: WikiANN rows (``tokens`` + ``ner_tags``, IOB2 tags as ints over
:data:`WIKIANN_TAGS` or as strings like ``B-PER``), or rows with ``tokens`` + ``spans``,
each span ``{"type", "start", "end"}`` (token offsets, end exclusive), ``{"type",
"text"}``, or a ``"TYPE: text"`` string (the hub's WikiANN ``spans`` column). When a row
has both, ``ner_tags`` wins. An ``I-X`` tag not continuing an ``X`` span starts a new one
(the conlleval convention), so slightly broken tagging still yields spans.

Target: ``TYPE: text`` per entity joined by ``$$`` in sentence order (``PER: John
Smith$$LOC: Paris``); a sentence without entities has the **empty target** ``""``.
Entity text is the entity's tokens joined by single spaces, as in the input.

Metric: micro precision, recall and F1 over ``(type, text)`` pairs, matched as
multisets per example (each gold span at most once, a repeated prediction of one gold
span counts once correct and then wrong). Two readings (see :mod:`langtransfer.tasks.base`):

* reference (the paper's ``span_f1``, primary): the generation and the gold target are
  split at ``$$``; a piece that does not split at ``:`` into exactly two parts is
  **ignored** (in predictions and golds); type and text are stripped, nothing else. The
  gold is the target as the model was trained on it: tokenised, cut to
  :attr:`NERTask.target_length` tokens and decoded (when scoring with a tokenizer, as
  :func:`langtransfer.inference.evaluate.evaluate` does; without one the full target is read);
* strict (``strict_*``): gold spans in full; a piece that is not ``TYPE: text`` is a
  false positive (type :data:`MALFORMED`); types are upper-cased and whitespace
  collapsed on both sides.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from langtransfer.tasks.base import Example, Task, collapse_whitespace, column_sums, percent_of
from langtransfer.tasks.paper_data import NER_SOURCES

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

#: WikiANN's label list, index = tag id.
WIKIANN_TAGS: tuple[str, ...] = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
ENTITY_TYPES: tuple[str, ...] = ("PER", "ORG", "LOC")
#: Separator between entities in targets and generations.
SEPARATOR = "$$"
#: Type given to a generated piece that is not ``TYPE: text``; it never matches gold.
MALFORMED = "<malformed>"

Span = tuple[str, str]

def tags_to_spans(tokens: Sequence[str], tags: Sequence[Any]) -> list[Span]:
    """IOB2 tags (ids into :data:`WIKIANN_TAGS` or strings) -> ``(type, text)`` spans."""
    if len(tags) != len(tokens):
        raise ValueError(f"{len(tags)} ner_tags for {len(tokens)} tokens")
    spans: list[Span] = []
    start: int | None = None
    kind: str | None = None

    def close(end: int) -> None:
        text = collapse_whitespace(" ".join(tokens[start:end])) if start is not None else ""
        if text and kind is not None:  # an entity of empty tokens has nothing to generate
            spans.append((kind, text))

    for i, tag in enumerate(tags):
        if isinstance(tag, bool) or not isinstance(tag, (int, str)):
            raise ValueError(f"ner_tags must be ints or strings like 'B-PER', got {tag!r}")
        if isinstance(tag, int):
            if not 0 <= tag < len(WIKIANN_TAGS):
                raise ValueError(f"ner tag id {tag} outside 0..{len(WIKIANN_TAGS) - 1} "
                                 f"({', '.join(WIKIANN_TAGS)})")
            tag = WIKIANN_TAGS[tag]
        tag = tag.strip().upper()
        if tag == "O":
            close(i)
            start, kind = None, None
            continue
        prefix, _, label = tag.partition("-")
        if prefix not in ("B", "I") or not label:
            raise ValueError(f"ner tag {tag!r} is not O, B-<type> or I-<type>")
        if prefix == "B" or kind != label:
            close(i)
            start, kind = i, label
    close(len(tags))
    return spans


def _span_from_data(span: Any, tokens: Sequence[str]) -> Span:
    if isinstance(span, str):
        kind, sep, text = span.partition(":")
        if not sep:
            raise ValueError(f"span string {span!r} is not 'TYPE: text'")
    elif isinstance(span, Mapping) and "type" in span:
        kind = span["type"]
        if "text" in span:
            text = span["text"]
        elif "start" in span and "end" in span:
            s, e = span["start"], span["end"]
            if not (isinstance(s, int) and isinstance(e, int) and 0 <= s < e <= len(tokens)):
                raise ValueError(f"span offsets {s!r}..{e!r} outside the {len(tokens)} tokens")
            text = " ".join(tokens[s:e])
        else:
            raise ValueError(f"span {dict(span)!r} needs 'text' or 'start' and 'end'")
    elif isinstance(span, Sequence) and len(span) == 2:
        kind, text = span
    else:
        raise ValueError(f"span {span!r:.60} is not {{type, start, end}}, {{type, text}} or "
                         "'TYPE: text'")
    if not isinstance(kind, str) or not isinstance(text, str):
        raise ValueError(f"span type and text must be strings, got {span!r:.60}")
    kind, text = kind.strip().upper(), collapse_whitespace(text)
    if not kind or not text or SEPARATOR in text:
        raise ValueError(f"span {span!r:.60} has an empty type or text, or contains '$$'")
    return kind, text


class NERTask(Task):
    name = "ner"
    prompt_init_text = "Identify ner tags (ORG, PER, LOC) in the text in {Language}:"
    primary_metric = "f1"
    target_length = 30  # ref: src/task_modeling/args.py (max_answer_length 30)
    reference_reading = True
    metric_notes = {
        "f1": "micro span F1 over (type, text) pairs, multiset-matched per example",
        "precision": "correct predicted spans / predicted spans",
        "recall": "correct predicted spans / gold spans",
    }
    columns = {"tokens": ("tokens",)}
    optional_columns = {"id": ("id",), "ner_tags": ("ner_tags",), "spans": ("spans",)}
    file_types = (".json", ".jsonl", ".parquet")
    sources = NER_SOURCES
    empty_prediction: tuple[Span, ...] = ()

    def missing_columns(self, columns):
        missing = super().missing_columns(columns)
        if not {"ner_tags", "spans"} & set(columns):
            missing.append("ner_tags or spans")
        return missing

    @staticmethod
    def _tokens(tokens: Any) -> list[str]:
        """A token list, or text split at whitespace."""
        if isinstance(tokens, str):
            tokens = tokens.split()
        if not isinstance(tokens, Sequence) or not all(isinstance(t, str) for t in tokens):
            raise ValueError(f"tokens must be a list of strings, got {tokens!r:.60}")
        return list(tokens)

    def canonical(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        rec = self.fields(raw)
        tokens = self._tokens(rec["tokens"])
        if rec.get("ner_tags") is not None:
            spans = tags_to_spans(tokens, rec["ner_tags"])
        else:
            spans = [_span_from_data(s, tokens) for s in rec.get("spans") or ()]
        return {"id": rec.get("id"), "tokens": list(tokens), "spans": spans}

    def format_input(self, raw: Mapping[str, Any]) -> str:
        return "tag: " + " ".join(self._tokens(self.fields(raw, only=self.input_fields)["tokens"]))

    def format_target(self, raw: Mapping[str, Any]) -> str:
        return SEPARATOR.join(f"{k}: {t}" for k, t in self.canonical(raw)["spans"])

    def gold(self, raw: Mapping[str, Any]) -> tuple[Span, ...]:
        return tuple(self.canonical(raw)["spans"])

    def parse(self, generated: str) -> tuple[Span, ...]:
        """``TYPE: text$$...`` -> spans; bad pieces become ``(MALFORMED, piece)``.

        Empty pieces (a trailing ``$$``) are skipped; types are upper-cased and text
        whitespace-collapsed, as gold spans are.
        """
        spans: list[Span] = []
        for piece in generated.split(SEPARATOR):
            piece = collapse_whitespace(piece)
            if not piece:
                continue
            kind, sep, text = piece.partition(":")
            kind, text = kind.strip().upper(), text.strip()
            spans.append((kind, text) if sep and kind and text else (MALFORMED, piece))
        return tuple(spans)

    def parse_reference(self, generated: str) -> tuple[Span, ...]:
        """The reference's reading: ``$$`` pieces splitting at ``:`` into exactly two
        parts, each stripped; other pieces are dropped."""
        spans: list[Span] = []
        for piece in generated.split(SEPARATOR):
            parts = piece.strip().split(":")
            if len(parts) == 2:
                spans.append((parts[0].strip(), parts[1].strip()))
        return tuple(spans)

    def reference_golds(
        self, examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase | None = None
    ) -> list[tuple[Span, ...]]:
        """Targets read as the reference read its labels: with ``tokenizer``, tokenised, cut
        to :attr:`target_length` tokens (end token kept) and decoded first."""
        targets = [ex.target for ex in examples]
        if tokenizer is not None and targets:
            ids = tokenizer(targets, max_length=self.target_length, truncation=True)["input_ids"]
            targets = tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [self.parse_reference(t) for t in targets]

    def coerce(self, value: Any, *, reference: bool = False) -> tuple[Span, ...]:
        """Generated text, or already-parsed spans: ``[["PER", "Ann"], {"type", "text"}]``."""
        if isinstance(value, list):
            out: list[Span] = []
            for s in value:
                try:
                    out.append(_span_from_data(s, ()))
                except ValueError:
                    out.append((MALFORMED, str(s)))
            return tuple(out)
        return super().coerce(value, reference=reference)

    def is_unparseable(self, prediction: Any) -> bool:
        return any(kind == MALFORMED for kind, _ in prediction)

    def score(
        self, predictions: Sequence[Sequence[Span]], golds: Sequence[Sequence[Span]]
    ) -> dict[str, float]:
        """Span-level micro P/R/F1 with per-example multiset matching of the spans as given
        (the parsers and the data loaders normalise them)."""
        stats = self.example_stats(predictions, golds)
        sums = column_sums(stats)
        return {
            **self.metrics_from_sums(sums, len(golds)),
            "n_examples": len(golds), "n_unparseable": sum(b > 0 for b in stats["malformed"]),
            "n_gold_spans": sums["gold"], "n_predicted_spans": sums["predicted"],
            "n_correct_spans": sums["correct"], "n_malformed_spans": sums["malformed"],
        }

    def example_stats(
        self, predictions: Sequence[Sequence[Span]], golds: Sequence[Sequence[Span]]
    ) -> dict[str, list[Any]]:
        """Per example: spans ``correct`` (multiset-matched), ``predicted``, ``gold`` and
        ``malformed`` -- counts, so a resample's micro F1 comes from its summed counts."""
        self._check_lengths(predictions, golds)
        out: dict[str, list[Any]] = {"correct": [], "predicted": [], "gold": [], "malformed": []}
        for pred, gold in zip(predictions, golds, strict=True):
            p = Counter((k, t) for k, t in pred)
            g = Counter((k, t) for k, t in gold)
            out["correct"].append(sum((p & g).values()))
            out["predicted"].append(len(pred))
            out["gold"].append(len(gold))
            out["malformed"].append(sum(1 for k, _ in pred if k == MALFORMED))
        return out

    def metrics_from_sums(self, sums: Mapping[str, Any], n: Any) -> dict[str, Any]:
        precision = percent_of(sums["correct"], sums["predicted"])
        recall = percent_of(sums["correct"], sums["gold"])
        if isinstance(precision, np.ndarray):
            both = precision + recall
            f = np.divide(2 * precision * recall, both, out=np.zeros(both.shape),
                          where=both > 0)
        else:
            f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f}
