"""Intervals and paired tests against independent computations: coverage on synthetic
scores of a known distribution, scipy's bootstrap on the same data, constructed systems
with a known answer, and NER micro F1 from resampled counts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from langtransfer.results.statistics import (
    CellScores,
    Resampler,
    compare,
    estimate_cells,
    holm,
    percentile_interval,
)
from langtransfer.tasks import get_task

QA, NER = get_task("qa"), get_task("ner")


def cell(columns: dict[str, np.ndarray] | list[dict[str, np.ndarray]], metric="exact_match",
         task=QA) -> CellScores:
    per_seed = columns if isinstance(columns, list) else [columns]
    return CellScores(per_seed, metric, task.metrics_from_stats)


def test_interval_coverage_is_nominal_for_a_known_proportion():
    """Over 400 seeded repetitions of a test set of 150 examples, each correct with
    probability 0.3, the 95% interval holds the true 30% in 92-98.5% of them (binomial
    sd of the coverage 1.1%; intervals a third too narrow cover ~85%, a wrong n or
    unshared resamples further off)."""
    rng = np.random.default_rng(1)
    hits = []
    for rep in range(400):
        correct = (rng.random(150) < 0.3).astype(np.int32)
        (est,) = estimate_cells("t", [cell({"exact_match": correct})], Resampler(seed=rep))
        low, high = est.interval
        hits.append(low <= 30.0 <= high)
        assert est.value == pytest.approx(100 * correct.mean())
    assert 0.92 <= np.mean(hits) <= 0.985  # discrete values: inclusive ends cover a bit more


def test_interval_coverage_for_continuous_scores():
    """QA F1-like scores (a beta distribution, mean 0.6) on 80 examples: coverage of the
    true mean 60 within 91-98% over 400 repetitions."""
    rng = np.random.default_rng(2)
    hits = []
    for rep in range(400):
        f1 = rng.beta(3, 2, size=80)
        (est,) = estimate_cells("t", [cell({"f1": f1}, "f1")], Resampler(seed=rep))
        low, high = est.interval
        hits.append(low <= 60.0 <= high)
    assert 0.91 <= np.mean(hits) <= 0.98


def test_the_interval_agrees_with_scipy_bootstrap_on_the_same_data():
    rng = np.random.default_rng(3)
    f1 = rng.beta(2, 3, size=300)
    (est,) = estimate_cells("t", [cell({"f1": f1}, "f1")], Resampler(resamples=20000))
    ref = stats.bootstrap((100 * f1,), np.mean, n_resamples=20000, method="percentile",
                          rng=np.random.default_rng(0)).confidence_interval
    se = est.se
    assert abs(est.interval[0] - ref.low) < 0.1 * se
    assert abs(est.interval[1] - ref.high) < 0.1 * se
    assert se == pytest.approx(100 * f1.std(ddof=1) / np.sqrt(len(f1)), rel=0.03)


def test_ner_micro_f1_intervals_come_from_resampled_counts():
    """Examples with many spans weigh more in micro F1 than in a mean of per-example F1s:
    the value is the micro F1 of the summed counts, and the interval matches scipy's
    bootstrap of a statistic computing micro F1 from the resampled counts."""
    rng = np.random.default_rng(4)
    n = 200
    gold = rng.integers(0, 6, size=n)
    predicted = np.clip(gold + rng.integers(-1, 2, size=n), 0, None)
    correct = np.minimum(gold, predicted) - (rng.random(n) < 0.4) * (gold > 0)
    correct = np.clip(correct, 0, None)
    columns = {"correct": correct, "predicted": predicted, "gold": gold,
               "malformed": np.zeros(n, int)}
    (est,) = estimate_cells("t", [cell(columns, "f1", NER)], Resampler(resamples=20000))

    def micro_f1(c, p, g, axis=-1):
        c, p, g = c.sum(axis), p.sum(axis), g.sum(axis)
        return 200 * c / (p + g)  # 2PR/(P+R) with P = c/p, R = c/g

    assert est.value == pytest.approx(micro_f1(correct, predicted, gold))
    per_example = np.where(predicted + gold > 0, 200 * correct / np.maximum(predicted + gold, 1),
                           0)
    assert abs(est.value - per_example.mean()) > 1  # the two readings differ on these data
    ref = stats.bootstrap((correct, predicted, gold), micro_f1, paired=True, vectorized=True,
                          n_resamples=20000, method="percentile",
                          rng=np.random.default_rng(0)).confidence_interval
    assert abs(est.interval[0] - ref.low) < 0.1 * est.se
    assert abs(est.interval[1] - ref.high) < 0.1 * est.se


def test_identical_systems_are_never_significantly_different():
    rng = np.random.default_rng(5)
    correct = (rng.random(100) < 0.5).astype(np.int32)
    a, b = estimate_cells("t", [cell({"exact_match": correct}), cell({"exact_match": correct})],
                          Resampler())
    result = compare(a, b)
    assert result.difference == 0 and result.p == 1.0


def test_exchangeable_systems_are_significant_at_most_at_the_nominal_rate():
    """Two systems drawing their correctness independently with the same probability:
    over 300 repetitions the paired test's p-values are about uniform and p < 0.05 in at
    most ~5% (tolerance 3 binomial sds)."""
    rng = np.random.default_rng(6)
    ps = []
    for rep in range(300):
        a, b = ((rng.random(200) < 0.6).astype(np.int32) for _ in range(2))
        ea, eb = estimate_cells("t", [cell({"exact_match": a}), cell({"exact_match": b})],
                                Resampler(seed=rep))
        ps.append(compare(ea, eb).p)
    ps = np.array(ps)
    assert np.mean(ps < 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 300)
    assert stats.kstest(ps, "uniform").pvalue > 0.001


def test_a_system_better_on_every_example_is_significant():
    rng = np.random.default_rng(7)
    b = rng.beta(2, 2, size=60)
    a = np.minimum(b + rng.uniform(0.01, 0.05, size=60), 1.0)
    ea, eb = estimate_cells("t", [cell({"f1": a}, "f1"), cell({"f1": b}, "f1")], Resampler())
    result = compare(ea, eb)
    assert result.difference > 0 and result.p < 1e-6
    assert result.interval[0] > 0


def test_paired_resampling_is_what_makes_a_small_consistent_gain_detectable():
    """Each system alone has a wide interval (the examples vary a lot) that overlaps the
    other's; their difference, paired on the same resampled examples, is clearly > 0."""
    rng = np.random.default_rng(8)
    b = (rng.random(300) < 0.5).astype(np.int32)
    a = b.copy()
    a[np.flatnonzero(b == 0)[:12]] = 1  # right on 12 more examples, wrong on none more
    ea, eb = estimate_cells("t", [cell({"exact_match": a}), cell({"exact_match": b})],
                            Resampler())
    assert ea.interval[0] < eb.interval[1]  # the marginal intervals overlap
    assert compare(ea, eb).p < 0.001


