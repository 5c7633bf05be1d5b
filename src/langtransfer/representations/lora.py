"""LoRA's weights: its PEFT directory format, its layers in a base (through PEFT), and
exact sums of LoRA modules (the kind, its spec and defaults:
:mod:`langtransfer.representations.kinds.lora`).

**Format.** A LoRA directory is a PEFT LoRA directory: ``adapter_config.json``
(``peft_type: LORA``, ``r``, ``lora_alpha``, ``target_modules``...) and
``adapter_model.safetensors`` with PEFT's keys
(``base_model.model.<module path>.lora_A.weight`` / ``lora_B.weight``), so
``peft.PeftModel.from_pretrained(base, directory)`` loads it and vLLM and SGLang serve it.
A langtransfer representation adds its ``manifest.json`` beside them, which PEFT ignores.

**Layers.** PEFT creates and runs the layers (``peft.functional``: ``inject_adapter_in_model``,
``set_adapter``, ``delete_adapter``): any number of LoRAs live in one base under their
names, and the active ones are summed, ``W x + sum_i s_i B_i A_i x``.

**Arithmetic.** A LoRA module adds ``s B A`` to a frozen weight ``W`` (``A``: r x in, ``B``:
out x r, ``s = alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA). A weighted sum
``sum_i w_i s_i B_i A_i`` is itself one LoRA module of rank ``sum_i r_i``:
``B = [w_1 s_1 B_1 ... w_n s_n B_n]``, ``A = [A_1; ...; A_n]``, ``s = 1`` — exact, with no
truncation, whatever the ranks. Merging a language LoRA with a task LoRA is the sum with
weights 1 and 1: one LoRA of rank ``r_1 + r_2`` whose output equals the two applied
together, which is what an engine serving one LoRA per request needs.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from langtransfer.base.families import family_of
from langtransfer.base.loading import model_name
from langtransfer.errors import (
    CorruptFileError,
    IncompatibleModelError,
    LangTransferError,
)
from langtransfer.io import os_error_from, write_json

LORA_CONFIG = "adapter_config.json"
LORA_WEIGHTS = "adapter_model.safetensors"
PEFT_TYPE = "LORA"
#: PEFT's key prefix in a saved LoRA (a ``PeftModel`` wraps the base as ``base_model.model``).
KEY_PREFIX = "base_model.model."
#: PEFT's task type per base family (what ``PeftModel.from_pretrained`` builds).
TASK_TYPES = {"seq2seq": "SEQ_2_SEQ_LM", "causal": "CAUSAL_LM"}
#: PEFT's name prefix of LoRA parameters (``delete_adapter`` needs it).
PARAMETER_PREFIX = "lora_"

def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_targets(model: Any, names: Iterable[str], what: str = "LoRA") -> None:
    """Every name in ``names`` is the last part of some linear layer's path in ``model``."""
    have = linear_names(model)
    missing = sorted(set(names) - have)
    if missing:
        raise IncompatibleModelError(
            f"{what}: target module {', '.join(map(repr, missing))} is not a linear layer of base "
            f"model {model_name(model) or '(unnamed)'!r} ({model.config.model_type}); its "
            f"linear layers: {', '.join(sorted(have))}"
        )


