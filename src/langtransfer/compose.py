"""Composing a frozen base model with a language and a task representation.

The seven configurations of the paper, plus the two language-only set-ups used to train
language representations (``la``, ``slp``):

==========  ==============  ================
name        language rep    task rep
==========  ==============  ================
base        —               —
ta          —               adapter
stp         —               prompt
la+ta       adapter         adapter
la+stp      adapter         prompt
slp+ta      prompt          adapter
slp+stp     prompt          prompt
la          adapter         —
slp         prompt          —
==========  ==============  ================

Prompts are prepended to the encoder input as ``[language][task][input]`` with the
attention mask extended; they never touch the decoder. Adapters stack language -> task
in every layer (the `adapters` library's ``Stack``). Swapping the language
representation leaves the task representation as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from adapters.composition import Stack
from torch import nn
from transformers import PreTrainedModel

from langtransfer.errors import CorruptFileError, LangTransferError, UnknownNameError
from langtransfer.models import check_compatible, fingerprint
from langtransfer.representations.adapter import ensure_adapter_support
from langtransfer.representations.base import Representation
from langtransfer.representations.store import ADAPTER_WEIGHTS, save_representation

# name -> (language kind, task kind)
CONFIGURATIONS: dict[str, tuple[str | None, str | None]] = {
    "base": (None, None),
    "ta": (None, "adapter"),
    "stp": (None, "prompt"),
    "la+ta": ("adapter", "adapter"),
    "la+stp": ("adapter", "prompt"),
    "slp+ta": ("prompt", "adapter"),
    "slp+stp": ("prompt", "prompt"),
}
STUDY_CONFIGURATIONS = tuple(CONFIGURATIONS)
LANGUAGE_ONLY = {"la": ("adapter", None), "slp": ("prompt", None)}
ALL_CONFIGURATIONS = {**CONFIGURATIONS, **LANGUAGE_ONLY}


def configuration_kinds(name: str) -> tuple[str | None, str | None]:
    """(language kind, task kind) of a configuration name such as ``slp+ta``."""
    try:
        return ALL_CONFIGURATIONS[name]
    except KeyError:
        raise UnknownNameError("configuration", name, ALL_CONFIGURATIONS) from None


def configuration_name(language: Representation | None, task: Representation | None) -> str:
    kinds = (language.kind if language else None, task.kind if task else None)
    return next(n for n, k in ALL_CONFIGURATIONS.items() if k == kinds)


class ComposedModel(nn.Module):
    """A frozen seq2seq model with an optional language and an optional task representation.

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
    ):
        super().__init__()
        self.base = base
        self.prompts = nn.ModuleDict()
        self.language: Representation | None = None
        self.task: Representation | None = None
        self.trained_role: str | None = None
        self.base.requires_grad_(False)
        self._attach("task", task)
        self._attach("language", language)
        self.set_trainable(train)

    # -- composition -----------------------------------------------------------------

    @property
    def configuration(self) -> str:
        return configuration_name(self.language, self.task)

    @property
    def config(self):  # Trainer and generation utilities look for model.config
        return self.base.config

    def set_language(self, rep: Representation | None) -> None:
        """Swap the language representation (e.g. source -> target language)."""
        role = self.trained_role
        self._detach("language")
        self._attach("language", rep)
        self.set_trainable(role if role != "language" or rep is not None else None)

    def set_task(self, rep: Representation | None) -> None:
        role = self.trained_role
        self._detach("task")
        self._attach("task", rep)
        self.set_trainable(role if role != "task" or rep is not None else None)

    def _attach(self, role: str, rep: Representation | None) -> None:
        if rep is None:
            return
        if rep.role != role:
            raise LangTransferError(f"{rep.name} is a {rep.role} representation, not a {role} one")
        what = f"{rep.role} {rep.kind} {rep.name}"
        if rep.base_model is not None:
            check_compatible(rep.base_model, self.base, what)
        if rep.kind == "prompt":
            if rep.prompt.dim != self.base.config.d_model:
                raise LangTransferError(
                    f"{what} has width {rep.prompt.dim} but base model "
                    f"{fingerprint(self.base)['name']!r} has d_model {self.base.config.d_model}"
                )
            device = self.base.get_input_embeddings().weight.device
            self.prompts[role] = rep.prompt.to(device)
        else:
            ensure_adapter_support(self.base)
            if rep.name in self.base.adapters_config:
                self.base.delete_adapter(rep.name)
            if rep.path is not None:
                if not (Path(rep.path) / ADAPTER_WEIGHTS).is_file():
                    raise CorruptFileError(f"{rep.path}: missing {ADAPTER_WEIGHTS}")
                self.base.load_adapter(
                    str(rep.path), load_as=rep.name, with_head=False, use_safetensors=True
                )
            else:
                self.base.add_adapter(rep.name, config=rep.adapter.to_adapters_config())
                if rep.base_model is None:
                    rep.base_model = fingerprint(self.base)
            self.base.to(self.base.device)
        setattr(self, role, rep)
        self._activate_adapters()

    def _detach(self, role: str) -> None:
        rep = getattr(self, role)
        if rep is None:
            return
        if rep.kind == "prompt":
            del self.prompts[role]
        else:
            self.base.delete_adapter(rep.name)
        setattr(self, role, None)
        self._activate_adapters()

    def _activate_adapters(self) -> None:
        if not hasattr(self.base, "adapters_config"):
            return
        names = [r.name for r in (self.language, self.task) if r is not None and r.kind == "adapter"]
        self.base.set_active_adapters(Stack(*names) if names else None)

    def set_trainable(self, role: str | None) -> None:
        """Give gradients to exactly the ``role`` representation; freeze all else."""
        if role not in (None, "language", "task"):
            raise UnknownNameError("trainable role", role, ["language", "task"])
        rep = getattr(self, role) if role else None
        if role and rep is None:
            raise LangTransferError(f"cannot train the {role} representation: none is attached")
        self.requires_grad_(False)
        if rep is not None and rep.kind == "prompt":
            rep.prompt.requires_grad_(True)
        elif rep is not None:
            # The adapters library's own switch: unfreezes exactly this adapter's weights.
            self.base.train_adapter(rep.name)
            self._activate_adapters()
            self.base.eval()
        self.trained_role = role

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    # -- running -----------------------------------------------------------------------

    def prompt_length(self) -> int:
        return sum(p.num_tokens for p in self.prompts.values())

    def encoder_inputs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Encoder inputs with the prompts prepended: ``[language][task][input]``."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        prompts = [self.prompts[r]() for r in ("language", "task") if r in self.prompts]
        if not prompts:
            return {"input_ids": input_ids, "attention_mask": attention_mask}
        embeds = self.base.get_input_embeddings()(input_ids)
        batch = embeds.shape[0]
        prefix = torch.cat(prompts, 0) if len(prompts) > 1 else prompts[0]
        prefix = prefix.to(embeds.dtype).unsqueeze(0).expand(batch, -1, -1)
        mask = attention_mask.new_ones(batch, prefix.shape[1])
        return {
            "inputs_embeds": torch.cat([prefix, embeds], 1),
            "attention_mask": torch.cat([mask, attention_mask], 1),
        }

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
    ):
        """The base model's forward on the composed input; returns loss when given labels."""
        return self.base(
            **self.encoder_inputs(input_ids, attention_mask),
            labels=labels,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
        )

    @torch.no_grad()
    def generate(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """Generate decoder token ids (the prompts shape only the encoder input)."""
        return self.base.generate(**self.encoder_inputs(input_ids, attention_mask), **kwargs)

    # -- saving ------------------------------------------------------------------------

    def save(
        self,
        role: str,
        directory: str | Path,
        *,
        training: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Save the ``role`` representation (language or task) as a representation dir."""
        rep = getattr(self, role, None)
        if rep is None:
            raise LangTransferError(f"no {role} representation to save")
        return save_representation(
            rep, directory, model=self.base, training=training, overwrite=overwrite
        )

    def representations(self) -> Iterator[Representation]:
        yield from (r for r in (self.language, self.task) if r is not None)


def compose(
    base: PreTrainedModel,
    configuration: str,
    *,
    language: Representation | None = None,
    task: Representation | None = None,
    train: str | None = None,
) -> ComposedModel:
    """Build a :class:`ComposedModel` and check the representations fit ``configuration``."""
    lang_kind, task_kind = configuration_kinds(configuration)
    for role, rep, kind in (("language", language, lang_kind), ("task", task, task_kind)):
        got = rep.kind if rep is not None else None
        if got != kind:
            raise LangTransferError(
                f"configuration {configuration!r} needs {kind or 'no'} {role} representation, "
                f"got {got or 'none'}"
            )
    return ComposedModel(base, language, task, train=train)
