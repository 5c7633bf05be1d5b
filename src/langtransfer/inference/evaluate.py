"""Zero-shot evaluation: generate for a test split, parse, score, write the files.

``evaluate`` composes the base model with the *target* language's representation and
the task representation trained on the source, generates for every example in
length-sorted batches (each padded to its own longest row), parses the generations with
the task's parser and scores them with the task's metric (shared with
``langtransfer score``).

Classification tasks can instead be scored by **label ranking** (``scoring="rank"``):
the log-likelihood of each label word (with its end token, cut to the task's target
length as training cuts targets) is computed (a seq2seq base: the encoder run once per
batch and one decoder pass per label; a causal base: the prompts and input run once and
each label's tokens on a copy of their KV cache), and the most likely label is the
prediction. Ranking never yields an unparseable prediction. The evaluation batch size
is independent of the training batch size; batches are length-sorted and padded to
their own longest row for both kinds of scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from langtransfer.base.families import target_log_likelihood
from langtransfer.base.loading import fingerprint
from langtransfer.composition.composed import ComposedModel, configuration_name
from langtransfer.composition.loaded_base import LoadedBase
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.inference.scoring import metrics_record, score_predictions
from langtransfer.io import write_json, write_jsonl
from langtransfer.languages import get_language
from langtransfer.options import RANK_SCORING_REVISION, REFERENCE_MAX_NEW_TOKENS, SCORING
from langtransfer.profiles import LONG_INPUTS, check_choice, get_profile
from langtransfer.representations.base import Representation
from langtransfer.representations.fit import check_fit
from langtransfer.tasks import get_task
from langtransfer.tasks.encoding import cut, load_task_data, tokenise
from langtransfer.tasks.sources import progress_bars


def _summary(rep: Representation | None, path: str | Path | None) -> dict[str, Any] | None:
    if rep is None:
        return None
    return {
        "kind": rep.kind,
        "role": rep.role,
        "language": rep.language,
        "task": rep.task,
        "path": str(path),
        "settings_hash": rep.settings_hash,
        "base_model": rep.base_model,
        "steps": rep.training.get("steps"),
        # How much text a language representation saw: the corpus-size axis's x value.
        **({k: rep.training.get(k) for k in ("train_documents", "train_tokens")}
           if rep.role == "language" else {}),
    }


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Row indices in batches of ``batch_size``, shortest rows first (so padding is small)."""
    if batch_size < 1:
        raise LangTransferError(f"batch size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def pad_rows(
    rows: Sequence[Sequence[int]], pad_id: int, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows -> (ids, attention mask), right-padded to the longest row (or ``width``)."""
    width = width or max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        ids[j, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[j, : len(r)] = 1
    return ids, mask


def _row_ids(ids: Sequence[int] | None, idx: list[int], device) -> torch.Tensor | None:
    """A batch's bank indices (``language_ids``/``task_ids``) for rows ``idx``."""
    if ids is None:
        return None
    return torch.tensor([ids[i] for i in idx], dtype=torch.long, device=device)


@torch.no_grad()
def generate_texts(
    composed: ComposedModel,
    tokenizer,
    rows: Sequence[Sequence[int]],
    *,
    batch_size: int = 64,
    max_new_tokens: int = REFERENCE_MAX_NEW_TOKENS,
    num_beams: int = 1,
    language_ids: Sequence[int] | None = None,
    task_ids: Sequence[int] | None = None,
    pad_to: int | None = None,
    progress=None,
    **generate_kwargs: Any,
) -> list[str]:
    """Greedy (or beam) generations for token id ``rows``, in length-sorted batches each
    padded to its own longest row (``pad_to`` pads every batch to that width instead: the
    slow reference behaviour, for benchmarks). ``language_ids`` / ``task_ids``: bank index
    per row (rows of several languages and tasks share each batch)."""
    device = composed.base.device
    out_texts: list[str] = [""] * len(rows)
    for idx in length_sorted_batches([len(r) for r in rows], batch_size):
        ids, mask = pad_rows([rows[i] for i in idx], tokenizer.pad_token_id, pad_to)
        out = composed.generate(
            ids.to(device), mask.to(device), language_ids=_row_ids(language_ids, idx, device),
            task_ids=_row_ids(task_ids, idx, device), max_new_tokens=max_new_tokens,
            num_beams=num_beams, do_sample=False, **generate_kwargs,
        )
        for i, text in zip(idx, tokenizer.batch_decode(out, skip_special_tokens=True), strict=True):
            out_texts[i] = text.strip()
        if progress is not None:
            progress.update(len(idx))
    return out_texts


@torch.no_grad()
def label_log_likelihoods(
    composed: ComposedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    candidates: Sequence[Sequence[int]],
    language_ids: torch.Tensor | None = None,
    task_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[B, K]`` log-likelihood (sum over tokens) of each candidate target (token ids,
    end token included) given each row's input (see :func:`row_label_log_likelihoods`)."""
    rows = [list(candidates)] * input_ids.shape[0]
    return torch.tensor(row_label_log_likelihoods(
        composed, input_ids, attention_mask, rows, language_ids, task_ids
    ))


@torch.no_grad()
def row_label_log_likelihoods(
    composed: ComposedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    candidates: Sequence[Sequence[Sequence[int]]],
    language_ids: torch.Tensor | None = None,
    task_ids: torch.Tensor | None = None,
) -> list[list[float]]:
    """Per row, the log-likelihood of each of *its own* candidate targets (rows of
    different tasks rank different label sets in one batch). Candidate position ``k``
    is one ``[B, T]`` target, each row's ``k``-th candidate (unequal lengths padded with
    -100 and left out of the sum). The input runs once and every position is scored on it
    (:meth:`ModelFamily.label_log_likelihoods`: a seq2seq encoder once, a causal base's
    KV cache once); a bank that splits rows (adapters) runs one full forward per position
    (``BatchSplit`` regroups the rows on every call)."""
    batch, device = input_ids.shape[0], input_ids.device
    scores = [[0.0] * len(c) for c in candidates]
    targets = []
    for k in range(max(len(c) for c in candidates)):
        # A row with fewer candidates scores its first again (ignored) to keep the batch.
        chosen = [c[k] if k < len(c) else c[0] for c in candidates]
        labels = torch.full((batch, max(map(len, chosen))), -100, dtype=torch.long,
                            device=device)
        for i, t in enumerate(chosen):
            labels[i, : len(t)] = torch.as_tensor(t, dtype=torch.long)
        targets.append(labels)
    if not composed.splits_rows(language_ids, task_ids):
        composed.check_bank_ids(language_ids, task_ids, batch)
        composed.activate()
        inputs = composed.encoder_inputs(input_ids, attention_mask, language_ids, task_ids)
        totals = composed.family.label_log_likelihoods(composed.base, inputs, targets)
    else:
        totals = torch.stack([
            target_log_likelihood(composed(
                input_ids, attention_mask, labels=labels, language_ids=language_ids,
                task_ids=task_ids,
            ).logits, labels)
            for labels in targets
        ], 1)
    for i, c in enumerate(candidates):
        for k in range(len(c)):
            scores[i][k] = float(totals[i, k])
    return scores


def rank_labels(
    composed: ComposedModel,
    tokenizer,
    rows: Sequence[Sequence[int]],
    label_words: Sequence[str] | Sequence[Sequence[str]],
    *,
    batch_size: int = 64,
    language_ids: Sequence[int] | None = None,
    task_ids: Sequence[int] | None = None,
    pad_to: int | None = None,
    max_target_length: int | Sequence[int | None] | None = None,
    progress=None,
) -> list[str]:
    """The most likely of ``label_words`` for every row (label ranking), length-sorted
    batches as in :func:`generate_texts`. Ties go to the earlier label. ``label_words``
    may instead give each row its own words (rows of several tasks in one batch).

    ``max_target_length`` (one for all rows, or one per row): score each label word as
    task training taught it, cut to that many tokens (the task's target length, end token
    kept). Scoring the whole word would add the log-likelihoods of tokens the model never
    learnt to emit, which favour the shortest word whatever the input (a byte-level
    model's ``Checkworthy`` over ``Not checkworthy``)."""
    per_row: list[list[str]] = (
        [[str(w) for w in label_words]] * len(rows)
        if all(isinstance(w, str) for w in label_words)
        else [list(w) for w in label_words]
    )
    if len(per_row) != len(rows):
        raise LangTransferError(f"{len(per_row)} label word lists for {len(rows)} rows")
    lengths: list[int | None] = (
        list(max_target_length) if isinstance(max_target_length, Sequence)
        else [max_target_length] * len(rows)
    )
    words = list(dict.fromkeys(w for row_words in per_row for w in row_words))
    encoded = dict(zip(words, composed.family.encode_targets(tokenizer, words), strict=True))

    def target(word: str, length: int | None) -> list[int]:
        return encoded[word] if length is None else cut(encoded[word], length)

    for row_words, length in dict.fromkeys(zip(map(tuple, per_row), lengths, strict=True)):
        if len({tuple(target(w, length)) for w in row_words}) < len(row_words):
            raise LangTransferError(
                f"label words {list(row_words)} are not distinct when cut to {length} tokens "
                "(the task's target length): ranking cannot tell them apart (use --scoring "
                "generate)"
            )
    device = composed.base.device
    chosen: list[str] = [""] * len(rows)
    for idx in length_sorted_batches([len(r) for r in rows], batch_size):
        ids, mask = pad_rows([rows[i] for i in idx], tokenizer.pad_token_id, pad_to)
        scores = row_label_log_likelihoods(
            composed, ids.to(device), mask.to(device),
            [[target(w, lengths[i]) for w in per_row[i]] for i in idx],
            _row_ids(language_ids, idx, device), _row_ids(task_ids, idx, device),
        )
        for i, row_scores in zip(idx, scores, strict=True):
            chosen[i] = per_row[i][max(range(len(row_scores)), key=row_scores.__getitem__)]
        if progress is not None:
            progress.update(len(idx))
    return chosen


def evaluate(
    *,
    model: str | LoadedBase,
    task: str,
    language: str,
    language_rep: str | Path | None = None,
    task_rep: str | Path | None = None,
    data: str | Path | None = None,
    output: str | Path | None = None,
    split: str = "test",
    batch_size: int = 64,
    max_new_tokens: int | None = None,
    max_length: int = 256,
    max_examples: int | None = None,
    num_beams: int = 1,
    scoring: str = "generate",
    show_progress: bool = True,
    trust_remote_code: bool = False,
    label_order: str | None = None,
    empty_answers: str | None = None,
    long_inputs: str | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Evaluate one configuration on one task and target language; return the metrics record.

    ``model``: a :class:`LoadedBase` (shared, left as it was) or a name, which loads one;
    representations are read through its cache.
    ``scoring``: ``"generate"`` (free generation, parsed) or ``"rank"`` (label ranking,
    classification tasks only: the most likely label word is the prediction).
    ``max_new_tokens`` defaults to :data:`REFERENCE_MAX_NEW_TOKENS` (the paper's budget).
    Metrics follow :func:`langtransfer.inference.scoring.score_predictions` with the base's
    tokenizer (the reference reading primary, the strict one beside it).
    ``profile`` (:mod:`langtransfer.profiles`; default ``method``) sets what the next three
    leave at None, and is recorded with them:
    ``label_order``: how integer labels are read where the data names its classes
    (:data:`~langtransfer.tasks.LABEL_ORDERS`; ``positional`` is the reference's reading);
    when the two readings differ, ``metrics.json`` says so under ``label_mapping``.
    ``empty_answers``: QA rows whose answer text is empty are dropped, or kept (scoring 0 F1)
    as the reference kept them (:data:`~langtransfer.tasks.EMPTY_ANSWERS`).
    ``long_inputs``: an input over ``max_length`` tokens keeps its first ones, or is cut into
    chunks and the last one predicted, as the reference did
    (:data:`~langtransfer.profiles.LONG_INPUTS`).

    With ``output``, writes ``predictions.jsonl`` (id, input, generated text as
    ``prediction``, parsed prediction, gold) and ``metrics.json`` there, atomically.
    """
    task_obj, lang = get_task(task), get_language(language)
    chosen = get_profile(profile)
    reading = {
        "label_order": label_order or chosen.label_order,
        "empty_answers": empty_answers or chosen.empty_answers,
        "long_inputs": check_choice("long_inputs", long_inputs or chosen.long_inputs,
                                    LONG_INPUTS),
    }
    if scoring not in SCORING:
        raise UnknownNameError("scoring", scoring, SCORING)
    if scoring == "rank" and not task_obj.label_words:
        raise LangTransferError(
            f"scoring 'rank' needs a classification task with label words; {task_obj.name!r} "
            "has none (use --scoring generate)"
        )
    with progress_bars(show_progress):
        loaded_data = load_task_data(task_obj, lang.code, split, data, max_examples,
                                     label_order=reading["label_order"],
                                     empty_answers=reading["empty_answers"])
    examples = loaded_data.examples
    loaded = LoadedBase.of(model, trust_remote_code=trust_remote_code)
    base, tokenizer = loaded.model, loaded.tokenizer
    lang_repr = loaded.representation(language_rep) if language_rep else None
    task_repr = loaded.representation(task_rep) if task_rep else None
    if lang_repr is not None:
        check_fit(lang_repr, "language", language=lang.code, where=language_rep)
    if task_repr is not None:
        check_fit(task_repr, "task", task=task_obj.name, where=task_rep)
    configuration = configuration_name(lang_repr, task_repr)
    tokenised = tokenise(examples, tokenizer, max_length, with_labels=False, family=loaded.family,
                         long_inputs=reading["long_inputs"])
    rows = list(tokenised.dataset["input_ids"])
    limit = max_new_tokens or REFERENCE_MAX_NEW_TOKENS
    bar = tqdm(total=len(examples), desc=f"{task_obj.name}/{lang.code}/{configuration}",
               disable=not show_progress, unit="ex")
    with loaded.compose(configuration, language=lang_repr, task=task_repr) as composed:
        composed.eval()
        if scoring == "rank":
            generated = rank_labels(composed, tokenizer, rows, list(task_obj.label_words.values()),
                                    batch_size=batch_size, progress=bar,
                                    max_target_length=task_obj.target_length)
        else:
            generated = generate_texts(composed, tokenizer, rows, batch_size=batch_size,
                                       max_new_tokens=limit, num_beams=num_beams, progress=bar)
    bar.close()

    predictions = {ex.id: gen for ex, gen in zip(examples, generated, strict=True)}
    scores = score_predictions(task_obj, examples, predictions, language=lang.code,
                               tokenizer=tokenizer)
    record = {
        **metrics_record(scores, task_obj),
        "language": lang.code,
        "split": split,
        "configuration": configuration,
        "n_truncated": tokenised.n_truncated,
        "profile": chosen.name,
        "reading": reading,
        "data": str(data) if data is not None else "paper",
        "model": fingerprint(base),
        "representations": {
            "language": _summary(lang_repr, language_rep),
            "task": _summary(task_repr, task_rep),
        },
        "scoring": scoring,
        "generation": {"max_new_tokens": limit, "num_beams": num_beams, "batch_size": batch_size}
        if scoring == "generate"
        else {"label_words": list(task_obj.label_words.values()), "batch_size": batch_size,
              "label_target_length": task_obj.target_length,
              "revision": RANK_SCORING_REVISION},
    }
    if loaded_data.label_mapping is not None:
        record["label_mapping"] = loaded_data.label_mapping
    if output is not None:
        output = Path(output)
        out_rows = []
        for ex, gen in zip(examples, generated, strict=True):
            row = {"id": ex.id, "input": ex.input, "prediction": gen,
                   "parsed": task_obj.coerce(gen), "gold": ex.gold, "target": ex.target}
            if task_obj.reference_reading:
                row["parsed_reference"] = task_obj.coerce(gen, reference=True)
            out_rows.append(row)
        write_jsonl(output / "predictions.jsonl", out_rows)
        write_json(output / "metrics.json", record)
    return record
