"""Per-example scores of result cells: the stored copy beside each record, or, for a cell
evaluated before they were kept, recomputed from its predictions (no model runs).

A cell's per-example scores (:class:`~langtransfer.inference.scoring.ExampleScores`) are
what its task's metrics are sums of; resampling them gives the report's confidence
intervals and paired tests (:mod:`langtransfer.results.statistics`). They are used only
when they belong to the record: the stored file carries the record's settings hash, and
scores recomputed from a predictions file must reproduce every metric of the record.
Recomputed scores are kept beside the record for the next report (when the directory is
writable). A cell with neither scores nor predictions keeps its value without an
interval, and :func:`load_example_scores` says so, naming the cell and what to do.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langtransfer.errors import CorruptFileError, LangTransferError
from langtransfer.inference.scoring import (
    ExampleScores,
    example_scores,
    read_example_scores,
    write_example_scores,
)
from langtransfer.results.records import (
    Key,
    cell_dir,
    cell_name,
    record_key,
    record_path,
    scores_path,
)
from langtransfer.tasks import Example, get_task

#: Where a study's evaluations leave their predictions (``evaluate``'s file name).
PREDICTIONS_DIR = "predictions"
PREDICTIONS_FILE = "predictions.jsonl"
#: How far a recomputed metric may be from the record's (JSON keeps doubles exactly, so
#: only a different computation -- NER's reference golds cut with the base's tokenizer
#: at evaluation time -- differs).
TOLERANCE = 1e-6


def predictions_path(study_dir: str | os.PathLike, key: Key) -> Path:
    """The predictions file a study's evaluation of ``key`` wrote."""
    return Path(study_dir) / PREDICTIONS_DIR / cell_dir(key) / PREDICTIONS_FILE


@dataclass
class LoadedScores:
    """The per-example scores found for a report's records (by cell), how many were
    recomputed from predictions, and one line for every cell that has none."""

    scores: dict[Key, ExampleScores] = field(default_factory=dict)
    recomputed: int = 0
    problems: list[str] = field(default_factory=list)


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples gold values are (NER spans, QA answers)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def recompute(record: Mapping[str, Any], path: Path) -> ExampleScores:
    """The per-example scores of ``record`` from its predictions file (rows of id,
    prediction, gold and target, as ``evaluate`` writes them), by the task's own code;
    a :class:`LangTransferError` says why they do not stand for the record."""
    task = get_task(record["task"])
    examples, predictions = [], {}
    line_no = 0
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line_no += 1
                if not line.strip():
                    continue
                row = json.loads(line)
                examples.append(Example(str(row["id"]), record["target_language"],
                                        row.get("input", ""), row.get("target", ""),
                                        _tuples(row["gold"])))
                predictions[str(row["id"])] = row["prediction"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LangTransferError(f"{path}: cannot read predictions (line {line_no}: {e})") from e
    scores = example_scores(task, examples, predictions, source=path)
    if scores is None:
        raise LangTransferError(f"task {task.name} defines no per-example statistics")
    if scores.n != record["n_examples"]:
        raise LangTransferError(
            f"{path} has {scores.n} predictions, the record {record['n_examples']} examples"
        )
    metrics = scores.metrics()
    for name, value in record["metrics"].items():
        if name in metrics and not math.isclose(metrics[name], value, rel_tol=0,
                                                 abs_tol=TOLERANCE):
            raise LangTransferError(
                f"its predictions give {name} {metrics[name]:.4f}, the record {value:.4f}"
            )
    return scores


def _stored(record: Mapping[str, Any], path: Path) -> ExampleScores | None:
    """The stored scores at ``path`` if they belong to ``record`` (same settings hash,
    task and example count), else None."""
    try:
        scores, header = read_example_scores(path)
    except CorruptFileError:
        return None
    if (header.get("settings_hash") != record["settings_hash"] or scores.task != record["task"]
            or scores.n != record["n_examples"]):
        return None
    return scores


def load_example_scores(
    study_dirs: Iterable[str | os.PathLike], records: Sequence[Mapping[str, Any]]
) -> LoadedScores:
    """The per-example scores of every record that has them in one of ``study_dirs``
    (beside the record, else recomputed from its predictions and kept), and one line per
    cell without any, naming it and what to do."""
    dirs = [Path(d) for d in study_dirs]
    out = LoadedScores()
    for record in records:
        key = record_key(record)
        try:
            task = get_task(record["task"])
        except LangTransferError:
            out.problems.append(
                f"{cell_name(key)}: task {record['task']!r} is not registered here, so its "
                "per-example scores cannot be read; pass its --task-module to the report"
            )
            continue
        if not task.has_example_stats:
            out.problems.append(
                f"{cell_name(key)}: task {task.name} defines no per-example statistics "
                "(Task.example_stats), so its cells have no intervals"
            )
            continue
        found = next((s for d in dirs if (p := scores_path(d, record)).is_file()
                      and (s := _stored(record, p)) is not None), None)
        if found is not None:
            out.scores[key] = found
            continue
        with_predictions = [d for d in dirs if predictions_path(d, key).is_file()
                            and record_path(d, record).is_file()]
        if not with_predictions:
            where = record_path(dirs[0], record) if dirs else "its record"
            out.problems.append(
                f"{cell_name(key)}: no per-example scores and no predictions (evaluated "
                "before they were kept), so its value has no interval; to get one, delete "
                f"{where} and rerun the study, which evaluates that cell again (no training)"
            )
            continue
        study = with_predictions[0]
        try:
            scores = recompute(record, predictions_path(study, key))
        except LangTransferError as e:
            out.problems.append(f"{cell_name(key)}: per-example scores not recomputed from "
                                f"its predictions ({e}); its value has no interval")
            continue
        out.scores[key] = scores
        out.recomputed += 1
        # kept for the next report; a read-only study directory is fine
        with contextlib.suppress(OSError, LangTransferError):
            write_example_scores(scores_path(study, record), scores,
                                 settings_hash=record["settings_hash"], recomputed="true")
    return out
