"""Bottleneck adapters through the `adapters` library (AdapterHub format on disk)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import adapters
from adapters import AdapterConfig
from adapters.configuration.adapter_config import ADAPTER_CONFIG_MAP
from transformers import PreTrainedModel

from langtransfer.errors import UnknownNameError

DEFAULT_ADAPTER_CONFIG = "seq_bn"


@dataclass
class AdapterSpec:
    """An `adapters` config by name (``seq_bn``: Pfeiffer bottleneck, as in the paper).

    ``reduction_factor`` applies to bottleneck configs; None keeps the library default.
    """

    config: str = DEFAULT_ADAPTER_CONFIG
    reduction_factor: int | None = 16

    def __post_init__(self) -> None:
        if self.config not in ADAPTER_CONFIG_MAP:
            raise UnknownNameError("adapter config", self.config, ADAPTER_CONFIG_MAP)

    def to_adapters_config(self) -> AdapterConfig:
        overrides: dict[str, Any] = {}
        base = ADAPTER_CONFIG_MAP[self.config]
        if self.reduction_factor is not None and "reduction_factor" in base:
            overrides["reduction_factor"] = self.reduction_factor
        return AdapterConfig.load(self.config, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ensure_adapter_support(model: PreTrainedModel) -> None:
    """Add the `adapters` library's hooks to a plain transformers model, once."""
    if not hasattr(model, "adapters_config"):
        adapters.init(model)
