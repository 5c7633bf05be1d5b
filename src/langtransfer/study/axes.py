"""Study axes: language-representation variants that answer the paper's open questions.

The ``axes`` section of a study config lists, per axis, values to compare with the
paper's choice::

    axes:
      init: [vocab, random, frequent]        # how a soft language prompt starts
      instruction: [native, {terse: "{Language}:"}]   # the text the prompt starts from
      corpus_size: [full, 1000, 10k, 50k tokens]      # how much text it trains on

Each value that differs from the study's own setting is one :class:`Variant`: the
study's language representations with that one setting changed (axes are not crossed,
so a variant differs from the paper's rows in exactly one thing). A variant gets its own
language representations, its own task representations trained with the source's
variant representation attached, and its own evaluation cells, for every configuration
whose language representation it applies to (``init`` and ``instruction``: soft language
prompts; ``corpus_size``: prompts and adapters). A value equal to the study's own
setting (``text``, ``english``, ``paper`` by default) names the default rows, which every
study has.

``within: {tasks: [...], targets: [...], configurations: [...]}`` limits the variants to
part of the grid (each a subset of the study's own list; a variant's task
representations still use the source's variant language representation), so an axis
can be tried cheaply on one task and a few languages.

Variant labels (``init=vocab``, ``instruction=native``, ``corpus=10k``,
``corpus=50k-tokens``, ``corpus=full``) name the variant's directories and report rows,
so they are path-safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from langtransfer.configurations import (
    REPRESENTATION_KINDS,
    STUDY_CONFIGURATIONS,
    get_configuration,
)
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.languages import INSTRUCTION_TEMPLATE, NATIVE_INSTRUCTION, Language

AXES = ("init", "instruction", "corpus_size")
#: The key of ``axes`` that limits where the variants run (not an axis).
WITHIN = "within"
WITHIN_KEYS = ("tasks", "targets", "configurations")
#: The kind whose initialisation the ``init`` and ``instruction`` axes vary (a corpus size
#: applies to every kind).
INIT_KINDS = ("prompt",)
#: Language-prompt initialisations an axis may compare (``labels`` is for task prompts).
INIT_VALUES = ("text", "vocab", "random", "frequent")
#: The paper's instruction, and the one written in the language itself.
ENGLISH_INSTRUCTION = "english"
#: Named corpus sizes: the reference's slice and the whole source.
PAPER_CORPUS, FULL_CORPUS = "paper", "full"

_LABEL_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_SIZE_RE = re.compile(r"^\s*(-?\d+)\s*([kKmM]?)\s*(documents?|docs?|tokens?)?\s*$")
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}


@dataclass(frozen=True)
class Variant:
    """One language-representation variant: the study's setting with one axis changed.

    ``kinds``: the language-representation kinds it applies to. The setting it changes is
    one of ``init`` (a prompt initialisation), ``template`` (an instruction template;
    ``native`` is each language's own), or ``extent``/``max_documents``/``max_tokens``
    (how much text: ``extent`` ``full`` reads the whole source, then the caps apply).
    """

    axis: str
    label: str
    kinds: tuple[str, ...]
    init: str | None = None
    template: str | None = None
    extent: str = PAPER_CORPUS
    max_documents: int | None = None
    max_tokens: int | None = None

    def applies_to(self, language_kind: str | None) -> bool:
        return language_kind is not None and language_kind in self.kinds

    def spec_changes(self, language: Language) -> dict[str, Any]:
        """The fields of ``language``'s representation spec this variant changes (the
        ``init`` and ``instruction`` axes: a prompt's initialisation; a corpus size
        changes none)."""
        if self.template is not None:
            return {"init": "text", "init_text": language.instruction_from(self.template)}
        if self.init is not None:
            return {"init": self.init}
        return {}


@dataclass(frozen=True)
class Within:
    """Where the variants run: ``None`` is the study's whole list."""

    tasks: tuple[str, ...] | None = None
    targets: tuple[str, ...] | None = None
    configurations: tuple[str, ...] | None = None

    def covers(self, task: str, configuration: str, target: str) -> bool:
        return all(
            allowed is None or value in allowed
            for allowed, value in ((self.tasks, task), (self.configurations, configuration),
                                   (self.targets, target))
        )


def parse_within(axes: Any, grid: dict[str, list[str]], where: str) -> Within:
    """``axes.within``: each key a subset of the study's own ``tasks``/``targets``/
    ``configurations`` (``grid``), names normalised as the study's are."""
    from langtransfer.languages import get_language

    value = axes.get(WITHIN) if isinstance(axes, dict) else None
    if value is None:
        return Within()
    if not isinstance(value, dict):
        raise LangTransferError(
            f"{where}: axes.within must be a mapping of {', '.join(WITHIN_KEYS)}"
        )
    limits: dict[str, tuple[str, ...]] = {}
    for key, names in value.items():
        if key not in WITHIN_KEYS:
            raise UnknownNameError(f"key in {where} axes.within", key, WITHIN_KEYS)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise LangTransferError(f"{where}: axes.within.{key} must be a non-empty list of names")
        if key == "targets":
            names = [get_language(n).code for n in names]
        for name in names:
            if name not in grid[key]:
                raise UnknownNameError(f"{key[:-1]} in {where} axes.within.{key} (the study's "
                                       f"{key})", name, grid[key])
        limits[key] = tuple(names)
    return Within(**limits)


def compact(n: int) -> str:
    """``1000`` -> ``1k``, ``2000000`` -> ``2M``, ``1500`` -> ``1500``."""
    for suffix, scale in (("M", 1_000_000), ("k", 1_000)):
        if n % scale == 0:
            return f"{n // scale}{suffix}"
    return str(n)


