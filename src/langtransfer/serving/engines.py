"""Serving merged LoRA pairs on an existing engine: what vLLM and SGLang accept, their
command lines and a request per pair. Standard library only.

What vLLM accepts was read from its source (vllm-project/vllm):

* ``vllm/lora/peft_helper.py``, ``PEFTHelper``: ``adapter_config.json``'s ``r``,
  ``lora_alpha`` and ``target_modules`` are required; ``bias``, ``modules_to_save``,
  ``use_rslora``, ``use_dora`` are read (``from_dict`` drops every other key), and
  ``validate_legal`` refuses ``modules_to_save``, DoRA, a bias other than "none" and a
  rank above ``--max-lora-rank``;
* ``vllm/config/lora.py``: ``MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]``
  (``--max-lora-rank``, default 16); ``--max-loras`` (default 1) LoRAs per batch;
* ``vllm/lora/utils.py`` ``get_supported_lora_modules`` (every linear layer's last name,
  packed layers expanded: Llama, Qwen2 and Mistral pack ``q_proj``/``k_proj``/``v_proj`` as
  ``qkv_proj`` and ``gate_proj``/``up_proj`` as ``gate_up_proj``) and ``vllm/lora/models.py``
  ``check_unexpected_modules`` (a weight of any other module is refused);
* it serves no encoder-decoder model with LoRA (nor prompt or bottleneck adapters), so a
  seq2seq base stays on langtransfer's own server.

SGLang (docs.sglang.io, "LoRA Serving"): ``--enable-lora --lora-paths NAME=PATH ...``,
``--max-lora-rank``, ``--lora-target-modules``, ``--max-loras-per-batch``; a request names
its adapter with ``lora_path``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from langtransfer.errors import LangTransferError

#: The keys of an exported ``adapter_config.json``: vLLM's ``PEFTHelper`` fields, and
#: PEFT's own identification, which vLLM drops and ``PeftModel.from_pretrained`` reads.
VLLM_CONFIG_KEYS: tuple[str, ...] = (
    "r", "lora_alpha", "target_modules", "bias", "modules_to_save", "use_rslora", "use_dora",
)
PEFT_IDENTITY_KEYS: tuple[str, ...] = ("peft_type", "task_type", "base_model_name_or_path")
#: ``--max-lora-rank`` values vLLM takes.
VLLM_MAX_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
#: The modules vLLM adapts in a Llama, Qwen2 or Mistral base (its packed layers expanded).
VLLM_LORA_MODULES: tuple[str, ...] = (
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
)
#: The base families vLLM serves LoRAs on.
VLLM_FAMILIES: tuple[str, ...] = ("causal",)


def max_lora_rank(rank: int) -> int:
    """The smallest ``--max-lora-rank`` vLLM takes that holds ``rank``."""
    for allowed in VLLM_MAX_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise LangTransferError(
        f"a merged LoRA of rank {rank} is above vLLM's largest --max-lora-rank "
        f"{VLLM_MAX_LORA_RANKS[-1]}; use smaller ranks"
    )


def check_for_vllm(config: Mapping[str, Any], where: str) -> None:
    """``config`` (an ``adapter_config.json``) holds only keys and values vLLM's loader
    accepts; else one line naming the first that it refuses."""
    extra = sorted(set(config) - set(VLLM_CONFIG_KEYS) - set(PEFT_IDENTITY_KEYS))
    if extra:
        raise LangTransferError(f"{where}: keys {extra} are not read by vLLM's PEFTHelper")
    refused = {"bias": "none", "modules_to_save": None, "use_dora": False}
    for key, wanted in refused.items():
        if config.get(key, wanted) != wanted:
            raise LangTransferError(f"{where}: {key} {config[key]!r} is refused by vLLM "
                                    f"(valid: {wanted!r})")
    modules = config.get("target_modules")
    if isinstance(modules, str):
        modules = [modules]
    unknown = sorted(set(modules or ()) - set(VLLM_LORA_MODULES))
    if not modules or unknown:
        raise LangTransferError(
            f"{where}: target modules {unknown or modules} are not ones vLLM adapts in a "
            f"Llama, Qwen2 or Mistral base (valid: {', '.join(VLLM_LORA_MODULES)})"
        )
    max_lora_rank(int(config["r"]))


def check_family(family: str, what: str) -> None:
    """vLLM and SGLang serve LoRAs on causal bases only; a seq2seq pair is refused."""
    if family not in VLLM_FAMILIES:
        raise LangTransferError(
            f"{what} is on a {family} base: vLLM and SGLang serve no encoder-decoder model "
            "with LoRA; serve it with langtransfer's own server (`langtransfer serve`)"
        )


def vllm_command(base: str, adapters: Mapping[str, str], rank: int) -> list[str]:
    """``vllm serve BASE --enable-lora ... --lora-modules NAME=PATH ...``: every adapter
    on one base, all of them usable in one batch."""
    modules = [f"{name}={path}" for name, path in adapters.items()]
    return ["vllm", "serve", base, "--enable-lora", "--max-lora-rank", str(max_lora_rank(rank)),
            "--max-loras", str(len(adapters)), "--lora-modules", *modules]


def sglang_command(base: str, adapters: Mapping[str, str], rank: int,
                   targets: list[str]) -> list[str]:
    """``python -m sglang.launch_server --model-path BASE --enable-lora --lora-paths ...``."""
    return ["python", "-m", "sglang.launch_server", "--model-path", base, "--enable-lora",
            "--max-lora-rank", str(rank), "--lora-target-modules", *targets,
            "--max-loras-per-batch", str(len(adapters)),
            "--lora-paths", *[f"{name}={path}" for name, path in adapters.items()]]


def vllm_request(name: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    """An OpenAI-compatible completion request to vLLM naming the pair as the model."""
    return {"model": name, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}


def sglang_request(name: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    """A request to SGLang's ``/generate`` naming the pair's adapter."""
    return {"text": prompt, "lora_path": name,
            "sampling_params": {"max_new_tokens": max_tokens, "temperature": 0}}


def shell(command: list[str]) -> str:
    """A command line as one shell-quoted line."""
    return " ".join(shlex.quote(part) for part in command)


def curl(url: str, body: Mapping[str, Any]) -> str:
    """A ``curl`` line posting ``body`` as JSON."""
    return shell(["curl", "-s", url, "-H", "Content-Type: application/json", "-d",
                  json.dumps(body, ensure_ascii=False)])
