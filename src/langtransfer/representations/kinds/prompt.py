"""The soft prompt kind: trainable virtual-token embeddings put before the input.

The spec is :class:`PromptConfig` (length and initialisation); the weights are a
:class:`~langtransfer.representations.prompt.SoftPrompt`, held by the representation
record and, once composed, by the composed model, which prepends it to the input
embeddings (the base is never changed). Stored as ``prompt.safetensors`` (one tensor,
``embedding``); a combination is the weighted sum of the parts' embeddings.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from langtransfer.base.loading import fingerprint, hidden_size
from langtransfer.errors import IncompatibleModelError, LangTransferError, UnknownNameError
from langtransfer.representations.base import Representation
from langtransfer.representations.kinds.base import KindOption, RepresentationKind, SpecContext

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from langtransfer.profiles import Profile
    from langtransfer.representations.prompt import SoftPrompt

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
        import torch

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


def initial_prompt(
    config: PromptConfig, embeddings: nn.Embedding, tokenizer: PreTrainedTokenizerBase
) -> SoftPrompt:
    """A prompt initialised from the base model's input ``embeddings`` per ``config``."""
    import torch

    from langtransfer.representations.prompt import SoftPrompt

    weight = embeddings.weight.detach()
    prompt = SoftPrompt(config.num_tokens, weight.shape[1], config.parameter_rows)
    ids = init_token_ids(config, tokenizer)
    with torch.no_grad():
        if ids is None:
            g = torch.Generator().manual_seed(config.seed)
            noise = torch.randn(config.rows, weight.shape[1], generator=g)
            prompt.embedding.copy_(noise * weight.float().std())
        else:
            prompt.embedding.copy_(weight[torch.tensor(ids)].float())
    return prompt


#: The weight file of a prompt directory.
PROMPT_WEIGHTS = "prompt.safetensors"


def _soft_prompt(rep: Representation) -> SoftPrompt:
    """``rep``'s weights (every prompt record holds its SoftPrompt)."""
    if rep.weights is None:
        raise LangTransferError(f"prompt {rep.id} ({rep.where}) holds no weights")
    return cast("SoftPrompt", rep.weights)


