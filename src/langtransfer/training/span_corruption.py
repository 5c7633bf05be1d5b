"""T5 span corruption, the objective language representations are trained with.

A raw block of tokens is split into alternating non-noise and noise spans (noise density
0.15, mean noise span length 3 in the paper). The encoder input keeps the non-noise
tokens and puts one sentinel in place of each noise span; the target lists each sentinel
followed by the tokens it replaced. Both end in EOS::

    raw      A B C D E F G H
    input    A <s0> D E <s1> H </s>
    target   <s0> B C <s1> F G </s>

Texts are concatenated, each followed by EOS, and cut into raw blocks whose length is
chosen (:func:`compute_input_and_target_lengths`) so that the corrupted input is exactly
``input_length`` tokens: no padding and no wasted attention, unlike padding one line per
example.

Masks are drawn afresh for every pass over the text, as the reference's collator draws
them for every batch: block ``i`` of pass ``p`` is corrupted with the RNG of
``(seed, i, p)`` (:func:`block_rng`), so a block read again in a later pass (a small
corpus is read many times in 100k steps) gets new masks, and a resumed run, which
re-enters the same pass, reproduces them. Training sets
(``span_corruption_dataset(..., training=True)``) corrupt each block when it is read and
learn the pass from the Trainer's ``set_epoch``.

Sentinels are looked up by *name* (``<extra_id_0>``, ``<extra_id_1>``, ...), never by
arithmetic on the vocabulary size: mT5's sentencepiece numbers them downwards from the top
of the vocabulary, ByT5 upwards from 259, and the name is what both agree on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np
import torch.utils.data

from langtransfer.errors import LangTransferError

NOISE_DENSITY = 0.15
MEAN_NOISE_SPAN_LENGTH = 3.0
INPUT_LENGTH = 256


def _check_noise(noise_density: float, mean_noise_span_length: float) -> None:
    if not 0.0 < noise_density < 1.0:
        raise ValueError(f"noise_density must be in (0, 1), got {noise_density!r}")
    if not mean_noise_span_length >= 1.0:
        raise ValueError(f"mean_noise_span_length must be >= 1, got {mean_noise_span_length!r}")


def noise_counts(
    length: int,
    noise_density: float = NOISE_DENSITY,
    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
) -> tuple[int, int]:
    """Return ``(noise tokens, noise spans)`` for a raw block of ``length`` tokens.

    T5's rule, with its guards against degenerate blocks: at least one noise and one
    non-noise token, at least one span. Both the length computation and the mask use this
    one function, so the corrupted lengths always come out as computed.
    """
    _check_noise(noise_density, mean_noise_span_length)
    if length < 2:
        raise ValueError(f"a block needs at least 2 tokens to corrupt, got {length}")
    num_noise = min(max(round(length * noise_density), 1), length - 1)
    num_spans = max(round(min(num_noise, length - num_noise) / mean_noise_span_length), 1)
    return num_noise, num_spans


def corrupted_lengths(
    raw_length: int,
    noise_density: float = NOISE_DENSITY,
    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
) -> tuple[int, int]:
    """``(input length, target length)``, EOS included, of a corrupted raw block."""
    num_noise, num_spans = noise_counts(raw_length, noise_density, mean_noise_span_length)
    return raw_length - num_noise + num_spans + 1, num_noise + num_spans + 1


def compute_input_and_target_lengths(
    input_length: int = INPUT_LENGTH,
    noise_density: float = NOISE_DENSITY,
    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
) -> tuple[int, int]:
    """Return ``(raw length, target length)`` for a corrupted input of ``input_length``.

    The raw length is the largest block whose corrupted input, EOS included, is exactly
    ``input_length`` tokens (256 -> 284 raw tokens, 58 target tokens at the paper's
    settings). The corrupted length never decreases as the raw length grows, so a binary
    search finds it.
    """
    _check_noise(noise_density, mean_noise_span_length)
    if isinstance(input_length, bool) or not isinstance(input_length, int) or input_length < 3:
        raise ValueError(
            f"input_length must be an integer >= 3 (a kept token, a sentinel and EOS), "
            f"got {input_length!r}"
        )

    def inputs(raw: int) -> int:
        return corrupted_lengths(raw, noise_density, mean_noise_span_length)[0]

    lo = 2  # inputs(2) == 3 <= input_length
    hi = max(input_length, 4)
    while inputs(hi) <= input_length:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # invariant: inputs(lo) <= input_length < inputs(hi)
        mid = (lo + hi) // 2
        if inputs(mid) <= input_length:
            lo = mid
        else:
            hi = mid
    if inputs(lo) != input_length:
        raise ValueError(
            f"no raw block length corrupts to exactly {input_length} tokens at noise "
            f"density {noise_density} and mean span {mean_noise_span_length}; "
            f"use {inputs(lo)} or {inputs(lo + 1)}"
        )
    return lo, corrupted_lengths(lo, noise_density, mean_noise_span_length)[1]


def block_rng(seed: int, block: int, pass_index: int = 0) -> np.random.Generator:
    """The RNG that corrupts raw block ``block`` in pass ``pass_index`` over the text:
    ``(seed, block)`` in the first pass (as before passes were counted, so a run that
    never reads a block twice is unchanged) and ``(seed, block, pass)`` after it."""
    key = [seed, block] if pass_index == 0 else [seed, block, pass_index]
    return np.random.default_rng(key)


def _random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``num_items`` into ``num_segments`` positive lengths, uniformly at random."""
    cuts = np.sort(rng.choice(num_items - 1, size=num_segments - 1, replace=False)) + 1
    return np.diff(np.concatenate([[0], cuts, [num_items]]))


