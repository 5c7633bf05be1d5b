"""The LoRA kind: low-rank updates ``s B A`` of the base's linear layers, through PEFT.

The spec is :class:`LoraSpec` (rank, alpha, dropout, target modules; the defaults and
their sources are in docs/lora.md). The weights live in the shared base once attached:
PEFT makes the layers (``peft.functional``) and any number of LoRAs sit in one base under
their ids; the active ones are summed (a language LoRA and a task LoRA run together as
``W x + s_l B_l A_l x + s_t B_t A_t x``). Rows of different LoRAs in one call run with a
hook that adds each row's own (:func:`langtransfer.representations.lora.per_row`).

Stored as a PEFT LoRA directory (``adapter_config.json`` + ``adapter_model.safetensors``)
beside the manifest, so ``peft.PeftModel.from_pretrained`` loads it. A combination is the
exact weighted sum of the parts' updates, as one LoRA whose rank is the sum of theirs
(concatenated factors, no truncation). Everything heavy is in
:mod:`langtransfer.representations.lora`, imported when used.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langtransfer.base.families import LORA_TARGET_PRESETS
from langtransfer.configurations import ROLES
from langtransfer.errors import CorruptFileError, LangTransferError, UnknownNameError
from langtransfer.representations.base import Representation
from langtransfer.representations.kinds.base import KindOption, RepresentationKind, Rows

if TYPE_CHECKING:
    from langtransfer.representations.lora import LoraFile

#: The defaults, from published LoRA practice for models of mT0-base's and
#: Qwen2.5-0.5B's size (docs/lora.md gives the sources): rank 8 on the attention's query
#: and value projections (Hu et al. 2021; PEFT's mt0-large example), alpha 16 (scaling 2),
#: dropout 0.1 (QLoRA's for models up to 13B; PEFT's mt0-large example).
DEFAULT_RANK = 8
DEFAULT_ALPHA = 16
DEFAULT_DROPOUT = 0.1
DEFAULT_TARGETS = "attention"
#: AdamW at 5e-4 (Hu et al. 2021's for RoBERTa-base), as the paper's adapters otherwise.
TRAINING_DEFAULTS = {"optimizer": "adamw", "learning_rate": 5e-4, "weight_decay": 0.0}
#: The files of a LoRA directory: PEFT's.
LORA_CONFIG = "adapter_config.json"
LORA_WEIGHTS = "adapter_model.safetensors"


@dataclass
class LoraSpec:
    """A LoRA's shape and training dropout: ``rank``, ``alpha`` (scaling ``alpha / rank``),
    ``dropout`` on the LoRA's input while training, and ``targets``: a preset
    (``attention``, ``all-linear``; :data:`~langtransfer.base.families.LORA_TARGET_PRESETS`),
    module names (``["q", "k", "v"]``) or a comma-separated string of them."""

    rank: int = DEFAULT_RANK
    alpha: int = DEFAULT_ALPHA
    dropout: float = DEFAULT_DROPOUT
    targets: str | list[str] = DEFAULT_TARGETS

    def __post_init__(self) -> None:
        for name in ("rank", "alpha"):
            value = getattr(self, name)
            if not _positive_int(value):
                raise LangTransferError(f"LoRA {name} must be a positive integer, got {value!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not (
            0 <= self.dropout < 1
        ):
            raise LangTransferError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        self.dropout = float(self.dropout)
        if isinstance(self.targets, str):
            if self.targets not in LORA_TARGET_PRESETS:
                names = [t.strip() for t in self.targets.split(",") if t.strip()]
                if not names or any(not _module_name(n) for n in names):
                    raise UnknownNameError(
                        "LoRA targets", self.targets, [*LORA_TARGET_PRESETS, "module names"]
                    )
                self.targets = sorted(set(names))
        elif isinstance(self.targets, (list, tuple)) and self.targets and all(
            isinstance(t, str) and _module_name(t) for t in self.targets
        ):
            self.targets = sorted(set(self.targets))
        else:
            raise LangTransferError(
                f"LoRA targets must be a preset ({', '.join(LORA_TARGET_PRESETS)}) or a list "
                f"of module names, got {self.targets!r:.60}"
            )

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def target_modules(self, model: Any) -> list[str]:
        """The module names this LoRA adapts in ``model`` (a preset resolved for its type);
        a name the model has no linear layer of is an error naming it."""
        from langtransfer.base.families import lora_targets
        from langtransfer.representations.lora import check_targets

        names = (list(lora_targets(model, self.targets)) if isinstance(self.targets, str)
                 else list(self.targets))
        check_targets(model, names)
        return names

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _module_name(name: str) -> bool:
    return name.replace("_", "").isalnum()


class _Active:
    """Per base: the LoRAs active for all rows (None: not known, set them), and the
    hooks of a per-row call."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] | None = None
        self.rows: Any = None  # the per_row context of a mixed call


