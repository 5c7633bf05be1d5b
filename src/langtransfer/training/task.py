"""Training a task representation on source-language data.

The source language's representation (if any) is attached frozen while the task adapter
or soft task prompt trains, which is how ``la+ta``, ``la+stp``, ``slp+ta`` and
``slp+stp`` are trained; ``ta`` and ``stp`` train on the bare model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from transformers import set_seed

from langtransfer.composition.composed import configuration_name
from langtransfer.composition.loaded_base import LoadedBase
from langtransfer.configurations import get_configuration
from langtransfer.errors import LangTransferError, MissingSplitError
from langtransfer.languages import get_language
from langtransfer.profiles import get_profile
from langtransfer.representations.base import representation_id
from langtransfer.representations.fit import check_fit
from langtransfer.representations.kinds import SpecContext, get_kind
from langtransfer.tasks import get_task
from langtransfer.tasks.encoding import load_examples, tokenise
from langtransfer.tasks.sources import progress_bars
from langtransfer.training.language import check_output
from langtransfer.training.trainer import (
    TrainSettings,
    default_settings,
    evaluation_loss,
    train_representation,
)

VALIDATION_FRACTION = 0.1
MAX_VALIDATION = 1000


def train_task(
    *,
    model: str | LoadedBase,
    task: str,
    language: str,
    kind: str,
    output: str | Path,
    language_rep: str | Path | None = None,
    data: str | Path | None = None,
    validation_data: str | Path | None = None,
    settings: TrainSettings | None = None,
    spec: Any = None,
    max_length: int = 256,
    max_target_length: int | None = None,
    max_examples: int | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    settings_hash: str | None = None,
    show_progress: bool = True,
    trust_remote_code: bool = False,
    reference_slp_stp_quirk: bool | None = None,
    label_order: str | None = None,
    empty_answers: str | None = None,
    profile: str | None = None,
) -> Path:
    """Train a task representation of ``kind`` (a task adapter, a soft task prompt...) on
    ``task`` in ``language`` and save it.

    ``model``: a :class:`LoadedBase` (shared, left as it was) or a name, which loads one.
    ``spec``: the kind's spec (a :class:`PromptConfig`, an :class:`AdapterSpec`...), or
    a mapping of its option keys (``{"num_tokens": 8}``) over the kind's default for the
    task (a prompt: the task's instruction), which ``profile`` shapes (None: the default).
    ``data``: None (the paper's hub source), ``"fixtures"`` or a local file/directory.
    Validation uses ``validation_data`` or the ``validation`` split of ``data``; only
    when that source has no validation split (:class:`MissingSplitError`), a held-out
    10% of the training examples; the checkpoint with the lowest validation loss is kept.
    Targets are cut to ``max_target_length`` tokens, by default the task's
    ``target_length`` (the reference's: 30 for QA and NER, 3 for NLI, 4 for CW).
    ``reference_slp_stp_quirk`` (slp+stp only, else refused): train as the reference
    did, with the language prompt twice in every forward (training and validation loss);
    test-time generation is unaffected. Recorded in the manifest's ``training``.
    ``label_order`` and ``empty_answers``: how the data is read (see
    :func:`~langtransfer.inference.evaluate.evaluate`).

    ``profile`` (:mod:`langtransfer.profiles`; default ``method``) fills in what is left
    at None: the three above (the quirk where the configuration is slp+stp), keep-best
    when ``settings`` is not given (the reference's task prompts keep the final step),
    and the spec when ``spec`` is not given (a prompt's parameter rows). Recorded in the
    manifest.
    """
    kind_obj = get_kind(kind)
    chosen = get_profile(profile)
    label_order = label_order or chosen.label_order
    empty_answers = empty_answers or chosen.empty_answers
    quirk = get_configuration("slp+stp")
    if reference_slp_stp_quirk and (kind != quirk.task_kind or language_rep is None):
        raise LangTransferError(
            "reference_slp_stp_quirk applies to slp+stp only: a task prompt (kind 'prompt') "
            "trained with a soft language prompt (language_rep)"
        )
    task_obj, lang = get_task(task), get_language(language)
    output = Path(output)
    check_output(output, overwrite, resume, kind=kind, role="task", task=task_obj.name)
    if settings is None:
        settings = default_settings(kind, "task", **kind_obj.profile_training("task", chosen))
    if max_target_length is None:
        max_target_length = task_obj.target_length

    with progress_bars(show_progress):  # a study (progress off) prints no hub-load bars
        train_examples = load_examples(task_obj, lang.code, "train", data, max_examples,
                                       label_order=label_order, empty_answers=empty_answers)
    try:
        with progress_bars(show_progress):
            val_examples = load_examples(task_obj, lang.code, "validation",
                                         validation_data or data, label_order=label_order,
                                         empty_answers=empty_answers)
    except MissingSplitError:
        # Only "this source has no validation split" falls back; any other error (a hub
        # failure, a malformed file, validation data given but missing) stops here
        # rather than silently changing what validation means.
        if validation_data is not None:
            raise
        n_val = min(MAX_VALIDATION, max(1, int(len(train_examples) * VALIDATION_FRACTION)))
        if len(train_examples) < 2:
            raise LangTransferError(
                f"{task_obj.name} {lang.code}: {len(train_examples)} training example(s) is too few"
            ) from None
        held = set(
            np.random.default_rng(settings.seed).permutation(len(train_examples))[:n_val].tolist()
        )
        val_examples = [ex for i, ex in enumerate(train_examples) if i in held]
        train_examples = [ex for i, ex in enumerate(train_examples) if i not in held]

    loaded = LoadedBase.of(model, trust_remote_code=trust_remote_code)
    base, tokenizer = loaded.model, loaded.tokenizer
    set_seed(settings.seed)  # a fresh adapter's initial weights come from the global RNG
    language_repr = loaded.representation(language_rep) if language_rep else None
    if language_repr is not None:
        check_fit(language_repr, "language", language=lang.code, where=language_rep,
                  language_use="the training language",
                  hint="pass the source language's representation")
    # One id per trained artefact, the same in every process, so a resumed run's
    # checkpoints fit; the slot is given back when training ends.
    rep_id = representation_id("task", kind, task_obj.name, lang.code, "training")
    if spec is None or isinstance(spec, Mapping):
        spec = kind_obj.profile_spec(kind_obj.spec(dict(spec or {}), SpecContext(
            "task", lang.name, task_obj.prompt_init(lang.name), seed=settings.seed)), chosen)
    task_repr = kind_obj.new("task", kind_obj.check_spec(spec), base, tokenizer,
                             task=task_obj.name, settings_hash=settings_hash, id=rep_id)
    configuration = configuration_name(language_repr, task_repr)
    if reference_slp_stp_quirk is None:  # the profile's, where it applies
        reference_slp_stp_quirk = (chosen.slp_stp_language_prompt_twice
                                   and configuration == quirk.name)
    if reference_slp_stp_quirk and configuration != quirk.name:
        raise LangTransferError(
            f"reference_slp_stp_quirk applies to slp+stp only, not {configuration} "
            f"({language_rep} is a language {language_repr.kind if language_repr else None})"
        )
    composed = loaded.compose(configuration, language=language_repr, task=task_repr,
                              train="task",
                              duplicate_language_prompt_in_forward=reference_slp_stp_quirk)
    try:
        train = tokenise(train_examples, tokenizer, max_length, max_target_length,
                         family=loaded.family)
        validation = tokenise(val_examples, tokenizer, max_length, max_target_length,
                              family=loaded.family)
        eval_batch_size = settings.eval_batch_size or settings.batch_size
        # Before training (the fresh representation): what "the loss fell" is measured against.
        loss_initial = evaluation_loss(composed, validation.dataset, tokenizer, eval_batch_size)
        trainer, summary = train_representation(
            composed,
            tokenizer,
            train.dataset,
            settings,
            checkpoint_dir or output.with_name(output.name + ".checkpoints"),
            eval_dataset=validation.dataset,
            resume=resume,
            show_progress=show_progress,
        )
        summary.update(
            configuration=configuration,
            reference_slp_stp_quirk=reference_slp_stp_quirk,
            profile=chosen.name,
            reading={"label_order": label_order, "empty_answers": empty_answers},
            source_language=lang.code,
            language_representation=None
            if language_repr is None
            else {
                "kind": language_repr.kind,
                "language": language_repr.language,
                "path": str(language_rep),
                "settings_hash": language_repr.settings_hash,
            },
            data=str(data) if data is not None else "paper",
            train_examples=len(train_examples),
            validation_examples=len(val_examples),
            truncated_inputs=train.n_truncated,
            truncated_targets=train.n_truncated_targets,
            max_length=max_length,
            max_target_length=max_target_length,
            validation_loss_initial=loss_initial,
            validation_loss=evaluation_loss(
                composed, validation.dataset, tokenizer, eval_batch_size
            ),
        )
        if trainer.is_world_process_zero():
            composed.save("task", output, training=summary, overwrite=True)
        trainer.accelerator.wait_for_everyone()
    finally:
        composed.close()  # the shared base keeps nothing of this run
    return output