def random_spans_noise_mask(
    length: int,
    rng: np.random.Generator,
    noise_density: float = NOISE_DENSITY,
    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
) -> np.ndarray:
    """Boolean mask of noise positions: alternating spans, starting with non-noise."""
    num_noise, num_spans = noise_counts(length, noise_density, mean_noise_span_length)
    noise = _random_segmentation(num_noise, num_spans, rng)
    keep = _random_segmentation(length - num_noise, num_spans, rng)
    span_lengths = np.stack([keep, noise], axis=1).reshape(-1)
    is_noise = np.repeat(np.tile([False, True], num_spans), span_lengths)
    return is_noise


def _replace_spans(tokens: np.ndarray, mask: np.ndarray, sentinels: np.ndarray) -> np.ndarray:
    """Replace each run of masked tokens by the next sentinel, dropping the rest of the run."""
    starts = mask & ~np.concatenate([[False], mask[:-1]])
    out = tokens.copy()
    out[starts] = sentinels[np.cumsum(starts)[starts] - 1]
    return out[~mask | starts]


def corrupt(
    tokens: Sequence[int] | np.ndarray,
    rng: np.random.Generator,
    *,
    sentinel_ids: Sequence[int],
    noise_density: float = NOISE_DENSITY,
    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
    eos_id: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Span-corrupt one raw block; return ``(inputs, targets)`` as int64 arrays.

    ``sentinel_ids[i]`` marks the i-th noise span in both. With ``eos_id`` both outputs
    end in it. Deterministic given ``rng``'s state. Raises ``ValueError`` when a token is
    itself a sentinel (the targets would be ambiguous) or there are too few sentinels.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be one sequence, got shape {tokens.shape}")
    sentinels = np.asarray(sentinel_ids, dtype=np.int64)
    num_spans = noise_counts(len(tokens), noise_density, mean_noise_span_length)[1]
    if num_spans > len(sentinels):
        raise ValueError(
            f"{len(tokens)} tokens make {num_spans} noise spans but only {len(sentinels)} "
            "sentinel ids were given; use shorter blocks"
        )
    clash = np.isin(tokens, sentinels)
    if clash.any():
        raise ValueError(
            f"token {int(tokens[clash][0])} at position {int(np.argmax(clash))} is a "
            "sentinel id; sentinels must not occur in the text"
        )
    mask = random_spans_noise_mask(len(tokens), rng, noise_density, mean_noise_span_length)
    inputs = _replace_spans(tokens, mask, sentinels)
    targets = _replace_spans(tokens, ~mask, sentinels)
    if eos_id is not None:
        inputs = np.append(inputs, np.int64(eos_id))
        targets = np.append(targets, np.int64(eos_id))
    return inputs, targets


def sentinel_ids(tokenizer: Any, count: int | None = None) -> list[int]:
    """Ids of ``<extra_id_0>``, ``<extra_id_1>``, ... in that order, looked up by name.

    Returns every consecutive one the tokenizer has, or the first ``count``.
    """
    vocab = tokenizer.get_vocab()
    ids: list[int] = []
    while (count is None or len(ids) < count) and f"<extra_id_{len(ids)}>" in vocab:
        ids.append(int(vocab[f"<extra_id_{len(ids)}>"]))
    if not ids or (count is not None and len(ids) < count):
        raise LangTransferError(
            f"tokenizer {type(tokenizer).__name__} has {len(ids)} sentinel tokens "
            f"(<extra_id_0>, <extra_id_1>, ...) but span corruption needs "
            f"{count or 'at least one'}; use a T5-family tokenizer or shorter sequences"
        )
    return ids


@dataclass(frozen=True)
class SpanCorruption:
    """The objective at fixed settings: lengths computed once, ids from the tokenizer."""

    sentinel_ids: tuple[int, ...]
    eos_id: int
    input_length: int = INPUT_LENGTH
    noise_density: float = NOISE_DENSITY
    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH
    raw_length: int = field(init=False)
    target_length: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sentinel_ids", tuple(int(i) for i in self.sentinel_ids))
        try:
            raw, target = compute_input_and_target_lengths(
                self.input_length, self.noise_density, self.mean_noise_span_length
            )
            spans = noise_counts(raw, self.noise_density, self.mean_noise_span_length)[1]
        except ValueError as e:
            raise LangTransferError(f"span corruption: {e}") from e
        if len(set(self.sentinel_ids)) != len(self.sentinel_ids):
            raise LangTransferError("span corruption: sentinel ids must be distinct")
        if self.eos_id in self.sentinel_ids:
            raise LangTransferError(f"span corruption: EOS id {self.eos_id} is a sentinel")
        if spans > len(self.sentinel_ids):
            raise LangTransferError(
                f"span corruption: input length {self.input_length} makes {spans} noise "
                f"spans but the tokenizer has only {len(self.sentinel_ids)} sentinels; "
                "use a shorter input length"
            )
        object.__setattr__(self, "raw_length", raw)
        object.__setattr__(self, "target_length", target)

    @classmethod
    def for_tokenizer(
        cls,
        tokenizer: Any,
        input_length: int = INPUT_LENGTH,
        noise_density: float = NOISE_DENSITY,
        mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
    ) -> SpanCorruption:
        """Take the sentinels and EOS from a T5-family tokenizer."""
        if tokenizer.eos_token_id is None:
            raise LangTransferError(f"tokenizer {type(tokenizer).__name__} has no EOS token")
        return cls(
            tuple(sentinel_ids(tokenizer)),
            int(tokenizer.eos_token_id),
            input_length,
            noise_density,
            mean_noise_span_length,
        )

    def corrupt(
        self, block: Sequence[int] | np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Corrupt one raw block of exactly ``raw_length`` tokens."""
        if len(block) != self.raw_length:
            raise ValueError(f"block has {len(block)} tokens, expected {self.raw_length}")
        return corrupt(
            block,
            rng,
            sentinel_ids=self.sentinel_ids,
            noise_density=self.noise_density,
            mean_noise_span_length=self.mean_noise_span_length,
            eos_id=self.eos_id,
        )

    def documents(self, texts: Iterable[str], tokenizer: Any) -> Iterator[np.ndarray]:
        """Each non-empty text's token ids followed by EOS, with no sentinel among them.

        A literal ``<extra_id_3>`` in the text is tokenised as characters
        (``split_special_tokens``), and any sentinel id a tokenizer still produces is
        dropped, so text never collides with a sentinel.
        """
        banned = np.asarray(self.sentinel_ids, dtype=np.int64)
        for text in texts:
            if not text:
                continue
            ids = tokenizer(
                text, add_special_tokens=False, split_special_tokens=True, verbose=False
            )["input_ids"]
            ids = np.asarray(ids, dtype=np.int64)
            yield np.append(ids[~np.isin(ids, banned)], np.int64(self.eos_id))

    def blocks(self, texts: Iterable[str], tokenizer: Any) -> Iterator[np.ndarray]:
        """Concatenate :meth:`documents` and cut into raw blocks; drop the last partial one.

        Dropping the remainder is T5's choice: padding it would train on padding.
        """
        buf = np.empty(0, dtype=np.int64)
        for doc in self.documents(texts, tokenizer):
            buf = np.concatenate([buf, doc])
            n_full = len(buf) // self.raw_length
            for i in range(n_full):
                yield buf[i * self.raw_length : (i + 1) * self.raw_length]
            buf = buf[n_full * self.raw_length :]

    def example(self, block: np.ndarray, seed: int, index: int, pass_index: int = 0
                ) -> dict[str, list[int]]:
        """``{"input_ids", "labels"}`` of raw block number ``index`` in pass ``pass_index``
        (:func:`block_rng`)."""
        inputs, targets = self.corrupt(block, block_rng(seed, index, pass_index))
        return {"input_ids": inputs.tolist(), "labels": targets.tolist()}

    def examples(
        self, texts: Iterable[str], tokenizer: Any, seed: int = 0, pass_index: int = 0
    ) -> Iterator[dict[str, list[int]]]:
        """``{"input_ids", "labels"}`` per raw block; block ``i`` uses
        ``block_rng(seed, i, pass_index)``.

        Seeding per block makes an example independent of batching, workers and where a
        resumed run starts.
        """
        _check_seed(seed)
        for i, block in enumerate(self.blocks(texts, tokenizer)):
            yield self.example(block, seed, i, pass_index)


class FreshMaskBlocks(torch.utils.data.Dataset):
    """Raw blocks, span-corrupted when read with :func:`block_rng` of (seed, block, pass):
    a map-style training set whose masks change from one pass (the Trainer's epoch, told
    by :meth:`set_epoch`) to the next and are the same within one."""

    def __init__(self, objective: SpanCorruption, blocks: np.ndarray, seed: int):
        self.objective, self.blocks, self.seed = objective, blocks, seed
        self.pass_index = 0

    def set_epoch(self, epoch: int) -> None:
        self.pass_index = int(epoch)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.objective.example(self.blocks[index], self.seed, int(index), self.pass_index)


class FreshMaskStream(torch.utils.data.IterableDataset):
    """A stream of ``{"block", "index"}`` rows (a ``datasets.IterableDataset``, shuffled
    or not) span-corrupted as they are read, in the pass :meth:`set_epoch` names (which
    also re-seeds the stream's shuffle, as ``datasets`` does per epoch)."""

    def __init__(self, objective: SpanCorruption, blocks: Any, seed: int):
        self.objective, self.blocks, self.seed = objective, blocks, seed
        self.pass_index = 0

    def shuffle(self, *, seed: int, buffer_size: int) -> FreshMaskStream:
        """The same stream with its blocks shuffled in a buffer (``datasets``' shuffle)."""
        return FreshMaskStream(self.objective,
                               self.blocks.shuffle(seed=seed, buffer_size=buffer_size),
                               self.seed)

    def set_epoch(self, epoch: int) -> None:
        self.pass_index = int(epoch)
        self.blocks.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, list[int]]]:
        for row in self.blocks:
            block = np.asarray(row["block"], dtype=np.int64)
            yield self.objective.example(block, self.seed, int(row["index"]), self.pass_index)


def _check_seed(seed: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise LangTransferError(f"seed must be a non-negative integer, got {seed!r}")


def span_corruption_dataset(
    texts: Iterable[str],
    tokenizer: Any,
    *,
    input_length: int = INPUT_LENGTH,
    noise_density: float = NOISE_DENSITY,
    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
    seed: int = 0,
    streaming: bool | None = None,
    training: bool = False,
):
    """Texts -> a ``datasets`` dataset of span-corrupted ``{"input_ids", "labels"}``.

    Every ``input_ids`` has ``input_length`` tokens and every ``labels`` the computed
    target length, so the default collator stacks them without padding. A list or tuple
    of texts gives an in-memory :class:`datasets.Dataset`; any other iterable (a stream)
    gives a :class:`datasets.IterableDataset`, re-iterated each epoch. ``streaming``
    overrides the choice.

    ``training``: a training set whose masks are drawn afresh in every pass
    (:class:`FreshMaskBlocks` for a list, :class:`FreshMaskStream` for a stream; the
    Trainer's ``set_epoch`` names the pass). Without it every pass reads the first
    pass's masks (fine for a validation set, which is read once per evaluation).
    """
    import datasets

    _check_seed(seed)
    objective = SpanCorruption.for_tokenizer(
        tokenizer, input_length, noise_density, mean_noise_span_length
    )
    ids = datasets.Sequence(datasets.Value("int64"))
    features = datasets.Features({"input_ids": ids, "labels": ids})
    if streaming is None:
        streaming = not isinstance(texts, (list, tuple))
    if training and streaming:

        def raw_blocks():
            for i, block in enumerate(objective.blocks(texts, tokenizer)):
                yield {"block": block.tolist(), "index": i}

        raw = datasets.Features({"block": ids, "index": datasets.Value("int64")})
        return FreshMaskStream(
            objective, datasets.IterableDataset.from_generator(raw_blocks, features=raw), seed
        )
    if training:
        texts = list(texts)
        blocks = list(objective.blocks(texts, tokenizer))
        if not blocks:
            _too_short(objective, texts, tokenizer, input_length)
        return FreshMaskBlocks(objective, np.stack(blocks), seed)
    if streaming:

        def generate():
            yield from objective.examples(texts, tokenizer, seed)

        return datasets.IterableDataset.from_generator(generate, features=features)

    texts = list(texts)
    rows = list(objective.examples(texts, tokenizer, seed))
    if not rows:
        _too_short(objective, texts, tokenizer, input_length)
    return datasets.Dataset.from_dict(
        {"input_ids": [r["input_ids"] for r in rows], "labels": [r["labels"] for r in rows]},
        features=features,
    )


def _too_short(objective: SpanCorruption, texts: list[str], tokenizer: Any,
               input_length: int) -> NoReturn:
    n_tokens = sum(len(doc) for doc in objective.documents(texts, tokenizer))
    raise LangTransferError(
        f"the texts are too short for one training example: they give {n_tokens} "
        f"tokens and a block needs {objective.raw_length} (for input length "
        f"{input_length}); add text or lower the input length"
    )
