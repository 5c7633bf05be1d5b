"""T5 span corruption: lengths, round trip, noise rate, sentinels, datasets."""

from __future__ import annotations

from itertools import pairwise

import datasets
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import ByT5Tokenizer

from langtransfer.errors import LangTransferError
from langtransfer.training.span_corruption import (
    SpanCorruption,
    compute_input_and_target_lengths,
    corrupt,
    corrupted_lengths,
    noise_counts,
    sentinel_ids,
    span_corruption_dataset,
)

TOK = ByT5Tokenizer()
BYT5_SENTINELS = [TOK.convert_tokens_to_ids(f"<extra_id_{i}>") for i in range(125)]
EOS = TOK.eos_token_id
# mT5-style: sentinels count down from the top of a vocabulary; real tokens lie below.
SYNTHETIC_SENTINELS = list(range(250_099, 249_999, -1))

SETTINGS = settings(max_examples=150, deadline=None)


def uncorrupt(inputs, targets, sentinels) -> list[int]:
    """Put each target span back in place of its sentinel in the inputs."""
    index = {s: i for i, s in enumerate(sentinels)}
    spans: dict[int, list[int]] = {}
    current = None
    for t in targets:
        if t in index:
            current = index[t]
            spans[current] = []
        else:
            assert current is not None, "targets must start with a sentinel"
            spans[current].append(t)
    out: list[int] = []
    for t in inputs:
        out.extend(spans.pop(index[t]) if t in index else [t])
    assert not spans, "every target span has a sentinel in the inputs"
    return out


def sentinels_in(seq, sentinels) -> list[int]:
    allowed = set(sentinels)
    return [t for t in seq if t in allowed]


noise_params = st.tuples(st.floats(0.02, 0.45), st.sampled_from([1.0, 1.5, 2.0, 3.0, 4.0, 7.5]))


@st.composite
def blocks(draw, sentinels, low, high, max_len=700):
    density, mean = draw(noise_params)
    n = draw(st.integers(2, max_len))
    # Keep within the sentinel budget (a block needs one sentinel per noise span).
    while noise_counts(n, density, mean)[1] > len(sentinels):
        n //= 2
    tokens = draw(st.lists(st.integers(low, high), min_size=max(n, 2), max_size=max(n, 2)))
    seed = draw(st.integers(0, 2**32 - 1))
    return tokens, density, mean, seed


@SETTINGS
@given(blocks(BYT5_SENTINELS, 3, 258))
def test_round_trip_byt5_ids(case):
    tokens, density, mean, seed = case
    inputs, targets = corrupt(
        tokens,
        np.random.default_rng(seed),
        sentinel_ids=BYT5_SENTINELS,
        noise_density=density,
        mean_noise_span_length=mean,
        eos_id=EOS,
    )
    assert inputs[-1] == EOS and targets[-1] == EOS
    assert uncorrupt(inputs[:-1].tolist(), targets[:-1].tolist(), BYT5_SENTINELS) == tokens


@SETTINGS
@given(blocks(SYNTHETIC_SENTINELS, 0, 249_999))
def test_round_trip_and_sentinel_order_synthetic(case):
    tokens, density, mean, seed = case
    inputs, targets = corrupt(
        tokens,
        np.random.default_rng(seed),
        sentinel_ids=SYNTHETIC_SENTINELS,
        noise_density=density,
        mean_noise_span_length=mean,
    )
    inputs, targets = inputs.tolist(), targets.tolist()
    assert uncorrupt(inputs, targets, SYNTHETIC_SENTINELS) == tokens
    num_noise, num_spans = noise_counts(len(tokens), density, mean)
    # Consecutive sentinels <extra_id_0>, <extra_id_1>, ... in both, one per span.
    expected = SYNTHETIC_SENTINELS[:num_spans]
    assert sentinels_in(inputs, SYNTHETIC_SENTINELS) == expected
    assert sentinels_in(targets, SYNTHETIC_SENTINELS) == expected
    # T5 layout: the input opens with kept text, the target with a sentinel; no span empty.
    assert inputs[0] not in expected and targets[0] == expected[0]
    assert all(a != b for a, b in pairwise(inputs) if a in expected)
    assert not any(a in expected and b in expected for a, b in pairwise(targets))
    assert targets[-1] not in expected
    # Lengths are those the length computation predicts.
    assert len(targets) - num_spans == num_noise
    assert (len(inputs) + 1, len(targets) + 1) == corrupted_lengths(len(tokens), density, mean)


