"""The adapter kind: bottleneck adapters (or another `adapters` config) in every layer.

The spec is :class:`AdapterSpec` (an `adapters` config by name); the weights live inside
the shared base once attached (the `adapters` library injects them under the
representation's id), so the record holds only the spec and, when loaded, its directory.
Several adapters run as the library's compositions: ``Stack(language, task)``, and for
rows with different adapters ``Stack(BatchSplit(...), BatchSplit(...))`` over rows grouped
by adapter. Stored in the AdapterHub layout (``adapter_config.json`` +
``adapter.safetensors``), so AdapterHub tooling reads it; a combination is the library's
``average_adapter`` (linear). The library's hooks on the base, and their random draws, are
:mod:`langtransfer.representations.adapter`'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langtransfer.base.loading import fingerprint
from langtransfer.configurations import ROLES
from langtransfer.errors import CorruptFileError, LangTransferError, UnknownNameError
from langtransfer.representations.base import Representation
from langtransfer.representations.kinds.base import KindOption, RepresentationKind, Rows

if TYPE_CHECKING:
    from adapters import AdapterConfig

DEFAULT_ADAPTER_CONFIG = "seq_bn"
#: The config names of the installed `adapters` (its ``ADAPTER_CONFIG_MAP``; importing it
#: imports torch, so the names are kept here and a test pins them to the library's).
ADAPTER_CONFIGS: tuple[str, ...] = (
    "pfeiffer", "houlsby", "parallel", "scaled_parallel", "pfeiffer+inv", "houlsby+inv",
    "seq_bn", "double_seq_bn", "par_bn", "scaled_par_bn", "seq_bn_inv", "double_seq_bn_inv",
    "compacter++", "compacter", "prefix_tuning", "prefix_tuning_flat", "prompt_tuning",
    "mtl_lora", "lora", "ia3", "vera", "dora", "dvora", "loreft", "noreft", "direft", "mam",
    "unipelt",
)
#: The files of an adapter directory: the `adapters` library's safetensors file and config.
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class AdapterSpec:
    """An `adapters` config by name (``seq_bn``: Pfeiffer bottleneck, as in the paper).

    ``reduction_factor`` applies to bottleneck configs; None keeps the library default.
    """

    config: str = DEFAULT_ADAPTER_CONFIG
    reduction_factor: int | None = 16

    def __post_init__(self) -> None:
        if self.config not in ADAPTER_CONFIGS:
            raise UnknownNameError("adapter config", self.config, ADAPTER_CONFIGS)

    def to_adapters_config(self) -> AdapterConfig:
        from adapters import AdapterConfig
        from adapters.configuration.adapter_config import ADAPTER_CONFIG_MAP

        overrides: dict[str, Any] = {}
        base = ADAPTER_CONFIG_MAP[self.config]
        if self.reduction_factor is not None and "reduction_factor" in base:
            overrides["reduction_factor"] = self.reduction_factor
        return AdapterConfig.load(self.config, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AdapterKind(RepresentationKind):
    """Adapters through the `adapters` library (the paper's ``la``/``ta``): AdamW at lr
    5e-5, no weight decay."""

    name = "adapter"
    label = "adapter"
    spec_type = AdapterSpec
    options = (
        KindOption("config", "--adapter-config", str,
                   f"an `adapters` config name (default {DEFAULT_ADAPTER_CONFIG})"),
        KindOption("reduction_factor", "--reduction-factor", int,
                   "bottleneck reduction factor (default 16)", nullable=True),
    )
    training_defaults = {"optimizer": "adamw", "learning_rate": 5e-5, "weight_decay": 0.0}
    files = (ADAPTER_WEIGHTS, ADAPTER_CONFIG)
    combine_method = "adapters average_adapter (linear)"
    splits_rows = True  # BatchSplit takes fixed row counts per adapter

    # -- weights -------------------------------------------------------------------------

    def new(self, role: str, spec: Any, model: Any, tokenizer: Any,
            **common: Any) -> Representation:
        """A fresh adapter: its weights are made when it is attached to a base (its base
        is recorded when it is saved)."""
        spec = self.check_spec(spec if spec is not None else AdapterSpec())
        return Representation(kind=self.name, role=role, spec=spec, **common)

    def save(self, rep: Representation, directory: Path, model: Any | None) -> None:
        if model is None or rep.id not in getattr(model, "adapters_config", {}):
            raise LangTransferError(f"adapter {rep.name} is not attached to the given model")
        model.save_adapter(str(directory), rep.id, with_head=False, use_safetensors=True)
        _name_adapter_files(directory, rep.id, rep.label)

    def load(self, directory: Path, manifest: Mapping[str, Any],
             common: dict[str, Any]) -> Representation:
        from langtransfer.representations.weight_files import check_safetensors, content_hash

        check_safetensors(directory / ADAPTER_WEIGHTS)
        _check_adapter_config(directory, manifest)
        spec = AdapterSpec(**(manifest.get(self.name) or {}))
        return Representation(spec=spec, path=directory,
                              content_hash=content_hash(directory, self.files), **common)

    def check_combinable(self, a: Representation, b: Representation) -> None:
        if a.spec != b.spec:
            raise LangTransferError(
                f"part {b.where} is adapter {b.spec} but {a.where} is {a.spec}; adapters "
                "combine only with one adapter config"
            )

    def combine(self, parts: Sequence[tuple[Representation, float]], model: Any | None,
                **common: Any) -> Representation:
        """``average_adapter`` (linear: every weight the weighted sum of the parts') of
        the parts, which are attached to ``model``; the result is added to ``model``."""
        first = parts[0][0]
        if model is None:
            raise LangTransferError(
                f"combining adapters for {common.get('language')} needs the base model they "
                "fit (model=...)"
            )
        target = Representation(kind=self.name, role="language", spec=first.spec,
                                base_model=first.base_model, **common)
        model.average_adapter(
            target.id, [rep.id for rep, _ in parts], weights=[w for _, w in parts],
            combine_strategy="linear", normalize_weights=False,
        )
        return target

    # -- on a base model -----------------------------------------------------------------

    def prepare(self, model: Any) -> None:
        """As on a freshly loaded base: the composition's first adapter comes after
        ``adapters.init``'s random draws (same seed, same fresh adapter weights)."""
        from langtransfer.representations.adapter import (
            ensure_adapter_support,
            replay_adapter_init,
        )

        if not ensure_adapter_support(model):
            replay_adapter_init(model)

    def add(self, model: Any, rep: Representation) -> None:
        if rep.id in model.adapters_config:
            raise LangTransferError(
                f"representation id {rep.id!r} of {rep.where} clashes with adapter "
                f"{rep.id!r} already in the base, added outside langtransfer"
            )
        if rep.path is not None:
            _load_adapter(model, rep)
        else:
            model.add_adapter(rep.id, config=self.check_spec(rep.spec).to_adapters_config())
        model.to(model.device)

    def remove(self, model: Any, rep: Representation) -> None:
        model.delete_adapter(rep.id)

    def activate(self, model: Any, rows: Rows) -> None:
        """``Stack(language, task)`` of the adapters in ``rows``; where rows differ (runs
        of grouped rows), ``Stack(BatchSplit(...), BatchSplit(...))``, a split naming an
        adapter once per run of rows. Not ``BatchSplit(Stack(la, ta), ...)``: `adapters`
        1.3 applies a bottleneck layer's pre-forward (residual, the base's layer norm) at
        a ``BatchSplit`` and again in each nested ``Stack``, so that nesting does not
        equal ``Stack(la, ta)`` per row; a split's pre-forward, once per layer, is every
        adapter's of one config."""
        if not hasattr(model, "adapters_config"):
            return  # no adapter was ever added to this base
        from adapters.composition import BatchSplit, Stack

        blocks: list[Any] = []
        for role in ROLES:
            runs: list[list[Any]] = []  # [adapter, row count] per run of rows
            for rep in rows.get(role, ()):
                name = rep.id if rep is not None else None
                if runs and runs[-1][0] == name:
                    runs[-1][1] += 1
                else:
                    runs.append([name, 1])
            if not runs or runs[0][0] is None:  # no adapter in this role
                continue
            blocks.append(runs[0][0] if len(runs) == 1 else
                          BatchSplit(*[n for n, _ in runs], batch_sizes=[k for _, k in runs]))
        model.set_active_adapters(Stack(*blocks) if blocks else None)

    def train(self, model: Any, rep: Representation) -> None:
        # The library's own switch: unfreezes exactly this adapter's weights (and puts the
        # base in training mode, which Trainer decides, so back to eval).
        model.train_adapter(rep.id)
        model.eval()


def _load_adapter(model: Any, rep: Representation) -> None:
    if not (Path(rep.path or "") / ADAPTER_WEIGHTS).is_file():
        raise CorruptFileError(f"{rep.path}: missing {ADAPTER_WEIGHTS}")
    try:
        model.load_adapter(str(rep.path), load_as=rep.id, with_head=False, use_safetensors=True)
    except (RuntimeError, ValueError, KeyError, TypeError, OSError) as e:
        # Shapes or config that do not fit this base model: a lying or broken file.
        lines = [line.strip() for line in str(e).strip().splitlines()] or [repr(e)]
        detail = next((line for line in lines if "mismatch" in line), lines[0])
        raise CorruptFileError(
            f"{rep.path}: the adapter files do not load onto base model "
            f"{fingerprint(model)['name']!r} ({detail[:300]})"
        ) from e


def _name_adapter_files(directory: Path, slot: str, name: str) -> None:
    """AdapterHub files carry the adapter's name in the config and in every weight's key:
    the readable label (``task_qa``), not the id, which is only unique within one base."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    from langtransfer.io import os_error_from, write_json

    path = directory / ADAPTER_CONFIG
    config = json.loads(path.read_text(encoding="utf-8"))
    config["name"] = name
    write_json(path, config)
    weights = directory / ADAPTER_WEIGHTS
    tensors = load_file(str(weights))
    part = f".{slot}."
    renamed = {k.replace(part, f".{name}.", 1) if part in k else k: v for k, v in tensors.items()}
    try:
        save_file(renamed, str(weights))
    except SafetensorError as e:
        raise os_error_from(e) from e


def _check_adapter_config(directory: Path, manifest: Mapping[str, Any]) -> None:
    """The `adapters` config must be readable and made for the manifest's base model width."""
    path = directory / ADAPTER_CONFIG
    if not path.is_file():
        raise CorruptFileError(f"{directory}: missing {ADAPTER_CONFIG}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise CorruptFileError(f"{path}: not an `adapters` adapter config (no 'config' mapping)")
    hidden, d_model = config.get("hidden_size"), manifest["base_model"]["d_model"]
    if hidden is not None and hidden != d_model:
        raise CorruptFileError(
            f"{path}: the adapter is for hidden size {hidden!r} but the manifest says its base "
            f"model has d_model {d_model}; the manifest does not describe these weights"
        )
