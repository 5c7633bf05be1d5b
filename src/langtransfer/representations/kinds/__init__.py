"""The representation kinds, one module each, registered in :data:`KINDS`.

Each kind implements :class:`~langtransfer.representations.kinds.base.RepresentationKind`
(its spec, its weights, what it does on a base model); composition, training, the study
and the predictor find a representation's kind with :func:`kind_of` and ask it. Adding
a kind is a module here and one line in :data:`KINDS` (docs/development.md).
"""

from __future__ import annotations

from typing import Any

from langtransfer.representations.base import Representation
from langtransfer.representations.kinds.adapter import AdapterKind, AdapterSpec
from langtransfer.representations.kinds.base import (
    KindOption,
    RepresentationKind,
    Rows,
    SpecContext,
    kind_by_name,
)
from langtransfer.representations.kinds.prompt import PromptConfig, PromptKind

#: The spec keys manifests and study job settings have always held, each kind's spec (or
#: None) under its name: a kind added later keeps its spec under its own name beside them,
#: so no earlier manifest or settings hash changes.
SPEC_KEYS = ("prompt", "adapter")

#: Every representation kind by name, one line per kind.
KINDS: dict[str, RepresentationKind] = {kind.name: kind for kind in (
    PromptKind(),
    AdapterKind(),
)}


def get_kind(name: object) -> RepresentationKind:
    """The kind called ``name``; an unknown name is an error naming the valid ones."""
    return kind_by_name(KINDS, name)


def kind_of(rep: Representation) -> RepresentationKind:
    """The kind of ``rep``."""
    return get_kind(rep.kind)


def new_representation(
    kind: str,
    role: str,
    model: Any,
    tokenizer: Any,
    spec: Any = None,
    *,
    language: str | None = None,
    task: str | None = None,
    settings_hash: str | None = None,
    id: str = "",
) -> Representation:
    """A fresh representation of ``kind`` for ``role`` on ``model``, shaped by ``spec``
    (the kind's spec class; an adapter's may be None: the paper's)."""
    return get_kind(kind).new(role, spec, model, tokenizer, language=language, task=task,
                              settings_hash=settings_hash, id=id)


def new_prompt(role: str, model: Any, tokenizer: Any, config: PromptConfig,
               **common: Any) -> Representation:
    """A fresh soft prompt initialised from ``model``'s input embeddings per ``config``."""
    return new_representation("prompt", role, model, tokenizer, config, **common)


def new_adapter(role: str, spec: AdapterSpec | None = None, **common: Any) -> Representation:
    """A fresh adapter; its weights are made when it is attached to a base model."""
    return new_representation("adapter", role, None, None, spec, **common)


__all__ = [
    "KINDS",
    "SPEC_KEYS",
    "AdapterKind",
    "AdapterSpec",
    "KindOption",
    "PromptConfig",
    "PromptKind",
    "RepresentationKind",
    "Rows",
    "SpecContext",
    "get_kind",
    "kind_of",
    "new_adapter",
    "new_prompt",
    "new_representation",
]