def test_holm_adjusts_step_down_and_leaves_untested_out():
    assert holm([0.01, 0.04, 0.03, 0.005, None]) == pytest.approx(
        [0.03, 0.06, 0.06, 0.02, None], abs=1e-12)
    assert holm([]) == [] and holm([None]) == [None]
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # 2 x 0.5, capped at 1
    assert holm([0.02, 0.9]) == pytest.approx([0.04, 0.9])


def test_seed_variance_widens_the_interval_and_is_covered():
    """Ten training seeds whose true accuracy varies (sd 5 points) around 60, each scored
    on 400 examples: resampling seeds and examples covers 60 in most repetitions; the
    examples alone (seeds held fixed) give intervals too narrow to (~60%)."""
    rng = np.random.default_rng(9)
    hits, hits_examples_only = [], []
    for rep in range(200):
        per_seed = [{"exact_match": (rng.random(400) < 0.6 + rng.normal(0, 0.05)).astype(
            np.int32)} for _ in range(10)]
        (est,) = estimate_cells("t", [cell(per_seed)], Resampler(seed=rep))
        hits.append(est.interval[0] <= 60 <= est.interval[1])
        (flat,) = estimate_cells("t", [cell(per_seed)], Resampler(seed=rep),
                                 seed_counts=np.ones((1000, 10)))
        hits_examples_only.append(flat.interval[0] <= 60 <= flat.interval[1])
        assert est.value == flat.value and est.se > flat.se
    assert np.mean(hits) >= 0.85
    assert np.mean(hits_examples_only) < 0.75
    weights = Resampler().seed_counts(10)
    assert set(weights.sum(axis=1)) == {10.0} and len({tuple(w) for w in weights}) > 900


def test_resamples_are_seeded_and_shared_per_test_set():
    r = Resampler(resamples=50)
    assert np.array_equal(r.example_counts("nli/sk", 30), r.example_counts("nli/sk", 30))
    assert not np.array_equal(r.example_counts("nli/sk", 30), r.example_counts("nli/de", 30))
    counts = r.example_counts("x", 7)
    assert counts.shape == (50, 7) and set(counts.sum(axis=1)) == {7.0}
    assert percentile_interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))


def test_paired_tests_on_constructed_predictions():
    """From predictions through the task's own per-example scores: the same predictions
    never differ; predictions right wherever the other's are, and on 25 more examples,
    are significantly better (NLI accuracy, 120 examples)."""
    from langtransfer.inference.scoring import example_scores
    from langtransfer.tasks import Example

    nli = get_task("nli")
    rng = np.random.default_rng(10)
    words = list(nli.label_words.values())
    golds = [nli.classes[i] for i in rng.integers(0, 3, 120)]
    examples = [Example(str(i), "en", "x", nli.label_words[g], g) for i, g in enumerate(golds)]
    wrong = {g: next(w for c, w in nli.label_words.items() if c != g) for g in nli.classes}
    weak = {ex.id: (ex.target if rng.random() < 0.5 else wrong[ex.gold]) for ex in examples}
    better = dict(weak)
    for ex in [ex for ex in examples if weak[ex.id] != ex.target][:25]:
        better[ex.id] = ex.target
    garbage = {ex.id: rng.choice(words + ["", "perhaps"]) for ex in examples}

    def estimate(*systems):
        cells = []
        for preds in systems:
            scores = example_scores(nli, examples, preds)
            columns = {k: v for k, v in scores.columns.items()
                       if k in nli.reading_columns("accuracy", scores.columns)}
            cells.append(CellScores([columns], "accuracy", nli.metrics_from_stats))
        return estimate_cells("nli/en", cells, Resampler())

    a, b, c = estimate(better, weak, dict(weak))
    assert compare(a, b).p < 1e-4 and compare(a, b).difference == pytest.approx(25 / 1.2)
    assert compare(b, c).p == 1.0
    g1, g2 = estimate(garbage, garbage)
    assert compare(g1, g2).p == 1.0