def linear_names(model: nn.Module) -> set[str]:
    """The last parts of the paths of ``model``'s own linear layers (LoRA-wrapped or not)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    names = set()
    for path, module in model.named_modules():
        if isinstance(module, BaseTunerLayer) or (
            isinstance(module, nn.Linear) and f".{PARAMETER_PREFIX}" not in path
            and not path.endswith(".base_layer")
        ):
            names.add(path.rsplit(".", 1)[-1])
    return names


# -- exact arithmetic ---------------------------------------------------------------------


@dataclass(frozen=True)
class LoraFactors:
    """One module's LoRA: ``delta W = scaling * b @ a`` (``a``: r x in, ``b``: out x r)."""

    a: torch.Tensor
    b: torch.Tensor
    scaling: float = 1.0

    def __post_init__(self) -> None:
        if self.a.dim() != 2 or self.b.dim() != 2 or self.a.shape[0] != self.b.shape[1]:
            raise LangTransferError(
                f"LoRA factors must be A (r x in) and B (out x r), got A {list(self.a.shape)} "
                f"and B {list(self.b.shape)}"
            )

    @property
    def rank(self) -> int:
        return int(self.a.shape[0])

    def delta(self) -> torch.Tensor:
        """The dense update ``scaling * B A`` (out x in)."""
        return self.scaling * (self.b.double() @ self.a.double())

    def padded(self, rank: int) -> LoraFactors:
        """The same update with ``rank - self.rank`` zero rows in A and columns in B."""
        extra = rank - self.rank
        if extra == 0:
            return self
        return LoraFactors(
            torch.cat([self.a, self.a.new_zeros(extra, self.a.shape[1])]),
            torch.cat([self.b, self.b.new_zeros(self.b.shape[0], extra)], 1),
            self.scaling,
        )


@dataclass(frozen=True)
class LoraWeights:
    """A whole LoRA: each adapted module's path in the base -> its factors."""

    modules: dict[str, LoraFactors] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        """The largest rank of any module (all modules have it, except in imported LoRAs
        with a PEFT ``rank_pattern``, which langtransfer refuses)."""
        return max((f.rank for f in self.modules.values()), default=0)

    @property
    def targets(self) -> list[str]:
        """The module names adapted (the last part of each path), sorted."""
        return sorted({path.rsplit(".", 1)[-1] for path in self.modules})

    def parameters(self) -> int:
        return sum(f.a.numel() + f.b.numel() for f in self.modules.values())


def weighted_sum(parts: Sequence[tuple[float, LoraWeights]]) -> LoraWeights:
    """``sum_i w_i * LoRA_i`` as one LoRA, exactly: per module ``B = [w_i s_i B_i ...]``,
    ``A = [A_i; ...]``, scaling 1; a module one part does not adapt gets that part's rank
    in zeros, so every module has rank ``sum_i rank_i`` (PEFT and vLLM read one rank)."""
    if not parts:
        raise LangTransferError("a weighted sum of LoRAs needs at least one LoRA")
    paths = sorted({path for _, lora in parts for path in lora.modules})
    shapes: dict[str, tuple[int, int, torch.dtype]] = {}
    for _, lora in parts:
        for path, f in lora.modules.items():
            shape = (f.b.shape[0], f.a.shape[1], f.a.dtype)
            first = shapes.setdefault(path, shape)
            if first[:2] != shape[:2]:
                raise LangTransferError(
                    f"LoRA module {path} is {first[0]} x {first[1]} in one LoRA and "
                    f"{shape[0]} x {shape[1]} in another: they are for different bases"
                )
    out: dict[str, LoraFactors] = {}
    for path in paths:
        rows, cols, dtype = shapes[path]
        a_blocks, b_blocks = [], []
        for weight, lora in parts:
            given = lora.modules.get(path)
            f = (given if given is not None else
                 LoraFactors(torch.zeros(lora.rank, cols, dtype=dtype),
                             torch.zeros(rows, lora.rank, dtype=dtype))).padded(lora.rank)
            a_blocks.append(f.a)
            b_blocks.append((weight * f.scaling) * f.b)
        out[path] = LoraFactors(torch.cat(a_blocks), torch.cat(b_blocks, 1), 1.0)
    return LoraWeights(out)


def merge(language: LoraWeights, task: LoraWeights) -> LoraWeights:
    """The language and the task LoRA as one LoRA of rank ``r_1 + r_2`` (scaling folded
    into B) whose update is the sum of theirs: the two applied together."""
    return weighted_sum([(1.0, language), (1.0, task)])


# -- PEFT directories ---------------------------------------------------------------------


