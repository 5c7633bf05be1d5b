"""The Representation record: one trained (or fresh) language or task representation."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from langtransfer.configurations import REPRESENTATION_KINDS, ROLES, short_name
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.models import fingerprint
from langtransfer.representations.adapter import AdapterSpec
from langtransfer.representations.prompt import PromptConfig, SoftPrompt

KINDS = REPRESENTATION_KINDS  # the old name


@dataclass
class Representation:
    """A language or task representation: a soft prompt or an adapter.

    A prompt holds its weights here (``prompt``). An adapter's weights live inside the
    base model once attached (the `adapters` library injects them), so here it holds only
    its spec and, when loaded from disk, the directory to load them from (``path``).
    """

    kind: str
    role: str
    language: str | None = None
    task: str | None = None
    prompt: SoftPrompt | None = None
    prompt_config: PromptConfig | None = None
    adapter: AdapterSpec | None = None
    path: Path | None = None
    base_model: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    settings_hash: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UnknownNameError("representation kind", self.kind, KINDS)
        if self.role not in ROLES:
            raise UnknownNameError("representation role", self.role, ROLES)
        if self.role == "language" and not self.language:
            raise LangTransferError("a language representation needs a language code")
        if self.role == "task" and not self.task:
            raise LangTransferError("a task representation needs a task name")
        if self.kind == "prompt" and self.prompt is None:
            raise LangTransferError("a prompt representation needs its SoftPrompt")
        if self.kind == "adapter" and self.adapter is None:
            self.adapter = AdapterSpec()

    @property
    def name(self) -> str:
        """A slot name unique per role and subject (the `adapters` library's adapter name)."""
        subject = self.language if self.role == "language" else self.task
        prefix = "lang" if self.role == "language" else "task"
        return f"{prefix}_{re.sub(r'[^0-9A-Za-z_]', '_', subject)}"

    @property
    def short(self) -> str:
        """``la``/``slp`` for language, ``ta``/``stp`` for task representations."""
        return short_name(self.role, self.kind)


def new_prompt(
    role: str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    config: PromptConfig,
    *,
    language: str | None = None,
    task: str | None = None,
) -> Representation:
    """A fresh soft prompt initialised from ``model``'s input embeddings."""
    prompt = SoftPrompt.initialise(config, model.get_input_embeddings(), tokenizer)
    return Representation(
        kind="prompt",
        role=role,
        language=language,
        task=task,
        prompt=prompt,
        prompt_config=config,
        base_model=fingerprint(model),
    )


def new_adapter(
    role: str,
    spec: AdapterSpec | None = None,
    *,
    language: str | None = None,
    task: str | None = None,
) -> Representation:
    """A fresh adapter; its weights are created when it is attached to a base model."""
    return Representation(
        kind="adapter", role=role, language=language, task=task, adapter=spec or AdapterSpec()
    )
