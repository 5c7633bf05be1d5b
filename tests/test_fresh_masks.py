"""Span corruption draws new masks in every pass over the text (issue 22 item 2), as the
reference's collator draws them for every batch, and deterministically from (seed, pass,
block), so a run resumed inside a later pass reproduces them. Tiny model, a corpus small
enough that a few dozen steps read it twice."""

from __future__ import annotations

import shutil
from itertools import islice

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from langtransfer.base.loading import load_base
from langtransfer.representations import read_manifest
from langtransfer.training import span_corruption
from langtransfer.training.corpora import load_corpus
from langtransfer.training.language import train_language
from langtransfer.training.span_corruption import (
    FreshMaskBlocks,
    SpanCorruption,
    block_rng,
    sentinel_ids,
    span_corruption_dataset,
)
from langtransfer.training.trainer import default_settings

SEQ, SEED = 32, 5
TEXTS = [f"Sentence number {i} of a small corpus, read many times over." for i in range(12)]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def tok():
    return load_base("tiny")[1]


def uncorrupt(inputs: list[int], targets: list[int], sentinels: set[int]) -> list[int]:
    """The raw block back from a corrupted (input, target) pair: each sentinel of the
    input replaced by the tokens that follow it in the target (written here, not the
    project's code)."""
    spans: dict[int, list[int]] = {}
    current = None
    for t in targets[:-1]:  # the last is EOS
        if t in sentinels:
            current = t
            spans[t] = []
        else:
            spans[current].append(t)
    raw: list[int] = []
    for t in inputs[:-1]:
        raw.extend(spans[t] if t in sentinels else [t])
    return raw


def test_a_block_read_in_a_later_pass_gets_new_masks_and_the_same_pass_the_same(tok):
    ds = span_corruption_dataset(TEXTS, tok, input_length=SEQ, seed=SEED, training=True)
    assert isinstance(ds, FreshMaskBlocks) and len(ds) >= 3
    sentinels = set(sentinel_ids(tok))
    first = [ds[i] for i in range(len(ds))]
    # pass 0 is what the corpus always gave: block i corrupted with the rng (seed, i)
    plain = span_corruption_dataset(TEXTS, tok, input_length=SEQ, seed=SEED)
    assert [r["input_ids"] for r in first] == plain["input_ids"]
    ds.set_epoch(1)
    second = [ds[i] for i in range(len(ds))]
    ds.set_epoch(0)
    assert [ds[i] for i in range(len(ds))] == first  # a pass re-entered: the same masks
    for a, b in zip(first, second, strict=True):
        # the same raw block...
        assert uncorrupt(a["input_ids"], a["labels"], sentinels) == uncorrupt(
            b["input_ids"], b["labels"], sentinels)
        assert len(a["input_ids"]) == len(b["input_ids"]) == SEQ  # ...the same lengths
    # ...and other masks (a block may rarely draw the same ones; most do not)
    changed = sum(a["input_ids"] != b["input_ids"] for a, b in zip(first, second, strict=True))
    assert changed >= len(ds) - 1
    # the pass-1 masks are those of the rng (seed, block, 1), computed here directly
    objective = SpanCorruption.for_tokenizer(tok, SEQ)
    blocks = list(objective.blocks(TEXTS, tok))
    inputs, _ = objective.corrupt(blocks[2], np.random.default_rng([SEED, 2, 1]))
    assert second[2]["input_ids"] == inputs.tolist()
    assert block_rng(SEED, 2, 1).random() == np.random.default_rng([SEED, 2, 1]).random()