_ACTIVE: weakref.WeakKeyDictionary[Any, _Active] = weakref.WeakKeyDictionary()


def _active(model: Any) -> _Active:
    if model not in _ACTIVE:
        _ACTIVE[model] = _Active()
    return _ACTIVE[model]


def _file(rep: Representation) -> LoraFile | None:
    """The PEFT config and factors a loaded (or combined) LoRA holds; None: fresh (its
    weights are made in the base)."""
    return rep.weights


class LoraKind(RepresentationKind):
    """LoRA through PEFT (``ll``/``tl``): AdamW at lr 5e-4, no weight decay."""

    name = "lora"
    label = "LoRA"
    spec_type = LoraSpec
    options = (
        KindOption("rank", "--lora-rank", int, f"LoRA rank r (default {DEFAULT_RANK})"),
        KindOption("alpha", "--lora-alpha", int,
                   f"LoRA alpha; the update is scaled by alpha / r (default {DEFAULT_ALPHA})"),
        KindOption("dropout", "--lora-dropout", float,
                   f"dropout on the LoRA's input while training (default {DEFAULT_DROPOUT})"),
        KindOption("targets", "--lora-targets", str,
                   "the linear layers adapted: attention (the query and value projections: "
                   "q,v on mT5; q_proj,v_proj on Llama, Qwen2, Mistral), all-linear, or "
                   f"comma-separated module names (default {DEFAULT_TARGETS})"),
    )
    training_defaults = TRAINING_DEFAULTS
    files = (LORA_WEIGHTS, LORA_CONFIG)
    combine_method = "concatenated LoRA factors (the exact weighted sum of the updates)"
    # Rows of different LoRAs run in one call, grouped by the composed model like the
    # adapters' BatchSplit (the per-row hook itself takes any row order).
    splits_rows = True

    # -- weights -------------------------------------------------------------------------

    def new(self, role: str, spec: Any, model: Any, tokenizer: Any,
            **common: Any) -> Representation:
        """A fresh LoRA: PEFT makes its layers when it is added to a base (A random, B
        zero: it starts as the base); its base is recorded when it is saved."""
        spec = self.check_spec(spec if spec is not None else LoraSpec())
        return Representation(kind=self.name, role=role, spec=spec, **common)

    def save(self, rep: Representation, directory: Path, model: Any | None) -> None:
        from langtransfer.base.families import family_of
        from langtransfer.base.loading import model_name
        from langtransfer.representations import lora

        stored = _file(rep)
        if stored is not None:  # a combination (or a loaded LoRA): its own factors
            lora.write_peft_lora(directory, stored.config, stored.weights)
            return
        if model is None or rep.id not in lora.names_in(model):
            raise LangTransferError(f"LoRA {rep.name} is not attached to the given model")
        spec = self.check_spec(rep.spec)
        weights = lora.weights_in(model, rep.id)
        config = lora.peft_config(
            rank=spec.rank, alpha=spec.alpha, targets=weights.targets,
            family=family_of(model).name, base_model_name_or_path=model_name(model) or None,
            dropout=spec.dropout,
        )
        lora.write_peft_lora(directory, config, weights)

    def load(self, directory: Path, manifest: Mapping[str, Any],
             common: dict[str, Any]) -> Representation:
        from langtransfer.representations import lora
        from langtransfer.representations.weight_files import content_hash

        spec = LoraSpec(**(manifest.get(self.name) or {}))
        config, weights = lora.read_peft_lora(directory)
        if (config["r"], config["lora_alpha"]) != (spec.rank, spec.alpha):
            raise CorruptFileError(
                f"{directory / LORA_CONFIG}: r {config['r']} / lora_alpha "
                f"{config['lora_alpha']} but the manifest says rank {spec.rank} / alpha "
                f"{spec.alpha}; the manifest does not describe these weights"
            )
        family = lora.family_of_config(config)
        recorded = manifest["base_model"].get("family")
        if family is not None and recorded is not None and family != recorded:
            raise CorruptFileError(
                f"{directory / LORA_CONFIG}: task_type {config['task_type']} is for a "
                f"{family} base but the manifest's base is {recorded}"
            )
        return Representation(spec=spec, weights=lora.LoraFile(config, weights),
                              path=directory, content_hash=content_hash(directory, self.files),
                              **common)

    def combine(self, parts: Sequence[tuple[Representation, float]], model: Any | None,
                **common: Any) -> Representation:
        """``sum_i w_i LoRA_i`` exactly: the parts' factors concatenated (rank: the sum of
        theirs, scaling folded into B, a module one part lacks padded with zeros). No
        model is needed; the result holds its factors and is saved from them."""
        from langtransfer.representations import lora

        files = []
        for rep, weight in parts:
            stored = _file(rep)
            if stored is None:
                raise LangTransferError(
                    f"part {rep.where} is a fresh LoRA: combine saved ones (directories)")
            files.append((weight, stored.weights))
        total = lora.weighted_sum(files)
        first = parts[0][0]
        first_file = _file(first)
        assert first_file is not None
        rank = total.rank
        spec = LoraSpec(rank=rank, alpha=rank, dropout=self.check_spec(first.spec).dropout,
                        targets=total.targets)
        config = lora.peft_config(
            rank=rank, alpha=rank, targets=total.targets,
            family=lora.family_of_config(first_file.config) or "causal",
            base_model_name_or_path=first_file.config.get("base_model_name_or_path"),
        )
        return Representation(kind=self.name, role="language", spec=spec,
                              weights=lora.LoraFile(config, total),
                              base_model=first.base_model, **common)

    # -- on a base model -----------------------------------------------------------------

    def check_fits(self, rep: Representation, model: Any, what: str) -> None:
        """A loaded LoRA's task type names the base's family, and every module it adapts
        is a linear layer of the base (one line naming the modules the base lacks)."""
        from langtransfer.representations import lora

        stored = _file(rep)
        if stored is None:
            self.check_spec(rep.spec).target_modules(model)  # names a target the base lacks
            return
        lora.check_family(stored.config, model, what)
        lora.check_targets(model, stored.weights.targets, what)

    def prepare(self, model: Any) -> None:
        """The `adapters` library's hooks go in first where it supports the base:
        ``adapters.init`` replaces the linear layers it wraps, which would drop LoRA
        layers made before it. Its random draws are replayed on a base that has the hooks
        already, so a fresh LoRA's weights are the same on a shared base as on a fresh one."""
        from langtransfer.errors import IncompatibleModelError
        from langtransfer.representations.adapter import (
            ensure_adapter_support,
            replay_adapter_init,
        )

        try:
            if not ensure_adapter_support(model):
                replay_adapter_init(model)
        except IncompatibleModelError:
            pass  # no `adapters` support for this base: nothing can clobber the layers

    def add(self, model: Any, rep: Representation) -> None:
        from langtransfer.representations import lora

        if rep.id in lora.names_in(model):
            raise LangTransferError(
                f"representation id {rep.id!r} of {rep.where} clashes with LoRA {rep.id!r} "
                "already in the base, added outside langtransfer"
            )
        stored = _file(rep)
        if stored is not None:
            lora.load_into(model, rep.id, stored.config, stored.weights)
        else:
            spec = self.check_spec(rep.spec)
            lora.inject(model, rep.id, spec.rank, spec.alpha, spec.dropout,
                        spec.target_modules(model))
        _active(model).names = None  # PEFT activates what it adds: set them again

    def remove(self, model: Any, rep: Representation) -> None:
        from langtransfer.representations import lora

        if rep.id in lora.names_in(model):  # a combination made outside the base is not
            lora.remove(model, rep.id)
            _active(model).names = None

    def activate(self, model: Any, rows: Rows) -> None:
        """The LoRAs of ``rows`` active: for all rows, PEFT's ``set_adapter`` (their updates
        summed; only when the set changes, and every LoRA's ``requires_grad`` kept, which
        ``set_adapter`` would reset); for rows with LoRAs of their own, the per-row hook."""
        slots = _slots(rows)
        per_row = list(zip(*slots, strict=True)) if slots else [()]
        if model not in _ACTIVE and not any(n for row in per_row for n in row):
            return  # no LoRA was ever added to this base: nothing to (de)activate
        from langtransfer.representations import lora

        state = _active(model)
        if state.rows is not None:  # the previous call's per-row hooks
            state.rows.__exit__(None, None, None)
            state.rows = None
        if len(set(per_row)) > 1:
            state.rows = lora.per_row(model, slots)
            state.rows.__enter__()  # deactivates every LoRA: the hooks add each row's
            state.names = ()
            return
        names = tuple(n for n in per_row[0] if n is not None)
        if names != state.names:
            lora.activate(model, names)
            state.names = names

    def train(self, model: Any, rep: Representation) -> None:
        from langtransfer.representations import lora

        lora.set_trainable(model, rep.id)


def _slots(rows: Rows) -> list[list[str | None]]:
    """Per role (language, then task), each row's LoRA id (None: none), from per-role
    lists of one entry (every row) or one per row."""
    batch = max((len(reps) for reps in rows.values()), default=0)
    slots = []
    for role in ROLES:
        reps = rows.get(role) or ()
        slots.append([(rep.id if (rep := reps[i] if len(reps) > 1 else reps[0]) is not None
                       else None) if reps else None for i in range(batch)])
    return slots
