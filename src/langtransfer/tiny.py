"""The embedded tiny model: an MT5-architecture model built from a config, no files.

It exists so the whole pipeline (training, composition, the study) runs and is tested
on machines with no model hub and no GPU. Its scores mean nothing; its shapes and code
paths are those of mT0.
"""

from __future__ import annotations

import torch
from transformers import ByT5Tokenizer, MT5Config, MT5ForConditionalGeneration

TINY_SEED = 0


def tiny_config(name: str = "tiny") -> MT5Config:
    """A 2+2-layer MT5 with a byte-level vocabulary (ByT5's 384 ids incl. sentinels)."""
    config = MT5Config(
        vocab_size=384,
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


def build_tiny(
    seed: int = TINY_SEED, name: str = "tiny"
) -> tuple[MT5ForConditionalGeneration, ByT5Tokenizer]:
    """Build the tiny model with weights drawn from ``seed`` (same seed, same weights);
    ``name`` is what it answers to (``langtransfer.models.TINY_NAME``)."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = MT5ForConditionalGeneration(tiny_config(name))
    finally:
        torch.random.set_rng_state(state)
    model.eval()
    return model, ByT5Tokenizer()
