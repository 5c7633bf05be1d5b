"""The `adapters` library's hooks on a base model: added once, their random draws
recorded and replayed, the architectures it supports. The adapter kind
(:mod:`langtransfer.representations.kinds.adapter`) runs on them."""

from __future__ import annotations

import weakref
from typing import Any

import adapters
import torch
from torch import nn
from transformers import PreTrainedModel

from langtransfer.base.loading import model_name
from langtransfer.errors import IncompatibleModelError
from langtransfer.quiet import install_filters

install_filters()  # adapters' "none are activated": intended for adapter-free configurations

#: Per base model: the random draws ``adapters.init`` made (None: not replayable).
_INIT_DRAWS: weakref.WeakKeyDictionary[nn.Module, list[tuple] | None] = (
    weakref.WeakKeyDictionary()
)
_DRAW_METHODS = ("uniform_", "normal_")


def ensure_adapter_support(model: PreTrainedModel) -> bool:
    """Add the `adapters` library's hooks to a plain transformers model, once; True when
    it did so now.

    ``adapters.init`` draws from the global RNG (it builds layers), so a fresh adapter
    added right after it starts from other weights than one added to a base that had
    its hooks already. The draws are recorded (and checked to reproduce the RNG state)
    so :func:`replay_adapter_init` can make a shared base give a fresh adapter exactly
    the weights a freshly loaded base would.
    """
    if hasattr(model, "adapters_config"):
        return False
    draws: list[tuple] = []
    originals = {name: getattr(torch.Tensor, name) for name in _DRAW_METHODS}

    def spy(name: str) -> Any:
        original = originals[name]

        def method(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            if kwargs.get("generator") is None:  # only draws from the global RNG
                draws.append((name, tuple(self.shape), self.dtype, self.device, args, kwargs))
            return original(self, *args, **kwargs)

        return method

    before = torch.random.get_rng_state()
    try:
        for name in _DRAW_METHODS:
            setattr(torch.Tensor, name, spy(name))
        adapters.init(model, interface=_interface_for(model))
    except ValueError as e:  # `adapters` has no support (built-in or interface) for it
        torch.random.set_rng_state(before)
        raise IncompatibleModelError(
            f"base model {model_name(model) or '(unnamed)'!r} "
            f"({model.config.model_type}) has no adapter support in the `adapters` library; "
            f"adapters work on: {', '.join(supported_architectures())} (prompts work on any)"
        ) from e
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    after = torch.random.get_rng_state()
    torch.random.set_rng_state(before)
    _replay(draws)
    replayable = torch.equal(torch.random.get_rng_state(), after)
    torch.random.set_rng_state(after)
    _INIT_DRAWS[model] = draws if replayable else None
    return True


#: Decoder-only types whose built-in `adapters` (1.3) code misses transformers 4.57's KV
#: cache (its attention reads ``past_key_value``, transformers passes ``past_key_values``),
#: so cached generation diverges from the model's own forward. They share Qwen2's module
#: layout and go through the library's plugin interface with Qwen2's description instead.
VIA_INTERFACE = ("llama", "mistral")


def _interface_for(model: PreTrainedModel) -> Any:
    if model.config.model_type not in VIA_INTERFACE:
        return None  # the library's own choice (built-in model or plugin interface)
    from dataclasses import replace

    from adapters.wrappers.interfaces import CUSTOM_INTERFACES

    return replace(CUSTOM_INTERFACES["qwen2"])


def supported_architectures() -> list[str]:
    """The model types the installed `adapters` supports: its built-in models and those
    it reaches through its plugin interface (``qwen2``, ``gemma2``...)."""
    import pkgutil

    import adapters.models
    from adapters.wrappers.interfaces import CUSTOM_INTERFACES

    built_in = {
        m.name.replace("_", "-")
        for m in pkgutil.iter_modules(adapters.models.__path__)
        if m.ispkg and m.name != "auto"
    }
    return sorted(built_in | set(CUSTOM_INTERFACES))


def replay_adapter_init(model: PreTrainedModel) -> bool:
    """Advance the global RNG as ``adapters.init`` did on ``model``; False if unknown."""
    draws = _INIT_DRAWS.get(model)
    if draws is None:
        return False
    _replay(draws)
    return True


def _replay(draws: list[tuple]) -> None:
    with torch.no_grad():
        for name, shape, dtype, device, args, kwargs in draws:
            getattr(torch.empty(shape, dtype=dtype, device=device), name)(*args, **kwargs)