def peft_config(
    *,
    rank: int,
    alpha: int,
    targets: Sequence[str],
    family: str,
    base_model_name_or_path: str | None,
    dropout: float | None = None,
) -> dict[str, Any]:
    """A PEFT LoRA ``adapter_config.json``. Its keys: PEFT's identification
    (``peft_type``, ``task_type``, ``base_model_name_or_path``), and the fields of vLLM's
    ``PEFTHelper`` (vllm/lora/peft_helper.py: ``r``, ``lora_alpha``, ``target_modules``
    required; ``bias`` "none", ``modules_to_save`` None, ``use_rslora``, ``use_dora`` False;
    its ``from_dict`` drops any other key); ``lora_dropout`` only for a trained LoRA (PEFT
    reads it to train on; an inference engine ignores it). PEFT fills the rest with its
    defaults."""
    config: dict[str, Any] = {
        "peft_type": PEFT_TYPE,
        "task_type": TASK_TYPES[family],
        "base_model_name_or_path": base_model_name_or_path,
        "r": rank,
        "lora_alpha": alpha,
        "target_modules": sorted(set(targets)),
        "bias": "none",
        "modules_to_save": None,
        "use_rslora": False,
        "use_dora": False,
    }
    if dropout is not None:
        config["lora_dropout"] = dropout
    return config


def write_peft_lora(directory: Path, config: dict[str, Any], weights: LoraWeights) -> None:
    """Write ``config`` and ``weights`` (whose scaling must be the config's) into
    ``directory`` (an existing, empty or temporary directory: callers write atomically)."""
    scaling = config["lora_alpha"] / config["r"]
    tensors: dict[str, torch.Tensor] = {}
    for path, f in weights.modules.items():
        b = f.b if math.isclose(f.scaling, scaling) else f.b * (f.scaling / scaling)
        tensors[f"{KEY_PREFIX}{path}.lora_A.weight"] = f.a.detach().to("cpu").contiguous()
        tensors[f"{KEY_PREFIX}{path}.lora_B.weight"] = b.detach().to("cpu").contiguous()
    try:
        save_file(tensors, str(directory / LORA_WEIGHTS), metadata={"format": "pt"})
    except SafetensorError as e:  # an I/O error (no space...) as safetensors reports it
        raise os_error_from(e) from e
    write_json(directory / LORA_CONFIG, config)


#: PEFT LoRA features langtransfer does not compose (one line each when found).
_UNSUPPORTED = {
    "use_dora": (False, None),
    "fan_in_fan_out": (False, None),
    "bias": ("none", None),
    "modules_to_save": (None, [], ()),
    "rank_pattern": ({}, None),
    "alpha_pattern": ({}, None),
    "layer_replication": (None,),
}


