"""The Representation record: one trained (or fresh) language or task representation."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from langtransfer.base.loading import fingerprint
from langtransfer.configurations import (
    KIND_PLACEMENT,
    REPRESENTATION_KINDS,
    ROLES,
    check_kind,
    short_name,
)
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.representations.adapter import AdapterSpec
from langtransfer.representations.prompt import PromptConfig, SoftPrompt

KINDS = REPRESENTATION_KINDS  # the old name


_UNSAFE = re.compile(r"[^0-9A-Za-z_]")
_ID = re.compile(r"[0-9A-Za-z_-]+")


def representation_id(
    role: str, kind: str, subject: str, *parts: str | None
) -> str:
    """An id such as ``ta-qa-en-3f2a9c1b7d0e``: short name, subject, then ``parts``
    (source language, content hash or another token), each reduced to letters, digits
    and ``_`` (the `adapters` library uses the id as a module name: no dots)."""
    pieces = [short_name(role, kind), subject, *(p for p in parts if p)]
    return "-".join(_UNSAFE.sub("_", p) for p in pieces)


@dataclass(frozen=True, eq=False)
class Representation:
    """A language or task representation: a soft prompt or an adapter.

    A prompt holds its weights here (``prompt``). An adapter's weights live inside the
    base model once attached (the `adapters` library injects them), so here it holds only
    its spec and, when loaded from disk, the directory to load them from (``path``).

    ``id`` is unique within a loaded base: any number of representations (two qa task
    adapters trained on en and de...) are loaded side by side under their ids and
    activated per call. A loaded representation's id ends in a hash of its weight files
    (``content_hash``), so the same files always get the same id and different files a
    different one; a fresh one's id ends in a token unique to this process unless the
    caller names it (training does, so checkpoints of a resumed run fit).

    The record is frozen: composing, training and saving never change it (a prompt's
    weights, a module, do change while it trains).
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
    id: str = ""
    content_hash: str | None = None

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
            object.__setattr__(self, "adapter", AdapterSpec())
        if not self.id:
            source = self.training.get("source_language") if self.role == "task" else None
            source = source if isinstance(source, str) else None
            token = self.content_hash[:12] if self.content_hash else f"new{next(_FRESH)}"
            object.__setattr__(
                self, "id", representation_id(self.role, self.kind, self.subject, source, token)
            )
        elif not isinstance(self.id, str) or not _ID.fullmatch(self.id):
            raise LangTransferError(
                f"representation id {self.id!r} may hold only letters, digits, '_' and '-'"
            )

    @property
    def in_layers(self) -> bool:
        """Lives inside the base's layers (an adapter), not before the input (a prompt)."""
        return KIND_PLACEMENT[self.kind] == "layers"

    @property
    def soft_prompt(self) -> SoftPrompt:
        """A prompt representation's weights."""
        if self.prompt is None:
            raise LangTransferError(f"{self.id} is a {self.kind}, not a prompt")
        return self.prompt

    @property
    def subject(self) -> str:
        """The language code of a language representation, the task of a task one."""
        subject = self.language if self.role == "language" else self.task
        assert subject is not None  # checked in __post_init__
        return subject

    @property
    def name(self) -> str:
        """The id (the `adapters` library's adapter name)."""
        return self.id

    @property
    def label(self) -> str:
        """``lang_sk``, ``task_qa``: role and subject, for manifests and AdapterHub files."""
        prefix = "lang" if self.role == "language" else "task"
        return f"{prefix}_{_UNSAFE.sub('_', self.subject)}"

    @property
    def where(self) -> str:
        """Where it came from, for messages: its directory, or ``in memory``."""
        return str(self.path) if self.path is not None else "in memory"

    @property
    def short(self) -> str:
        """``la``/``slp`` for language, ``ta``/``stp`` for task representations."""
        return short_name(self.role, self.kind)


#: Tokens for fresh representations' ids: unique within the process.
_FRESH = itertools.count(1)


def new_prompt(
    role: str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    config: PromptConfig,
    *,
    language: str | None = None,
    task: str | None = None,
    settings_hash: str | None = None,
    id: str = "",
) -> Representation:
    """A fresh soft prompt initialised from ``model``'s input embeddings."""
    embeddings = cast(nn.Embedding, model.get_input_embeddings())
    prompt = SoftPrompt.initialise(config, embeddings, tokenizer)
    return Representation(
        kind="prompt",
        role=role,
        language=language,
        task=task,
        prompt=prompt,
        prompt_config=config,
        base_model=fingerprint(model),
        settings_hash=settings_hash,
        id=id,
    )


def new_adapter(
    role: str,
    spec: AdapterSpec | None = None,
    *,
    language: str | None = None,
    task: str | None = None,
    settings_hash: str | None = None,
    id: str = "",
) -> Representation:
    """A fresh adapter; its weights are created when it is attached to a base model."""
    return Representation(
        kind="adapter",
        role=role,
        language=language,
        task=task,
        adapter=spec or AdapterSpec(),
        settings_hash=settings_hash,
        id=id,
    )


def new_representation(
    kind: str,
    role: str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    prompt: PromptConfig | None = None,
    adapter: AdapterSpec | None = None,
    language: str | None = None,
    task: str | None = None,
    settings_hash: str | None = None,
    id: str = "",
) -> Representation:
    """A fresh representation of ``kind``: a prompt shaped by ``prompt``, or an adapter by
    ``adapter`` (the other one is ignored), so callers need not branch on the kind."""
    check_kind(kind)
    common: dict[str, Any] = dict(
        language=language, task=task, settings_hash=settings_hash, id=id
    )
    if kind == "prompt":
        if prompt is None:
            raise LangTransferError("a new prompt needs its PromptConfig")
        return new_prompt(role, model, tokenizer, prompt, **common)
    return new_adapter(role, adapter, **common)
