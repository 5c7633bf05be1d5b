"""Attaching representations to a shared base model: slots, activation, training.

One base, many composed models: each representation takes a *slot* in the base under
its id (its kind adds what it needs to the base: an adapter's weights go into the base's
layers under that name); a composed model that holds the same files shares the slot, and
a different representation under a taken id is refused. Several composed models can
therefore live on one base, each activating its own representations at every call, and
:meth:`AttachedModel.close` gives its slots back, so the base ends as it started.

What a kind does in a slot (add, activate, remove, train, the module a composed model
holds for it) is the kind's (:mod:`langtransfer.representations.kinds`); this module
keeps the books: which model uses which slot, and which representation is attached in
which role.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedModel

from langtransfer.base.families import family_of
from langtransfer.configurations import ROLES
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.representations.base import Representation
from langtransfer.representations.fit import check_fit
from langtransfer.representations.kinds import KINDS, kind_of
from langtransfer.representations.store import save_representation


class Slots:
    """What is loaded into one base model under which id, and how many composed models use
    each (the base is shared: one process keeps one copy of mT0)."""

    def __init__(self) -> None:
        self.reps: dict[str, Representation] = {}
        self.users: dict[str, int] = {}


_SLOTS: weakref.WeakKeyDictionary[nn.Module, Slots] = weakref.WeakKeyDictionary()


def slots_of(base: nn.Module) -> Slots:
    if base not in _SLOTS:
        _SLOTS[base] = Slots()
    return _SLOTS[base]


def loaded_representations(base: nn.Module) -> dict[str, Representation]:
    """The representations composed models currently hold in ``base``, by id."""
    return dict(slots_of(base).reps)


class AttachedModel(nn.Module):
    """A frozen base model (seq2seq or causal, :attr:`family`) with at most one language
    and one task representation attached.

    A kind that acts before the input (a prompt) gives this model a module to hold
    (:attr:`prompts`, by role: the name is in training checkpoints' keys); a kind that acts
    inside the base (an adapter) lives in the base's slot. :meth:`set_trainable` names the
    one representation whose parameters get gradients; everything else is frozen.
    """

    # A transformers model to which the `adapters` library adds methods at run time.
    base: Any

    def __init__(self, base: PreTrainedModel):
        super().__init__()
        self.base = base
        self.family = family_of(base)  # raises for a base that is neither family
        self.prompts = nn.ModuleDict()
        self._held: list[str] = []  # ids this model uses in the base's slots
        self._prepared: set[str] = set()  # kinds made ready on the base for this model
        self.language: Representation | None = None
        self.task: Representation | None = None
        self.trained_role: str | None = None
        self.base.requires_grad_(False)

    @property
    def config(self):  # Trainer and generation utilities look for model.config
        return self.base.config

    def __enter__(self) -> AttachedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- slots ---------------------------------------------------------------------------

    def _acquire(self, rep: Representation) -> None:
        """Load ``rep`` into the base under its id, or share the copy loaded already.

        Another representation under the same id is an error, never replaced: ids hold
        the content hash of loaded files, so a clash means two different representations
        claim one slot (e.g. two fresh ones given the same id).
        """
        slots = slots_of(self.base)
        held = slots.reps.get(rep.id)
        if held is not None and held is not rep and (
            held.content_hash is None or held.content_hash != rep.content_hash
        ):
            raise LangTransferError(
                f"representation id {rep.id!r} of {rep.role} {rep.kind} {rep.where} clashes "
                f"with another representation already loaded in this base ({held.where})"
            )
        if held is None:
            kind = kind_of(rep)
            if kind.name not in self._prepared:
                self._prepared.add(kind.name)
                kind.prepare(self.base)
            kind.add(self.base, rep)
            slots.reps[rep.id] = rep
        slots.users[rep.id] = slots.users.get(rep.id, 0) + 1
        self._held.append(rep.id)

    def _release(self, rep: Representation) -> None:
        """Give up this model's use of ``rep``; the last user takes it out of the base (it
        added it), so nothing of one composition stays in a shared base."""
        slots = slots_of(self.base)
        self._held.remove(rep.id)
        slots.users[rep.id] -= 1
        if slots.users[rep.id] == 0:
            del slots.users[rep.id]
            held = slots.reps.pop(rep.id)
            kind_of(held).remove(self.base, held)

    # -- attaching -----------------------------------------------------------------------

    def _attach(self, role: str, rep: Representation | None) -> None:
        if rep is None:
            return
        check_fit(rep, role, model=self.base, where=rep.name)
        self._acquire(rep)
        module = kind_of(rep).held(rep)
        if module is not None:
            self.prompts[role] = module.to(self.base.get_input_embeddings().weight.device)
        setattr(self, role, rep)
        self.activate()

    def _detach(self, role: str) -> None:
        rep = getattr(self, role)
        if rep is None:
            return
        if role in self.prompts:
            del self.prompts[role]
        setattr(self, role, None)
        self._release(rep)
        self.activate()

    def set_language(self, rep: Representation | None) -> None:
        """Swap the language representation (e.g. source -> target language)."""
        self._replace("language", rep)

    def set_task(self, rep: Representation | None) -> None:
        self._replace("task", rep)

    def _replace(self, role: str, rep: Representation | None) -> None:
        trained = self.trained_role
        self._detach(role)
        self._attach(role, rep)
        self.set_trainable(trained if trained != role or rep is not None else None)

    def representations(self) -> Iterator[Representation]:
        yield from (r for r in (self.language, self.task) if r is not None)

    # -- activation and training -----------------------------------------------------------

    def activate(self, rows: Mapping[str, Sequence[Representation | None]] | None = None) -> None:
        """Make this model's representations the base's active ones: its own (one per
        role for all rows), or ``rows`` (per role, each row's). Several composed models
        may share one base, so every forward and generate call does this; every kind
        takes part, so one with nothing here deactivates what another model left."""
        if rows is None:
            rows = {role: [getattr(self, role)] for role in ROLES}
        for kind in KINDS.values():
            kind.activate(self.base, {
                role: [r if r is not None and r.kind == kind.name else None for r in reps]
                for role, reps in rows.items()
            })

    def set_trainable(self, role: str | None) -> None:
        """Give gradients to exactly the ``role`` representation; freeze all else."""
        if role not in (None, *ROLES):
            raise UnknownNameError("trainable role", role, list(ROLES))
        rep = getattr(self, role) if role else None
        if role and rep is None:
            raise LangTransferError(f"cannot train the {role} representation: none is attached")
        self.requires_grad_(False)
        if rep is not None:
            kind_of(rep).train(self.base, rep)
            self.activate()
        self.trained_role = role

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    # -- ending ----------------------------------------------------------------------------

    def close(self) -> None:
        """Detach every representation and leave the base as it was: what this model
        added is taken out (unless another composed model still uses it) and nothing is
        active. Training and evaluation close the models they compose."""
        self._detach("language")
        self._detach("task")
        self.trained_role = None
        self.activate()
        self.base.eval()  # as loaded (training switches it to train mode)

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
