"""Loading base models and describing them by a fingerprint.

A representation (prompt or adapter) only fits the base model it was trained on; the
fingerprint is what a saved representation records and what loading checks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from langtransfer.base.families import family_of
from langtransfer.errors import IncompatibleModelError, LangTransferError

if TYPE_CHECKING:  # transformers is imported when a model is loaded, not for `--help`
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TINY_NAME = "tiny"
TINY_CAUSAL_NAME = "tiny-causal"
#: The embedded models (no files): name -> family.
EMBEDDED = {TINY_NAME: "seq2seq", TINY_CAUSAL_NAME: "causal"}

DEFAULT_MODEL = "bigscience/mt0-base"

# The fields that must agree for a representation to fit a base model.
FINGERPRINT_KEYS = (
    "family", "model_type", "vocab_size", "d_model", "num_layers", "num_decoder_layers",
)


logger = logging.getLogger(__name__)


def load_base(
    name: str = DEFAULT_MODEL,
    *,
    trust_remote_code: bool = False,
    torch_dtype: Any = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Return a frozen, eval-mode base model (seq2seq or causal LM) and its tokenizer.

    ``"tiny"`` and ``"tiny-causal"`` build the embedded models; any other name is a local
    directory or a hub id: its config picks the family (:func:`family_of`), whose Auto
    class loads it. Weights are read from safetensors only, and remote code runs only
    when the caller asks for it. A tokenizer without a pad token pads with its EOS token
    (said in a warning; pads are always masked).
    """
    from transformers import AutoConfig, AutoTokenizer

    from langtransfer.base.tiny import build_tiny, build_tiny_causal

    model: PreTrainedModel
    if name == TINY_NAME:
        model, tokenizer = build_tiny(name=TINY_NAME)
    elif name == TINY_CAUSAL_NAME:
        model, tokenizer = build_tiny_causal(name=TINY_CAUSAL_NAME)
    else:
        try:
            config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
            family = family_of(config)
            tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
            model = family.auto_model().from_pretrained(
                name,
                config=config,
                trust_remote_code=trust_remote_code,
                use_safetensors=True,
                torch_dtype=torch_dtype,
            )
        except (OSError, ValueError) as e:
            if isinstance(e, IncompatibleModelError):
                raise
            raise LangTransferError(
                f"cannot load base model {name!r} (a local directory or a hub id of a "
                "seq2seq or causal LM with safetensors weights, or 'tiny' / 'tiny-causal'): "
                f"{e}"
            ) from e
    ensure_pad_token(model, tokenizer, name)
    model.requires_grad_(False)
    model.eval()
    return model, tokenizer


def ensure_pad_token(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str) -> None:
    """Give a tokenizer without a pad token its EOS token as pad (Llama 3's have none),
    and the model the tokenizer's pad id. Pads are masked in every batch and never
    trained on, so which token pads does not change a result."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise LangTransferError(
                f"the tokenizer of base model {name!r} has neither a pad nor an EOS token; "
                "batches need one to pad with (set tokenizer.pad_token)"
            )
        tokenizer.pad_token = tokenizer.eos_token
        logger.warning(
            "the tokenizer of base model %r has no pad token: padding with its EOS token "
            "%r (id %d); pads are masked and never trained on",
            name, tokenizer.eos_token, tokenizer.eos_token_id,
        )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    generation = getattr(model, "generation_config", None)
    if generation is not None and generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id


def model_name(model: PreTrainedModel) -> str:
    return getattr(model.config, "name_or_path", "") or getattr(model.config, "_name_or_path", "")


def fingerprint(model: PreTrainedModel) -> dict[str, Any]:
    """What identifies a base model's shape, plus its name for messages."""
    c = model.config
    # hidden_size / num_hidden_layers: T5 configs map them to d_model / num_layers.
    return {
        "name": model_name(model),
        "family": family_of(model).name,
        "model_type": c.model_type,
        "vocab_size": c.vocab_size,
        "d_model": c.hidden_size,
        "num_layers": c.num_hidden_layers,
        "num_decoder_layers": getattr(c, "num_decoder_layers", c.num_hidden_layers),
    }


def hidden_size(model: PreTrainedModel) -> int:
    """The width of the model's input embeddings (a prompt must have this width)."""
    return int(model.config.hidden_size)


def check_compatible(expected: dict[str, Any], model: PreTrainedModel, what: str) -> None:
    """Raise if a representation trained on ``expected`` does not fit ``model``.

    Only the fields ``expected`` records are compared: a prompt imported from PEFT knows
    just its width (``d_model``), and one saved before families existed has no
    ``family`` (its ``model_type`` still tells mt5 from llama).
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
