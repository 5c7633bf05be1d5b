"""Language and task representations: their kinds (soft prompts, adapters), records and
directories.

The names below are imported on first use (module ``__getattr__``), so importing a kind's
spec (``from langtransfer.representations import PromptConfig``) does not load torch:
reading a study config stays light. Weights, stores and formats load torch when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langtransfer.configurations import ROLES
    from langtransfer.representations.base import Representation
    from langtransfer.representations.fit import check_fit
    from langtransfer.representations.kinds import (
        KINDS,
        AdapterSpec,
        PromptConfig,
        get_kind,
        kind_of,
        new_adapter,
        new_prompt,
        new_representation,
    )
    from langtransfer.representations.kinds.prompt import INIT_STRATEGIES
    from langtransfer.representations.peft_format import (
        convert_peft_bin,
        export_peft_prompt,
        load_peft_prompt,
    )
    from langtransfer.representations.prompt import SoftPrompt
    from langtransfer.representations.store import (
        load_representation,
        read_manifest,
        save_representation,
    )

#: Each exported name -> the module that defines it.
_HOMES: dict[str, str] = {
    "ROLES": "langtransfer.configurations",
    "Representation": "langtransfer.representations.base",
    "check_fit": "langtransfer.representations.fit",
    **{name: "langtransfer.representations.kinds" for name in (
        "KINDS", "AdapterSpec", "PromptConfig", "get_kind", "kind_of", "new_adapter",
        "new_prompt", "new_representation")},
    "INIT_STRATEGIES": "langtransfer.representations.kinds.prompt",
    **{name: "langtransfer.representations.peft_format" for name in (
        "convert_peft_bin", "export_peft_prompt", "load_peft_prompt")},
    "SoftPrompt": "langtransfer.representations.prompt",
    **{name: "langtransfer.representations.store" for name in (
        "load_representation", "read_manifest", "save_representation")},
}

__all__ = [
    "INIT_STRATEGIES",
    "KINDS",
    "ROLES",
    "AdapterSpec",
    "PromptConfig",
    "Representation",
    "SoftPrompt",
    "check_fit",
    "convert_peft_bin",
    "export_peft_prompt",
    "get_kind",
    "kind_of",
    "load_peft_prompt",
    "load_representation",
    "new_adapter",
    "new_prompt",
    "new_representation",
    "read_manifest",
    "save_representation",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once imported, as if imported here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
