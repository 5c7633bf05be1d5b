"""The report's uncertainty: each table's bootstrap estimates, which configurations the
paired tests can separate, and the differences to base they find.

Estimates of the cells come from :func:`langtransfer.results.statistics.estimate_cells`
(one resample per test set, shared by every cell on it); an average's replicates are the
mean of its cells' replicates, so averages, differences and comparisons inherit the
pairing. Holm's correction runs over the comparisons of one table: per column, the top
value against each other row (best marks), or each row against ``base`` (differences).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import median
from typing import Any

import numpy as np

from langtransfer.inference.scoring import ExampleScores
from langtransfer.report.grid import AVG, DOWN, UP, Grid
from langtransfer.results.records import Key, record_key
from langtransfer.results.statistics import (
    ALPHA,
    CellScores,
    Estimate,
    Resampler,
    combine,
    compare,
    detectable_difference,
    difference,
    estimate_cells,
    holm,
)
from langtransfer.tasks import get_task

HOW_TO_READ = (
    "**How to read this.** Each value is the metric on the whole test set (averaged over "
    "the training seeds where there are several); `[low, high]` is its 95% interval, a "
    "percentile bootstrap of the test examples (1,000 resamples of the stored per-example "
    "scores, seeded, so the same records give the same intervals) and, with several seeds, "
    "of the seeds too. It says how much the value would move with another test sample of "
    "the same size from the same source, and another training run: not how it would do "
    "on another dataset, domain or base model. Configurations are compared on the same "
    "resampled examples (a paired test: what they get right differs less than their "
    "scores), with the p-values of a table corrected for the number of its comparisons "
    "(Holm). **Bold** marks a configuration significantly better than every other in its "
    "column; where the test cannot separate the top ones, they are *italic* and named as "
    "tied best under the table. In the differences to base, ▲/▼ mark a difference the "
    "corrected test finds (▼: negative transfer); an interval that excludes 0 without a "
    "mark is a difference the correction does not let through. Two values whose intervals "
    "overlap may still differ significantly (the paired test is sharper than the "
    "intervals), and a difference that is not significant is not shown to be zero: the "
    "sample-size table says how large a difference each test set can detect."
)
UNTESTED = (
    "No cell here has per-example scores, so the values have no intervals and **bold** "
    "marks the highest displayed value, untested (see the messages below the tables)."
)


def _test_set(task: str, target: str, scores: ExampleScores) -> str:
    """A test set's identity: its examples, in order (cells on it share resamples)."""
    return f"{task}/{target}/{scores.ids_digest}/{scores.n}"


def estimate_task_grids(
    grids: Sequence[Grid],
    scores: Mapping[Key, ExampleScores],
    resampler: Resampler,
    seed_counts: np.ndarray | None = None,
) -> None:
    """Fill every task grid's cell estimates (and its averages'): from the cells'
    per-example scores where every seed of the cell has them on the same examples,
    else the value alone."""
    groups: dict[str, list[tuple[Grid, tuple[str, str], CellScores]]] = {}
    for grid in grids:
        for where, records in grid.cells.items():
            value = grid.values[where]
            found = [scores.get(record_key(r)) for r in records]
            digests = {s.ids_digest for s in found if s is not None}
            if any(s is None for s in found) or len(digests) != 1:
                n = records[0]["n_examples"]
                grid.estimates[where] = Estimate(value, None, n, len(records))
                continue
            task = get_task(records[0]["task"])
            metric = grid.metric or records[0]["primary_metric"]
            per_seed = [{k: v for k, v in s.columns.items()
                         if k in task.reading_columns(metric, s.columns)}
                        for s in found if s is not None]
            first = found[0]
            assert first is not None
            key = _test_set(records[0]["task"], records[0]["target_language"], first)
            groups.setdefault(f"{key}/{len(records)}", []).append(
                (grid, where, CellScores(per_seed, metric, task.metrics_from_stats)))
    for test_set, members in groups.items():
        estimates = estimate_cells(test_set.rpartition("/")[0], [m[2] for m in members],
                                   resampler, seed_counts)
        for (grid, where, _), estimate in zip(members, estimates, strict=True):
            grid.estimates[where] = estimate
    for grid in grids:
        average_estimates(grid)
        mark_best(grid)


def average_estimates(grid: Grid) -> None:
    """Each complete row's ``avg`` estimate: the mean of its cells' (no interval when a
    cell has none)."""
    if not grid.with_avg:
        return
    for r in grid.rows:
        cells = [grid.estimates.get((r, c)) for c in grid.columns]
        if grid.averages.get(r) is not None and all(e is not None for e in cells):
            grid.estimates[(r, AVG)] = combine([e for e in cells if e is not None])


