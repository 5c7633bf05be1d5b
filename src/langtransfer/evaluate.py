"""Zero-shot evaluation: generate for a test split, parse, score, write the files.

``evaluate`` composes the base model with the *target* language's representation and
the task representation trained on the source, generates for every example in
length-sorted batches (each padded to its own longest row), parses the generations with
the task's parser and scores them with the task's metric (shared with
``langtransfer score``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from langtransfer.compose import compose, configuration_name
from langtransfer.errors import LangTransferError
from langtransfer.io import write_json, write_jsonl
from langtransfer.languages import get_language
from langtransfer.models import fingerprint, load_base
from langtransfer.predictions import score_predictions
from langtransfer.representations import Representation, load_representation
from langtransfer.task_data import load_examples, tokenise
from langtransfer.tasks import get_task

DEFAULT_MAX_NEW_TOKENS = 64


def _summary(rep: Representation | None, path: str | Path | None) -> dict[str, Any] | None:
    if rep is None:
        return None
    return {
        "kind": rep.kind,
        "role": rep.role,
        "language": rep.language,
        "task": rep.task,
        "path": str(path),
        "settings_hash": rep.settings_hash,
        "base_model": rep.base_model,
        "steps": rep.training.get("steps"),
    }


def _max_new_tokens(task, tokenizer) -> int:
    """Classification: the longest label plus its end token; otherwise a fixed cap."""
    if task.label_words:
        return max(len(tokenizer(w).input_ids) for w in task.label_words.values()) + 1
    return DEFAULT_MAX_NEW_TOKENS


def evaluate(
    *,
    model: str,
    task: str,
    language: str,
    language_rep: str | Path | None = None,
    task_rep: str | Path | None = None,
    data: str | Path | None = None,
    output: str | Path | None = None,
    split: str = "test",
    batch_size: int = 64,
    max_new_tokens: int | None = None,
    max_length: int = 256,
    max_examples: int | None = None,
    num_beams: int = 1,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Evaluate one configuration on one task and target language; return the metrics record.

    With ``output``, writes ``predictions.jsonl`` (id, input, generated text as
    ``prediction``, parsed prediction, gold) and ``metrics.json`` there, atomically.
    """
    task_obj, lang = get_task(task), get_language(language)
    examples = load_examples(task_obj, lang.code, split, data, max_examples)
    base, tokenizer = load_base(model)
    lang_repr = load_representation(language_rep) if language_rep else None
    task_repr = load_representation(task_rep) if task_rep else None
    if lang_repr is not None and lang_repr.role != "language":
        raise LangTransferError(f"{language_rep} is a {lang_repr.role} representation, not a language one")
    if task_repr is not None and task_repr.role != "task":
        raise LangTransferError(f"{task_rep} is a {task_repr.role} representation, not a task one")
    if task_repr is not None and task_repr.task != task_obj.name:
        raise LangTransferError(f"{task_rep} was trained for task {task_repr.task!r}, not {task_obj.name!r}")
    configuration = configuration_name(lang_repr, task_repr)
    composed = compose(base, configuration, language=lang_repr, task=task_repr)
    composed.eval()

    tokenised = tokenise(examples, tokenizer, max_length, with_labels=False)
    order = sorted(range(len(examples)), key=lambda i: tokenised.dataset[i]["length"])
    generated: list[str] = [""] * len(examples)
    limit = max_new_tokens or _max_new_tokens(task_obj, tokenizer)
    device = composed.base.device
    pad = tokenizer.pad_token_id
    bar = tqdm(total=len(examples), desc=f"{task_obj.name}/{lang.code}/{configuration}",
               disable=not show_progress, unit="ex")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        rows = [tokenised.dataset[i]["input_ids"] for i in idx]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.tensor(r)
            mask[j, : len(r)] = 1
        out = composed.generate(
            ids.to(device), mask.to(device), max_new_tokens=limit, num_beams=num_beams, do_sample=False
        )
        for i, text in zip(idx, tokenizer.batch_decode(out, skip_special_tokens=True), strict=True):
            generated[i] = text.strip()
        bar.update(len(idx))
    bar.close()

    predictions = {ex.id: gen for ex, gen in zip(examples, generated, strict=True)}
    scores = score_predictions(task_obj, examples, predictions, language=lang.code)
    record = {
        **scores,
        "task": task_obj.name,
        "language": lang.code,
        "split": split,
        "configuration": configuration,
        "primary_metric": task_obj.primary_metric,
        "n_truncated": tokenised.n_truncated,
        "data": str(data) if data is not None else "paper",
        "model": fingerprint(base),
        "representations": {
            "language": _summary(lang_repr, language_rep),
            "task": _summary(task_repr, task_rep),
        },
        "generation": {"max_new_tokens": limit, "num_beams": num_beams, "batch_size": batch_size},
    }
    if output is not None:
        output = Path(output)
        rows = []
        for ex, gen in zip(examples, generated, strict=True):
            parsed = task_obj.coerce(gen)
            rows.append({"id": ex.id, "input": ex.input, "prediction": gen,
                         "parsed": parsed, "gold": ex.gold, "target": ex.target})
        write_jsonl(output / "predictions.jsonl", rows)
        write_json(output / "metrics.json", record)
    return record
