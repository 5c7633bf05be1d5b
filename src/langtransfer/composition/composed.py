"""Composing a frozen base model with a language and a task representation.

What each configuration composes (``slp+ta``: a soft language prompt and a task
adapter) is the table in :mod:`langtransfer.configurations`; this module builds it.

Prompts are prepended to the input embeddings as ``[language][task][input]`` with the
attention mask extended: the encoder's input of a seq2seq base (they never touch its
decoder), the context a causal base's target continues (positions and labels as
:mod:`langtransfer.base.families` describes; the family runs forward and generate).
Adapters stack language -> task in every layer (the `adapters` library's ``Stack``).
Swapping the language representation leaves the task representation as it is.

One base, many composed models: each representation takes a *slot* in the base under
its id (an adapter's weights go into the base's layers under that name); a composed
model that holds the same files shares the slot, and a different representation under a
taken id is refused. Several composed models can therefore live on one base, each
activating its own adapters at every call, and :meth:`ComposedModel.close` gives its
slots back, so the base ends as it started.

``duplicate_language_prompt_in_forward`` reproduces, as an option, a quirk of the paper's
reference code for ``slp+stp``: its ``forward`` (training loss, keep-best validation loss)
sees ``[language][language][task][input]`` while its ``generate`` (test predictions) sees
``[language][task][input]`` (see docs/fidelity.md). Off by default.

Mixed batches: :meth:`ComposedModel.set_languages` and :meth:`ComposedModel.set_tasks`
hold several language / task representations at once (*banks*) and ``forward`` /
``generate`` take ``language_ids`` / ``task_ids``, one bank index per row, so rows of
different languages and tasks run in one call. Prompt banks gather each row's prompt
from the stacked bank embeddings; adapter banks run through the `adapters` library's
``Stack(BatchSplit(lang_a, lang_b, ...), BatchSplit(task_x, task_y, ...))`` with the rows
grouped by (language adapter, task adapter) pair (see ``_adapter_groups`` for why not a
``BatchSplit`` of stacks).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from adapters.composition import BatchSplit, Stack
from torch import nn
from transformers import PreTrainedModel

from langtransfer.base.families import family_of
from langtransfer.base.loading import check_compatible, fingerprint, hidden_size
from langtransfer.configurations import (  # noqa: F401  (re-exported: old import paths)
    ALL_CONFIGURATIONS,
    CONFIGURATIONS,
    LANGUAGE_ONLY,
    STUDY_CONFIGURATIONS,
    configuration_for,
    configuration_kinds,
    get_configuration,
)
from langtransfer.errors import CorruptFileError, LangTransferError, UnknownNameError
from langtransfer.representations.adapter import ensure_adapter_support, replay_adapter_init
from langtransfer.representations.base import Representation
from langtransfer.representations.prompt import SoftPrompt
from langtransfer.representations.store import ADAPTER_WEIGHTS, save_representation


class _Slots:
    """What is loaded into one base model under which id, and how many composed models use
    each (the base is shared: one process keeps one copy of mT0)."""

    def __init__(self) -> None:
        self.reps: dict[str, Representation] = {}
        self.users: dict[str, int] = {}


_SLOTS: weakref.WeakKeyDictionary[nn.Module, _Slots] = weakref.WeakKeyDictionary()


def _slots(base: nn.Module) -> _Slots:
    if base not in _SLOTS:
        _SLOTS[base] = _Slots()
    return _SLOTS[base]


def loaded_representations(base: nn.Module) -> dict[str, Representation]:
    """The representations composed models currently hold in ``base``, by id."""
    return dict(_slots(base).reps)


def configuration_name(language: Representation | None, task: Representation | None) -> str:
    """The configuration that composes ``language`` and ``task`` (either may be None)."""
    return configuration_for(language.kind if language else None, task.kind if task else None).name


class ComposedModel(nn.Module):
    """A frozen base model (seq2seq or causal, :attr:`family`) with an optional language and
    an optional task representation.

    ``train`` names the one representation whose parameters get gradients (``"language"``
    or ``"task"``); everything else is frozen.
    """

    # A transformers model to which the `adapters` library adds methods at run time.
    base: Any

    @staticmethod
    def _prompt(prompts: nn.ModuleDict, key: str) -> SoftPrompt:
        return cast(SoftPrompt, prompts[key])

    def __init__(
        self,
        base: PreTrainedModel,
        language: Representation | None = None,
        task: Representation | None = None,
        *,
        train: str | None = None,
        duplicate_language_prompt_in_forward: bool = False,
    ):
        super().__init__()
        self.base = base
        self.family = family_of(base)  # raises for a base that is neither family
        self.duplicate_language_prompt_in_forward = duplicate_language_prompt_in_forward
        self.prompts = nn.ModuleDict()
        # Mixed batches: per role, the bank {key: rep} and its prompts in bank-index order.
        self._banks: dict[str, dict[str, Representation]] = {"language": {}, "task": {}}
        self.bank_prompts = nn.ModuleDict({"language": nn.ModuleList(), "task": nn.ModuleList()})
        self._bank_cache: dict[str, tuple[tuple, torch.Tensor]] = {}
        self._held: list[str] = []  # ids this model uses in the base's slots
        self._adapters_pending = True  # no adapter acquired yet
        self.language: Representation | None = None
        self.task: Representation | None = None
        self.trained_role: str | None = None
        self.base.requires_grad_(False)
        if language is not None and task is not None and language.id == task.id:
            raise LangTransferError(f"language and task representation share the id {task.id!r}")
        try:
            self._attach("task", task)
            self._attach("language", language)
            self.set_trainable(train)
            if duplicate_language_prompt_in_forward:
                self._check_duplication()
        except BaseException:
            self.close()  # give back what was acquired: the base stays as it was
            raise

    # -- composition -----------------------------------------------------------------

    @property
    def configuration(self) -> str:
        language = self.language or next(iter(self.language_bank.values()), None)
        task = self.task or next(iter(self.task_bank.values()), None)
        return configuration_name(language, task)

    @property
    def config(self):  # Trainer and generation utilities look for model.config
        return self.base.config

    def set_language(self, rep: Representation | None) -> None:
        """Swap the language representation (e.g. source -> target language)."""
        role = self.trained_role
        self._clear_bank("language")
        self._detach("language")
        self._attach("language", rep)
        self.set_trainable(role if role != "language" or rep is not None else None)

    def set_task(self, rep: Representation | None) -> None:
        role = self.trained_role
        self._clear_bank("task")
        self._detach("task")
        self._attach("task", rep)
        self.set_trainable(role if role != "task" or rep is not None else None)

    def _attach(self, role: str, rep: Representation | None) -> None:
        if rep is None:
            return
        if rep.role != role:
            raise LangTransferError(f"{rep.name} is a {rep.role} representation, not a {role} one")
        what = f"{rep.role} {rep.kind} {rep.name}"
        if rep.base_model is not None:
            check_compatible(rep.base_model, self.base, what)
        if not rep.in_layers:
            self._check_prompt_width(rep)
        self._acquire(rep)
        if not rep.in_layers:
            device = self.base.get_input_embeddings().weight.device
            self.prompts[role] = rep.soft_prompt.to(device)
        setattr(self, role, rep)
        self.activate()

    def _check_duplication(self) -> None:
        """The reference quirk exists only for a language prompt with a task prompt."""
        if "language" not in self.prompts or "task" not in self.prompts or self.language_bank:
            raise LangTransferError(
                "duplicate_language_prompt_in_forward (the reference's slp+stp quirk) needs "
                f"one language prompt and a task prompt (slp+stp), not {self.configuration}"
            )

    def _check_prompt_width(self, rep: Representation) -> None:
        if rep.soft_prompt.dim != hidden_size(self.base):
            raise LangTransferError(
                f"{rep.role} {rep.kind} {rep.name} has width {rep.soft_prompt.dim} but base model "
                f"{fingerprint(self.base)['name']!r} has d_model {hidden_size(self.base)}"
            )

    def _acquire(self, rep: Representation) -> None:
        """Load ``rep`` into the base under its id, or share the copy loaded already.

        Another representation under the same id is an error, never replaced: ids hold
        the content hash of loaded files, so a clash means two different representations
        claim one slot (e.g. two fresh ones given the same id).
        """
        slots = _slots(self.base)
        held = slots.reps.get(rep.id)
        if held is not None and held is not rep and (
            held.content_hash is None or held.content_hash != rep.content_hash
        ):
            raise LangTransferError(
                f"representation id {rep.id!r} of {rep.role} {rep.kind} {rep.where} clashes "
                f"with another representation already loaded in this base ({held.where})"
            )
        if held is None and rep.in_layers:
            if self._adapters_pending:
                # As on a freshly loaded base: its first adapter comes after
                # ``adapters.init``'s random draws (same seed, same fresh adapter weights).
                self._adapters_pending = False
                if not ensure_adapter_support(self.base):
                    replay_adapter_init(self.base)
            if rep.id in self.base.adapters_config:
                raise LangTransferError(
                    f"representation id {rep.id!r} of {rep.where} clashes with adapter "
                    f"{rep.id!r} already in the base, added outside langtransfer"
                )
            self._load_adapter(rep)
        if held is None:
            slots.reps[rep.id] = rep
        slots.users[rep.id] = slots.users.get(rep.id, 0) + 1
        self._held.append(rep.id)

    def _release(self, rep: Representation) -> None:
        """Give up this model's use of ``rep``; the last user removes an adapter from the
        base (it added it), so nothing of one composition stays in a shared base."""
        slots = _slots(self.base)
        self._held.remove(rep.id)
        slots.users[rep.id] -= 1
        if slots.users[rep.id] == 0:
            del slots.users[rep.id]
            held = slots.reps.pop(rep.id)
            if held.in_layers:
                self.base.delete_adapter(rep.id)

    def _load_adapter(self, rep: Representation) -> None:
        if rep.path is not None:
            if not (Path(rep.path) / ADAPTER_WEIGHTS).is_file():
                raise CorruptFileError(f"{rep.path}: missing {ADAPTER_WEIGHTS}")
            try:
                self.base.load_adapter(
                    str(rep.path), load_as=rep.id, with_head=False, use_safetensors=True
                )
            except (RuntimeError, ValueError, KeyError, TypeError, OSError) as e:
                # Shapes or config that do not fit this base model: a lying or broken file.
                lines = [line.strip() for line in str(e).strip().splitlines()] or [repr(e)]
                detail = next((line for line in lines if "mismatch" in line), lines[0])
                raise CorruptFileError(
                    f"{rep.path}: the adapter files do not load onto base model "
                    f"{fingerprint(self.base)['name']!r} ({detail[:300]})"
                ) from e
        else:
            assert rep.adapter is not None  # set for every adapter record
            self.base.add_adapter(rep.id, config=rep.adapter.to_adapters_config())
        self.base.to(self.base.device)

    def _detach(self, role: str) -> None:
        rep = getattr(self, role)
        if rep is None:
            return
        if not rep.in_layers:
            del self.prompts[role]
        setattr(self, role, None)
        self._release(rep)
        self.activate()

    def close(self) -> None:
        """Detach every representation and leave the base as it was: the adapters this
        model loaded are removed (unless another composed model still uses them) and none
        is active. Training and evaluation close the models they compose."""
        self._clear_bank()
        self._detach("language")
        self._detach("task")
        self.trained_role = None
        if hasattr(self.base, "adapters_config"):
            self.base.set_active_adapters(None)
        self.base.eval()  # as loaded (training switches it to train mode)

    def __enter__(self) -> ComposedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def activate(self) -> None:
        """Make this model's adapters (language -> task) the base's active ones. Several
        composed models may share one base, so every forward and generate call does this."""
        self._activate_adapters()

    def _activate_adapters(self, composition: Any = None) -> None:
        """Activate the attached adapters: language -> task, or ``composition`` (the
        per-row composition of a bank, see :meth:`_adapter_groups`)."""
        if not hasattr(self.base, "adapters_config"):
            return
        if composition is not None:
            self.base.set_active_adapters(composition)
            return
        names = [r.name for r in (self.language, self.task) if r is not None and r.in_layers]
        self.base.set_active_adapters(Stack(*names) if names else None)

    # -- mixed batches: banks of language and task representations ----------------------

    def set_languages(self, reps: Mapping[str, Representation] | None) -> None:
        """Hold several language representations at once (``{code: rep}``, all prompts or
        all adapters) for mixed-language batches; ``None`` drops them.

        Rows then name their language by index into :attr:`language_codes` through
        ``language_ids`` in :meth:`forward` and :meth:`generate` (see :meth:`language_ids`).
        The single language representation, if any, is detached; the task representation
        (or task bank) stays. Language prompts in a bank must have the same length.
        """
        self._set_bank("language", reps)

    def set_tasks(self, reps: Mapping[str, Representation] | None) -> None:
        """Hold several task representations at once (``{key: rep}``, all prompts or all
        adapters; keys are the caller's, e.g. ``nli/en``) for batches whose rows are in
        different tasks; rows name theirs through ``task_ids`` (:meth:`task_ids`), as
        :meth:`set_languages` for languages. The single task representation is detached."""
        self._set_bank("task", reps)

    def _set_bank(self, role: str, reps: Mapping[str, Representation] | None) -> None:
        trained = self.trained_role
        self._clear_bank(role)
        self._detach(role)
        if reps:
            reps = dict(reps)
            kinds = {r.kind for r in reps.values()}
            if len(kinds) > 1:
                raise LangTransferError(f"a {role} bank holds only prompts or only adapters")
            lengths = {r.soft_prompt.num_tokens for r in reps.values() if not r.in_layers}
            if len(lengths) > 1:
                raise LangTransferError(
                    f"{role} prompts in one bank must have the same length, got {sorted(lengths)}"
                )
            device = self.base.get_input_embeddings().weight.device
            prompts = self._bank_prompts(role)
            acquired: list[Representation] = []
            try:
                for rep in reps.values():
                    if rep.role != role:
                        raise LangTransferError(
                            f"{rep.name} is a {rep.role} representation, not a {role} one"
                        )
                    if rep.base_model is not None:
                        check_compatible(rep.base_model, self.base, f"{role} {rep.kind} {rep.name}")
                    if not rep.in_layers:
                        self._check_prompt_width(rep)
                    self._acquire(rep)
                    acquired.append(rep)
                    if not rep.in_layers:
                        prompts.append(rep.soft_prompt.to(device))
            except BaseException:
                for rep in acquired:
                    self._release(rep)
                self._clear_bank(role)
                raise
            self._banks[role] = reps
            self._activate_adapters()
        self.set_trainable(trained if trained != role else None)

    def _bank_prompts(self, role: str) -> nn.ModuleList:
        return cast(nn.ModuleList, self.bank_prompts[role])

    def _clear_bank(self, role: str | None = None) -> None:
        for r in (role,) if role else ("language", "task"):
            for rep in self._banks[r].values():
                self._release(rep)
            self.bank_prompts[r] = nn.ModuleList()
            self._banks[r] = {}
            self._bank_cache.pop(r, None)

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
        """A bank's prompts stacked (entries × tokens × dim); frozen banks are stacked
        once and reused until a prompt's weights change."""
        weights: list[torch.Tensor] = [
            cast(SoftPrompt, p).embedding for p in self._bank_prompts(role)
        ]
        if any(w.requires_grad for w in weights):
            return torch.stack(weights)
        key = tuple((w.data_ptr(), w._version, w.dtype, w.device) for w in weights)
        cached = self._bank_cache.get(role)
        if cached is None or cached[0] != key:
            cached = self._bank_cache[role] = (key, torch.stack(weights))
        return cached[1]

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

    def _row_adapters(self, role: str, ids: torch.Tensor | None, batch: int) -> list[str | None]:
        """Each row's adapter in ``role``: its bank entry's, the single one's, or None."""
        bank = list(self._banks[role].values())
        if ids is not None and bank and bank[0].in_layers:
            return [bank[i].name for i in ids.tolist()]
        rep = getattr(self, role)
        return [rep.name if rep is not None and rep.in_layers else None] * batch

    def _adapter_groups(
        self, language_ids: torch.Tensor | None, task_ids: torch.Tensor | None, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor, Any] | None:
        """For rows whose adapters differ (an adapter bank in use): the row order that
        groups rows by their (language adapter, task adapter) pair, its inverse, and the
        composition that runs each row with its own pair. None when every row runs with
        this model's own adapters.

        The composition is ``Stack(BatchSplit(language adapters), BatchSplit(task
        adapters))`` over the grouped rows, a split naming an adapter once per run of
        rows. Not ``BatchSplit(Stack(la, ta), ...)``: `adapters` 1.3 applies a bottleneck
        layer's pre-forward (residual, the base's layer norm) at a ``BatchSplit`` and
        again in each nested ``Stack``, so that nesting does not equal ``Stack(la, ta)``
        per row; a split's pre-forward, once per layer, is every adapter's of one config.
        """
        if not self.uses_adapter_bank(language_ids, task_ids):
            return None
        pairs = list(zip(self._row_adapters("language", language_ids, batch),
                         self._row_adapters("task", task_ids, batch), strict=True))
        groups = {p: i for i, p in enumerate(dict.fromkeys(pairs))}
        device = self.base.get_input_embeddings().weight.device
        group_of = torch.tensor([groups[p] for p in pairs], dtype=torch.long, device=device)
        order = torch.argsort(group_of, stable=True)
        stack: list[Any] = []
        for role in range(2):
            runs: list[list[Any]] = []  # [adapter, row count] per run of the grouped rows
            for i in order.tolist():
                name = pairs[i][role]
                if runs and runs[-1][0] == name:
                    runs[-1][1] += 1
                else:
                    runs.append([name, 1])
            if runs[0][0] is None:  # no adapter in this role (a bank holds prompts)
                continue
            stack.append(runs[0][0] if len(runs) == 1 else
                         BatchSplit(*[n for n, _ in runs], batch_sizes=[k for _, k in runs]))
        return order, torch.argsort(order), Stack(*stack)

    def uses_adapter_bank(
        self, language_ids: torch.Tensor | None, task_ids: torch.Tensor | None = None
    ) -> bool:
        """Whether rows with these ids run with per-row adapters (a ``BatchSplit``)."""
        return any(
            ids is not None and bool(self._banks[role])
            and next(iter(self._banks[role].values())).in_layers
            for role, ids in (("language", language_ids), ("task", task_ids))
        )

    def set_trainable(self, role: str | None) -> None:
        """Give gradients to exactly the ``role`` representation; freeze all else."""
        if role not in (None, "language", "task"):
            raise UnknownNameError("trainable role", role, ["language", "task"])
        rep = getattr(self, role) if role else None
        if role and rep is None:
            raise LangTransferError(f"cannot train the {role} representation: none is attached")
        self.requires_grad_(False)
        if rep is not None and not rep.in_layers:
            rep.soft_prompt.requires_grad_(True)
        elif rep is not None:
            # The adapters library's own switch: unfreezes exactly this adapter's weights.
            self.base.train_adapter(rep.name)
            self._activate_adapters()
            self.base.eval()
        self.trained_role = role

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    # -- running -----------------------------------------------------------------------

    def prompt_length(self) -> int:
        own = sum(self._prompt(self.prompts, r).num_tokens for r in self.prompts)
        banks = [cast(SoftPrompt, self._bank_prompts(r)[0]).num_tokens
                 for r in ("language", "task") if len(self._bank_prompts(r))]
        return own + sum(banks)

    def encoder_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        language_ids: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        *,
        duplicate_language: bool = False,
    ) -> dict[str, torch.Tensor]:
        """The input with the prompts prepended: ``[language][task][input]``
        (``[language][language][task][input]`` with ``duplicate_language``, the reference's
        slp+stp training input).

        With a prompt bank, row ``i`` gets bank prompt ``language_ids[i]`` (``task_ids[i]``
        for a task bank): a gather. The prompts enter as broadcast views; the one copy
        made is the concatenation the encoder reads (and autograd keeps).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        batch = input_ids.shape[0]
        prefixes: list[torch.Tensor] = []
        if duplicate_language:
            self._check_duplication()
            prefixes.append(self._prompt(self.prompts, "language")().unsqueeze(0).expand(
                batch, -1, -1))
        for role, ids in (("language", language_ids), ("task", task_ids)):
            if ids is not None and len(self._bank_prompts(role)):
                prefixes.append(self._bank_embeddings(role)[ids])
            elif role in self.prompts:
                prefixes.append(self._prompt(self.prompts, role)().unsqueeze(0).expand(
                    batch, -1, -1))
        if not prefixes:
            return {"input_ids": input_ids, "attention_mask": attention_mask}
        embeds = self.base.get_input_embeddings()(input_ids)
        width = sum(p.shape[1] for p in prefixes)
        mask = attention_mask.new_ones(batch, width)
        return {
            "inputs_embeds": torch.cat([p.to(embeds.dtype) for p in prefixes] + [embeds], 1),
            "attention_mask": torch.cat([mask, attention_mask], 1),
        }

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        language_ids: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
    ):
        """The base model's forward on the composed input; returns loss when given labels.

        ``language_ids`` / ``task_ids`` (LongTensor[B], with banks from
        :meth:`set_languages` / :meth:`set_tasks`): row ``i`` runs with bank language
        ``language_ids[i]`` and bank task ``task_ids[i]``; outputs keep the input row
        order. With ``duplicate_language_prompt_in_forward`` the language prompt comes twice.
        """
        self.check_bank_ids(language_ids, task_ids, input_ids.shape[0])
        groups = self._adapter_groups(language_ids, task_ids, input_ids.shape[0])
        if groups is None:
            self.activate()
            return self.family.forward(
                self.base,
                self.encoder_inputs(
                    input_ids, attention_mask, language_ids, task_ids,
                    duplicate_language=self.duplicate_language_prompt_in_forward,
                ),
                labels=labels,
                decoder_input_ids=decoder_input_ids,
                decoder_attention_mask=decoder_attention_mask,
            )
        order, inverse, composition = groups

        def rows(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[order]

        self._activate_adapters(composition)
        try:
            out = self.family.forward(
                self.base,
                self.encoder_inputs(
                    input_ids[order], rows(attention_mask), rows(language_ids), rows(task_ids)
                ),
                labels=rows(labels),
                decoder_input_ids=rows(decoder_input_ids),
                decoder_attention_mask=rows(decoder_attention_mask),
                use_cache=False,
            )
        finally:
            self._activate_adapters()
        for key, value in list(out.items()):
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                out[key] = value[inverse]
            elif isinstance(value, tuple) and all(isinstance(v, torch.Tensor) for v in value):
                out[key] = tuple(v[inverse] for v in value)
        return out

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        language_ids: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Generate token ids: a seq2seq base's decoder ids (the prompts shape only the
        encoder input), a causal base's new tokens only.

        ``language_ids`` / ``task_ids`` as in :meth:`forward`: one ``generate`` call for a
        batch whose rows are in different languages and tasks. With an adapter bank only
        greedy/sampled decoding of one sequence per row is supported (``BatchSplit``
        needs fixed row counts, which beam search changes).
        """
        self.check_bank_ids(language_ids, task_ids, input_ids.shape[0])
        groups = self._adapter_groups(language_ids, task_ids, input_ids.shape[0])
        if groups is None:
            self.activate()
            return self.family.generate(
                self.base, self.encoder_inputs(input_ids, attention_mask, language_ids, task_ids),
                **kwargs,
            )
        order, inverse, composition = groups
        split = any(isinstance(block, BatchSplit) for block in composition)
        if split and (kwargs.get("num_beams", 1) != 1
                      or kwargs.get("num_return_sequences", 1) != 1):
            raise LangTransferError(
                "mixed-language or mixed-task generation with adapter banks supports "
                "num_beams=1 and num_return_sequences=1 only (group rows for beam search)"
            )
        self._activate_adapters(composition)
        try:
            mask = None if attention_mask is None else attention_mask[order]
            lang = None if language_ids is None else language_ids[order]
            task = None if task_ids is None else task_ids[order]
            out = self.family.generate(
                self.base, self.encoder_inputs(input_ids[order], mask, lang, task), **kwargs
            )
        finally:
            self._activate_adapters()
        return out[inverse]

    # -- saving ------------------------------------------------------------------------

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

    def representations(self) -> Iterator[Representation]:
        yield from (r for r in (self.language, self.task) if r is not None)


def compose(
    base: PreTrainedModel,
    configuration: str,
    *,
    language: Representation | None = None,
    task: Representation | None = None,
    train: str | None = None,
    duplicate_language_prompt_in_forward: bool = False,
) -> ComposedModel:
    """Build a :class:`ComposedModel` and check the representations fit ``configuration``.

    ``duplicate_language_prompt_in_forward``: the reference's slp+stp quirk (module doc);
    refused for any other configuration."""
    wanted = get_configuration(configuration)
    for role, rep in (("language", language), ("task", task)):
        kind = wanted.kind(role)
        got = rep.kind if rep is not None else None
        if got != kind:
            raise LangTransferError(
                f"configuration {configuration!r} needs {kind or 'no'} {role} representation, "
                f"got {got or 'none'}"
            )
    return ComposedModel(
        base, language, task, train=train,
        duplicate_language_prompt_in_forward=duplicate_language_prompt_in_forward,
    )
