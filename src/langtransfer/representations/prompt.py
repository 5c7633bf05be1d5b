"""Soft prompts: trainable virtual-token embeddings prepended to the encoder input."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from langtransfer.errors import LangTransferError, UnknownNameError

INIT_STRATEGIES = ("text", "vocab", "random", "labels", "frequent")
#: Documents of a language's text counted for the ``frequent`` initialisation.
FREQUENT_DOCUMENTS = 1000


@dataclass
class PromptConfig:
    """How a soft prompt is shaped and initialised (the paper: 50 tokens, ``text``).

    - ``text``: embeddings of the tokenised ``init_text`` (end token included), repeated
      to fill ``num_tokens`` and cut — the paper's initialisation.
    - ``vocab``: embeddings of tokens sampled uniformly from the ordinary vocabulary.
    - ``random``: Gaussian noise with the embedding matrix's standard deviation.
    - ``labels``: embeddings of the class-label words, repeated to fill.
    - ``frequent``: embeddings of the ``num_tokens`` most frequent ordinary tokens of the
      language's own text (a language-specific form of Lester et al.'s (2021) sampling
      from the most common tokens); language training counts them in the first
      :data:`FREQUENT_DOCUMENTS` training documents and stores them as
      ``extra["token_ids"]``, so the manifest records which tokens were used.

    ``parameter_rows`` (None: ``num_tokens``): rows of the trained parameter, of which the
    encoder uses the first ``num_tokens``. The reference's PEFT-shaped parameter has
    2 × 50 rows (:mod:`langtransfer.profiles`, ``reference``): the unused rows get no
    gradient but count in Adafactor's update clipping, so its updates are larger. They are
    initialised as the used ones are (the init fills all rows) and saved with them.
    """

    num_tokens: int = 50
    init: str = "text"
    init_text: str | None = None
    label_words: list[str] | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    parameter_rows: int | None = None

    def __post_init__(self) -> None:
        if self.init not in INIT_STRATEGIES:
            raise UnknownNameError("prompt init strategy", self.init, INIT_STRATEGIES)
        if self.num_tokens < 1:
            raise LangTransferError(f"num_tokens must be >= 1, got {self.num_tokens}")
        if self.init == "text" and not self.init_text:
            raise LangTransferError("prompt init 'text' needs init_text (e.g. an instruction)")
        if self.init == "labels" and not self.label_words:
            raise LangTransferError("prompt init 'labels' needs label_words")
        if self.parameter_rows is not None and self.parameter_rows < self.num_tokens:
            raise LangTransferError(
                f"parameter_rows ({self.parameter_rows}) must be at least num_tokens "
                f"({self.num_tokens}): the encoder uses the first num_tokens rows"
            )

    @property
    def rows(self) -> int:
        """Rows of the trained parameter (``parameter_rows``, else ``num_tokens``)."""
        return self.num_tokens if self.parameter_rows is None else self.parameter_rows

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["parameter_rows"] is None:  # absent at its default: earlier hashes and manifests
            del d["parameter_rows"]
        return d


def _fill(ids: list[int], n: int) -> list[int]:
    return (ids * math.ceil(n / len(ids)))[:n]


def init_token_ids(config: PromptConfig, tokenizer: PreTrainedTokenizerBase) -> list[int] | None:
    """The token ids whose embeddings initialise the prompt's rows (None for ``random``)."""
    n = config.rows
    if config.init == "text":
        return _fill(tokenizer(config.init_text).input_ids, n)
    if config.init == "labels":
        ids = [
            i
            for w in config.label_words or []
            for i in tokenizer(w, add_special_tokens=False).input_ids
        ]
        if not ids:
            raise LangTransferError(f"label words {config.label_words} tokenise to nothing")
        return _fill(ids, n)
    if config.init == "frequent":
        ids = list(config.extra.get("token_ids") or [])
        if not ids:
            raise LangTransferError(
                "prompt init 'frequent' needs the language's frequent tokens "
                "(extra['token_ids'], see frequent_token_ids); language training counts them"
            )
        return _fill([int(i) for i in ids], n)
    if config.init == "vocab":
        special = set(tokenizer.all_special_ids)
        # Sentinels (<extra_id_*>) are special too; sample only ordinary tokens.
        ordinary = torch.tensor([i for i in range(tokenizer.vocab_size) if i not in special])
        g = torch.Generator().manual_seed(config.seed)
        return ordinary[torch.randint(len(ordinary), (n,), generator=g)].tolist()
    return None


def frequent_token_ids(
    texts: Iterable[str],
    tokenizer: PreTrainedTokenizerBase,
    n: int,
    max_documents: int = FREQUENT_DOCUMENTS,
) -> list[int]:
    """The ``n`` most frequent ordinary (non-special) token ids of the first
    ``max_documents`` texts, most frequent first (ties: lower id first)."""
    special = set(tokenizer.all_special_ids)
    counts: Counter[int] = Counter()
    for text in itertools.islice(texts, max_documents):
        counts.update(
            i for i in tokenizer(text, add_special_tokens=False).input_ids if i not in special
        )
    if not counts:
        raise LangTransferError("prompt init 'frequent': the text has no ordinary tokens")
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [i for i, _ in ranked[:n]]


class SoftPrompt(nn.Module):
    """``num_tokens`` × ``dim`` trainable embeddings; ``forward()`` returns them.

    With ``rows`` (> ``num_tokens``) the parameter has that many rows and ``forward()``
    returns the first ``num_tokens`` (see :attr:`PromptConfig.parameter_rows`)."""

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

    @classmethod
    def initialise(
        cls,
        config: PromptConfig,
        embeddings: nn.Embedding,
        tokenizer: PreTrainedTokenizerBase,
    ) -> SoftPrompt:
        """A prompt initialised from the base model's input embeddings per ``config``."""
        weight = embeddings.weight.detach()
        prompt = cls(config.num_tokens, weight.shape[1], config.parameter_rows)
        ids = init_token_ids(config, tokenizer)
        with torch.no_grad():
            if ids is None:
                g = torch.Generator().manual_seed(config.seed)
                noise = torch.randn(config.rows, weight.shape[1], generator=g)
                prompt.embedding.copy_(noise * weight.float().std())
            else:
                prompt.embedding.copy_(weight[torch.tensor(ids)].float())
        return prompt

    def forward(self) -> torch.Tensor:
        if self.rows == self._num_tokens:
            return self.embedding
        return self.embedding[: self._num_tokens]