class PromptKind(RepresentationKind):
    """Soft prompts (the paper's ``slp``/``stp``): Adafactor at lr 0.5, weight decay 1e-5."""

    name = "prompt"
    label = "soft prompt"
    spec_type = PromptConfig
    options = (
        KindOption("num_tokens", "--prompt-tokens", int, "virtual tokens (default 50)"),
        KindOption("init", "--init",
                   str, "initialisation: text, vocab, random, labels (task prompts) or "
                   "frequent (the language's most frequent tokens; language prompts) "
                   "(default text)"),
        KindOption("init_text", "--init-text", str,
                   "instruction the text init embeds (default: the paper's for the "
                   "language/task; {Language} is the language's name)"),
    )
    training_defaults = {"optimizer": "adafactor", "learning_rate": 0.5, "weight_decay": 1e-5}
    files = (PROMPT_WEIGHTS,)
    combine_method = "weighted sum of embeddings"

    # -- specs ---------------------------------------------------------------------------

    def spec(self, values: Mapping[str, Any], context: SpecContext) -> PromptConfig:
        """The role's instruction (``init_text`` given: ``{Language}`` filled in), the
        task's label words (for ``labels``) and the seed, with ``values`` over them."""
        values = self.check_keys(values)
        text = values.pop("init_text", None)
        return PromptConfig(
            init_text=context.init_text if text is None
            else text.replace("{Language}", context.language_name),
            label_words=context.label_words,
            seed=context.seed,
            **values,
        )

    def check_values(self, role: str, values: Mapping[str, Any]) -> str | None:
        if role == "task" and values.get("init") == "frequent":
            return ("init 'frequent' is a language-prompt initialisation (a language's "
                    "frequent tokens); task prompts take text, vocab, random or labels")
        return None

    def profile_spec(self, spec: PromptConfig, profile: Profile) -> PromptConfig:
        """The profile's parameter rows (the reference's 2 x the prompt's tokens)."""
        rows = profile.prompt_parameter_rows(spec.num_tokens)
        return spec if rows is None else replace(spec, parameter_rows=rows)

    def profile_training(self, role: str, profile: Profile) -> dict[str, Any]:
        """Task prompts keep the best checkpoint, or the final step's (the reference's)."""
        return {"keep_best": profile.task_prompt_keep_best} if role == "task" else {}

    def with_text(self, spec: PromptConfig, texts: Iterable[str],
                  tokenizer: PreTrainedTokenizerBase) -> PromptConfig:
        """A ``frequent`` initialisation gets the language's most frequent training tokens
        (recorded in the manifest), unless the spec names them already."""
        if spec.init != "frequent" or spec.extra.get("token_ids"):
            return spec
        ids = frequent_token_ids(texts, tokenizer, spec.num_tokens)
        return replace(spec, extra={**spec.extra, "token_ids": ids})

    # -- weights -------------------------------------------------------------------------

    def new(self, role: str, spec: Any, model: Any, tokenizer: Any,
            **common: Any) -> Representation:
        config = self.check_spec(spec)
        prompt = initial_prompt(config, model.get_input_embeddings(), tokenizer)
        return Representation(kind=self.name, role=role, spec=config, weights=prompt,
                              base_model=fingerprint(model), **common)

    def save(self, rep: Representation, directory: Path, model: Any | None) -> None:
        import torch  # noqa: F401  (safetensors.torch needs it)
        from safetensors import SafetensorError
        from safetensors.torch import save_file

        from langtransfer.io import os_error_from

        weights = _soft_prompt(rep).embedding.detach().to("cpu", torch.float32).contiguous()
        try:
            save_file({"embedding": weights}, str(directory / PROMPT_WEIGHTS))
        except SafetensorError as e:  # an I/O error (no space...) as safetensors reports it
            raise os_error_from(e) from e

    def load(self, directory: Path, manifest: Mapping[str, Any],
             common: dict[str, Any]) -> Representation:
        import torch
        from safetensors import safe_open

        from langtransfer.representations.prompt import SoftPrompt
        from langtransfer.representations.weight_files import check_safetensors, content_hash

        config = PromptConfig(**(manifest.get(self.name) or {}))
        shape = (config.rows, int(manifest["base_model"]["d_model"]))  # parameter_rows: all
        weights = directory / PROMPT_WEIGHTS
        check_safetensors(weights, {"embedding": shape})
        prompt = SoftPrompt(config.num_tokens, shape[1], config.parameter_rows)
        with safe_open(str(weights), framework="pt") as f, torch.no_grad():
            prompt.embedding.copy_(f.get_tensor("embedding"))
        return Representation(spec=config, weights=prompt, path=directory,
                              content_hash=content_hash(directory, self.files), **common)

    def check_combinable(self, a: Representation, b: Representation) -> None:
        pa, pb = _soft_prompt(a), _soft_prompt(b)
        if pa.num_tokens != pb.num_tokens:
            raise LangTransferError(
                f"part {b.where} is a prompt of {pb.num_tokens} tokens but {a.where} "
                f"of {pa.num_tokens}; prompts combine only at equal length"
            )
        if pa.embedding.shape != pb.embedding.shape:
            raise LangTransferError(
                f"part {b.where} is a prompt parameter of {pb.rows} rows but {a.where} "
                f"of {pa.rows} (parameter_rows); prompts combine only at equal shape"
            )

    def combine(self, parts: Sequence[tuple[Representation, float]], model: Any | None,
                **common: Any) -> Representation:
        """The element-wise weighted sum of the parts' embeddings (no model needed)."""
        import torch

        from langtransfer.representations.prompt import SoftPrompt

        first = parts[0][0]
        total = torch.zeros_like(_soft_prompt(first).embedding.detach(), dtype=torch.float32)
        for rep, w in parts:  # in the parts' order: the sum is reproducible bit for bit
            total = total + w * _soft_prompt(rep).embedding.detach().float()
        prompt = SoftPrompt(_soft_prompt(first).num_tokens, total.shape[1], total.shape[0])
        with torch.no_grad():
            prompt.embedding.copy_(total)
        assert first.spec is not None
        return Representation(kind=self.name, role="language", spec=replace(first.spec),
                              weights=prompt, base_model=first.base_model, **common)

    # -- on a base model -----------------------------------------------------------------

    def check_fits(self, rep: Representation, model: Any, what: str) -> None:
        width, d_model = _soft_prompt(rep).dim, hidden_size(model)
        if width != d_model:
            raise IncompatibleModelError(
                f"{what} has width {width} but base model {fingerprint(model)['name']!r} "
                f"has d_model {d_model}"
            )

    def held(self, rep: Representation) -> nn.Module:
        return _soft_prompt(rep)

    def train(self, model: Any, rep: Representation) -> None:
        _soft_prompt(rep).requires_grad_(True)

    def bank_key(self, rep: Representation) -> Hashable:
        """Prompts of one bank are stacked: one length."""
        return _soft_prompt(rep).num_tokens

    def check_bank(self, role: str, reps: Sequence[Representation]) -> None:
        lengths = {_soft_prompt(r).num_tokens for r in reps}
        if len(lengths) > 1:
            raise LangTransferError(
                f"{role} prompts in one bank must have the same length, got {sorted(lengths)}"
            )
