"""Soft prompts' weights: a module of trainable virtual-token embeddings.

How a prompt is shaped, initialised, stored and composed is the prompt kind's
(:mod:`langtransfer.representations.kinds.prompt`).
"""

from __future__ import annotations

import torch
from torch import nn


class SoftPrompt(nn.Module):
    """``num_tokens`` × ``dim`` trainable embeddings; ``forward()`` returns them."""

    def __init__(self, num_tokens: int, dim: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(num_tokens, dim))

    @property
    def num_tokens(self) -> int:
        return self.embedding.shape[0]

    @property
    def dim(self) -> int:
        return self.embedding.shape[1]

    def forward(self) -> torch.Tensor:
        return self.embedding