def test_a_stream_gets_new_masks_per_pass_and_its_shuffle_too(tok):
    sentinels = set(sentinel_ids(tok))
    stream = span_corruption_dataset(TEXTS, tok, input_length=SEQ, seed=SEED, streaming=True,
                                     training=True).shuffle(seed=1, buffer_size=4)
    assert isinstance(stream, span_corruption.FreshMaskStream)

    def read(epoch: int) -> dict[tuple[int, ...], list[int]]:
        stream.set_epoch(epoch)
        return {tuple(uncorrupt(r["input_ids"], r["labels"], sentinels)): r["input_ids"]
                for r in stream}

    pass0, pass1 = read(0), read(1)
    assert pass0.keys() == pass1.keys() and len(pass0) >= 3  # the same blocks
    assert sum(pass0[k] != pass1[k] for k in pass0) >= len(pass0) - 1  # new masks
    assert read(1) == pass1  # deterministic per pass


def test_training_reads_the_second_pass_with_new_masks_and_a_resume_there_reproduces_it(
    tmp_path, monkeypatch
):
    """Through the Trainer: the sk fixture at 64 tokens gives fewer blocks than 24 steps of
    4 read, so the run reads them twice; the second pass sees other masks. A run resumed
    from a checkpoint inside the second pass ends with the uninterrupted run's weights."""
    seen: list[tuple[int, int, list[int]]] = []
    real = FreshMaskBlocks.__getitem__

    def spy(self, index):
        row = real(self, index)
        seen.append((self.pass_index, int(index), row["input_ids"]))
        return row

    monkeypatch.setattr(FreshMaskBlocks, "__getitem__", spy)
    settings = default_settings("prompt", "language", max_steps=24, batch_size=4,
                                save_steps=4, logging_steps=1000, seed=SEED)
    common = dict(model="tiny", language="sk", kind="prompt", corpus="fixture",
                  settings=settings, sequence_length=64, validation_size=3,
                  show_progress=False)
    corpus = load_corpus("fixture", "sk", seed=SEED, validation_size=3)
    n_blocks = len(span_corruption_dataset(corpus.train, load_base("tiny")[1],
                                           input_length=64, training=True))
    assert 16 * 4 <= n_blocks < 20 * 4  # a pass is 16 or more batches, step 20 is pass two
    full = train_language(output=tmp_path / "full", checkpoint_dir=tmp_path / "ckpt", **common)
    assert {p for p, _, _ in seen} == {0, 1}  # 96 reads of fewer blocks: two passes
    assert read_manifest(full)["training"]["mask_draws"] == "per_pass"
    by_pass: dict[int, dict[int, list[int]]] = {0: {}, 1: {}}
    for p, i, ids in seen:
        by_pass[p][i] = ids
    again = set(by_pass[0]) & set(by_pass[1])
    assert len(again) >= 16
    assert sum(by_pass[0][i] != by_pass[1][i] for i in again) >= len(again) - 1

    # resume from step 20 (the second pass: 16 batches per pass)
    resumed_ckpt = tmp_path / "resume-ckpt"
    resumed_ckpt.mkdir()
    shutil.copytree(tmp_path / "ckpt" / "checkpoint-20", resumed_ckpt / "checkpoint-20")
    seen.clear()
    out = train_language(output=tmp_path / "resumed", checkpoint_dir=resumed_ckpt, resume=True,
                         **common)
    assert read_manifest(out)["training"]["resumed_from"] == "checkpoint-20"
    assert {p for p, _, _ in seen} == {1}  # it re-entered the second pass
    for p, i, ids in seen:
        assert by_pass[p][i] == ids
    assert torch.equal(load_file(out / "prompt.safetensors")["embedding"],
                       load_file(full / "prompt.safetensors")["embedding"])


def test_the_stream_test_helper_reads_blocks_back(tok):
    """``uncorrupt`` (the tests' own reading) gives back the raw block."""
    objective = SpanCorruption.for_tokenizer(tok, SEQ)
    block = next(iter(objective.blocks(TEXTS, tok)))
    row = objective.example(block, SEED, 0)
    assert uncorrupt(row["input_ids"], row["labels"], set(sentinel_ids(tok))) == block.tolist()
    assert list(islice(objective.examples(TEXTS, tok, SEED), 1))[0] == row
