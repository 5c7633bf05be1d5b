"""Predictions files and scoring them against gold examples.

A predictions file is JSONL, one object per example: ``{"id": ..., "prediction": ...}``
(other keys, such as the ``target`` :func:`write_predictions` adds for reading, are
ignored). ``prediction`` is normally the model's **raw generated text**, which the task's
parser reads; since every task parses its own targets back to the gold value, a file of
targets or plain answers works too. Already-parsed values are accepted where a string
would be ambiguous: ``null`` (no output; scores as wrong), a class id or name for
classification tasks, a list of ``[type, text]`` pairs for NER.

:func:`score_predictions` is shared by ``langtransfer score`` and by evaluation with a
model, so both report the same fields. :func:`example_scores` keeps, per example, what
those metrics are sums of (a file beside the predictions and each study record), so a
report can resample the test set without running a model.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from langtransfer.errors import CorruptFileError, DataFormatError, LangTransferError
from langtransfer.io import atomic_path, write_jsonl
from langtransfer.jsonl import iter_json_lines
from langtransfer.tasks import Example, Task, get_task


def read_predictions(path: str | os.PathLike, task: Task | str | None = None) -> dict[str, Any]:
    """``id -> prediction`` from a JSONL file; malformed lines raise with file and line.

    With ``task``, every prediction is also checked to be a value the task can score
    (:meth:`Task.coerce`), so a bad one is reported with its file and line.
    """
    path = Path(path)
    task = get_task(task) if task is not None else None
    out: dict[str, Any] = {}
    try:
        for n, obj in iter_json_lines(path):
            if not isinstance(obj, dict) or "id" not in obj or "prediction" not in obj:
                raise DataFormatError(
                    path, f"expected an object with 'id' and 'prediction', got {obj!r:.80}", n
                )
            ex_id = obj["id"]
            if isinstance(ex_id, bool) or not isinstance(ex_id, (str, int)):
                raise DataFormatError(path, f"id must be a string or integer, got {ex_id!r:.80}", n)
            ex_id = str(ex_id)
            if ex_id in out:
                raise DataFormatError(path, f"duplicate id {ex_id!r}", n)
            if task is not None:
                try:
                    task.coerce(obj["prediction"])
                except ValueError as e:
                    raise DataFormatError(path, f"prediction for id {ex_id!r}: {e}", n) from e
            out[ex_id] = obj["prediction"]
    except FileNotFoundError:
        raise LangTransferError(f"predictions file {path} does not exist") from None
    except IsADirectoryError:
        raise LangTransferError(f"predictions file {path} is a directory") from None
    except OSError as e:
        raise LangTransferError(f"cannot read {path}: {e.strerror or e}") from e
    return out


def write_predictions(
    path: str | os.PathLike, examples: Sequence[Example], generations: Sequence[str]
) -> None:
    """Write generated texts (aligned with ``examples``) as a predictions file, atomically."""
    if len(examples) != len(generations):
        raise ValueError(f"{len(generations)} generations for {len(examples)} examples")
    write_jsonl(
        path,
        ({"id": ex.id, "prediction": gen, "target": ex.target}
         for ex, gen in zip(examples, generations, strict=True)),
    )


def _aligned(
    task: Task,
    examples: Sequence[Example],
    predictions: Mapping[str, Any],
    source: str | os.PathLike | None,
) -> tuple[list[Any], int, int]:
    """The raw prediction of every gold example in order (None where missing), with the
    counts of missing and unparseable ones; a value the task cannot read is an error."""
    gold_ids = {ex.id for ex in examples}
    if examples and predictions and not gold_ids.intersection(predictions):
        where = f" in {source}" if source is not None else ""
        raise LangTransferError(
            f"none of the {len(predictions)} prediction ids{where} matches the "
            f"{len(examples)} gold ids (e.g. {next(iter(predictions))!r} vs "
            f"{examples[0].id!r}); wrong data, language or split?"
        )
    raw: list[Any] = []
    n_missing = n_unparseable = 0
    for ex in examples:
        if ex.id not in predictions:
            n_missing += 1
            raw.append(None)  # scores as the task's empty prediction in every reading
            continue
        try:
            pred = task.coerce(predictions[ex.id])
        except ValueError as e:
            where = f"{source}: " if source is not None else ""
            raise LangTransferError(f"{where}prediction for id {ex.id!r}: {e}") from e
        n_unparseable += task.is_unparseable(pred)
        raw.append(predictions[ex.id])
    return raw, n_missing, n_unparseable


def score_predictions(
    task: Task | str,
    examples: Sequence[Example],
    predictions: Mapping[str, Any],
    *,
    language: str | None = None,
    source: str | os.PathLike | None = None,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Score ``id -> prediction`` against gold examples.

    Every gold example counts: one without a prediction scores as the task's empty
    prediction (wrong) and is counted in ``n_missing``; ``n_unparseable`` counts the
    predictions present that the parser could not read; predictions for ids not in the
    golds are ignored and counted in ``n_extra``. Returns ``task``, ``language``, the
    task's metrics (percentages), ``n_examples``, ``n_unparseable``, ``n_missing``,
    ``n_extra`` and any task-specific counts. ``source`` (the predictions file) is named
    in errors. Tasks with a reference reading report it unprefixed and the strict
    reading prefixed ``strict_`` (:meth:`Task.score_examples`); ``tokenizer`` (the base
    model's) lets NER read its reference golds as the reference did, cut to the target
    length.
    """
    task = get_task(task)
    raw, n_missing, n_unparseable = _aligned(task, examples, predictions, source)
    metrics = task.score_examples(raw, examples, tokenizer=tokenizer)
    if language is None:
        langs = sorted({ex.language for ex in examples})
        language = langs[0] if len(langs) == 1 else ",".join(langs)
    gold_ids = {ex.id for ex in examples}
    counts = {
        "n_examples": len(examples),
        "n_unparseable": n_unparseable,
        "n_missing": n_missing,
        "n_extra": len(set(predictions) - gold_ids),
    }
    values = {k: v for k, v in metrics.items() if k not in counts}
    return {"task": task.name, "language": language, **values, **counts}


