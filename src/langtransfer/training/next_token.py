"""Next-token language modelling, the objective language representations of a causal
base are trained with (span corruption,
:mod:`langtransfer.training.span_corruption`, is for seq2seq).

The same unlabelled text as span corruption: each document's tokens followed by EOS,
concatenated and cut into packed blocks of exactly ``sequence_length`` tokens (the last
partial block is dropped, as T5 does: padding it would train on padding). A block is one
training row in the shape every batch has here, an input and a target: the target is the
block, scored token by token, and the input is the tokenizer's BOS when it has one; with
no BOS (the byte tokenizer) the block's first token is the input and the rest the target.
So every token the base can be asked to predict is in the loss, and a soft language
prompt in front of the block is context for all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from langtransfer.errors import LangTransferError


def documents(texts: Iterable[str], tokenizer: Any, eos_id: int) -> Iterator[np.ndarray]:
    """Each non-empty text's token ids (no specials; special-token text is split into
    characters) followed by EOS."""
    for text in texts:
        if not text:
            continue
        ids = tokenizer(text, add_special_tokens=False, split_special_tokens=True,
                        verbose=False)["input_ids"]
        yield np.append(np.asarray(ids, dtype=np.int64), np.int64(eos_id))


def packed_blocks(
    texts: Iterable[str], tokenizer: Any, sequence_length: int, eos_id: int
) -> Iterator[np.ndarray]:
    """:func:`documents` concatenated and cut into blocks of ``sequence_length`` tokens."""
    buf = np.empty(0, dtype=np.int64)
    for doc in documents(texts, tokenizer, eos_id):
        buf = np.concatenate([buf, doc])
        n_full = len(buf) // sequence_length
        for i in range(n_full):
            yield buf[i * sequence_length : (i + 1) * sequence_length]
        buf = buf[n_full * sequence_length :]


def block_rows(
    texts: Iterable[str], tokenizer: Any, sequence_length: int
) -> Iterator[dict[str, list[int]]]:
    """``{"input_ids", "labels"}`` per packed block (module docstring)."""
    if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or (
        sequence_length < 2
    ):
        raise LangTransferError(f"sequence length must be an integer >= 2, got {sequence_length!r}")
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    if eos is None:
        raise LangTransferError(
            f"tokenizer {type(tokenizer).__name__} has no EOS token to separate documents"
        )
    for block in packed_blocks(texts, tokenizer, sequence_length, int(eos)):
        ids = block.tolist()
        if bos is not None:
            yield {"input_ids": [int(bos)], "labels": ids}
        else:
            yield {"input_ids": ids[:1], "labels": ids[1:]}


def next_token_dataset(
    texts: Iterable[str],
    tokenizer: Any,
    *,
    input_length: int = 256,
    seed: int = 0,
    streaming: bool | None = None,
    training: bool = False,
):
    """Texts -> a ``datasets`` dataset of packed next-token blocks of ``input_length``
    tokens. The same call shape as
:func:`~langtransfer.training.span_corruption.span_corruption_dataset`
    (a list gives a :class:`datasets.Dataset`, another iterable a stream); ``seed`` and
    ``training`` are accepted for that symmetry: nothing here is random (the Trainer
    shuffles), so every pass reads the same blocks."""
    import datasets

    del seed, training
    ids = datasets.Sequence(datasets.Value("int64"))
    features = datasets.Features({"input_ids": ids, "labels": ids})
    if streaming is None:
        streaming = not isinstance(texts, (list, tuple))
    if streaming:

        def generate():
            yield from block_rows(texts, tokenizer, input_length)

        return datasets.IterableDataset.from_generator(generate, features=features)
    texts = list(texts)
    rows = list(block_rows(texts, tokenizer, input_length))
    if not rows:
        n_tokens = sum(len(d) for d in documents(texts, tokenizer, int(tokenizer.eos_token_id)))
        raise LangTransferError(
            f"the texts are too short for one training block: they give {n_tokens} tokens "
            f"and a block needs {input_length}; add text or lower the sequence length"
        )
    return datasets.Dataset.from_dict(
        {"input_ids": [r["input_ids"] for r in rows], "labels": [r["labels"] for r in rows]},
        features=features,
    )
