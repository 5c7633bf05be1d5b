"""Zero-shot evaluation: generate for a test split, parse, score, write the files.

``evaluate`` composes the base model with the *target* language's representation and
the task representation trained on the source, generates for every example in
length-sorted batches (each padded to its own longest row), parses the generations with
the task's parser and scores them with the task's metric (shared with
``langtransfer score``).

Classification tasks can instead be scored by **label ranking** (``scoring="rank"``):
the log-likelihood of each label word (with its end token) is computed (a seq2seq
base: the encoder run once per batch and one decoder pass per label; a causal base: one
forward per label over ``[prompts][input][label]``), and the most likely label is the
prediction. Ranking never yields an unparseable prediction. The evaluation batch
size is independent of the training batch size; batches are length-sorted and padded
to their own longest row for both kinds of scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from langtransfer.compose import ComposedModel, configuration_name
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.io import write_json, write_jsonl
from langtransfer.languages import get_language
from langtransfer.loaded_base import LoadedBase
from langtransfer.models import fingerprint
from langtransfer.predictions import metrics_record, score_predictions
from langtransfer.representations import Representation
from langtransfer.task_data import load_examples, tokenise
from langtransfer.tasks import get_task
from langtransfer.tasks.sources import progress_bars

#: The generation budget of the paper's reference code, the default for every task. Its
#: ``trainer.predict`` passes no generation arguments (ref: src/task_modeling/run.py,
#: trainer_seq2seq_qa.py), so the model's generation config applies. mT0-base ships no
#: ``generation_config.json`` and (as far as could be checked offline) no ``max_length``
#: in its config, so transformers' default ``max_length=20`` holds; the reference's
#: transformers 4.36 counts the decoder start token in it: at most 19 new tokens.
#: (transformers 4.57 turns the same default into 20 *new* tokens, see
#: ``GenerationMixin._prepare_generated_length``, hence an explicit budget here.) Longer
#: NER and QA outputs are cut there, as in the paper; a larger ``max_new_tokens`` lifts it.
REFERENCE_MAX_NEW_TOKENS = 19
SCORING = ("generate", "rank")


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


def _row_languages(
    language_ids: Sequence[int] | None, idx: list[int], device
) -> torch.Tensor | None:
    if language_ids is None:
        return None
    return torch.tensor([language_ids[i] for i in idx], dtype=torch.long, device=device)


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
    pad_to: int | None = None,
    progress=None,
    **generate_kwargs: Any,
) -> list[str]:
    """Greedy (or beam) generations for token id ``rows``, in length-sorted batches each
    padded to its own longest row (``pad_to`` pads every batch to that width instead: the
    slow reference behaviour, for benchmarks). ``language_ids``: bank index per row."""
    device = composed.base.device
    out_texts: list[str] = [""] * len(rows)
    for idx in length_sorted_batches([len(r) for r in rows], batch_size):
        ids, mask = pad_rows([rows[i] for i in idx], tokenizer.pad_token_id, pad_to)
        out = composed.generate(
            ids.to(device), mask.to(device), language_ids=_row_languages(language_ids, idx, device),
            max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False, **generate_kwargs,
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
) -> torch.Tensor:
    """``[B, K]`` log-likelihood (sum over tokens) of each candidate target (token ids,
    end token included) given each row's input. A seq2seq base runs its encoder once and
    its decoder once per candidate; a causal base (and an adapter bank) one forward per
    candidate, its logits over the candidate's tokens."""
    scores = torch.empty(input_ids.shape[0], len(candidates))
    device = input_ids.device
    if composed.uses_adapter_bank(language_ids) or not composed.family.has_encoder:
        # BatchSplit, or no encoder to reuse: one full forward per label
        encoded = None
    else:
        composed.check_language_ids(language_ids, input_ids.shape[0])
        composed.activate()
        inputs = composed.encoder_inputs(input_ids, attention_mask, language_ids)
        encoded = composed.base.get_encoder()(**inputs, return_dict=True)
    for k, cand in enumerate(candidates):
        labels = torch.as_tensor(cand, dtype=torch.long, device=device).repeat(
            input_ids.shape[0], 1
        )
        if encoded is None:
            logits = composed(
                input_ids, attention_mask, labels=labels, language_ids=language_ids
            ).logits
        else:
            logits = composed.base(
                encoder_outputs=encoded, attention_mask=inputs["attention_mask"], labels=labels
            ).logits
        logp = logits.float().log_softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        scores[:, k] = logp.sum(-1).cpu()
    return scores


