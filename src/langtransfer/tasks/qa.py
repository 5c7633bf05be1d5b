"""Extractive question answering (SQuAD v1.1 format), scored by SQuAD exact match and F1.

Accepted data: the nested SQuAD v1.1 JSON (``{"data": [{"paragraphs": [{"context", "qas":
[{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}``, as SQuAD, XQuAD and
most language-specific SQuADs ship), or flattened rows (JSONL, parquet, a JSON list, a
hub dataset) with ``id``, ``question``, ``context`` and ``answers`` as in the hub's
``squad`` (``{"text": [...], "answer_start": [...]}``), a list of ``{"text", ...}`` or a
list of strings.

Metrics, each the mean over examples of the max over their gold answers:

* ``exact_match`` and ``f1`` (primary): the official SQuAD v1.1 evaluation script exactly
  (lower-case, ASCII punctuation and English articles removed, whitespace tokens), what
  the reference's ``evaluate.load("squad")`` computes, so numbers compare with published
  ones; it treats unsegmented scripts (Chinese) as single tokens and leaves non-ASCII
  punctuation (``«»``, ``،``, ``。``) in;
* ``mlqa_exact_match`` and ``mlqa_f1``: language-aware, by the official MLQA evaluation
  script's normalisation for its languages (every Unicode punctuation character removed,
  the language's articles removed, Chinese split into characters); for languages MLQA
  does not cover, Unicode punctuation removed and whitespace tokens (no articles).
"""

from __future__ import annotations

import re
import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langtransfer.errors import DataFormatError
from langtransfer.tasks.base import Example, Row, Task, percent, read_json
from langtransfer.tasks.paper_data import QA_SOURCES, QA_UNAVAILABLE

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

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
    return _overlap_f1(normalize_answer(prediction).split(), normalize_answer(gold).split())


# ------------------------------------------------- MLQA (language-aware) metric
#: Articles the MLQA evaluation script removes, per language (its seven languages; hi and
#: zh have none). Arabic: every "ال" is replaced, inside words too, as the script does.
MLQA_ARTICLES: dict[str, re.Pattern[str] | None] = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "ar": re.compile(r"\sال^|ال"),
    "hi": None,
    "zh": None,
}
#: Languages whose text MLQA's script segments into characters (CJK ideographs) and words.
MLQA_MIXED_SEGMENTATION = frozenset({"zh"})
_HAN = re.compile("[\u4e00-\u9fa5]")


@cache
def unicode_punctuation() -> frozenset[str]:
    """Every character of a Unicode punctuation category (P*) plus ASCII punctuation."""
    chars = (chr(i) for i in range(sys.maxunicode))
    return frozenset(c for c in chars if unicodedata.category(c).startswith("P")) | _PUNCT


def _mixed_segmentation(text: str, punct: frozenset[str]) -> list[str]:
    """Han characters (and punctuation) one token each, other runs split at whitespace."""
    tokens: list[str] = []
    run = ""
    for ch in text:
        if _HAN.match(ch) or ch in punct:
            tokens.extend(run.split())
            run = ""
            tokens.append(ch)
        else:
            run += ch
    tokens.extend(run.split())
    return tokens


def normalize_answer_mlqa(text: str, language: str) -> str:
    """MLQA's normalisation: lower-case, drop Unicode punctuation, then the language's
    articles, then re-join the tokens (characters for Chinese) with single spaces.
    Languages outside MLQA get no article removal and whitespace tokens."""
    punct = unicode_punctuation()
    text = "".join(ch for ch in text.lower() if ch not in punct)
    articles = MLQA_ARTICLES.get(language)
    if articles is not None:
        text = articles.sub(" ", text)
    if language in MLQA_MIXED_SEGMENTATION:
        tokens = _mixed_segmentation(text, punct)
    else:
        tokens = text.split()
    return " ".join(t for t in tokens if t.strip())


def exact_match_mlqa(prediction: str, gold: str, language: str) -> float:
    return float(
        normalize_answer_mlqa(prediction, language) == normalize_answer_mlqa(gold, language)
    )


def f1_mlqa(prediction: str, gold: str, language: str) -> float:
    """Token-overlap F1 on MLQA-normalised text (0 when nothing overlaps)."""
    return _overlap_f1(
        normalize_answer_mlqa(prediction, language).split(),
        normalize_answer_mlqa(gold, language).split(),
    )


def _overlap_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


class QATask(Task):
    name = "qa"
    prompt_init_text = "Answer the question in {Language} language:"
    primary_metric = "f1"
    target_length = 30  # ref: src/task_modeling/args.py (max_answer_length 30)
    metric_notes = {
        "exact_match": "SQuAD v1.1 exact match (official script; the reference's)",
        "f1": "SQuAD v1.1 token F1 (official script; the reference's)",
        "mlqa_exact_match": "exact match after MLQA's language-aware normalisation",
        "mlqa_f1": "token F1 after MLQA's language-aware normalisation (Chinese: characters)",
    }
    columns = {"question": ("question",), "context": ("context",), "answers": ("answers",)}
    optional_columns = {"id": ("id",)}
    file_types = (".json", ".jsonl", ".parquet")
    sources = QA_SOURCES
    unavailable = QA_UNAVAILABLE
    empty_prediction = ""
    target_fields = ("answers",)

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

    def usable(self, raw: Mapping[str, Any], *, keep_empty_answers: bool = False) -> bool:
        """A question with no answer (SQuAD 2.0's unanswerable) is dropped, as the reference
        drops questions without answers from its validation and test sets. One whose only
        answer text is empty (UQA and IndicQA store ``text: [""]``) is dropped too, unless
        ``keep_empty_answers``: the reference kept those (its filter tests the length of the
        answer list), and they score 0 F1 whatever the prediction."""
        answers = raw.get("answers")
        try:
            texts = _answer_texts(answers)
        except ValueError:
            return True  # malformed: canonical() names the problem
        return bool(texts) if keep_empty_answers else any(t.strip() for t in texts)

    def unusable_message(self, n: int) -> str:
        return (
            f"all {n} questions are unanswerable (column 'answers' is empty); valid: "
            "questions with at least one answer text (SQuAD 2.0 is_impossible ones are dropped)"
        )

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
        rec = self.fields(raw, only=self.input_fields)
        for key in ("question", "context"):
            if not isinstance(rec[key], str):
                raise ValueError(f"{key} must be text, got {rec[key]!r:.60}")
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

    def score_examples(
        self,
        values: Sequence[Any],
        examples: Sequence[Example],
        *,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> dict[str, float]:
        """SQuAD v1.1 EM/F1 plus the language-aware (MLQA) EM/F1 of each example's language."""
        squad = super().score_examples(values, examples, tokenizer=tokenizer)
        preds = [self.coerce(v) for v in values]
        em = f = 0.0
        for p, ex in zip(preds, examples, strict=True):
            em += max((exact_match_mlqa(p, g, ex.language) for g in ex.gold), default=0.0)
            f += max((f1_mlqa(p, g, ex.language) for g in ex.gold), default=0.0)
        n = len(examples)
        counts = {k: v for k, v in squad.items() if k.startswith("n_")}
        metrics = {k: v for k, v in squad.items() if k not in counts}
        return {**metrics, "mlqa_exact_match": percent(em, n), "mlqa_f1": percent(f, n), **counts}


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
