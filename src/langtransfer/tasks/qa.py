"""Extractive question answering (SQuAD v1.1 format), scored by SQuAD exact match and F1.

Accepted data: the nested SQuAD v1.1 JSON (``{"data": [{"paragraphs": [{"context", "qas":
[{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}``, as SQuAD, XQuAD and
most language-specific SQuADs ship), or flattened rows (JSONL, parquet, a JSON list, a
hub dataset) with ``id``, ``question``, ``context`` and ``answers`` as in the hub's
``squad`` (``{"text": [...], "answer_start": [...]}``), a list of ``{"text", ...}`` or a
list of strings. The metric follows the official SQuAD v1.1 evaluation script exactly
(normalisation, whitespace tokens, max over gold answers), so numbers compare with
published ones; it therefore treats unsegmented scripts (Chinese) as single tokens.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langtransfer.errors import DataFormatError
from langtransfer.tasks.base import Row, Task, percent, read_json
from langtransfer.tasks.paper_data import QA_SOURCES, QA_UNAVAILABLE

# --------------------------------------------------------------- SQuAD metric
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Official SQuAD v1.1: lowercase, drop ASCII punctuation and a/an/the, fix spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the official script (0 when nothing overlaps, even both empty)."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


class QATask(Task):
    name = "qa"
    prompt_init_text = "Answer the question in {Language} language:"
    primary_metric = "f1"
    columns = {"question": ("question",), "context": ("context",), "answers": ("answers",)}
    optional_columns = {"id": ("id",)}
    file_types = (".json", ".jsonl", ".parquet")
    sources = QA_SOURCES
    unavailable = QA_UNAVAILABLE
    empty_prediction = ""

    def _json_rows(self, path: Path, obj: Any) -> list[Row]:
        """Nested SQuAD JSON is flattened to one row per question; other JSON as usual."""
        data = obj.get("data") if isinstance(obj, dict) else None
        if not (isinstance(data, list) and data and isinstance(data[0], dict)
                and "paragraphs" in data[0]):
            return super()._json_rows(path, obj)
        rows: list[Row] = []
        try:
            for article in data:
                for para in article["paragraphs"]:
                    for qa in para["qas"]:
                        rows.append(Row({
                            "id": qa["id"], "question": qa["question"],
                            "context": para["context"], "answers": qa["answers"],
                        }, len(rows) + 1))
        except (KeyError, TypeError) as e:
            raise DataFormatError(
                path, f"not SQuAD v1.1 JSON (question {len(rows) + 1}): missing or bad {e}"
            ) from e
        return rows

    def read_records(self, path: Path) -> list[Row]:
        if path.suffix.lower() == ".json":
            return self._json_rows(path, read_json(path))
        return super().read_records(path)

    def usable(self, raw: Mapping[str, Any]) -> bool:
        """A question with no non-empty answer text (SQuAD 2.0's unanswerable) is dropped,
        as the reference drops questions without answers from its validation and test sets."""
        answers = raw.get("answers")
        try:
            return any(t.strip() for t in _answer_texts(answers))
        except ValueError:
            return True  # malformed: canonical() names the problem

    def unusable_message(self, n: int) -> str:
        return (f"all {n} questions are unanswerable (column 'answers' is empty); valid: "
                "questions with at least one answer text (SQuAD 2.0 is_impossible ones are dropped)")

    def canonical(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        rec = self.fields(raw)
        for key in ("question", "context"):
            if not isinstance(rec[key], str):
                raise ValueError(f"{key} must be text, got {rec[key]!r:.60}")
        rec["answers"] = _answer_texts(rec["answers"])
        if not rec["answers"]:
            raise ValueError(
                f"question {rec.get('id', '?')!s} has no gold answer (SQuAD v1.1 needs one)"
            )
        return rec

    def format_input(self, raw: Mapping[str, Any]) -> str:
        rec = self.canonical(raw)
        return f"question: {rec['question']} context: {rec['context']}"

    def format_target(self, raw: Mapping[str, Any]) -> str:
        return self.canonical(raw)["answers"][0]

    def gold(self, raw: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(self.canonical(raw)["answers"])

    def parse(self, generated: str) -> str:
        """The generation is the answer; any text is a (possibly wrong) answer."""
        return generated.strip()

    def is_unparseable(self, prediction: Any) -> bool:
        return False

    def score(self, predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
        """SQuAD v1.1 exact match and F1, each the max over an example's gold answers."""
        self._check_lengths(predictions, golds)
        pairs = list(zip(predictions, golds, strict=True))
        em = sum(max((exact_match(p, g) for g in gs), default=0.0) for p, gs in pairs)
        f = sum(max((f1(p, g) for g in gs), default=0.0) for p, gs in pairs)
        n = len(golds)
        return {"exact_match": percent(em, n), "f1": percent(f, n),
                "n_examples": n, "n_unparseable": 0}


def _answer_texts(answers: Any) -> list[str]:
    """The hub's ``{"text": [...]}``, SQuAD's ``[{"text": ...}]``, or a list of strings."""
    if isinstance(answers, Mapping):
        answers = answers.get("text")
        if isinstance(answers, str):
            answers = [answers]
    if isinstance(answers, str):
        return [answers]
    if not isinstance(answers, Sequence):
        raise ValueError(f"answers must be a list or {{'text': [...]}}, got {answers!r:.60}")
    texts = []
    for a in answers:
        text = a.get("text") if isinstance(a, Mapping) else a
        if not isinstance(text, str):
            raise ValueError(f"an answer must be text or {{'text': ...}}, got {a!r:.60}")
        texts.append(text)
    return texts
