"""Per-example scores: each task's metrics are sums of per-example statistics, computed by
the task's own code; the file beside a record keeps them (pickle-free), and a cell
evaluated before they were kept gets them recomputed from its predictions."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from langtransfer.errors import CorruptFileError
from langtransfer.inference.scoring import (
    example_scores,
    read_example_scores,
    score_predictions,
    write_example_scores,
)
from langtransfer.results.example_scores import load_example_scores, predictions_path
from langtransfer.results.records import record_key, scores_path, write_record
from langtransfer.tasks import get_task

TASKS = {"nli": "en", "checkworthiness": "en", "qa": "en", "ner": "en"}
GARBAGE = ["", "yes", "No.", "Maybe", "maybe so", "PER: Ann", "LOC: x$$bad piece", "Checkworthy",
           "not checkworthy", "the", "Paris", "PER: Ann$$ORG: UN"]


def predictions_for(task_name: str, seed: int) -> tuple[list, dict]:
    """Fixture test examples and predictions mixing gold targets, other examples'
    targets, garbage and missing ones."""
    task = get_task(task_name)
    examples = task.load(TASKS[task_name], "test", source="fixtures")
    rng = random.Random(seed)
    preds = {}
    for ex in examples:
        r = rng.random()
        if r < 0.4:
            preds[ex.id] = ex.target
        elif r < 0.6:
            preds[ex.id] = rng.choice(examples).target
        elif r < 0.9:
            preds[ex.id] = rng.choice(GARBAGE)
        # else: missing (scores as the empty prediction)
    return examples, preds


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_summed_per_example_scores_give_every_recorded_metric(task_name):
    for seed in range(3):
        examples, preds = predictions_for(task_name, seed)
        scores = score_predictions(task_name, examples, preds)
        per_example = example_scores(task_name, examples, preds)
        assert per_example is not None and per_example.n == len(examples)
        metrics = per_example.metrics()
        shown = {k: v for k, v in scores.items() if k in metrics}
        assert shown and shown == {k: metrics[k] for k in shown}  # exactly, not approximately
        assert {k for k, v in scores.items() if isinstance(v, float)} <= set(metrics)


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_vectorised_resamples_equal_the_metric_code_run_on_each_resample(task_name):
    """The sums of a resample's statistics through the vectorised formula equal the task's
    own scoring of the resampled examples (the metric code, applied to each resample)."""
    task = get_task(task_name)
    examples, preds = predictions_for(task_name, 7)
    per_example = example_scores(task, examples, preds)
    assert per_example is not None
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(examples), size=(20, len(examples)))
    sums = {k: v[draws].sum(axis=1) for k, v in per_example.columns.items()}
    vectorised = task.metrics_from_stats(sums, len(examples))
    for b, idx in enumerate(draws):
        resample = [examples[i] for i in idx]
        # the same example twice needs two ids: predictions are keyed by id
        renamed = [type(ex)(f"{ex.id}#{j}", ex.language, ex.input, ex.target, ex.gold)
                   for j, ex in enumerate(resample)]
        direct = score_predictions(task, renamed, {f"{ex.id}#{j}": preds[ex.id]
                                                   for j, ex in enumerate(resample)
                                                   if ex.id in preds})
        for name, values in vectorised.items():
            assert values[b] == pytest.approx(direct[name], abs=1e-9), (name, b)


def test_the_file_is_safetensors_with_the_metadata_and_refuses_other_files(tmp_path):
    examples, preds = predictions_for("ner", 1)
    scores = example_scores("ner", examples, preds)
    assert scores is not None
    path = tmp_path / "cell.scores.safetensors"
    write_example_scores(path, scores, settings_hash="abc")
    raw = path.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])  # no pickle anywhere
    assert header["__metadata__"]["settings_hash"] == "abc"
    assert header["correct"]["dtype"] == "I32"  # counts stay integers: compact and exact
    back, meta = read_example_scores(path)
    assert meta["task"] == "ner" and back.ids_digest == scores.ids_digest
    assert {k: v.tolist() for k, v in back.columns.items()} == {
        k: v.tolist() for k, v in scores.columns.items()}
    (tmp_path / "bad").write_bytes(b"\x00" * 20)
    with pytest.raises(CorruptFileError, match="bad"):
        read_example_scores(tmp_path / "bad")


def _record(task: str, metrics: dict, n: int, **extra) -> dict:
    return {"task": task, "configuration": "base", "source_language": "en",
            "target_language": "en", "metrics": metrics, "primary_metric": "accuracy",
            "n_examples": n, "n_unparseable": 0, "n_truncated": 0, "model": {"name": "tiny"},
            "representations": {"language": None, "task": None}, "settings_hash": "h1",
            "seed": 42, **extra}


def _study_cell(tmp_path, seed=3):
    """A study directory holding one nli cell's record and predictions (no scores)."""
    examples, preds = predictions_for("nli", seed)
    scores = score_predictions("nli", examples, preds)
    metrics = {k: v for k, v in scores.items() if k not in ("task", "language")
               and not k.startswith("n_")}
    record = _record("nli", metrics, len(examples))
    write_record(tmp_path, record)
    task = get_task("nli")
    rows = [{"id": ex.id, "prediction": preds.get(ex.id), "parsed": None, "gold": ex.gold,
             "target": ex.target} for ex in examples]
    path = predictions_path(tmp_path, record_key(record))
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert task.has_example_stats
    return record