def rank_labels(
    composed: ComposedModel,
    tokenizer,
    rows: Sequence[Sequence[int]],
    label_words: Sequence[str],
    *,
    batch_size: int = 64,
    language_ids: Sequence[int] | None = None,
    pad_to: int | None = None,
    progress=None,
) -> list[str]:
    """The most likely of ``label_words`` for every row (label ranking), length-sorted
    batches as in :func:`generate_texts`. Ties go to the earlier label."""
    candidates = composed.family.encode_targets(tokenizer, list(label_words))
    device = composed.base.device
    chosen: list[str] = [""] * len(rows)
    for idx in length_sorted_batches([len(r) for r in rows], batch_size):
        ids, mask = pad_rows([rows[i] for i in idx], tokenizer.pad_token_id, pad_to)
        scores = label_log_likelihoods(
            composed, ids.to(device), mask.to(device), candidates,
            _row_languages(language_ids, idx, device),
        )
        for i, k in zip(idx, scores.argmax(-1).tolist(), strict=True):
            chosen[i] = label_words[k]
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
) -> dict[str, Any]:
    """Evaluate one configuration on one task and target language; return the metrics record.

    ``model``: a :class:`LoadedBase` (shared, left as it was) or a name, which loads one;
    representations are read through its cache.
    ``scoring``: ``"generate"`` (free generation, parsed) or ``"rank"`` (label ranking,
    classification tasks only: the most likely label word is the prediction).
    ``max_new_tokens`` defaults to :data:`REFERENCE_MAX_NEW_TOKENS` (the paper's budget).
    Metrics follow :func:`langtransfer.predictions.score_predictions` with the base's
    tokenizer (the reference reading primary, the strict one beside it).

    With ``output``, writes ``predictions.jsonl`` (id, input, generated text as
    ``prediction``, parsed prediction, gold) and ``metrics.json`` there, atomically.
    """
    task_obj, lang = get_task(task), get_language(language)
    if scoring not in SCORING:
        raise UnknownNameError("scoring", scoring, SCORING)
    if scoring == "rank" and not task_obj.label_words:
        raise LangTransferError(
            f"scoring 'rank' needs a classification task with label words; {task_obj.name!r} "
            "has none (use --scoring generate)"
        )
    with progress_bars(show_progress):
        examples = load_examples(task_obj, lang.code, split, data, max_examples)
    loaded = LoadedBase.of(model, trust_remote_code=trust_remote_code)
    base, tokenizer = loaded.model, loaded.tokenizer
    lang_repr = loaded.representation(language_rep) if language_rep else None
    task_repr = loaded.representation(task_rep) if task_rep else None
    if lang_repr is not None and lang_repr.role != "language":
        raise LangTransferError(
            f"{language_rep} is a {lang_repr.role} representation, not a language one"
        )
    if lang_repr is not None and lang_repr.language != lang.code:
        # Zero-shot transfer swaps in the *target's* representation; scoring another
        # language's under this language's name would silently mislabel the result.
        raise LangTransferError(
            f"{language_rep} is a language representation for {lang_repr.language!r}, but the "
            f"evaluation language is {lang.code!r}: pass the {lang.code!r} representation"
        )
    if task_repr is not None and task_repr.role != "task":
        raise LangTransferError(f"{task_rep} is a {task_repr.role} representation, not a task one")
    if task_repr is not None and task_repr.task != task_obj.name:
        raise LangTransferError(
            f"{task_rep} was trained for task {task_repr.task!r}, not {task_obj.name!r}"
        )
    configuration = configuration_name(lang_repr, task_repr)
    tokenised = tokenise(examples, tokenizer, max_length, with_labels=False, family=loaded.family)
    rows = list(tokenised.dataset["input_ids"])
    limit = max_new_tokens or REFERENCE_MAX_NEW_TOKENS
    bar = tqdm(total=len(examples), desc=f"{task_obj.name}/{lang.code}/{configuration}",
               disable=not show_progress, unit="ex")
    with loaded.compose(configuration, language=lang_repr, task=task_repr) as composed:
        composed.eval()
        if scoring == "rank":
            generated = rank_labels(composed, tokenizer, rows, list(task_obj.label_words.values()),
                                    batch_size=batch_size, progress=bar)
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
        "data": str(data) if data is not None else "paper",
        "model": fingerprint(base),
        "representations": {
            "language": _summary(lang_repr, language_rep),
            "task": _summary(task_repr, task_rep),
        },
        "scoring": scoring,
        "generation": {"max_new_tokens": limit, "num_beams": num_beams, "batch_size": batch_size}
        if scoring == "generate"
        else {"label_words": list(task_obj.label_words.values()), "batch_size": batch_size},
    }
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