def _corpus_variant(value: Any, where: str) -> Variant | None:
    """A ``corpus_size`` value: ``paper`` (None: the default), ``full``, or a cap."""
    kinds = REPRESENTATION_KINDS
    if value == PAPER_CORPUS:
        return None
    if value == FULL_CORPUS:
        return Variant("corpus_size", "corpus=full", kinds, extent=FULL_CORPUS)
    is_int = isinstance(value, int) and not isinstance(value, bool)
    match = _SIZE_RE.match(str(value)) if is_int or isinstance(value, str) else None
    if match is None:
        raise LangTransferError(
            f"{where}: corpus_size value {value!r} is not paper, full, a document count "
            "(1000, 10k, 1M) or a token count ('50k tokens')"
        )
    n = int(match.group(1)) * _SCALE[match.group(2).lower()]
    if n <= 0:
        raise LangTransferError(
            f"{where}: corpus_size cap {value!r} is not positive; a cap is a number of "
            "documents (1000, 10k) or tokens ('50k tokens') >= 1"
        )
    if (match.group(3) or "").startswith("token"):
        return Variant("corpus_size", f"corpus={compact(n)}-tokens", kinds,
                       extent=FULL_CORPUS, max_tokens=n)
    return Variant("corpus_size", f"corpus={compact(n)}", kinds,
                   extent=FULL_CORPUS, max_documents=n)


def _init_variant(value: Any, default_init: str, where: str) -> Variant | None:
    if value not in INIT_VALUES:
        raise UnknownNameError(f"language-prompt initialisation in {where} axes.init", value,
                               INIT_VALUES)
    if value == default_init:
        return None
    return Variant("init", f"init={value}", INIT_KINDS, init=value)


def _instruction_variant(value: Any, default_template: str, where: str) -> Variant | None:
    """``english`` (the paper's), ``native`` (each language's own) or ``{label: template}``."""
    if isinstance(value, dict) and len(value) == 1:
        label, template = next(iter(value.items()))
        if not isinstance(label, str) or not _LABEL_RE.match(label) or label in (
            ENGLISH_INSTRUCTION, NATIVE_INSTRUCTION
        ):
            raise LangTransferError(
                f"{where}: instruction label {label!r} must be letters, digits, '.', '_' or "
                f"'-' and not {ENGLISH_INSTRUCTION!r} or {NATIVE_INSTRUCTION!r}"
            )
        if not isinstance(template, str) or not template.strip():
            raise LangTransferError(
                f"{where}: instruction {label!r} must be a non-empty template, got {template!r}"
            )
    elif value == ENGLISH_INSTRUCTION:
        label, template = value, INSTRUCTION_TEMPLATE
    elif value == NATIVE_INSTRUCTION:
        label, template = value, NATIVE_INSTRUCTION
    else:
        raise LangTransferError(
            f"{where}: instruction value {value!r} is not {ENGLISH_INSTRUCTION!r}, "
            f"{NATIVE_INSTRUCTION!r} or a mapping {{label: template}} (e.g. "
            "{terse: '{Language}:'})"
        )
    if template == default_template:
        return None
    return Variant("instruction", f"instruction={label}", INIT_KINDS, init="text",
                   template=template)


def _identity(v: Variant) -> tuple[Any, ...]:
    """What a variant changes: two values changing the same thing repeat each other."""
    return (v.axis, v.init, v.template, v.extent, v.max_documents, v.max_tokens)


def parse_axes(
    axes: Any,
    *,
    default_init: str = "text",
    default_template: str = INSTRUCTION_TEMPLATE,
    language_kinds: set[str] | frozenset[str] = frozenset(REPRESENTATION_KINDS),
    where: str = "study config",
) -> list[Variant]:
    """The variants of an ``axes`` mapping, checked: an unknown axis or value, a value
    that repeats (also as another spelling: ``1000`` and ``1k``), a cap that is not
    positive, or an axis that applies to none of the study's language kinds is an error
    naming it."""
    if axes is None:
        return []
    if not isinstance(axes, dict):
        raise LangTransferError(f"{where}: 'axes' must be a mapping axis -> list of values")
    variants: list[Variant] = []
    for axis, values in axes.items():
        if axis == WITHIN:
            continue
        if axis not in AXES:
            raise UnknownNameError(f"axis in {where} axes", axis, (*AXES, WITHIN))
        if not isinstance(values, list) or not values:
            raise LangTransferError(f"{where}: axes.{axis} must be a non-empty list of values")
        seen: dict[tuple[Any, ...], Any] = {}
        for value in values:
            if axis == "init":
                variant = _init_variant(value, default_init, where)
            elif axis == "instruction":
                variant = _instruction_variant(value, default_template, where)
            else:
                variant = _corpus_variant(value, where)
            identity = ("default",) if variant is None else _identity(variant)
            if identity in seen:
                raise LangTransferError(
                    f"{where}: axes.{axis} value {value!r} repeats {seen[identity]!r}"
                )
            seen[identity] = value
            if variant is None:
                continue
            if not set(variant.kinds) & set(language_kinds):
                using = [c for c in STUDY_CONFIGURATIONS
                         if get_configuration(c).language_kind in variant.kinds]
                raise LangTransferError(
                    f"{where}: axes.{axis} varies language {' and '.join(variant.kinds)}s, but "
                    f"no configuration of the study uses one (add {', '.join(using[:-1])} or "
                    f"{using[-1]})"
                )
            if any(v.label == variant.label for v in variants):
                raise LangTransferError(
                    f"{where}: axes.{axis} value {value!r} repeats variant {variant.label}"
                )
            variants.append(variant)
    return variants
