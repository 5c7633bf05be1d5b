"""Banks: several language / task representations held at once, for batches whose rows
are in different languages and tasks.

:meth:`BankedModel.set_languages` and :meth:`BankedModel.set_tasks` hold a bank per role
(all of one kind); calls take ``language_ids`` / ``task_ids``, one bank index per row.
A kind held by the composed model (prompts) is gathered per row from the stacked bank;
a kind that :attr:`~langtransfer.representations.kinds.base.RepresentationKind.splits_rows`
(adapters: the `adapters` library's ``BatchSplit``) runs on rows grouped by the
representations they use (:meth:`BankedModel.row_groups`), and is activated per row by the
kind itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn
from transformers import PreTrainedModel

from langtransfer.composition.attach import AttachedModel
from langtransfer.configurations import ROLES
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.representations.base import Representation
from langtransfer.representations.fit import check_fit
from langtransfer.representations.kinds import KINDS, kind_of

#: Per role, each row's representation (in the grouped row order).
RowReps = dict[str, list["Representation | None"]]


class BankedModel(AttachedModel):
    """An :class:`AttachedModel` that may also hold a bank per role."""

    def __init__(self, base: PreTrainedModel):
        super().__init__(base)
        # Per role, the bank {key: rep} and the modules it holds in bank-index order.
        self._banks: dict[str, dict[str, Representation]] = {role: {} for role in ROLES}
        self.bank_prompts = nn.ModuleDict({role: nn.ModuleList() for role in ROLES})
        self._bank_cache: dict[str, tuple[tuple, torch.Tensor]] = {}

    def set_languages(self, reps: Mapping[str, Representation] | None) -> None:
        """Hold several language representations at once (``{code: rep}``, all of one
        kind) for mixed-language batches; ``None`` drops them.

        Rows then name their language by index into :attr:`language_codes` through
        ``language_ids`` in ``forward`` and ``generate`` (see :meth:`language_ids`).
        The single language representation, if any, is detached; the task representation
        (or task bank) stays. Language prompts in a bank must have the same length.
        """
        self._set_bank("language", reps)

    def set_tasks(self, reps: Mapping[str, Representation] | None) -> None:
        """Hold several task representations at once (``{key: rep}``, all of one kind;
        keys are the caller's, e.g. ``nli/en``) for batches whose rows are in different
        tasks; rows name theirs through ``task_ids`` (:meth:`task_ids`), as
        :meth:`set_languages` for languages. The single task representation is detached."""
        self._set_bank("task", reps)

    def _set_bank(self, role: str, reps: Mapping[str, Representation] | None) -> None:
        trained = self.trained_role
        self._clear_bank(role)
        self._detach(role)
        if reps:
            reps = dict(reps)
            if len({r.kind for r in reps.values()}) > 1:
                only = " or ".join(f"only {name}s" for name in KINDS)
                raise LangTransferError(f"a {role} bank holds {only}")
            kind = kind_of(next(iter(reps.values())))
            kind.check_bank(role, list(reps.values()))
            device = self.base.get_input_embeddings().weight.device
            modules = self._bank_prompts(role)
            acquired: list[Representation] = []
            try:
                for rep in reps.values():
                    check_fit(rep, role, model=self.base, where=rep.name)
                    self._acquire(rep)
                    acquired.append(rep)
                    module = kind.held(rep)
                    if module is not None:
                        modules.append(module.to(device))
            except BaseException:
                for rep in acquired:
                    self._release(rep)
                self._clear_bank(role)
                raise
            self._banks[role] = reps
            self.activate()
        self.set_trainable(trained if trained != role else None)

    def _bank_prompts(self, role: str) -> nn.ModuleList:
        return cast(nn.ModuleList, self.bank_prompts[role])

    def _clear_bank(self, role: str | None = None) -> None:
        for r in (role,) if role else ROLES:
            for rep in self._banks[r].values():
                self._release(rep)
            self.bank_prompts[r] = nn.ModuleList()
            self._banks[r] = {}
            self._bank_cache.pop(r, None)

    def _replace(self, role: str, rep: Representation | None) -> None:
        self._clear_bank(role)
        super()._replace(role, rep)

    def close(self) -> None:
        self._clear_bank()
        super().close()

    # -- what the banks hold ---------------------------------------------------------------

    @property
    def language_bank(self) -> dict[str, Representation]:
        """The language bank, ``{code: rep}`` in bank-index order (empty: none)."""
        return self._banks["language"]

    @property
    def task_bank(self) -> dict[str, Representation]:
        """The task bank, ``{key: rep}`` in bank-index order (empty: none)."""
        return self._banks["task"]

    @property
    def language_codes(self) -> list[str]:
        """The bank's language codes; a row's ``language_ids`` entry indexes this list."""
        return list(self.language_bank)

    def language_ids(self, codes: Sequence[str]) -> torch.Tensor:
        """``language_ids`` for rows in languages ``codes`` (bank codes)."""
        return self._bank_ids("language", codes)

    def task_ids(self, keys: Sequence[str]) -> torch.Tensor:
        """``task_ids`` for rows of the task bank's ``keys``."""
        return self._bank_ids("task", keys)

    def _bank_ids(self, role: str, keys: Sequence[str]) -> torch.Tensor:
        index = {c: i for i, c in enumerate(self._banks[role])}
        missing = sorted({c for c in keys if c not in index})
        if missing:
            raise UnknownNameError(f"{role} in the bank", missing[0], list(index))
        device = self.base.get_input_embeddings().weight.device
        return torch.tensor([index[c] for c in keys], dtype=torch.long, device=device)

    def _bank_embeddings(self, role: str = "language") -> torch.Tensor:
        """A bank's held modules' embeddings stacked (entries × tokens × dim); frozen
        banks are stacked once and reused until a weight changes."""
        weights: list[torch.Tensor] = [p() for p in self._bank_prompts(role)]
        if any(w.requires_grad for w in weights):
            return torch.stack(weights)
        key = tuple((w.data_ptr(), w._version, w.dtype, w.device) for w in weights)
        cached = self._bank_cache.get(role)
        if cached is None or cached[0] != key:
            cached = self._bank_cache[role] = (key, torch.stack(weights))
        return cached[1]

    # -- rows ------------------------------------------------------------------------------

    def check_language_ids(self, language_ids: torch.Tensor | None, batch: int) -> None:
        self.check_bank_ids(language_ids, None, batch)

    def check_bank_ids(
        self, language_ids: torch.Tensor | None, task_ids: torch.Tensor | None, batch: int
    ) -> None:
        """A bank needs its ids, one entry per row in range; ids need a bank."""
        for role, ids in (("language", language_ids), ("task", task_ids)):
            bank = self._banks[role]
            if ids is None:
                if bank:
                    raise LangTransferError(
                        f"this model holds a {role} bank ({', '.join(bank)}): "
                        f"pass {role}_ids, one bank index per row"
                    )
                continue
            if not bank:
                call = "set_languages" if role == "language" else "set_tasks"
                raise LangTransferError(f"{role}_ids needs a {role} bank: call {call} first")
            if ids.shape != (batch,):
                raise LangTransferError(
                    f"{role}_ids must have one entry per row ({batch}), got shape "
                    f"{tuple(ids.shape)}"
                )
            if int(ids.min()) < 0 or int(ids.max()) >= len(bank):
                raise LangTransferError(
                    f"{role}_ids must lie in 0..{len(bank) - 1} (bank: {', '.join(bank)})"
                )

    def splits_rows(
        self, language_ids: torch.Tensor | None, task_ids: torch.Tensor | None = None
    ) -> bool:
        """Whether rows with these ids run on a bank of a kind that splits rows (each run
        of rows with its own representations, see :meth:`row_groups`)."""
        return any(
            ids is not None and bool(self._banks[role])
            and kind_of(next(iter(self._banks[role].values()))).splits_rows
            for role, ids in (("language", language_ids), ("task", task_ids))
        )

    def _row_reps(self, role: str, ids: torch.Tensor | None, batch: int) -> list[Any]:
        """Each row's representation in ``role``: its bank entry's, or the single one."""
        bank = list(self._banks[role].values())
        if ids is not None and bank:
            return [bank[i] for i in ids.tolist()]
        return [getattr(self, role)] * batch

    def row_groups(
        self, language_ids: torch.Tensor | None, task_ids: torch.Tensor | None, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor, RowReps, int] | None:
        """For rows on a bank of a kind that splits rows: the row order that groups rows
        by the representations of such kinds they use, its inverse, each role's per-row
        representations in that order (what :meth:`activate` takes), and the number of
        groups. None when every row runs with this model's own representations."""
        if not self.splits_rows(language_ids, task_ids):
            return None
        per_role = [self._row_reps(role, ids, batch)
                    for role, ids in (("language", language_ids), ("task", task_ids))]

        def split_id(rep: Representation | None) -> str | None:
            return rep.id if rep is not None and kind_of(rep).splits_rows else None

        keys = [tuple(split_id(reps[i]) for reps in per_role) for i in range(batch)]
        groups = {key: i for i, key in enumerate(dict.fromkeys(keys))}
        device = self.base.get_input_embeddings().weight.device
        group_of = torch.tensor([groups[k] for k in keys], dtype=torch.long, device=device)
        order = torch.argsort(group_of, stable=True)
        rows: RowReps = {role: [reps[i] for i in order.tolist()]
                         for role, reps in zip(("language", "task"), per_role, strict=True)}
        return order, torch.argsort(order), rows, len(groups)