@SETTINGS
@given(st.integers(100, 3000), st.integers(0, 2**32 - 1))
def test_noise_fraction_close_to_paper_density(length, seed):
    tokens = np.arange(length) % 200 + 3
    many = list(range(300, 1300))  # enough sentinels for 3000 tokens, none a real token
    inputs, targets = corrupt(tokens, np.random.default_rng(seed), sentinel_ids=many)
    num_spans = len(sentinels_in(targets.tolist(), many))
    noise = len(targets) - num_spans
    assert abs(noise / length - 0.15) <= 0.5 / length + 1e-12
    # Mean span length is 3 up to rounding of the span count.
    assert abs(num_spans - noise / 3) <= 0.5 + 1e-9
    assert len(inputs) - num_spans == length - noise


def test_noise_spans_vary_in_length_and_position():
    tokens = np.arange(284) % 250 + 3  # byte ids, below the sentinels
    masks = set()
    lengths = []
    for seed in range(20):
        inputs, targets = corrupt(tokens, np.random.default_rng(seed), sentinel_ids=BYT5_SENTINELS)
        masks.add(tuple(inputs.tolist()))
        spans = np.split(targets, np.flatnonzero(np.isin(targets, BYT5_SENTINELS)))[1:]
        lengths += [len(s) - 1 for s in spans]
    assert len(masks) == 20
    assert min(lengths) == 1 and max(lengths) > 5
    assert abs(np.mean(lengths) - 43 / 14) < 1e-9  # 43 noise tokens in 14 spans


def test_deterministic_given_seed():
    tokens = list(range(3, 200))

    def run(seed):
        return [
            a.tolist()
            for a in corrupt(tokens, np.random.default_rng(seed), sentinel_ids=BYT5_SENTINELS)
        ]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_paper_lengths():
    # T5's published values: 256 -> 284 raw tokens / 58 targets; 512 -> 568 / 114.
    assert compute_input_and_target_lengths(256, 0.15, 3.0) == (284, 58)
    assert compute_input_and_target_lengths(512, 0.15, 3.0) == (568, 114)


@SETTINGS
@given(st.integers(3, 5000), st.floats(0.01, 0.49), st.floats(1.0, 10.0))
def test_raw_length_fits_exactly_and_is_largest(input_length, density, mean):
    raw, target = compute_input_and_target_lengths(input_length, density, mean)
    assert corrupted_lengths(raw, density, mean) == (input_length, target)
    assert corrupted_lengths(raw + 1, density, mean)[0] > input_length


@pytest.mark.parametrize("input_length", [8, 31, 64, 100, 256, 512])
def test_objective_output_lengths_exact(input_length):
    obj = SpanCorruption.for_tokenizer(TOK, input_length=input_length)
    rng = np.random.default_rng(0)
    for _ in range(5):
        block = rng.integers(3, 259, size=obj.raw_length)
        inputs, targets = obj.corrupt(block, rng)
        assert len(inputs) == input_length and len(targets) == obj.target_length
        assert inputs[-1] == EOS and targets[-1] == EOS
    with pytest.raises(ValueError, match=f"expected {obj.raw_length}"):
        obj.corrupt(block[:-1], rng)


def test_sentinel_ids_by_name():
    ids = sentinel_ids(TOK)
    assert ids == BYT5_SENTINELS and ids[:3] == [259, 260, 261]
    assert sentinel_ids(TOK, 4) == [259, 260, 261, 262]

    class MT5Like:  # sentencepiece: <extra_id_0> is the top of the vocabulary
        def get_vocab(self):
            return {"a": 5, **{f"<extra_id_{i}>": 999 - i for i in range(100)}}

    assert sentinel_ids(MT5Like())[:3] == [999, 998, 997]
    with pytest.raises(LangTransferError, match="has 100 sentinel tokens.*needs 101"):
        sentinel_ids(MT5Like(), 101)

    class NoSentinels:
        def get_vocab(self):
            return {"a": 0}

    with pytest.raises(LangTransferError, match="T5-family tokenizer"):
        sentinel_ids(NoSentinels())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise_density": 0.0}, r"noise_density must be in \(0, 1\)"),
        ({"noise_density": 1.0}, r"noise_density must be in \(0, 1\)"),
        ({"noise_density": float("nan")}, r"noise_density must be in \(0, 1\)"),
        ({"mean_noise_span_length": 0.5}, "mean_noise_span_length must be >= 1"),
    ],
)
def test_bad_noise_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        corrupt([5, 6, 7, 8], np.random.default_rng(0), sentinel_ids=BYT5_SENTINELS, **kwargs)
    with pytest.raises(LangTransferError, match=match):
        SpanCorruption.for_tokenizer(TOK, **kwargs)


