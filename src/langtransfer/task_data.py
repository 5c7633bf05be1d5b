"""Task examples -> tokenised datasets, shared by task training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from langtransfer.tasks import Example, Task, get_task


def load_examples(
    task: Task | str,
    language: str,
    split: str,
    data: str | Path | None = None,
    max_examples: int | None = None,
) -> list[Example]:
    """``data``: None for the paper's source (hub), ``"fixtures"``, or a local path."""
    task = get_task(task)
    if data is None:
        examples = task.load(language, split)
    elif str(data) == "fixtures":
        examples = task.load(language, split, source="fixtures")
    else:
        examples = task.load(language, split, path=data)
    return examples[:max_examples] if max_examples else examples


@dataclass
class Tokenised:
    dataset: Dataset
    n_truncated: int


def tokenise(
    examples: list[Example],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int = 256,
    max_target_length: int | None = 128,
    with_labels: bool = True,
) -> Tokenised:
    """Token ids per example, inputs cut at ``max_length`` (counted), no padding:
    batches are padded to their own longest row by the collator."""
    enc = tokenizer([ex.input for ex in examples], truncation=False)["input_ids"]
    n_truncated = sum(len(ids) > max_length for ids in enc)
    # Keep the end token when cutting, as tokenizer truncation does.
    rows = {"input_ids": [ids if len(ids) <= max_length else ids[: max_length - 1] + ids[-1:] for ids in enc]}
    if with_labels:
        rows["labels"] = tokenizer(
            [ex.target for ex in examples],
            truncation=max_target_length is not None,
            max_length=max_target_length,
        )["input_ids"]
    rows["length"] = [len(ids) for ids in rows["input_ids"]]
    return Tokenised(Dataset.from_dict(rows), n_truncated)