# -- per-example scores -------------------------------------------------------------

#: Where :func:`~langtransfer.inference.evaluate.evaluate` writes them beside the
#: predictions; a study keeps a copy beside each result record.
EXAMPLE_SCORES_FILE = "example_scores.safetensors"
#: The file's ``format`` metadata: what a reader must understand.
EXAMPLE_SCORES_FORMAT = "langtransfer.example_scores/1"


def ids_digest(ids: Sequence[str]) -> str:
    """A short hash of example ids in order: two cells are paired example by example
    only when their digests are equal (the same test examples in the same order)."""
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class ExampleScores:
    """Per-example statistics of one evaluated cell (:meth:`Task.reading_stats`: for
    every example, in the evaluation's order, the counts or scores its metrics are sums
    of), so a resample of the test set re-sums them instead of re-running anything."""

    task: str
    columns: dict[str, np.ndarray]
    ids_digest: str

    @property
    def n(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def sums(self) -> dict[str, Any]:
        """Every column summed (numbers), what the task's metrics are computed from."""
        return {k: v.sum().item() for k, v in self.columns.items()}

    def metrics(self) -> dict[str, Any]:
        """The task's metrics over all examples (the record's values, to rounding)."""
        return get_task(self.task).metrics_from_stats(self.sums(), self.n)


def example_scores(
    task: Task | str,
    examples: Sequence[Example],
    predictions: Mapping[str, Any],
    *,
    source: str | os.PathLike | None = None,
    tokenizer: Any = None,
) -> ExampleScores | None:
    """The per-example statistics of :func:`score_predictions`'s metrics (same examples,
    same readings, same golds), or None for a task that defines none."""
    task = get_task(task)
    raw, _, _ = _aligned(task, examples, predictions, source)
    stats = task.reading_stats(raw, examples, tokenizer=tokenizer)
    if stats is None:
        return None
    columns = {}
    for name, values in stats.items():
        integral = all(isinstance(v, (int, bool)) for v in values)
        columns[name] = np.asarray(values, dtype=np.int32 if integral else np.float64)
    return ExampleScores(task.name, columns, ids_digest([ex.id for ex in examples]))


def write_example_scores(
    path: str | os.PathLike, scores: ExampleScores, **metadata: str
) -> None:
    """Write ``scores`` as safetensors (no pickle; ``metadata`` strings in its header,
    e.g. the cell's settings hash), atomically."""
    from safetensors.numpy import save_file

    header = {"format": EXAMPLE_SCORES_FORMAT, "task": scores.task,
              "ids_digest": scores.ids_digest, "n": str(scores.n), **metadata}
    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in scores.columns.items()}, str(tmp),
                  metadata=header)


def read_example_scores(path: str | os.PathLike) -> tuple[ExampleScores, dict[str, str]]:
    """A file of :func:`write_example_scores`: the scores and the header's metadata. A
    file that is not one raises :class:`CorruptFileError` naming it."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            header = dict(f.metadata() or {})
            columns = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (OSError, SafetensorError) as e:
        raise CorruptFileError(f"{path}: not a per-example scores file ({e})") from e
    if header.get("format") != EXAMPLE_SCORES_FORMAT or "task" not in header:
        raise CorruptFileError(
            f"{path}: not a per-example scores file of this release (format "
            f"{header.get('format')!r}, expected {EXAMPLE_SCORES_FORMAT!r})"
        )
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1 or str(next(iter(lengths), 0)) != header.get("n", "0"):
        raise CorruptFileError(f"{path}: per-example columns of unequal length")
    return ExampleScores(header["task"], columns, header.get("ids_digest", "")), header


def metrics_record(scores: Mapping[str, Any], task: Task | str) -> dict[str, Any]:
    """The ``metrics.json`` shape shared by ``score`` and ``evaluate``: metric values under
    ``metrics`` (percentages), the task's ``primary_metric`` (the reference's figure),
    ``metric_definitions`` (what each name means), and the ``n_*`` counts."""
    task = get_task(task)
    counts = {k: v for k, v in scores.items() if k.startswith("n_")}
    metrics = {k: v for k, v in scores.items() if k not in counts and k not in ("task", "language")}
    return {
        "task": task.name,
        "language": scores.get("language"),
        "metrics": metrics,
        "primary_metric": task.primary_metric,
        "metric_definitions": task.metric_definitions(metrics),
        **counts,
    }
