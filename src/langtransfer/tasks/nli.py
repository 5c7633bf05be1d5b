"""Natural language inference (XNLI), as a Yes / Maybe / No answer to a question.

Accepted data: rows with ``premise``, ``hypothesis`` and ``label`` (the hub's
``facebook/xnli`` per-language configs; local JSONL, JSON, CSV, parquet), or the
original XNLI/MNLI TSV columns ``sentence1``, ``sentence2``, ``gold_label`` with a
``language`` column (rows are filtered to the requested language; TSV is read without
quoting, as those files need), or ANLI-style ``evidence`` (premise) and ``claim``
(hypothesis), as ``ctu-aic/anli_cs`` and SK-ANLI have them. Labels: ids 0/1/2 =
entailment/neutral/contradiction, the class names, or the words Yes/Maybe/No. Where the
data names its classes (``datasets`` ``ClassLabel`` features in a parquet file's metadata,
as the hub's export keeps them), ids are read by those names, FEVER's ``SUPPORTS`` /
``NOT ENOUGH INFO`` / ``REFUTES`` included, unless ``label_order="positional"`` asks for
the reference's reading (see :meth:`~langtransfer.tasks.base.ClassificationTask.read_labels`).

Two readings of a generation (see :mod:`langtransfer.tasks.base`):

* reference (the paper's code, primary): the whole output lower-cased must be ``yes``,
  ``maybe`` or ``no``; anything else counts as ``Maybe`` (neutral);
* strict (``strict_*`` metrics): the first word is read (``Yes.`` and ``yes, it does`` are
  entailment); anything else is unparseable and scores as wrong, never as a class.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from langtransfer.tasks.base import ClassificationTask
from langtransfer.tasks.paper_data import NLI_SOURCES

_WORD = re.compile(r"[^\W\d_]+")


class NLITask(ClassificationTask):
    name = "nli"
    # The reference passes this text through a shell, which strips the quote marks it
    # writes around Yes, No and Maybe (ref: src/scripts/xnli.py); this is what it got.
    prompt_init_text = (
        "Select Yes, No or Maybe based on the implication of the premise on the "
        "hypothesis in {Language}:"
    )
    classes = ("entailment", "neutral", "contradiction")
    label_words = {"entailment": "Yes", "neutral": "Maybe", "contradiction": "No"}
    # FEVER-style class names (ctu-aic's NLI sets are FEVER-derived): claim supported by
    # the evidence = entailment, refuted = contradiction, not enough info = neutral.
    class_aliases = {
        "supports": "entailment", "refutes": "contradiction", "not enough info": "neutral",
    }
    primary_metric = "accuracy"
    target_length = 3  # ref: src/scripts/xnli.py (--max_answer_length 3)
    reference_reading = True
    metric_notes = {
        "accuracy": "share of examples whose class is the gold one",
        "macro_f1": "mean F1 over the classes present in golds or predictions",
    }
    columns = {
        "premise": ("premise", "sentence1", "evidence"),
        "hypothesis": ("hypothesis", "sentence2", "claim"),
        "label": ("label", "gold_label"),
    }
    optional_columns = {"id": ("id", "pairID", "uid", "guid")}  # uid: ANLI's, guid: RONLI's
    sources = NLI_SOURCES

    def canonical(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        rec = super().canonical(raw)
        self._check_text(rec)
        return rec

    @staticmethod
    def _check_text(rec: Mapping[str, Any]) -> None:
        for key in ("premise", "hypothesis"):
            if not isinstance(rec[key], str):
                raise ValueError(f"{key} must be text, got {rec[key]!r:.60}")

    def format_input(self, raw: Mapping[str, Any]) -> str:
        rec = self.fields(raw, only=self.input_fields)
        self._check_text(rec)
        return (
            f"{rec['premise']} \n\nQuestion: Does this imply that \"{rec['hypothesis']}\"? "
            "Yes, no, or maybe?"
        )

    def parse_reference(self, generated: str) -> str:
        """The reference: ``yes``/``maybe``/``no`` (whole output, any case), else neutral."""
        text = generated.lower()
        for cls in self.classes:
            if text == self.label_words[cls].lower():
                return cls
        return "neutral"

    def parse(self, generated: str) -> str | None:
        words = _WORD.findall(generated.lower())
        if not words:
            return None
        for cls in self.classes:
            if words[0] in (cls, self.label_words[cls].lower()):
                return cls
        return None
