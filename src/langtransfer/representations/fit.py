"""The one check that a representation fits the slot it is loaded into: its role, its
language (a language slot) or task (a task slot), and the base model it runs on."""

from __future__ import annotations

from typing import Any

from langtransfer.base.loading import check_compatible
from langtransfer.errors import LangTransferError
from langtransfer.representations.base import Representation
from langtransfer.representations.kinds import kind_of


def check_fit(
    rep: Representation,
    role: str | None = None,
    *,
    language: str | None = None,
    task: str | None = None,
    model: Any = None,
    where: object = None,
    language_use: str = "the evaluation language",
    hint: str = "",
) -> None:
    """Raise unless ``rep`` is a ``role`` representation, for ``language`` / ``task``
    (when given), made for ``model`` (its recorded base model, and what its kind needs:
    a prompt's width).

    ``where`` names it in messages (a directory or hub id as the user gave it; default
    its id); ``language_use`` says what ``language`` is (``the training language``...);
    ``hint`` ends the wrong-role message (what to pass instead)."""
    name = rep.id if where is None else where
    if role is not None and rep.role != role:
        raise LangTransferError(f"{name} is a {rep.role} representation, not a {role} one"
                                + (f": {hint}" if hint else ""))
    if language is not None and rep.language != language:
        # Zero-shot transfer swaps in the *target's* representation; scoring another
        # language's under this language's name would silently mislabel the result.
        raise LangTransferError(
            f"{name} is a language representation for {rep.language!r}, but "
            f"{language_use} is {language!r}: pass the {language!r} representation"
        )
    if task is not None and rep.task != task:
        raise LangTransferError(f"{name} was trained for task {rep.task!r}, not {task!r}")
    if model is not None:
        what = f"{rep.role} {rep.kind} {name}"
        if rep.base_model is not None:
            check_compatible(rep.base_model, model, what)
        kind_of(rep).check_fits(rep, model, what)
