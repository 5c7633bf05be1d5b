"""What a configuration is, as data: name -> (language kind, task kind).

This is the one table composition, the study config, the results store and the report
read. It imports nothing heavy (no torch), so reading results and building reports stays
fast.

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

The first seven are the paper's (in its order, the order of report rows); ``la`` and
``slp`` are the language-only set-ups language representations are trained in. To add a
configuration, add a row to :data:`CONFIGURATIONS` (or :data:`LANGUAGE_ONLY`); a new
representation kind adds its name and short names here (docs/development.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from langtransfer.errors import UnknownNameError

#: The representation kinds' names. What a kind is and does (its spec, its weights, how it
#: attaches to a base) is its module in ``langtransfer.representations.kinds``, registered
#: there in ``KINDS`` (a test checks the two name the same kinds).
REPRESENTATION_KINDS: tuple[str, ...] = ("prompt", "adapter")
#: What a representation is for: the language it adapts to, or the task it solves.
ROLES: tuple[str, ...] = ("language", "task")

#: The paper's short names of (role, kind): la, slp, ta, stp.
SHORT_NAMES: dict[tuple[str, str], str] = {
    ("language", "adapter"): "la",
    ("language", "prompt"): "slp",
    ("task", "adapter"): "ta",
    ("task", "prompt"): "stp",
}


@dataclass(frozen=True)
class Configuration:
    """A configuration: which kind of language and task representation it composes."""

    name: str
    language_kind: str | None
    task_kind: str | None

    def kind(self, role: str) -> str | None:
        """The kind of representation the configuration uses in ``role`` (None: none)."""
        if role not in ROLES:
            raise UnknownNameError("representation role", role, ROLES)
        return self.language_kind if role == "language" else self.task_kind

    @property
    def kinds(self) -> tuple[str | None, str | None]:
        return self.language_kind, self.task_kind

    @property
    def uses_language(self) -> bool:
        return self.language_kind is not None

    @property
    def uses_task(self) -> bool:
        return self.task_kind is not None


def _table(*rows: tuple[str, str | None, str | None]) -> dict[str, Configuration]:
    return {name: Configuration(name, lang, task) for name, lang, task in rows}


#: The paper's seven configurations, in its order.
CONFIGURATIONS: dict[str, Configuration] = _table(
    ("base", None, None),
    ("ta", None, "adapter"),
    ("stp", None, "prompt"),
    ("la+ta", "adapter", "adapter"),
    ("la+stp", "adapter", "prompt"),
    ("slp+ta", "prompt", "adapter"),
    ("slp+stp", "prompt", "prompt"),
)
#: Language representation only: how language representations are trained.
LANGUAGE_ONLY: dict[str, Configuration] = _table(("la", "adapter", None), ("slp", "prompt", None))
ALL_CONFIGURATIONS: dict[str, Configuration] = {**CONFIGURATIONS, **LANGUAGE_ONLY}
#: The seven names in the paper's order (study grids, report rows).
STUDY_CONFIGURATIONS: tuple[str, ...] = tuple(CONFIGURATIONS)


def get_configuration(name: str, *, study: bool = False) -> Configuration:
    """The configuration called ``name`` (``study``: only the paper's seven)."""
    table = CONFIGURATIONS if study else ALL_CONFIGURATIONS
    try:
        return table[name]
    except (KeyError, TypeError):
        raise UnknownNameError("configuration", name, table) from None


def configuration_kinds(name: str) -> tuple[str | None, str | None]:
    """(language kind, task kind) of a configuration name such as ``slp+ta``."""
    return get_configuration(name).kinds


def configuration_for(language_kind: str | None, task_kind: str | None) -> Configuration:
    """The configuration that composes a ``language_kind`` and a ``task_kind``
    representation (None: no representation in that role)."""
    for configuration in ALL_CONFIGURATIONS.values():
        if configuration.kinds == (language_kind, task_kind):
            return configuration
    kinds = [k for k in (language_kind, task_kind) if k not in (None, *REPRESENTATION_KINDS)]
    raise UnknownNameError("representation kind", kinds[0] if kinds else None, REPRESENTATION_KINDS)


def short_name(role: str, kind: str) -> str:
    """``la``/``slp`` for language, ``ta``/``stp`` for task representations."""
    try:
        return SHORT_NAMES[(role, kind)]
    except KeyError:
        if role not in ROLES:
            raise UnknownNameError("representation role", role, ROLES) from None
        raise UnknownNameError("representation kind", kind, REPRESENTATION_KINDS) from None


def check_kind(kind: object) -> str:
    """``kind`` if it is a representation kind; else an error naming the valid ones."""
    if kind not in REPRESENTATION_KINDS:
        raise UnknownNameError("representation kind", kind, REPRESENTATION_KINDS)
    return str(kind)
