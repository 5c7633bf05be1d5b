"""Check-worthy claim detection (MultiClaim data, local files only).

Accepted shapes (CSV, TSV, JSONL, JSON list, parquet; column names case-insensitive):

* a text column per language (MultiClaim, as the reference reads ``train-all.csv``,
  ``dev-all.csv``, ``test-all.csv``): ``<code>`` or ``text_<code>`` (``sk``, ``text_sk``),
  chosen by the requested language, with the label in ``claim`` (0 or 1, also as ``0.0``
  / ``1.0`` as pandas writes an integer column with a missing value; nothing else);
  rows whose text for that language is empty are skipped. A file with language columns
  but none for the requested language is an error naming the columns it has;
* one text column + a label: text in ``text``, ``claim``, ``tweet_text`` or ``sentence``;
  an optional ``language``/``lang`` column filters the rows to the requested language.

The label is in ``label``, ``class_label``, ``checkworthy`` or ``check_worthy``: 0/1,
true/false, yes/no (CheckThat! style), or ``checkworthy`` / ``not checkworthy``. Ids come
from ``id``, ``tweet_id``, ``sentence_id`` or ``post_id`` when present.
The input drops URLs and newlines, as the paper's preprocessing does.

Metrics: ``f1_checkworthy`` (primary) is the binary F1 of the ``Checkworthy`` class, what
the reference's ``evaluate.load("f1")`` computes with its defaults; macro F1 and accuracy
are reported beside it. Two readings of a generation (see :mod:`langtransfer.tasks.base`):

* reference (the paper's code, primary): exactly ``Checkworthy`` or ``Not checkworthy``;
  any other output is ``Not checkworthy`` if it contains ``No`` (case-sensitive), else
  ``Checkworthy``;
* strict (``strict_*`` metrics): ``Not checkworthy`` / ``Checkworthy`` in any case,
  spacing or hyphenation at the start of the output; anything else is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from langtransfer.errors import DataFormatError
from langtransfer.languages import all_languages
from langtransfer.tasks.base import ClassificationTask, Row
from langtransfer.tasks.paper_data import CHECKWORTHINESS_SOURCES

# The reference's cleaning (src/tasks/tasks.py:981): ``http\S+`` removed, newlines and tabs
# turned into spaces; nothing else (mT0's tokenizer folds repeated spaces itself).
_URL = re.compile(r"http\S+")
_NON_WORD = re.compile(r"[\W_]+")
TEXT_COLUMNS = ("text", "claim", "tweet_text", "sentence")

_TRUE = {"1", "true", "yes", "checkworthy", "y"}
_FALSE = {"0", "false", "no", "notcheckworthy", "n"}


def _claim(row: Row, where: str) -> int:
    """MultiClaim's label column ``claim``: 0 or 1, also written as an integral float
    (``1.0``: pandas writes an integer column holding a missing value as floats), which
    the reference's ``astype(int)`` accepts; anything else is an error naming the row."""
    value = row.data.get("claim")
    number: Any = value.strip() if isinstance(value, str) else value
    if isinstance(number, str) and re.fullmatch(r"[01](\.0*)?", number):
        number = float(number)
    if isinstance(number, float) and number in (0.0, 1.0):
        number = int(number)
    if isinstance(number, bool) or number not in (0, 1):
        found = "nothing" if value is None or value == "" else repr(value)
        raise DataFormatError(
            where, f"column 'claim' holds {found}; valid: 0, 1 (or 0.0, 1.0)", row.line)
    return int(number)


def clean_claim(text: str) -> str:
    """Drop ``http...`` URLs and turn newlines and tabs into spaces, as the reference does."""
    return _URL.sub("", text).replace("\n", " ").replace("\t", " ")


