"""``python -m benchmarks.intervals [--rows N] [--seeds S] [--keep DIR]``: how long the
report of a paper-sized study takes with every interval and paired test.

Builds a synthetic results directory shaped like the paper's grid (``langtransfer study
--example paper``: 4 tasks x 6 sources x 7 configurations x 16 targets, without QA in
Bulgarian: 2,646 cells), each cell a result record and its per-example scores as a study
writes them, then times ``langtransfer report`` on it (one process, 1,000 resamples per
test set). Test-set sizes are the paper's order of magnitude: NER 10,000 (WikiANN),
NLI 5,010 (XNLI), QA 1,190 (XQuAD), check-worthiness 1,000; ``--rows N`` gives every test
set N rows instead. ``--seeds S`` writes S training seeds per cell (S x the records).
Outcomes are random (each configuration a different accuracy), so many differences are
real and many are not. Prints the timings (building the directory is not timed) and, with
``--json PATH``, writes them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from langtransfer.inference.scoring import ExampleScores, write_example_scores
from langtransfer.results.records import replicate_label, scores_path, write_record
from langtransfer.tasks import get_task

SOURCES = ("en", "de", "es", "ar", "ru", "zh")
TARGETS = ("ar", "bg", "cs", "de", "el", "en", "es", "ml", "ro", "ru", "sl", "sk", "sw", "te",
           "ur", "zh")
CONFIGURATIONS = ("base", "ta", "stp", "la+ta", "la+stp", "slp+ta", "slp+stp")
ROWS = {"ner": 10_000, "nli": 5_010, "qa": 1_190, "checkworthiness": 1_000}
PRIMARY = {"ner": "f1", "nli": "accuracy", "qa": "f1", "checkworthiness": "f1_checkworthy"}


def _outcomes(task: str, n: int, quality: float, rng: np.random.Generator) -> dict:
    """Per-example statistics of a system that gets about ``quality`` right."""
    t = get_task(task)
    if task == "qa":
        f1 = np.clip(rng.normal(quality, 0.3, n), 0, 1)
        em = (f1 > 0.9).astype(np.float64)
        return {"exact_match": em, "f1": f1, "mlqa_exact_match": em, "mlqa_f1": f1}
    if task == "ner":
        gold = rng.poisson(1.5, n)
        predicted = np.maximum(gold + rng.integers(-1, 2, n), 0)
        correct = np.minimum(rng.binomial(np.minimum(gold, predicted), quality), predicted)
        zero = np.zeros(n, np.int32)
        cols = {"correct": correct, "predicted": predicted, "gold": gold, "malformed": zero}
        cols = {k: v.astype(np.int32) for k, v in cols.items()}
        return {**cols, **{f"strict_{k}": v for k, v in cols.items()}}
    classes = t.classes
    gold = rng.integers(0, len(classes), n)
    right = rng.random(n) < quality
    pred = np.where(right, gold, (gold + rng.integers(1, len(classes), n)) % len(classes))
    cols = {"correct": (pred == gold).astype(np.int32)}
    for i, c in enumerate(classes):
        cols[f"tp:{c}"] = ((pred == i) & (gold == i)).astype(np.int32)
        cols[f"fp:{c}"] = ((pred == i) & (gold != i)).astype(np.int32)
        cols[f"fn:{c}"] = ((pred != i) & (gold == i)).astype(np.int32)
    return {**cols, **{f"strict_{k}": v for k, v in cols.items()}}


def build(study: Path, rows: int | None, seeds: int) -> int:
    """Write the synthetic study; return the number of records."""
    rng = np.random.default_rng(0)
    count = 0
    for task in ROWS:
        t = get_task(task)
        n = rows or ROWS[task]
        for source in SOURCES:
            for ci, configuration in enumerate(CONFIGURATIONS):
                for target in TARGETS:
                    if task == "qa" and target == "bg":
                        continue  # no source: left out of the paper grid
                    for s in range(seeds):
                        seed = 42 + s
                        cols = _outcomes(task, n, 0.35 + 0.05 * ci + 0.01 * s, rng)
                        sums = {k: float(v.sum()) for k, v in cols.items()}
                        metrics = {k: float(v) for k, v in t.metrics_from_stats(sums, n).items()}
                        record = {
                            "task": task, "configuration": configuration,
                            "source_language": source, "target_language": target,
                            "metrics": metrics, "primary_metric": PRIMARY[task],
                            "n_examples": n, "n_unparseable": 0, "n_truncated": 0,
                            "model": {"name": "bigscience/mt0-base"},
                            "representations": {
                                "language": {"kind": "x"} if "+" in configuration else None,
                                "task": {"kind": "y"} if configuration != "base" else None},
                            "settings_hash": f"bench-{count}", "seed": seed,
                            **({"replicate": replicate_label(seed)} if s else {}),
                        }
                        write_record(study, record)
                        write_example_scores(
                            scores_path(study, record),
                            ExampleScores(task, cols, f"{task}-{target}-{n}"),
                            settings_hash=record["settings_hash"])
                        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help="rows of every test set (default: per task)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per cell")
    parser.add_argument("--keep", type=Path, help="build the study here and keep it")
    parser.add_argument("--json", type=Path, help="write the timings here")
    args = parser.parse_args()
    from langtransfer.cli import main as cli

    root = args.keep or Path(tempfile.mkdtemp(prefix="intervals-bench-"))
    study = root / "study"
    try:
        start = time.perf_counter()
        records = build(study, args.rows, args.seeds)
        built = time.perf_counter() - start
        print(f"built {records} records with per-example scores in {built:.0f} s "
              f"({study})", flush=True)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli(["report", str(study), "--quiet"])
        took = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result = {"records": records, "cells": records // args.seeds, "seeds": args.seeds,
                  "rows": args.rows or ROWS, "report_seconds": round(took, 1),
                  "peak_rss_mb": round(peak), "exit": code, "cpus": os.cpu_count(),
                  "machine": platform.processor() or platform.machine()}
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