def read_peft_config(directory: Path) -> dict[str, Any]:
    """The ``adapter_config.json`` of a LoRA directory, checked to be a plain PEFT LoRA
    (no DoRA, bias, per-module ranks or extra trained modules)."""
    path = directory / LORA_CONFIG
    if not path.is_file():
        raise CorruptFileError(f"{directory}: missing {LORA_CONFIG}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(config, dict) or config.get("peft_type") != PEFT_TYPE:
        got = config.get("peft_type") if isinstance(config, dict) else config
        raise CorruptFileError(f"{path}: peft_type {got!r:.40} is not {PEFT_TYPE}")
    if not _positive_int(config.get("r")):
        raise CorruptFileError(f"{path}: r must be a positive integer, got {config.get('r')!r}")
    alpha = config.get("lora_alpha")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise CorruptFileError(f"{path}: lora_alpha must be a positive number, got {alpha!r}")
    for key, allowed in _UNSUPPORTED.items():
        if key in config and config[key] not in allowed:
            raise LangTransferError(
                f"{path}: {key} {config[key]!r:.60} is a PEFT LoRA feature langtransfer does "
                f"not compose (valid: {' or '.join(map(repr, allowed))})"
            )
    task_type = config.get("task_type")
    if task_type is not None and task_type not in TASK_TYPES.values():
        raise LangTransferError(
            f"{path}: task_type {task_type!r} is not for a seq2seq or causal base; valid: "
            f"{', '.join(TASK_TYPES.values())}"
        )
    return config


def scaling_of(config: dict[str, Any]) -> float:
    """PEFT's scaling: ``lora_alpha / r``, or ``lora_alpha / sqrt(r)`` with rsLoRA."""
    r, alpha = config["r"], config["lora_alpha"]
    return float(alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r)


def family_of_config(config: dict[str, Any]) -> str | None:
    """The base family a PEFT LoRA config's ``task_type`` names (None: none named)."""
    return next((f for f, t in TASK_TYPES.items() if t == config.get("task_type")), None)


def read_peft_lora(directory: Path) -> tuple[dict[str, Any], LoraWeights]:
    """A PEFT LoRA directory's config and weights, checked: each module has an A and a B
    of rank ``r`` that fit each other, every number finite."""
    config = read_peft_config(directory)
    path = directory / LORA_WEIGHTS
    if not path.is_file():
        raise CorruptFileError(
            f"{directory}: missing {LORA_WEIGHTS} (weights are loaded from safetensors only)"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise CorruptFileError(f"{path}: not a readable safetensors file ({e})") from e
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        module, _, part = key.removeprefix(KEY_PREFIX).rpartition(".lora_")
        if part not in ("A.weight", "B.weight") or not module:
            raise CorruptFileError(
                f"{path}: tensor {key!r} is not a LoRA factor "
                f"({KEY_PREFIX}<module>.lora_A.weight / .lora_B.weight)"
            )
        if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
            raise CorruptFileError(f"{path}: tensor {key!r} is not finite floating point")
        pairs.setdefault(module, {})[part[0]] = tensor
    if not pairs:
        raise CorruptFileError(f"{path}: holds no LoRA factors")
    scaling, rank = scaling_of(config), config["r"]
    modules = {}
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise CorruptFileError(f"{path}: module {module} has lora_{set(ab).pop()} only")
        a, b = ab["A"], ab["B"]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != rank or b.shape[1] != rank:
            raise CorruptFileError(
                f"{path}: module {module}'s factors are A {list(a.shape)} and B "
                f"{list(b.shape)}, not rank {rank} as the config says"
            )
        modules[module] = LoraFactors(a, b, scaling)
    return config, LoraWeights(modules)


# -- layers in a base, through PEFT -------------------------------------------------------


@dataclass(frozen=True)
class LoraFile:
    """A LoRA as read from (or to be written to) a PEFT directory: its config and factors."""

    config: dict[str, Any]
    weights: LoraWeights


def inject(model: nn.Module, name: str, rank: int, alpha: int, dropout: float,
           targets: Sequence[str]) -> None:
    """Add a fresh LoRA called ``name`` to ``model``'s ``targets`` (PEFT's init: A random,
    B zero, so it starts as the base)."""
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=list(targets), bias="none")
    _inject(config, model, name)


def _inject(config: Any, model: nn.Module, name: str) -> None:
    from peft.functional import inject_adapter_in_model

    with warnings.catch_warnings():
        # "Already found a `peft_config` attribute in the model... multiple adapters":
        # many named LoRAs in one base is what composition wants.
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        inject_adapter_in_model(config, model, adapter_name=name)
    # PEFT's new modules (the LoRA dropout) start in training mode: the base's mode decides
    model.train(model.training)


def load_into(model: nn.Module, name: str, config: dict[str, Any], weights: LoraWeights) -> None:
    """Add the LoRA ``weights`` (read from a directory with ``config``) to ``model`` as
    ``name``: PEFT makes the layers for exactly the modules the file holds, then the
    factors are copied in. A module the base does not have is an error naming it."""
    from peft import LoraConfig

    modules = dict(model.named_modules())
    missing = [p for p in weights.modules if p not in modules]
    if missing:
        check_targets(model, weights.targets)  # names a module type the base lacks
        raise IncompatibleModelError(
            f"the LoRA adapts module {missing[0]!r}, which base model has no module at "
            f"({len(missing)} such modules); it was made for another base"
        )
    peft_config = LoraConfig(
        r=config["r"], lora_alpha=config["lora_alpha"], use_rslora=bool(config.get("use_rslora")),
        lora_dropout=float(config.get("lora_dropout") or 0.0),
        # the full paths, so exactly these modules get layers
        target_modules=sorted(weights.modules), bias="none",
    )
    _inject(peft_config, model, name)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for path, f in weights.modules.items():
            layer: Any = modules[path]
            a, b = layer.lora_A[name].weight, layer.lora_B[name].weight
            if a.shape != f.a.shape or b.shape != f.b.shape:
                raise IncompatibleModelError(
                    f"the LoRA's module {path} is {f.b.shape[0]} x {f.a.shape[1]} but the "
                    f"base's is {b.shape[0]} x {a.shape[1]}: it was made for another base"
                )
            a.copy_(f.a)
            b.copy_(f.b)


def weights_in(model: nn.Module, name: str) -> LoraWeights:
    """The LoRA ``name``'s factors as they are in ``model`` now (their own scaling)."""
    from peft.tuners.lora import LoraLayer

    modules = {}
    for path, module in model.named_modules():
        layer: Any = module  # PEFT's layers hold ModuleDicts mypy cannot see through
        if isinstance(module, LoraLayer) and name in layer.lora_A:
            modules[path] = LoraFactors(
                layer.lora_A[name].weight.detach().clone(),
                layer.lora_B[name].weight.detach().clone(),
                float(layer.scaling[name]),
            )
    if not modules:
        raise LangTransferError(f"LoRA {name} is not in the model")
    return LoraWeights(modules)


def names_in(model: nn.Module) -> set[str]:
    """The LoRAs in ``model`` by name."""
    from peft.tuners.lora import LoraLayer

    return {n for m in model.modules() if isinstance(m, LoraLayer) for n in m.lora_A}


def activate(model: nn.Module, names: Sequence[str]) -> None:
    """Make ``names`` the active LoRAs of ``model`` (their updates are summed). Which
    LoRA trains is unchanged (PEFT's ``set_adapter`` sets ``requires_grad``; it is put back)."""
    from peft.functional import set_adapter

    grads = [(p, p.requires_grad) for n, p in model.named_parameters()
             if f".{PARAMETER_PREFIX}" in n]
    set_adapter(model, list(names), inference_mode=True)
    for parameter, requires_grad in grads:
        parameter.requires_grad_(requires_grad)


def set_trainable(model: nn.Module, name: str) -> None:
    """Give the LoRA ``name``'s factors gradients (PEFT's ``set_requires_grad``)."""
    from peft.functional import set_requires_grad

    set_requires_grad(model, name, True)


@contextlib.contextmanager
def per_row(model: nn.Module, slots: Sequence[Sequence[str | None]]) -> Iterator[None]:
    """Within the block, row ``i`` of every batch through ``model`` runs with the LoRAs
    ``slot[i]`` of each slot (a role: the language LoRA, the task LoRA; None: none), their
    updates summed, so rows of different (language, task) pairs share one forward or
    ``generate``; no LoRA is active otherwise (the block starts by deactivating them; the
    caller activates what it needs afterwards).

    PEFT's own mixed batches (``adapter_names=``) give each row one adapter; a row here
    needs a language and a task LoRA, so a hook on each of PEFT's LoRA layers adds each
    slot's update with the layer's own factors (``lora_A``, ``lora_B``, ``scaling``): a
    slot every row shares runs on the whole batch, as PEFT runs it; a slot whose rows
    differ gathers each row's factors from the slot's LoRAs stacked (zero-padded to one
    rank, scaling folded into B) and runs one batched product for all rows. Every call
    must have one row per entry (greedy decoding keeps it; beam search does not, and is
    refused)."""
    from peft.tuners.lora import LoraLayer

    slots = [list(slot) for slot in slots if any(n is not None for n in slot)]
    batch = len(slots[0]) if slots else 0
    if any(len(slot) != batch for slot in slots):
        raise LangTransferError("per-row LoRAs need one entry per row in every slot")
    activate(model, [])
    device = next(model.parameters()).device
    # Per slot: its LoRAs in order, and each row's index into them (len: no LoRA).
    plans = []
    for slot in slots:
        names = list(dict.fromkeys(n for n in slot if n is not None))
        index = torch.tensor([names.index(n) if n is not None else len(names) for n in slot],
                             dtype=torch.long, device=device)
        plans.append((names, index, names[0] if len(names) == 1 and None not in slot else None))
    stacks: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def stacked(module: Any, j: int, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The slot's A (n+1 x r x in) and scaled B (n+1 x out x r) in ``module``; the
        last entry, and a LoRA the module does not hold, are zeros."""
        key = (id(module), j)
        if key not in stacks:
            present = [n for n in names if n in module.lora_A]
            rank = max(module.lora_A[n].weight.shape[0] for n in present)
            weight = module.lora_A[present[0]].weight
            cols, rows = weight.shape[1], module.lora_B[present[0]].weight.shape[0]
            a = weight.new_zeros(len(names) + 1, rank, cols)
            b = weight.new_zeros(len(names) + 1, rows, rank)
            for k, n in enumerate(names):
                if n in module.lora_A:
                    r = module.lora_A[n].weight.shape[0]
                    a[k, :r] = module.lora_A[n].weight
                    b[k, :, :r] = module.lora_B[n].weight * module.scaling[n]
            stacks[key] = (a, b)
        return stacks[key]

    def hook(module: Any, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        x = args[0]
        if x.shape[0] != batch:
            raise LangTransferError(
                f"per-row LoRAs are set for {batch} rows but a call has {x.shape[0]} "
                "(beam search or several sequences per row cannot mix LoRAs per row)"
            )
        for j, (names, index, shared) in enumerate(plans):
            if shared is not None:  # every row: as PEFT runs one LoRA
                if shared in module.lora_A:
                    lora_a = module.lora_A[shared]
                    delta = module.lora_B[shared](lora_a(module.lora_dropout[shared](
                        x.to(lora_a.weight.dtype)))) * module.scaling[shared]
                    output = output + delta.to(output.dtype)
                continue
            if not any(n in module.lora_A for n in names):
                continue
            if module.training:  # each LoRA's own dropout on its rows
                for k, name in enumerate(names):
                    if name not in module.lora_A:
                        continue
                    rows = (index == k).nonzero().squeeze(1)
                    lora_a = module.lora_A[name]
                    sub = x.index_select(0, rows).to(lora_a.weight.dtype)
                    delta = module.lora_B[name](lora_a(module.lora_dropout[name](sub)))
                    output = output.index_add(0, rows, (delta * module.scaling[name]).to(
                        output.dtype))
                continue
            a, b = stacked(module, j, names)
            flat = x.reshape(batch, -1, x.shape[-1]).to(a.dtype)
            hidden = torch.bmm(flat, a.index_select(0, index).transpose(1, 2))
            delta = torch.bmm(hidden, b.index_select(0, index).transpose(1, 2))
            output = output + delta.reshape(output.shape).to(output.dtype)
        return output

    wanted = {n for names, _, _ in plans for n in names}
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, LoraLayer) and any(n in m.lora_A for n in wanted)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def remove(model: nn.Module, name: str) -> None:
    """Delete the LoRA ``name`` from ``model``; layers left with no LoRA are unwrapped, so a
    base whose LoRAs are all gone has its own modules (and parameter names) back."""
    from peft.functional import delete_adapter
    from peft.tuners.lora import LoraLayer

    delete_adapter(model, name, prefix=PARAMETER_PREFIX)
    for path, module in list(model.named_modules()):
        if isinstance(module, LoraLayer) and len(module.lora_A) == 0:
            parent_path, _, child = path.rpartition(".")
            setattr(model.get_submodule(parent_path), child, module.get_base_layer())


def check_family(config: dict[str, Any], model: Any, what: str) -> None:
    """A LoRA whose config names a task type must be for ``model``'s family."""
    family = family_of_config(config)
    actual = family_of(model).name
    if family is not None and family != actual:
        raise IncompatibleModelError(
            f"{what} is for a {family} base (task_type {config['task_type']}) but base model "
            f"{model_name(model)!r} is {actual}"
        )
