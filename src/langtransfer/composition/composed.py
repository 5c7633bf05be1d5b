"""Composing a frozen base model with a language and a task representation.

What each configuration composes (``slp+ta``: a soft language prompt and a task
adapter) is the table in :mod:`langtransfer.configurations`; this module builds it.

Prompts are prepended to the input embeddings as ``[language][task][input]`` with the
attention mask extended: the encoder's input of a seq2seq base (they never touch its
decoder), the context a causal base's target continues (positions and labels as
:mod:`langtransfer.base.families` describes; the family runs forward and generate).
Adapters stack language -> task in every layer (the `adapters` library's ``Stack``).
Swapping the language representation leaves the task representation as it is.

One base, many composed models: each representation takes a *slot* in the shared base
(:mod:`langtransfer.composition.attach`), and :meth:`ComposedModel.close` gives its slots
back, so the base ends as it started. What each kind does in its slot is the kind's
(:mod:`langtransfer.representations.kinds`).

``duplicate_language_prompt_in_forward`` reproduces, as an option, a quirk of the paper's
reference code for ``slp+stp``: its ``forward`` (training loss, keep-best validation loss)
sees ``[language][language][task][input]`` while its ``generate`` (test predictions) sees
``[language][task][input]`` (see docs/fidelity.md). Off by default.

Mixed batches: :meth:`ComposedModel.set_languages` and :meth:`ComposedModel.set_tasks`
hold several language / task representations at once (*banks*,
:mod:`langtransfer.composition.banks`) and ``forward`` / ``generate`` take
``language_ids`` / ``task_ids``, one bank index per row, so rows of different languages
and tasks run in one call. Prompt banks gather each row's prompt from the stacked bank
embeddings; adapter banks run through the `adapters` library's
``Stack(BatchSplit(lang_a, lang_b, ...), BatchSplit(task_x, task_y, ...))`` with the rows
grouped by (language adapter, task adapter) pair (the adapter kind's ``activate`` says
why not a ``BatchSplit`` of stacks).

This module runs the composed model (the input with its prompts, forward, generate);
attaching is :mod:`~langtransfer.composition.attach`'s, banks are
:mod:`~langtransfer.composition.banks`'.
"""


from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel

from langtransfer.composition.attach import AttachedModel, Slots, loaded_representations
from langtransfer.composition.banks import BankedModel
from langtransfer.configurations import (  # noqa: F401  (re-exported: old import paths)
    ALL_CONFIGURATIONS,
    CONFIGURATIONS,
    LANGUAGE_ONLY,
    STUDY_CONFIGURATIONS,
    configuration_for,
    configuration_kinds,
    get_configuration,
)
from langtransfer.errors import LangTransferError
from langtransfer.representations.base import Representation
from langtransfer.representations.kinds import KINDS

__all__ = ["AttachedModel", "ComposedModel", "Slots", "compose", "configuration_name",
           "loaded_representations"]


def configuration_name(language: Representation | None, task: Representation | None) -> str:
    """The configuration that composes ``language`` and ``task`` (either may be None)."""
    return configuration_for(language.kind if language else None, task.kind if task else None).name


