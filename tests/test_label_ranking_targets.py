"""Label ranking scores each label word as task training taught it: cut to the task's
target length (end token kept), the same cut ``tokenise`` applies to training targets."""

from __future__ import annotations

import pytest
from helpers import build, perturb

from langtransfer.errors import LangTransferError
from langtransfer.inference.evaluate import label_log_likelihoods, pad_rows, rank_labels
from langtransfer.tasks import get_task
from langtransfer.tasks.encoding import cut, load_examples, tokenise

WORDS = list(get_task("checkworthiness").label_words.values())


def setup(tiny):
    base, tok = tiny
    composed = build(base, tok, "ta", task="checkworthiness")
    perturb(composed)
    exs = load_examples("checkworthiness", "en", "test", "fixtures")[:6]
    return composed, tok, list(tokenise(exs, tok, 256, with_labels=False).dataset["input_ids"])


def test_training_targets_and_ranked_candidates_are_cut_alike(tiny):
    _, tok = tiny
    exs = load_examples("checkworthiness", "en", "train", "fixtures")
    length = get_task("checkworthiness").target_length
    labels = tokenise(exs, tok, 256, max_target_length=length).dataset["labels"]
    assert {tuple(cut(tok(w).input_ids, length)) for w in WORDS} == set(map(tuple, labels))
    assert cut(tok("Not checkworthy").input_ids, 4) == tok("Not").input_ids  # end kept


def test_ranking_picks_the_most_likely_cut_label(tiny):
    composed, tok, rows = setup(tiny)
    ranked = rank_labels(composed, tok, rows, WORDS, batch_size=4, max_target_length=4)
    ids, mask = pad_rows(rows, tok.pad_token_id)
    scores = label_log_likelihoods(composed, ids, mask,
                                   [cut(tok(w).input_ids, 4) for w in WORDS])
    assert ranked == [WORDS[k] for k in scores.argmax(-1).tolist()]
    composed.close()


def test_ranking_refuses_label_words_that_are_equal_once_cut(tiny):
    composed, tok, rows = setup(tiny)
    with pytest.raises(LangTransferError, match="not distinct when cut to 4 tokens"):
        rank_labels(composed, tok, rows, ["Checkworthy", "Check it"], max_target_length=4)
    composed.close()
