"""Language and task representations: soft prompts, adapters, and their directories."""

from langtransfer.representations.adapter import AdapterSpec
from langtransfer.representations.base import (
    KINDS,
    ROLES,
    Representation,
    new_adapter,
    new_prompt,
    new_representation,
)
from langtransfer.representations.peft_format import (
    convert_peft_bin,
    export_peft_prompt,
    load_peft_prompt,
)
from langtransfer.representations.prompt import INIT_STRATEGIES, PromptConfig, SoftPrompt
from langtransfer.representations.store import (
    load_representation,
    read_manifest,
    save_representation,
)

__all__ = [
    "INIT_STRATEGIES",
    "KINDS",
    "ROLES",
    "AdapterSpec",
    "PromptConfig",
    "Representation",
    "SoftPrompt",
    "convert_peft_bin",
    "export_peft_prompt",
    "load_peft_prompt",
    "load_representation",
    "new_adapter",
    "new_prompt",
    "new_representation",
    "read_manifest",
    "save_representation",
]