class ComposedModel(BankedModel):
    """A frozen base model (seq2seq or causal, :attr:`family`) with an optional language and
    an optional task representation (or banks of them).

    ``train`` names the one representation whose parameters get gradients (``"language"``
    or ``"task"``); everything else is frozen.
    """

    def __init__(
        self,
        base: PreTrainedModel,
        language: Representation | None = None,
        task: Representation | None = None,
        *,
        train: str | None = None,
        duplicate_language_prompt_in_forward: bool = False,
    ):
        super().__init__(base)
        self.duplicate_language_prompt_in_forward = duplicate_language_prompt_in_forward
        if language is not None and task is not None and language.id == task.id:
            raise LangTransferError(f"language and task representation share the id {task.id!r}")
        try:
            self._attach("task", task)
            self._attach("language", language)
            self.set_trainable(train)
            if duplicate_language_prompt_in_forward:
                self._check_duplication()
        except BaseException:
            self.close()  # give back what was acquired: the base stays as it was
            raise

    def __enter__(self) -> ComposedModel:
        return self

    @property
    def configuration(self) -> str:
        language = self.language or next(iter(self.language_bank.values()), None)
        task = self.task or next(iter(self.task_bank.values()), None)
        return configuration_name(language, task)

    def _check_duplication(self) -> None:
        """The reference quirk exists only for a language prompt with a task prompt."""
        if "language" not in self.prompts or "task" not in self.prompts or self.language_bank:
            raise LangTransferError(
                "duplicate_language_prompt_in_forward (the reference's slp+stp quirk) needs "
                f"one language prompt and a task prompt (slp+stp), not {self.configuration}"
            )

    # -- the input -----------------------------------------------------------------------

    def prompt_length(self) -> int:
        """Positions the held modules (prompts) put before the input."""
        own = sum(int(m().shape[0]) for m in self.prompts.values())
        banks = [int(self._bank_prompts(r)[0]().shape[0])
                 for r in ("language", "task") if len(self._bank_prompts(r))]
        return own + sum(banks)

    def encoder_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        language_ids: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        *,
        duplicate_language: bool = False,
    ) -> dict[str, torch.Tensor]:
        """The input with the prompts prepended: ``[language][task][input]``
        (``[language][language][task][input]`` with ``duplicate_language``, the reference's
        slp+stp training input).

        With a prompt bank, row ``i`` gets bank prompt ``language_ids[i]`` (``task_ids[i]``
        for a task bank): a gather. The prompts enter as broadcast views; the one copy
        made is the concatenation the encoder reads (and autograd keeps).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        batch = input_ids.shape[0]
        prefixes: list[torch.Tensor] = []
        if duplicate_language:
            self._check_duplication()
            prefixes.append(self.prompts["language"]().unsqueeze(0).expand(batch, -1, -1))
        for role, ids in (("language", language_ids), ("task", task_ids)):
            if ids is not None and len(self._bank_prompts(role)):
                prefixes.append(self._bank_embeddings(role)[ids])
            elif role in self.prompts:
                prefixes.append(self.prompts[role]().unsqueeze(0).expand(batch, -1, -1))
        if not prefixes:
            return {"input_ids": input_ids, "attention_mask": attention_mask}
        embeds = self.base.get_input_embeddings()(input_ids)
        width = sum(p.shape[1] for p in prefixes)
        mask = attention_mask.new_ones(batch, width)
        return {
            "inputs_embeds": torch.cat([p.to(embeds.dtype) for p in prefixes] + [embeds], 1),
            "attention_mask": torch.cat([mask, attention_mask], 1),
        }

    # -- running -------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        language_ids: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
    ):
        """The base model's forward on the composed input; returns loss when given labels.

        ``language_ids`` / ``task_ids`` (LongTensor[B], with banks from
        :meth:`set_languages` / :meth:`set_tasks`): row ``i`` runs with bank language
        ``language_ids[i]`` and bank task ``task_ids[i]``; outputs keep the input row
        order. With ``duplicate_language_prompt_in_forward`` the language prompt comes twice.
        """
        self.check_bank_ids(language_ids, task_ids, input_ids.shape[0])
        groups = self.row_groups(language_ids, task_ids, input_ids.shape[0])
        if groups is None:
            self.activate()
            return self.family.forward(
                self.base,
                self.encoder_inputs(
                    input_ids, attention_mask, language_ids, task_ids,
                    duplicate_language=self.duplicate_language_prompt_in_forward,
                ),
                labels=labels,
                decoder_input_ids=decoder_input_ids,
                decoder_attention_mask=decoder_attention_mask,
            )
        order, inverse, rows, _ = groups

        def grouped(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[order]

        self.activate(rows)
        try:
            out = self.family.forward(
                self.base,
                self.encoder_inputs(
                    input_ids[order], grouped(attention_mask), grouped(language_ids),
                    grouped(task_ids),
                ),
                labels=grouped(labels),
                decoder_input_ids=grouped(decoder_input_ids),
                decoder_attention_mask=grouped(decoder_attention_mask),
                use_cache=False,
            )
        finally:
            self.activate()
        for key, value in list(out.items()):
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                out[key] = value[inverse]
            elif isinstance(value, tuple) and all(isinstance(v, torch.Tensor) for v in value):
                out[key] = tuple(v[inverse] for v in value)
        return out

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        language_ids: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Generate token ids: a seq2seq base's decoder ids (the prompts shape only the
        encoder input), a causal base's new tokens only.

        ``language_ids`` / ``task_ids`` as in :meth:`forward`: one ``generate`` call for a
        batch whose rows are in different languages and tasks. Rows split among several
        adapters (a bank of a kind that splits rows) decode greedily or by sampling one
        sequence per row only (``BatchSplit`` needs fixed row counts, which beam search
        changes); rows that all use the same ones run as any batch.
        """
        self.check_bank_ids(language_ids, task_ids, input_ids.shape[0])
        groups = self.row_groups(language_ids, task_ids, input_ids.shape[0])
        if groups is None:
            self.activate()
            return self.family.generate(
                self.base, self.encoder_inputs(input_ids, attention_mask, language_ids, task_ids),
                **kwargs,
            )
        order, inverse, rows, count = groups
        if count > 1 and (kwargs.get("num_beams", 1) != 1
                          or kwargs.get("num_return_sequences", 1) != 1):
            splitting = " and ".join(name for name, kind in KINDS.items() if kind.splits_rows)
            raise LangTransferError(
                f"mixed-language or mixed-task generation with {splitting} banks supports "
                "num_beams=1 and num_return_sequences=1 only (group rows for beam search)"
            )
        self.activate(rows)
        try:
            mask = None if attention_mask is None else attention_mask[order]
            lang = None if language_ids is None else language_ids[order]
            task = None if task_ids is None else task_ids[order]
            out = self.family.generate(
                self.base, self.encoder_inputs(input_ids[order], mask, lang, task), **kwargs
            )
        finally:
            self.activate()
        return out[inverse]


def compose(
    base: PreTrainedModel,
    configuration: str,
    *,
    language: Representation | None = None,
    task: Representation | None = None,
    train: str | None = None,
    duplicate_language_prompt_in_forward: bool = False,
) -> ComposedModel:
    """Build a :class:`ComposedModel` and check the representations fit ``configuration``.

    ``duplicate_language_prompt_in_forward``: the reference's slp+stp quirk (module doc);
    refused for any other configuration."""
    wanted = get_configuration(configuration)
    for role, rep in (("language", language), ("task", task)):
        kind = wanted.kind(role)
        got = rep.kind if rep is not None else None
        if got != kind:
            raise LangTransferError(
                f"configuration {configuration!r} needs {kind or 'no'} {role} representation, "
                f"got {got or 'none'}"
            )
    return ComposedModel(
        base, language, task, train=train,
        duplicate_language_prompt_in_forward=duplicate_language_prompt_in_forward,
    )