def test_old_cells_are_recomputed_from_predictions_and_kept(tmp_path):
    record = _study_cell(tmp_path)
    loaded = load_example_scores([tmp_path], [record])
    assert loaded.problems == [] and loaded.recomputed == 1
    key = record_key(record)
    assert loaded.scores[key].metrics()["accuracy"] == record["metrics"]["accuracy"]
    stored = scores_path(tmp_path, record)
    assert stored.is_file()  # the next report reads it instead of the predictions
    again = load_example_scores([tmp_path], [record])
    assert again.recomputed == 0 and key in again.scores


def test_stored_scores_of_another_settings_hash_are_not_used(tmp_path):
    record = _study_cell(tmp_path)
    load_example_scores([tmp_path], [record])
    predictions_path(tmp_path, record_key(record)).unlink()
    newer = {**record, "settings_hash": "h2"}
    write_record(tmp_path, newer)
    loaded = load_example_scores([tmp_path], [newer])
    assert not loaded.scores
    (problem,) = loaded.problems
    assert problem.startswith("nli/base/en->en: no per-example scores and no predictions")
    assert "delete" in problem and "rerun the study" in problem


def test_predictions_that_do_not_reproduce_the_record_give_no_scores(tmp_path):
    record = _study_cell(tmp_path)
    record["metrics"]["accuracy"] += 1.0
    write_record(tmp_path, {**record, "settings_hash": "h3"})
    loaded = load_example_scores([tmp_path], [{**record, "settings_hash": "h3"}])
    assert not loaded.scores
    assert "its predictions give accuracy" in loaded.problems[0]


def test_evaluate_keeps_the_scores_its_metrics_are_sums_of(tmp_path):
    """With the tiny model's tokenizer (NER's reference golds are cut with it), the
    stored per-example scores reproduce every metric evaluate recorded, and recomputing
    them from the predictions file gives the same columns for NLI."""
    from langtransfer.inference.evaluate import evaluate

    for task, data in (("ner", "fixtures"), ("nli", "fixtures")):
        out = tmp_path / task
        record = evaluate(model="tiny", task=task, language="en", data=data, output=out,
                          max_examples=8, max_new_tokens=4, show_progress=False)
        scores, _ = read_example_scores(out / "example_scores.safetensors")
        metrics = scores.metrics()
        assert {k: metrics[k] for k in metrics} == {k: record["metrics"][k] for k in metrics}
    rec = {**_record("nli", record["metrics"], record["n_examples"])}
    from langtransfer.results.example_scores import recompute

    again = recompute(rec, out / "predictions.jsonl")
    assert {k: v.tolist() for k, v in again.columns.items()} == {
        k: v.tolist() for k, v in scores.columns.items()}