def test_bad_lengths_and_sentinels():
    with pytest.raises(ValueError, match="input_length must be an integer >= 3"):
        compute_input_and_target_lengths(2)
    with pytest.raises(ValueError, match="no raw block length corrupts to exactly 4"):
        compute_input_and_target_lengths(4, 0.5, 1.0)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        corrupt([5], np.random.default_rng(0), sentinel_ids=BYT5_SENTINELS)
    with pytest.raises(ValueError, match="token 260 at position 2 is a sentinel"):
        corrupt([5, 6, 260, 8], np.random.default_rng(0), sentinel_ids=BYT5_SENTINELS)
    with pytest.raises(ValueError, match="only 1 sentinel"):
        corrupt(list(range(3, 200)), np.random.default_rng(0), sentinel_ids=[259])
    with pytest.raises(LangTransferError, match="only 125 sentinels"):
        SpanCorruption.for_tokenizer(TOK, input_length=4096)
    with pytest.raises(LangTransferError, match="EOS id 259 is a sentinel"):
        SpanCorruption((259, 260), eos_id=259, input_length=8)
    with pytest.raises(LangTransferError, match="distinct"):
        SpanCorruption((259, 259), eos_id=1, input_length=8)


TEXTS = [
    "The Danube flows into the Black Sea.",
    "Dunaj ústi do Čierneho mora.",
    "Дунай впадает в Чёрное море.",
    "Ο Δούναβης εκβάλλει στη Μαύρη Θάλασσα.",
    "يصب نهر الدانوب في البحر الأسود.",
] * 4


def _stream(texts) -> list[int]:
    out: list[int] = []
    for t in texts:
        out += [*TOK(t, add_special_tokens=False).input_ids, EOS]
    return out


def test_dataset_concatenates_texts_and_inverts_exactly():
    ds = span_corruption_dataset(TEXTS, TOK, input_length=64, seed=3)
    obj = SpanCorruption.for_tokenizer(TOK, input_length=64)
    assert isinstance(ds, datasets.Dataset) and ds.column_names == ["input_ids", "labels"]
    stream = _stream(TEXTS)
    assert len(ds) == len(stream) // obj.raw_length  # packed, remainder dropped
    assert all(len(x) == 64 for x in ds["input_ids"])
    assert all(len(y) == obj.target_length for y in ds["labels"])
    rebuilt: list[int] = []
    for row in ds:
        rebuilt += uncorrupt(row["input_ids"][:-1], row["labels"][:-1], BYT5_SENTINELS)
    assert rebuilt == stream[: len(rebuilt)] and len(rebuilt) == len(ds) * obj.raw_length


def test_dataset_streaming_matches_and_is_seeded():
    as_list = span_corruption_dataset(TEXTS, TOK, input_length=32, seed=5)
    streamed = span_corruption_dataset(iter(TEXTS), TOK, input_length=32, seed=5)
    assert isinstance(streamed, datasets.IterableDataset)
    assert streamed.column_names == ["input_ids", "labels"]
    assert list(streamed) == list(as_list)
    other_seed = span_corruption_dataset(TEXTS, TOK, input_length=32, seed=6)
    assert as_list["labels"] != other_seed["labels"]
    assert span_corruption_dataset(TEXTS, TOK, input_length=32, seed=5)[:] == as_list[:]


def test_literal_sentinel_text_is_not_a_sentinel():
    text = "Literal <extra_id_0> and </s> in an article. " * 3
    ds = span_corruption_dataset([text], TOK, input_length=32, seed=0)
    row = ds[0]
    restored = uncorrupt(row["input_ids"][:-1], row["labels"][:-1], BYT5_SENTINELS)
    assert bytes(t - 3 for t in restored[:20]).decode() == text[:20]
    assert not set(restored) & set(BYT5_SENTINELS)


def test_too_little_text_is_a_clear_error():
    with pytest.raises(LangTransferError, match=r"give 6 tokens and a block needs 284"):
        span_corruption_dataset(["hello"], TOK)
    with pytest.raises(LangTransferError, match="seed must be a non-negative integer"):
        span_corruption_dataset(iter(TEXTS), TOK, seed=-1)  # even a stream: before training
