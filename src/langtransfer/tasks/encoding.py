"""Task examples -> tokenised datasets, shared by task training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from langtransfer.base.families import SEQ2SEQ, ModelFamily
from langtransfer.profiles import LONG_INPUTS, check_choice
from langtransfer.tasks import Example, Task, TaskData, get_task


def load_task_data(
    task: Task | str,
    language: str,
    split: str,
    data: str | Path | None = None,
    max_examples: int | None = None,
    *,
    label_order: str = "by_name",
    empty_answers: str = "drop",
) -> TaskData:
    """``data``: None for the paper's source (hub), ``"fixtures"``, or a local path.
    ``label_order``: :data:`~langtransfer.tasks.LABEL_ORDERS` (the reference reads
    ``positional``); ``empty_answers``: :data:`~langtransfer.tasks.EMPTY_ANSWERS` (the
    reference keeps them). The examples are cut to ``max_examples``; the rest is as loaded."""
    task = get_task(task)
    reading: dict[str, Any] = dict(label_order=label_order, empty_answers=empty_answers)
    if data is None:
        loaded = task.load_data(language, split, **reading)
    elif str(data) == "fixtures":
        loaded = task.load_data(language, split, source="fixtures", **reading)
    else:
        loaded = task.load_data(language, split, path=data, **reading)
    if max_examples:
        loaded = replace(loaded, examples=loaded.examples[:max_examples])
    return loaded


def load_examples(
    task: Task | str,
    language: str,
    split: str,
    data: str | Path | None = None,
    max_examples: int | None = None,
    *,
    label_order: str = "by_name",
    empty_answers: str = "drop",
) -> list[Example]:
    """:func:`load_task_data`'s examples."""
    return load_task_data(task, language, split, data, max_examples, label_order=label_order,
                          empty_answers=empty_answers).examples


def cut(ids: list[int], max_length: int) -> list[int]:
    """``ids`` cut to ``max_length`` tokens keeping the end token, as tokenizer
    truncation does (evaluation and the predictor read inputs the same way; label
    ranking cuts label words as training cuts targets)."""
    return ids if len(ids) <= max_length else ids[: max_length - 1] + ids[-1:]


def last_chunk(ids: list[int], max_length: int) -> list[int]:
    """The last of the ``max_length``-token chunks a fast tokenizer cuts ``ids`` into
    (``truncation=True, return_overflowing_tokens=True``, no stride: windows of
    ``max_length - 1`` tokens, each closed by the end token), as the reference's
    evaluation tokenised long inputs and then kept the last chunk's prediction. For a
    long QA input that chunk holds the end of the context and no question."""
    if len(ids) <= max_length:
        return ids
    body, width = ids[:-1], max_length - 1
    start = (len(body) - 1) // width * width
    return body[start:] + ids[-1:]


@dataclass
class Tokenised:
    dataset: Dataset
    n_truncated: int
    n_truncated_targets: int = 0


def tokenise(
    examples: list[Example],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int = 256,
    max_target_length: int | None = None,
    with_labels: bool = True,
    family: ModelFamily = SEQ2SEQ,
    long_inputs: str = "first",
) -> Tokenised:
    """Token ids per example, inputs cut at ``max_length`` (counted), no padding:
    batches are padded to their own longest row by the collator. Labels are cut to
    ``max_target_length`` tokens, end token kept, as tokenizer truncation does (the
    reference cuts them to the task's :attr:`~langtransfer.tasks.Task.target_length`);
    ``None`` keeps them whole. ``family`` encodes the targets (a causal base's end in EOS
    without the tokenizer's other specials: :meth:`ModelFamily.encode_targets`).
    ``long_inputs`` (:data:`~langtransfer.profiles.LONG_INPUTS`): a long input keeps its
    ``first`` tokens (:func:`cut`) or becomes its :func:`last_chunk` (the reference's
    evaluation)."""
    shorten = {"first": cut, "last_chunk": last_chunk}[
        check_choice("long_inputs", long_inputs, LONG_INPUTS)]
    enc = tokenizer([ex.input for ex in examples], truncation=False)["input_ids"]
    n_truncated = sum(len(ids) > max_length for ids in enc)
    rows: dict[str, list[Any]] = {"input_ids": [shorten(ids, max_length) for ids in enc]}
    n_truncated_targets = 0
    if with_labels:
        labels = family.encode_targets(tokenizer, [ex.target for ex in examples])
        if max_target_length is not None:
            n_truncated_targets = sum(len(ids) > max_target_length for ids in labels)
            labels = [cut(ids, max_target_length) for ids in labels]
        rows["labels"] = labels
    rows["length"] = [len(ids) for ids in rows["input_ids"]]
    return Tokenised(Dataset.from_dict(rows), n_truncated, n_truncated_targets)
