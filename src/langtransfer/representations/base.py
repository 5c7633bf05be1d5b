"""The Representation record: one trained (or fresh) language or task representation.

The record is the same for every kind; what differs (its spec, its weights, how it
attaches to a base) belongs to the kind (:mod:`langtransfer.representations.kinds`).
This module imports no torch.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langtransfer.configurations import ROLES, check_kind, short_name
from langtransfer.errors import LangTransferError, UnknownNameError

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
    """A language or task representation of a kind (``prompt``, ``adapter``).

    ``spec`` is the kind's spec (a prompt's :class:`PromptConfig`, an adapter's
    :class:`AdapterSpec`; None: not known, e.g. an imported prompt). ``weights`` is the
    module holding its weights when the record holds them (a prompt's
    :class:`~langtransfer.representations.prompt.SoftPrompt`); an adapter's live inside
    the base model once attached, and a loaded one's ``path`` says where to load them from.

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
    spec: Any = None
    weights: Any = None
    path: Path | None = None
    base_model: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    settings_hash: str | None = None
    id: str = ""
    content_hash: str | None = None

    def __post_init__(self) -> None:
        check_kind(self.kind)
        if self.role not in ROLES:
            raise UnknownNameError("representation role", self.role, ROLES)
        if self.role == "language" and not self.language:
            raise LangTransferError("a language representation needs a language code")
        if self.role == "task" and not self.task:
            raise LangTransferError("a task representation needs a task name")
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
