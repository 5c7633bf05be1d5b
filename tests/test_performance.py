"""The fast paths give the same results as the slow ones (no timing here: see benchmarks/).

- dynamic padding (each batch padded to its longest row) vs padding to a fixed width;
- the library's training loader: length-grouped batches, dynamically padded;
- mixed-language batches (a bank of language representations, one per row) vs running
  each language on its own, for prompts (a gather) and adapters (``BatchSplit``);
- label ranking vs likelihoods computed one example and one label at a time;
- the evaluation batch size does not change predictions.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from helpers import build, make_rep, perturb
from transformers import DataCollatorForSeq2Seq

from langtransfer.base.loading import load_base
from langtransfer.composition.composed import compose
from langtransfer.errors import LangTransferError
from langtransfer.inference.evaluate import (
    evaluate,
    generate_texts,
    label_log_likelihoods,
    pad_rows,
    rank_labels,
)
from langtransfer.representations import load_representation, save_representation
from langtransfer.tasks.encoding import load_examples, tokenise
from langtransfer.training.trainer import (
    RepresentationTrainer,
    TrainSettings,
    seq2seq_collator,
    training_arguments,
)

CODES = ("sk", "de", "cs")
TEXTS = [
    "question: who? context: Bratislava is the capital",
    "ahoj",
    "tag: John Smith lives in Paris",
    "a much longer input that is here to make the padding of the short rows large, really",
    "Premise and hypothesis",
    "xy",
]
TARGETS = ["Bratislava", "svet", "PER: John Smith$$LOC: Paris", "Yes", "Maybe", "No"]


def rows_of(tok, texts):
    return [tok(t).input_ids for t in texts]


def examples(tok):
    feats = [
        {"input_ids": i, "labels": lab}
        for i, lab in zip(rows_of(tok, TEXTS), rows_of(tok, TARGETS), strict=True)
    ]
    return feats


@pytest.mark.parametrize("configuration", ["ta", "stp", "la+ta", "la+stp", "slp+ta", "slp+stp"])
def test_dynamic_padding_gives_the_same_loss_as_padding_to_max(tiny, configuration):
    model, tok = tiny
    composed = build(model, tok, configuration, train="task")
    perturb(composed)
    feats = examples(tok)
    dynamic = seq2seq_collator(tok)(feats)
    width = max(len(f["input_ids"]) for f in feats)
    assert dynamic["input_ids"].shape[1] == width  # padded to the longest row, no more
    padded = DataCollatorForSeq2Seq(
        tok, padding="max_length", max_length=256, label_pad_token_id=-100
    )(feats)
    assert padded["input_ids"].shape[1] == 256
    # The reference also pads targets to a fixed length (its max_answer_length, 30).
    lab = torch.full((len(feats), 30), -100)
    lab[:, : dynamic["labels"].shape[1]] = dynamic["labels"]
    padded["labels"] = lab
    fast = composed(**dynamic).loss
    slow = composed(**padded).loss
    assert abs(fast.item() - slow.item()) < 1e-5
    # ...and the same gradients for the trained representation.
    grads = []
    for b in (dynamic, padded):
        composed.zero_grad()
        composed(**b).loss.backward()
        grads.append({n: p.grad.clone() for n, p in composed.trainable_parameters().items()})
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-5, rtol=1e-4)


def test_training_loader_groups_by_length_and_pads_dynamically(tiny, tmp_path):
    model, tok = tiny
    composed = build(model, tok, "slp+ta", train="task")
    lengths = [3 + (i * 37) % 120 for i in range(400)]
    from datasets import Dataset

    data = Dataset.from_dict({
        "input_ids": [[5] * (n - 1) + [1] for n in lengths],
        "labels": [[7, 1]] * len(lengths),
        "length": lengths,
    })
    settings = TrainSettings(max_steps=1, batch_size=8, eval_batch_size=32, bf16=True)
    args = training_arguments(settings, tmp_path, has_eval=False)
    assert args.group_by_length and args.per_device_eval_batch_size == 32
    assert args.bf16 is True  # --bf16 reaches TrainingArguments
    trainer = RepresentationTrainer(model=composed, args=args, train_dataset=data,
                                    data_collator=seq2seq_collator(tok))
    seen, padding = [], 0
    for b in trainer.get_train_dataloader():
        real = b["attention_mask"].sum(1).tolist()
        assert b["input_ids"].shape[1] == max(real)  # dynamic: the batch's longest row
        seen += real
        padding += max(real) * len(real) - sum(real)
    assert sorted(seen) == sorted(lengths)
    # Length-grouped (transformers' LengthGroupedSampler sorts within mega-batches of up to
    # 50 batches): far less padding than batches of the same size in a random order.
    perm = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    shuffled = [lengths[i] for i in perm]
    random_padding = sum(
        max(shuffled[i : i + 8]) * 8 - sum(shuffled[i : i + 8]) for i in range(0, len(lengths), 8)
    )
    assert padding < 0.5 * random_padding, (padding, random_padding)


# -- mixed-language batches --------------------------------------------------------------


def saved_reps(tmp_path, lang_kind, task_kind):
    """Language reps for CODES and one task rep with perturbed weights, saved and loaded."""
    model, tok = load_base("tiny")
    cfg = {("prompt", "adapter"): "slp+ta", ("prompt", "prompt"): "slp+stp",
           ("adapter", "adapter"): "la+ta", ("adapter", "prompt"): "la+stp"}[lang_kind, task_kind]
    task = make_rep("task", task_kind, model, tok, "qa")
    composed = None
    langs = {}
    for i, code in enumerate(CODES):
        lang = make_rep("language", lang_kind, model, tok, code)
        if composed is None:
            composed = compose(model, cfg, language=lang, task=task)
        else:
            composed.set_language(lang)
        perturb(composed, seed=i)
        save_representation(lang, tmp_path / code, model=model)
        langs[code] = load_representation(tmp_path / code)
    save_representation(task, tmp_path / "task", model=model)
    return cfg, langs, load_representation(tmp_path / "task")


def strip_pad(row, pad=0):
    row = row.tolist()
    while row and row[-1] == pad:
        row.pop()
    return row


@pytest.mark.parametrize(
    ("lang_kind", "task_kind"),
    [("prompt", "adapter"), ("prompt", "prompt"), ("adapter", "adapter"), ("adapter", "prompt")],
)
def test_mixed_language_batch_equals_per_language_runs(tmp_path, lang_kind, task_kind):
    cfg, langs, task = saved_reps(tmp_path, lang_kind, task_kind)
    base, tok = load_base("tiny")
    mixed = compose(base, cfg, language=langs["sk"], task=task)
    mixed.set_languages(langs)
    assert mixed.language_codes == list(CODES) and mixed.configuration == cfg
    row_langs = ["de", "sk", "cs", "sk", "de", "cs"]
    ids = mixed.language_ids(row_langs)
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    labels = tok(TARGETS, padding=True, return_tensors="pt").input_ids
    labels[labels == tok.pad_token_id] = -100
    with torch.no_grad():
        logits = mixed(**enc, labels=labels, language_ids=ids).logits
    gen = mixed.generate(**enc, language_ids=ids, max_new_tokens=6, do_sample=False)

    ref_base, _ = load_base("tiny")
    single = compose(ref_base, cfg, language=langs["sk"], task=task)
    differs = False
    for code in CODES:
        single.set_language(langs[code])
        rows = [i for i, c in enumerate(row_langs) if c == code]
        sub = tok([TEXTS[i] for i in rows], padding=True, return_tensors="pt")
        with torch.no_grad():
            expected = single(**sub, labels=labels[rows]).logits
        torch.testing.assert_close(logits[rows], expected, atol=1e-5, rtol=1e-5)
        expected_gen = single.generate(**sub, max_new_tokens=6, do_sample=False)
        for j, i in enumerate(rows):
            assert strip_pad(gen[i]) == strip_pad(expected_gen[j])
        with torch.no_grad():  # the language matters: another language gives other logits
            other = mixed(
                **sub,
                labels=labels[rows],
                language_ids=mixed.language_ids([CODES[(CODES.index(code) + 1) % 3]] * len(rows)),
            ).logits
        differs |= not torch.allclose(other, expected, atol=1e-3)
    assert differs
    if lang_kind == "adapter":  # the bank's BatchSplit is undone after the call
        assert [str(a) for a in (mixed.base.active_adapters or [])] == (
            [task.name] if task_kind == "adapter" else []
        )


def test_mixed_language_loss_and_gradients_match_per_language_runs(tmp_path):
    cfg, langs, task = saved_reps(tmp_path, "prompt", "adapter")
    base, tok = load_base("tiny")
    composed = compose(base, cfg, language=langs["sk"], task=task, train="task")
    composed.set_languages(langs)
    assert composed.trained_role == "task" and composed.trainable_parameters()
    feats = examples(tok)
    batch = seq2seq_collator(tok)(feats)
    row_langs = ["sk", "de", "cs", "sk", "cs", "de"]
    mixed_loss = composed(**batch, language_ids=composed.language_ids(row_langs)).loss
    mixed_loss.backward()
    grads = {n: p.grad.clone() for n, p in composed.trainable_parameters().items()}
    # The per-row loss sum over token-weighted per-language batches equals the mixed loss.
    composed.zero_grad()
    n_tokens = int((batch["labels"] != -100).sum())
    total = 0.0
    for code in CODES:
        rows = [i for i, c in enumerate(row_langs) if c == code]
        sub = seq2seq_collator(tok)([feats[i] for i in rows])
        k = int((sub["labels"] != -100).sum())
        loss = (
            composed(**sub, language_ids=composed.language_ids([code] * len(rows))).loss
            * k
            / n_tokens
        )
        loss.backward()
        total += loss.item()
    assert total == pytest.approx(mixed_loss.item(), rel=1e-5)
    for n, g in grads.items():
        torch.testing.assert_close(composed.trainable_parameters()[n].grad, g, atol=1e-5, rtol=1e-4)


def test_language_bank_errors_and_no_restacking(tmp_path):
    _, langs, task = saved_reps(tmp_path, "prompt", "adapter")
    base, tok = load_base("tiny")
    composed = compose(base, "slp+ta", language=langs["sk"], task=task)
    composed.set_languages(langs)
    enc = tok(["ahoj", "hallo"], padding=True, return_tensors="pt")
    with pytest.raises(LangTransferError, match="pass language_ids"):
        composed(**enc)
    with pytest.raises(LangTransferError, match="must lie in 0..2"):
        composed(**enc, language_ids=torch.tensor([0, 3]))
    with pytest.raises(LangTransferError, match="one entry per row"):
        composed(**enc, language_ids=torch.tensor([0]))
    # A frozen bank is stacked once and reused; changing a prompt's weights restacks it.
    first = composed._bank_embeddings()
    assert composed._bank_embeddings() is first
    with torch.no_grad():
        langs["de"].weights.embedding.add_(1.0)
    again = composed._bank_embeddings()
    assert again is not first and torch.equal(again[1], langs["de"].weights.embedding)
    # Dropping the bank brings back the plain single-language model.
    composed.set_languages(None)
    assert composed.language_codes == [] and composed.configuration == "ta"
    xx = make_rep("language", "prompt", base, tok, "xx")
    mixed_len = dataclasses.replace(xx, weights=type(xx.weights)(3, xx.weights.dim), id="")
    with pytest.raises(LangTransferError, match="same length"):
        composed.set_languages({"sk": langs["sk"], "xx": mixed_len})


# -- label ranking and evaluation batch size -------------------------------------------------


def nli_setup(tiny):
    base, tok = tiny
    composed = build(base, tok, "slp+ta")
    perturb(composed)
    exs = load_examples("nli", "en", "test", "fixtures")[:6]
    rows = list(tokenise(exs, tok, 256, with_labels=False).dataset["input_ids"])
    return composed, tok, rows


def test_label_ranking_picks_the_most_likely_label(tiny):
    composed, tok, rows = nli_setup(tiny)
    words = ["Yes", "Maybe", "No"]
    ranked = rank_labels(composed, tok, rows, words, batch_size=4)
    ids, mask = pad_rows(rows, tok.pad_token_id)
    batched = label_log_likelihoods(composed, ids, mask, [tok(w).input_ids for w in words])
    for i, row in enumerate(rows):
        scores = []
        for w in words:  # one example, one label, through the plain forward
            lab = torch.tensor([tok(w).input_ids])
            with torch.no_grad():
                logits = composed(torch.tensor([row]), labels=lab).logits
            scores.append(logits.log_softmax(-1).gather(-1, lab.unsqueeze(-1)).sum().item())
        assert ranked[i] == words[max(range(3), key=scores.__getitem__)]
        torch.testing.assert_close(batched[i], torch.tensor(scores), atol=1e-4, rtol=1e-5)
    assert set(ranked) <= set(words)


def test_evaluation_batch_size_does_not_change_predictions(tiny):
    composed, tok, rows = nli_setup(tiny)
    outs = [generate_texts(composed, tok, rows, batch_size=b, max_new_tokens=4) for b in (1, 3, 64)]
    assert outs[0] == outs[1] == outs[2]
    ranks = [
        rank_labels(composed, tok, rows, ["Yes", "No", "Maybe"], batch_size=b) for b in (1, 64)
    ]
    assert ranks[0] == ranks[1]


def test_evaluate_rank_scoring_end_to_end(tmp_path):
    base, tok = load_base("tiny")
    lang = make_rep("language", "prompt", base, tok, "en")
    task = make_rep("task", "adapter", base, tok, "nli")
    composed = compose(base, "slp+ta", language=lang, task=task)
    perturb(composed)
    composed.save("language", tmp_path / "lang")
    composed.save("task", tmp_path / "task")
    records = {}
    for scoring, bs in (("rank", 2), ("rank", 64), ("generate", 64)):
        out = tmp_path / f"{scoring}{bs}"
        records[scoring, bs] = evaluate(
            model="tiny", task="nli", language="en", language_rep=tmp_path / "lang",
            task_rep=tmp_path / "task", data="fixtures", output=out, batch_size=bs,
            scoring=scoring, show_progress=False,
        )
    rank = records["rank", 2]
    assert rank["scoring"] == "rank" and rank["n_unparseable"] == 0
    assert rank["metrics"] == records["rank", 64]["metrics"]
    preds = [
        json.loads(line)
        for line in (tmp_path / "rank2" / "predictions.jsonl").read_text().splitlines()
    ]
    assert {p["prediction"] for p in preds} <= {"Yes", "No", "Maybe"}
    assert all(p["parsed"] is not None for p in preds)
    assert records["generate", 64]["scoring"] == "generate"
    with pytest.raises(LangTransferError, match="needs a classification task"):
        evaluate(model="tiny", task="qa", language="en", data="fixtures", scoring="rank",
                 show_progress=False)
