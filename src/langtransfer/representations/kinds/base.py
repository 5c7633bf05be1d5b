"""What a representation kind is: the interface each kind's module implements.

A kind (``prompt``, ``adapter``) owns everything that differs between kinds, after the
`adapters` library's method classes (each owns add / load / activate / remove / average
for its method) and PEFT's tuners (a config class and a model class per method):

- its **spec** (:attr:`RepresentationKind.spec_type`, a torch-free dataclass with
  ``to_dict``: how a representation of the kind is shaped), the spec keys a study and the
  command line may set (:attr:`~RepresentationKind.options`), the spec a role gets by
  default (:meth:`~RepresentationKind.spec`), and the paper's training settings for it
  (:attr:`~RepresentationKind.training_defaults`);
- its **weights**: made fresh (:meth:`~RepresentationKind.new`), saved and loaded
  (:meth:`~RepresentationKind.save`, :meth:`~RepresentationKind.load`, the files in
  :attr:`~RepresentationKind.files`), combined into one without training
  (:meth:`~RepresentationKind.combine`);
- what it does **on a base model** in a composed model: what it needs of the base
  beyond its fingerprint (:meth:`~RepresentationKind.check_fits`), how it enters and
  leaves the shared base (:meth:`~RepresentationKind.add`,
  :meth:`~RepresentationKind.remove`), the module a composed model holds for it
  (:meth:`~RepresentationKind.held`: a prompt, put before the input), how it is made
  active for a call, one representation per row in mixed batches
  (:meth:`~RepresentationKind.activate`), and how it trains
  (:meth:`~RepresentationKind.train`).

Composition, training, the study and the predictor ask the kind
(:func:`langtransfer.representations.kinds.kind_of`) and never branch on its name. A
kind's module imports nothing heavy at import time (reading a study config reads specs
and options, and must not load torch): torch and the libraries a kind runs on are
imported inside the methods that use them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from langtransfer.errors import LangTransferError, UnknownNameError

if TYPE_CHECKING:
    from torch import nn

    from langtransfer.profiles import Profile
    from langtransfer.representations.base import Representation

#: Per role, each row's representation of one kind in a call (None: the row has none of
#: this kind in that role). A call without a bank has one entry per role: all rows.
Rows = Mapping[str, Sequence["Representation | None"]]


@dataclass(frozen=True)
class KindOption:
    """One spec field a study (``language_training.<kind>.<key>``) and the command line
    (``flag``) may set. ``type`` is ``int`` (a positive integer; None too with
    ``nullable``: the library's default) or ``str``."""

    key: str
    flag: str
    type: type
    help: str
    nullable: bool = False

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` for this option ("must be ..."), or None."""
        if self.type is int:
            ok = (isinstance(value, int) and not isinstance(value, bool) and value >= 1) or (
                value is None and self.nullable)
            return None if ok else "must be a positive integer"
        return None if isinstance(value, str) else "must be a string"


@dataclass(frozen=True)
class SpecContext:
    """What a role's default spec may start from: the language's name (``{Language}`` in
    an instruction), the role's default instruction (a language's or a task's), the
    task's label words and the seed."""

    role: str
    language_name: str
    init_text: str
    label_words: list[str] | None = None
    seed: int = 42


class RepresentationKind(ABC):
    """One kind of representation. Subclasses set the class attributes and implement the
    abstract methods; the others have the defaults of a kind that lives in the input
    (nothing to add to the base, nothing to activate)."""

    #: The kind's name: ``--kind``, the manifest's ``kind``, the key of its study table.
    name: ClassVar[str]
    #: What a user calls it ("soft prompt"), for help texts.
    label: ClassVar[str]
    #: The spec class (torch-free, ``to_dict``); the manifest keeps it under :attr:`name`.
    spec_type: ClassVar[type]
    #: Spec fields a study and the command line may set, in the order shown.
    options: ClassVar[tuple[KindOption, ...]] = ()
    #: The paper's ``TrainSettings`` for the kind, over the common defaults.
    training_defaults: ClassVar[Mapping[str, Any]] = {}
    #: The weight files of a directory of the kind (what its content hash covers).
    files: ClassVar[tuple[str, ...]] = ()
    #: How a combination is made, for the manifest (``training.composed.method``).
    combine_method: ClassVar[str] = ""
    #: Rows using different representations of the kind must be grouped into runs of
    #: rows (a ``BatchSplit``): the composed model reorders them, and beam search, which
    #: changes the row count, cannot run such a batch.
    splits_rows: ClassVar[bool] = False

    def __repr__(self) -> str:
        return f"<representation kind {self.name}>"

    # -- specs (no torch) ---------------------------------------------------------------

    def spec(self, values: Mapping[str, Any], context: SpecContext) -> Any:
        """The spec for ``context.role`` with ``values`` (option keys) over the role's
        defaults. Subclasses add their defaults and call :meth:`check_keys` too."""
        return self.spec_type(**self.check_keys(values))

    def check_keys(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` if each is one of the kind's options; else an error naming them."""
        keys = [option.key for option in self.options]
        for key in values:
            if key not in keys:
                raise UnknownNameError(f"{self.name} option", key, keys)
        return dict(values)

    def check_spec(self, spec: Any) -> Any:
        """``spec`` if it is this kind's; else an error naming both."""
        if not isinstance(spec, self.spec_type):
            raise LangTransferError(
                f"a {self.name} representation takes a {self.spec_type.__name__}, got "
                f"{type(spec).__name__}"
            )
        return spec

    def check_values(self, role: str, values: Mapping[str, Any]) -> str | None:
        """A problem with a study's ``values`` for ``role`` beyond each option's type (one
        line, without the config's location), or None."""
        return None

    def profile_spec(self, spec: Any, profile: Profile) -> Any:
        """``spec`` as ``profile`` (:mod:`langtransfer.profiles`) shapes the kind's specs
        (the reference's prompt parameter has twice the rows)."""
        return spec

    def profile_training(self, role: str, profile: Profile) -> dict[str, Any]:
        """``TrainSettings`` values ``profile`` sets for the kind in ``role`` where nothing
        else does (the reference's task prompts keep the final step)."""
        return {}

    def with_text(self, spec: Any, texts: Iterable[str], tokenizer: Any) -> Any:
        """``spec`` completed from a language representation's training text, which it
        may read (a prompt initialised from the language's frequent tokens counts them)."""
        return spec

    # -- weights ---------------------------------------------------------------------

    @abstractmethod
    def new(self, role: str, spec: Any, model: Any, tokenizer: Any,
            **common: Any) -> Representation:
        """A fresh representation of ``role`` shaped by ``spec`` for ``model``;
        ``common``: the record's other fields (language, task, settings_hash, id)."""

    @abstractmethod
    def save(self, rep: Representation, directory: Path, model: Any | None) -> None:
        """Write the weight files into ``directory`` (the manifest is written beside
        them); ``model``: the base the representation is attached to, if any."""

    @abstractmethod
    def load(self, directory: Path, manifest: Mapping[str, Any],
             common: dict[str, Any]) -> Representation:
        """The representation in ``directory``, its weights checked; ``common``: the
        record's fields read from the manifest."""

    def check_combinable(self, a: Representation, b: Representation) -> None:
        """Raise if ``b`` cannot be combined with ``a`` (kind and base are checked)."""
        return None

    @abstractmethod
    def combine(self, parts: Sequence[tuple[Representation, float]], model: Any | None,
                **common: Any) -> Representation:
        """The weighted combination of ``parts`` as a new representation with the record
        fields ``common``. A kind whose weights live in the base finds the parts attached
        to ``model`` and adds the combination there (the caller saves and removes it)."""

    # -- on a base model ---------------------------------------------------------------

    def check_fits(self, rep: Representation, model: Any, what: str) -> None:
        """Raise if ``rep`` cannot run on ``model`` for a reason its base-model
        fingerprint does not show (``what`` names it in the message)."""
        return None

    def held(self, rep: Representation) -> nn.Module | None:
        """The module a composed model holds for ``rep`` and puts before the input (its
        ``forward()`` returns the tokens × width embeddings), or None for a kind that
        acts inside the base."""
        return None

    def prepare(self, model: Any) -> None:
        """Before a composed model adds its first representation of the kind to
        ``model``: make the base ready for the kind."""
        return None

    def add(self, model: Any, rep: Representation) -> None:
        """Put ``rep``'s weights into the shared ``model`` under ``rep.id``."""
        return None

    def remove(self, model: Any, rep: Representation) -> None:
        """Take what :meth:`add` (or :meth:`combine`) put into ``model`` out again."""
        return None

    def activate(self, model: Any, rows: Rows) -> None:
        """Make exactly the representations of this kind in ``rows`` active in the
        shared ``model`` for the next call (none: deactivate every one of the kind). With
        one entry per role, every row runs with it; with one per row (grouped into runs
        if :attr:`splits_rows`), each row runs with its own."""
        return None

    @abstractmethod
    def train(self, model: Any, rep: Representation) -> None:
        """Give ``rep``'s weights gradients (everything else is frozen already)."""

    def bank_key(self, rep: Representation) -> Hashable:
        """What representations of one bank (one call's rows) must share."""
        return None

    def check_bank(self, role: str, reps: Sequence[Representation]) -> None:
        """Raise if ``reps`` (all of this kind) cannot share one bank."""
        return None


def kind_by_name(kinds: Mapping[str, RepresentationKind], name: object) -> RepresentationKind:
    """``kinds[name]``; an unknown name is an error naming the valid ones."""
    try:
        return kinds[name]  # type: ignore[index]
    except (KeyError, TypeError):
        raise UnknownNameError("representation kind", name, kinds) from None
