"""Loading base models and describing them by a fingerprint.

A representation (prompt or adapter) only fits the base model it was trained on; the
fingerprint is what a saved representation records and what loading checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langtransfer.errors import IncompatibleModelError, LangTransferError

if TYPE_CHECKING:  # transformers is imported when a model is loaded, not for `--help`
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TINY_NAME = "tiny"

DEFAULT_MODEL = "bigscience/mt0-base"

# The fields that must agree for a representation to fit a base model.
FINGERPRINT_KEYS = ("model_type", "vocab_size", "d_model", "num_layers", "num_decoder_layers")


def load_base(
    name: str = DEFAULT_MODEL,
    *,
    trust_remote_code: bool = False,
    torch_dtype: Any = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Return a frozen, eval-mode seq2seq model and its tokenizer.

    ``"tiny"`` builds the embedded model; any other name is a local directory or a hub id
    passed to ``from_pretrained``. Weights are read from safetensors only, and remote
    code runs only when the caller asks for it.
    """
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from langtransfer.tiny import build_tiny

    if name == TINY_NAME:
        model, tokenizer = build_tiny(name=TINY_NAME)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
            model = AutoModelForSeq2SeqLM.from_pretrained(
                name,
                trust_remote_code=trust_remote_code,
                use_safetensors=True,
                torch_dtype=torch_dtype,
            )
        except (OSError, ValueError) as e:
            raise LangTransferError(
                f"cannot load base model {name!r} (a local directory or a hub id of a "
                f"seq2seq model with safetensors weights, or 'tiny'): {e}"
            ) from e
    model.requires_grad_(False)
    model.eval()
    return model, tokenizer


def model_name(model: PreTrainedModel) -> str:
    return getattr(model.config, "name_or_path", "") or getattr(model.config, "_name_or_path", "")


def fingerprint(model: PreTrainedModel) -> dict[str, Any]:
    """What identifies a base model's shape, plus its name for messages."""
    c = model.config
    return {
        "name": model_name(model),
        "model_type": c.model_type,
        "vocab_size": c.vocab_size,
        "d_model": c.d_model,
        "num_layers": c.num_layers,
        "num_decoder_layers": getattr(c, "num_decoder_layers", c.num_layers),
    }


def check_compatible(expected: dict[str, Any], model: PreTrainedModel, what: str) -> None:
    """Raise if a representation trained on ``expected`` does not fit ``model``.

    Only the fields ``expected`` records are compared: a prompt imported from PEFT knows
    just its width (``d_model``).
    """
    actual = fingerprint(model)
    diffs = [
        f"{k} {expected[k]} vs {actual[k]}"
        for k in FINGERPRINT_KEYS
        if k in expected and expected[k] != actual[k]
    ]
    if diffs:
        raise IncompatibleModelError(
            f"{what} was trained on base model {expected.get('name')!r} but is being loaded "
            f"onto {actual['name']!r}; they differ in {', '.join(diffs)}"
        )
