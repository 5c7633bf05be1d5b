"""Soft prompts' weights: a module of trainable virtual-token embeddings.

How a prompt is shaped, initialised, stored and composed is the prompt kind's
(:mod:`langtransfer.representations.kinds.prompt`).
"""

from __future__ import annotations

import torch
from torch import nn

from langtransfer.errors import LangTransferError


class SoftPrompt(nn.Module):
    """``num_tokens`` × ``dim`` trainable embeddings; ``forward()`` returns them.

    With ``rows`` (> ``num_tokens``) the parameter has that many rows and ``forward()``
    returns the first ``num_tokens`` (see ``PromptConfig.parameter_rows``)."""

    def __init__(self, num_tokens: int, dim: int, rows: int | None = None):
        super().__init__()
        if rows is not None and rows < num_tokens:
            raise LangTransferError(f"a prompt of {num_tokens} tokens needs >= {num_tokens} "
                                    f"rows, got {rows}")
        self.embedding = nn.Parameter(torch.zeros(rows or num_tokens, dim))
        self._num_tokens = num_tokens

    @property
    def num_tokens(self) -> int:
        return self._num_tokens

    @property
    def rows(self) -> int:
        return self.embedding.shape[0]

    @property
    def dim(self) -> int:
        return self.embedding.shape[1]

    def forward(self) -> torch.Tensor:
        if self.rows == self._num_tokens:
            return self.embedding
        return self.embedding[: self._num_tokens]