def has_replicates(grid: Grid) -> bool:
    return any(e.replicates is not None for e in grid.estimates.values())


def best_sets(grid: Grid, rows: Sequence[str] | None = None) -> dict[str, set[str]]:
    """Per column, the top row of ``rows`` (default all) if the paired test finds it better
    than each other row, else the rows it cannot separate from the top; Holm's correction
    over all of the table's comparisons. A row without replicates cannot be separated.
    A column with fewer than two values has no best."""
    rows = list(grid.rows if rows is None else rows)
    tops: dict[str, str] = {}
    tests: list[tuple[str, str, float | None]] = []
    for c in grid.all_columns:
        present = [r for r in rows if grid.get(r, c) is not None]
        if len(present) < 2:
            continue
        top = max(present, key=lambda r: grid.get(r, c) or 0.0)
        tops[c] = top
        for r in present:
            if r != top:
                a, b = grid.estimates.get((top, c)), grid.estimates.get((r, c))
                p = compare(a, b).p if a is not None and b is not None else None
                tests.append((c, r, p))
    adjusted = holm([p for _, _, p in tests])
    out = {c: {top} for c, top in tops.items()}
    for (c, r, _), q in zip(tests, adjusted, strict=True):
        if q is None or q >= ALPHA:
            out[c].add(r)
    return out


def mark_best(grid: Grid) -> None:
    """Mark the grid's best rows by paired tests, when any of its values has replicates."""
    if has_replicates(grid):
        grid.best_sets = best_sets(grid)


def delta_estimates(delta: Grid, grid: Grid) -> None:
    """The differences to base of ``grid`` (``delta`` holds their values): estimates,
    and ▲/▼ where the paired test, Holm-corrected over the table, finds one."""
    tests: list[tuple[tuple[str, str], float, float | None]] = []
    for r in delta.rows:
        for c in delta.all_columns:
            a, b = grid.estimates.get((r, c)), grid.estimates.get(("base", c))
            if a is None or b is None or delta.get(r, c) is None:
                continue
            delta.estimates[(r, c)] = difference(a, b)
            tests.append(((r, c), a.value - b.value, compare(a, b).p))
    mark_significant(delta, tests)


def mark_significant(
    grid: Grid, tests: Sequence[tuple[tuple[str, str], float, float | None]]
) -> None:
    """▲/▼ on the cells whose difference (``tests``: where, value, p) is significant
    after Holm's correction over ``tests``."""
    for (where, value, _), q in zip(tests, holm([p for _, _, p in tests]), strict=True):
        if q is not None and q < ALPHA and value != 0:
            grid.marks[where] = UP if value > 0 else DOWN


def zero_tests(grid: Grid) -> None:
    """For a grid of differences (summaries of deltas): marks where a difference's own
    replicates exclude 0 by the test, Holm-corrected over the grid."""
    tests = []
    for (r, c), e in sorted(grid.estimates.items()):
        if e.replicates is not None:
            zero = Estimate(0.0, np.zeros_like(e.replicates))
            tests.append(((r, c), e.value, compare(e, zero).p))
    mark_significant(grid, tests)


def detectable(tables: Sequence[Grid]) -> list[dict[str, Any]]:
    """Per task and target language: test-set size, seeds, and the smallest difference
    between two configurations that a paired test finds with 80% power (2.8 x the median
    bootstrap standard error of the differences to base in that column, over the tables'
    rows and sources; sqrt 2 x the cells' own where there is no base)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for grid in tables:
        task = grid.name.split(".", 1)[0]
        for c in grid.columns:
            entry = found.setdefault((task, c), {"task": task, "target": c, "n": None,
                                                  "seeds": None, "ses": [], "own": []})
            for r in grid.rows:
                e = grid.estimates.get((r, c))
                if e is None:
                    continue
                entry["n"], entry["seeds"] = e.n, e.seeds
                if e.se is not None:
                    entry["own"].append(e.se)
                base = grid.estimates.get(("base", c))
                if r != "base" and base is not None and e.replicates is not None \
                        and base.replicates is not None:
                    entry["ses"].append(float(np.std(e.replicates - base.replicates, ddof=1)))
    out = []
    for entry in found.values():
        if entry["ses"]:
            se = median(entry["ses"])
        elif entry["own"]:
            se = median(entry["own"]) * 2 ** 0.5
        else:
            se = None
        out.append({"task": entry["task"], "target": entry["target"], "n": entry["n"],
                    "seeds": entry["seeds"],
                    "detectable": None if se is None else detectable_difference(se)})
    return out