class CheckworthinessTask(ClassificationTask):
    name = "checkworthiness"
    prompt_init_text = "Determine whether a given claim in {Language} is checkworthy:"
    classes = ("not_checkworthy", "checkworthy")
    label_words = {"not_checkworthy": "Not checkworthy", "checkworthy": "Checkworthy"}
    primary_metric = "f1_checkworthy"
    positive_class = "checkworthy"
    target_length = 4  # ref: src/scripts/checkworthy.py (--max_answer_length 4)
    reference_reading = True
    metric_notes = {
        "f1_checkworthy": "binary F1 of the Checkworthy class (the reference's evaluate 'f1')",
        "macro_f1": "mean F1 of the classes present in golds or predictions",
        "accuracy": "share of examples whose class is the gold one",
    }
    columns = {
        "text": TEXT_COLUMNS,
        "label": ("label", "class_label", "checkworthy", "check_worthy"),
    }
    optional_columns = {"id": ("id", "tweet_id", "sentence_id", "post_id")}
    sources = CHECKWORTHINESS_SOURCES

    def select(self, rows: list[Row], language: str, where: str) -> list[Row]:
        """Lower-case column names; pick the language's own text column if there is one."""
        rows = [Row({str(k).strip().lower(): v for k, v in r.data.items()}, r.line) for r in rows]
        if not rows:
            return rows
        lang = language.lower()
        columns = list(rows[0].data)
        col = next((c for c in (f"text_{lang}", lang) if c in columns), None)
        if col is not None:
            label_col = next((c for c in self.columns["label"] if c in columns), None)
            rows = [
                Row({**{k: v for k, v in r.data.items() if k not in TEXT_COLUMNS},
                     "text": r.data[col],
                     **({} if label_col else {"label": _claim(r, where)})}, r.line)
                for r in rows
                if isinstance(r.data.get(col), str) and r.data[col].strip()
            ]
        else:
            codes = {c.code for c in all_languages()}
            per_language = sorted(
                c[5:] if c.startswith("text_") else c
                for c in columns if c.startswith("text_") or c in codes
            )
            if per_language:
                raise DataFormatError(
                    where, f"no text column for language {language!r} (column {lang!r}); "
                    f"language columns: {', '.join(per_language)}"
                )
        return super().select(rows, language, where)

    def missing_columns(self, columns):
        return super().missing_columns(str(c).strip().lower() for c in columns)

    def fields(
        self, raw: Mapping[str, Any], *, only: Iterable[str] | None = None
    ) -> dict[str, Any]:
        return super().fields({str(k).strip().lower(): v for k, v in raw.items()}, only=only)

    def label_from_data(self, value: Any) -> str:
        if isinstance(value, bool):
            return self.classes[int(value)]
        if isinstance(value, str):
            key = _NON_WORD.sub("", value.lower())
            if key in _TRUE:
                return "checkworthy"
            if key in _FALSE:
                return "not_checkworthy"
        return super().label_from_data(value)

    def canonical(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        rec = super().canonical(raw)
        if not isinstance(rec["text"], str):
            raise ValueError(f"text must be text, got {rec['text']!r:.60}")
        return rec

    def format_input(self, raw: Mapping[str, Any]) -> str:
        text = self.fields(raw, only=self.input_fields)["text"]
        if not isinstance(text, str):
            raise ValueError(f"text must be text, got {text!r:.60}")
        return f"checkworthiness claim: {clean_claim(text)}"

    def parse_reference(self, generated: str) -> str:
        """The reference: a label word exactly, else ``No`` in it -> not check-worthy."""
        for cls, word in self.label_words.items():
            if generated == word:
                return cls
        return "not_checkworthy" if "No" in generated else "checkworthy"

    def parse(self, generated: str) -> str | None:
        """``Not checkworthy`` / ``Checkworthy`` (any case, spacing or hyphen), else None."""
        key = _NON_WORD.sub("", generated.lower())
        if key.startswith("notcheckworthy"):
            return "not_checkworthy"
        if key.startswith("checkworthy"):
            return "checkworthy"
        return None
