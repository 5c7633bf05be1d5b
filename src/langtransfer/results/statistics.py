"""Confidence intervals and paired tests from per-example scores (torch-free).

A cell's metric is a function of per-example statistics summed over its test set
(:meth:`~langtransfer.tasks.Task.example_stats`), so a bootstrap resample of the test
set is a vector of resample counts ``w`` (how often each example was drawn) and the
resampled sums are ``w @ X``: one matrix product gives every resample of every cell that
shares the test set, and the task's own :meth:`~langtransfer.tasks.Task.metrics_from_stats`
turns the summed counts into metrics (NER's micro F1 from summed span counts, never an
average of per-example F1s).

How resamples are shared (what makes comparisons paired):

- **Examples.** Every cell evaluated on one test set (task, examples in order) uses the
  same resample counts, drawn from a generator seeded by the report's seed and the test
  set's identity: configurations, sources and base models are compared on the same
  resampled examples (a paired bootstrap), and averages over several test sets combine
  their independent resamples replicate by replicate (a stratified bootstrap).
- **Seeds.** With several training seeds per cell, each replicate also draws the seeds
  with replacement, once for the whole report (seed ``s`` of one configuration stays
  paired with seed ``s`` of another), *independently* of the examples: the design is
  crossed (every seed is scored on the same examples), so the two factors are resampled
  separately and a replicate's value is the mean over the drawn seeds of the metric on
  the drawn examples. The interval thus covers both sources of variance: which test
  examples were drawn, and which training runs. It does not cover another dataset.
  With few seeds (3) the seed part is estimated from few values and is optimistic.

Intervals are percentile intervals of the replicates (``RESAMPLES`` = 1,000). A paired
comparison's p-value is two-sided from the normal approximation with the bootstrap
standard error of the difference (percentile p-values of 1,000 resamples cannot go
below 0.001, too coarse for a Holm correction over a table), and the difference's
interval is ``d ± 1.96 SE``, so it excludes 0 exactly when the uncorrected p < 0.05.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

#: Bootstrap replicates per test set.
RESAMPLES = 1000
#: Two-sided confidence of the intervals and significance level of the tests.
CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
#: The report's resampling seed: the same records give the same intervals.
SEED = 2024
#: Smallest detectable difference at 80% power, two-sided alpha 0.05: (z_0.975 + z_0.8)
#: standard errors of the difference, 1.96 + 0.84 = 2.8.
DETECTABLE_SE = float(norm.ppf(1 - ALPHA / 2) + norm.ppf(0.8))
#: Resample counts are drawn in blocks of at most this many entries (memory).
_BLOCK = 4_000_000


@dataclass(frozen=True)
class Estimate:
    """A value and its bootstrap replicates (None: no interval, e.g. a cell without
    per-example scores); ``n``: test examples behind it; ``seeds``: training runs."""

    value: float
    replicates: np.ndarray | None = None
    n: int = 0
    seeds: int = 1

    @property
    def interval(self) -> tuple[float, float] | None:
        """The percentile interval of the replicates, None without them."""
        return None if self.replicates is None else percentile_interval(self.replicates)

    @property
    def se(self) -> float | None:
        """The bootstrap standard error."""
        return None if self.replicates is None else float(np.std(self.replicates, ddof=1))


def percentile_interval(
    replicates: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap replicates (percentile method)."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Comparison:
    """A paired difference ``a - b``: its value, bootstrap standard error, two-sided
    p-value and the interval ``d ± z SE`` (None when either side has no replicates)."""

    difference: float
    se: float | None
    p: float | None

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.se is None:
            return None
        half = float(norm.ppf(1 - ALPHA / 2)) * self.se
        return self.difference - half, self.difference + half


def compare(a: Estimate, b: Estimate) -> Comparison:
    """``a - b`` paired replicate by replicate (both from the same resamples)."""
    difference = a.value - b.value
    if a.replicates is None or b.replicates is None:
        return Comparison(difference, None, None)
    se = float(np.std(a.replicates - b.replicates, ddof=1))
    if se == 0:  # the same on every resample: identical systems, or no spread at all
        return Comparison(difference, 0.0, 1.0 if difference == 0 else 0.0)
    return Comparison(difference, se, float(2 * norm.sf(abs(difference) / se)))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None: not tested, left out
    of the family): the smallest times m, the next times m - 1, ..., kept monotone."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    m = len(tested)
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def combine(estimates: Sequence[Estimate]) -> Estimate:
    """The mean of several estimates, replicate by replicate (their resamples are
    independent or shared as the data are, so the mean's spread is right); no interval
    when any part has none."""
    value = float(np.mean([e.value for e in estimates]))
    n = sum(e.n for e in estimates)
    seeds = max((e.seeds for e in estimates), default=1)
    parts = [e.replicates for e in estimates if e.replicates is not None]
    if not estimates or len(parts) < len(estimates):
        return Estimate(value, None, n, seeds)
    return Estimate(value, np.mean(parts, axis=0), n, seeds)


def difference(a: Estimate, b: Estimate) -> Estimate:
    """``a - b`` as an estimate (paired replicates)."""
    reps = None if a.replicates is None or b.replicates is None else a.replicates - b.replicates
    return Estimate(a.value - b.value, reps, a.n, max(a.seeds, b.seeds))


class Resampler:
    """Draws the report's resamples: one set of example counts per test set and one of
    seed counts for the report, each from its own seeded generator, so a test set's
    resamples do not depend on which other cells are in the report."""

    def __init__(self, resamples: int = RESAMPLES, seed: int = SEED):
        self.resamples = resamples
        self.seed = seed

    def _generator(self, *identity: str) -> np.random.Generator:
        digest = hashlib.sha256("\x1f".join((str(self.seed), *identity)).encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def example_counts(self, test_set: str, n: int) -> np.ndarray:
        """``[B, n]`` how often each example is drawn in each replicate (float32: exact
        for counts below 2**24)."""
        rng = self._generator("examples", test_set, str(n))
        out = np.empty((self.resamples, n), dtype=np.float32)
        rows = max(1, _BLOCK // max(n, 1))
        for start in range(0, self.resamples, rows):
            b = min(rows, self.resamples - start)
            draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
            out[start:start + b] = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n)
        return out

    def seed_counts(self, seeds: int) -> np.ndarray:
        """``[B, S]`` how often each training seed is drawn in each replicate (all ones
        for one seed: nothing to resample)."""
        if seeds == 1:
            return np.ones((self.resamples, 1))
        rng = self._generator("seeds", str(seeds))
        draws = rng.integers(0, seeds, size=(self.resamples, seeds))
        return np.stack([np.bincount(row, minlength=seeds) for row in draws]).astype(float)


#: metrics_from_stats(sums, n) -> metric name -> values: a task's metric code.
MetricsFromSums = Callable[[Mapping[str, Any], int], Mapping[str, Any]]


@dataclass(frozen=True)
class CellScores:
    """What one cell's estimate needs: per training seed, its per-example columns (the
    same examples in the same order), and the metric code of its task."""

    columns: Sequence[Mapping[str, np.ndarray]]  # one per seed
    metric: str
    metrics_from_stats: MetricsFromSums


def estimate_cells(
    test_set: str,
    cells: Sequence[CellScores],
    resampler: Resampler,
    seed_counts: np.ndarray | None = None,
) -> list[Estimate]:
    """Bootstrap estimates of cells evaluated on one test set, from shared resamples.

    Every cell has the same number of examples and seeds; each replicate re-sums each
    seed's columns under the test set's resample counts, applies the task's metric code
    to the sums, and averages over the seeds drawn (``seed_counts``, ``[B, S]``; default
    :meth:`Resampler.seed_counts`). The value is the metric on all examples, averaged
    over the seeds.
    """
    if not cells:
        return []
    n_seeds = len(cells[0].columns)
    n = len(next(iter(cells[0].columns[0].values())))
    weights = resampler.example_counts(test_set, n)
    seed_weights = resampler.seed_counts(n_seeds) if seed_counts is None else seed_counts
    out = []
    # The columns of all cells and seeds side by side: one product for the lot.
    names = [list(c.columns[0]) for c in cells]
    blocks = [np.asarray(cols[name], dtype=np.float32)
              for c, cell_names in zip(cells, names, strict=True)
              for cols in c.columns for name in cell_names]
    sums = weights @ np.stack(blocks, axis=1) if blocks else np.zeros((weights.shape[0], 0))
    sums = sums.astype(np.float64)
    at = 0
    for cell, cell_names in zip(cells, names, strict=True):
        per_seed_reps, per_seed_values = [], []
        for cols in cell.columns:
            k = len(cell_names)
            resampled = {name: sums[:, at + j] for j, name in enumerate(cell_names)}
            at += k
            full = {name: cols[name].sum().item() for name in cell_names}
            per_seed_reps.append(np.asarray(cell.metrics_from_stats(resampled, n)[cell.metric],
                                            dtype=np.float64))
            per_seed_values.append(float(cell.metrics_from_stats(full, n)[cell.metric]))
        reps = np.stack(per_seed_reps, axis=1)  # [B, S]
        replicates = (reps * seed_weights).sum(axis=1) / n_seeds
        out.append(Estimate(float(np.mean(per_seed_values)), replicates, n, n_seeds))
    return out


def detectable_difference(se: float) -> float:
    """The smallest true difference a two-sided test at alpha 0.05 finds with 80% power,
    given the standard error of the difference."""
    return DETECTABLE_SE * se
