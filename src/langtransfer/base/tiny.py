"""The embedded tiny models, built from a config with no files: ``tiny`` (MT5
architecture, the seq2seq family) and ``tiny-causal`` (Llama architecture, the causal
family), both with the byte-level ByT5 tokenizer.

They exist so the whole pipeline (training, composition, the study) runs and is tested
on machines with no model hub and no GPU. Their scores mean nothing; their shapes and
code paths are those of mT0 and of a decoder-only base such as Llama or Qwen2.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    ByT5Tokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    MT5Config,
    MT5ForConditionalGeneration,
    PretrainedConfig,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

TINY_SEED = 0
#: ByT5's vocabulary: 3 specials, 256 bytes, 125 sentinels (span corruption uses them).
BYTE_VOCAB = 384


def tiny_config(name: str = "tiny") -> MT5Config:
    """A 2+2-layer MT5 with a byte-level vocabulary (ByT5's 384 ids incl. sentinels)."""
    config = MT5Config(
        vocab_size=BYTE_VOCAB,
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=16,
        dropout_rate=0.0,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
        tie_word_embeddings=False,
    )
    config.name_or_path = name
    return config


def tiny_causal_config(name: str = "tiny-causal", arch: str = "llama") -> PretrainedConfig:
    """A 2-layer decoder-only model (``arch`` ``llama`` or ``qwen2``) over the byte
    vocabulary. ByT5's pad (0) and EOS (1) ids are the model's; it has no BOS (the byte
    tokenizer has none). 1024 positions leave room for prompts + a 256-token input."""
    shape: dict[str, Any] = dict(
        vocab_size=BYTE_VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
        tie_word_embeddings=False,
        # Llama's 0.02 caps a 64-wide model's logits near 1 (|w| * |RMSNorm(h)|), so no
        # prompt or adapter could make it confident: wider weights let the tests learn.
        initializer_range=0.1,
    )
    configs: dict[str, type[PretrainedConfig]] = {"llama": LlamaConfig, "qwen2": Qwen2Config}
    config = configs[arch](**shape)
    config.name_or_path = name
    return config


def _seeded(seed: int, build):
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = build()
    finally:
        torch.random.set_rng_state(state)
    model.eval()
    return model


def build_tiny(
    seed: int = TINY_SEED, name: str = "tiny"
) -> tuple[MT5ForConditionalGeneration, ByT5Tokenizer]:
    """Build the tiny model with weights drawn from ``seed`` (same seed, same weights);
    ``name`` is what it answers to (``langtransfer.base.loading.TINY_NAME``)."""
    return _seeded(seed, lambda: MT5ForConditionalGeneration(tiny_config(name))), ByT5Tokenizer()


def build_tiny_causal(
    seed: int = TINY_SEED, name: str = "tiny-causal", arch: str = "llama"
) -> tuple[PreTrainedModel, ByT5Tokenizer]:
    """Build the tiny causal model (Llama architecture; ``arch="qwen2"`` for Qwen2) with
    weights drawn from ``seed``; ``name``: ``langtransfer.base.loading.TINY_CAUSAL_NAME``."""
    classes: dict[str, type[PreTrainedModel]] = {
        "llama": LlamaForCausalLM, "qwen2": Qwen2ForCausalLM,
    }
    config = tiny_causal_config(name, arch)
    return _seeded(seed, lambda: classes[arch](config)), ByT5Tokenizer()
