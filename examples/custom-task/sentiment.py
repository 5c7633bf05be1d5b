"""A user's task: review sentiment (positive / negative), registered with langtransfer.

Any verb (``--task-module examples/custom-task/sentiment.py``) or a study config
(``task_modules: [examples/custom-task/sentiment.py]``) imports this file, which adds the
task ``sentiment`` to the registry; from then on it works wherever ``nli`` does. Data is
local only: ``<language>.<split>.jsonl`` files with ``text`` and ``label`` (0/1 or the
class name).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from langtransfer.tasks import ClassificationTask, register_task

_WORD = re.compile(r"\w+")


class SentimentTask(ClassificationTask):
    name = "sentiment"
    prompt_init_text = "Say whether this {Language} review is positive or negative:"
    classes = ("negative", "positive")
    label_words = {"negative": "negative", "positive": "positive"}
    primary_metric = "accuracy"
    columns = {"text": ("text", "review"), "label": ("label",)}

    def format_input(self, raw: Mapping[str, Any]) -> str:
        return f"Review: {self.canonical(raw)['text']}\nIs this review positive or negative?"

    def parse(self, generated: str) -> str | None:
        words = _WORD.findall(generated.lower())
        return next((w for w in words[:1] if w in self.classes), None)


register_task(SentimentTask())
