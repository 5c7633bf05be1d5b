"""Model families: what differs between a seq2seq base (mT0) and a causal (decoder-only)
one such as Llama or Qwen2. :func:`family_of` is the one place that reads a model's
config to tell them apart; everything else asks the family.

Both families take the same batches: the input (prompts prepended as embeddings,
``[language][task][input]``) and the target (labels, ``-100`` over padding), so the
collator, the training loss and evaluation are shared. What the family does with them:

* **seq2seq**: the prompts and input go to the encoder, the target to the decoder
  (transformers' own ``labels`` handling); generation returns the decoder's ids; label
  ranking runs the encoder once and the decoder per label.
* **causal**: one sequence ``[pad…][prompts][input][target]`` per row. The input is
  left-aligned so every row's target starts in the same column and generation continues
  right after the input; positions are counted from the attention mask, so a row's
  logits do not depend on its padding or its batch mates. Loss and logits cover the
  target only (the prompts and input are context). Generation runs on ``inputs_embeds``
  and returns only the new tokens; label ranking runs the input once and each label on a
  copy of its KV cache.

Language representations are trained with the family's objective: T5 span corruption
for seq2seq (the paper's), next-token language modelling in packed blocks for causal
(see docs/development.md).

torch and transformers are imported when a family is used, not when this module is.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langtransfer.errors import IncompatibleModelError, LangTransferError

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class ModelFamily:
    """How one family of base models is loaded, fed prompts, trained and decoded; this
    class's own methods are the seq2seq family's, :class:`CausalFamily` overrides them.

    ``name``: ``seq2seq`` or ``causal``; ``auto_class``: the transformers Auto class that
    loads it; ``language_objective``: the name of the objective language representations
    train with (:data:`langtransfer.training.language.LANGUAGE_OBJECTIVES`).
    """

    name: str
    auto_class: str
    language_objective: str

    def auto_model(self) -> Any:
        import transformers

        return getattr(transformers, self.auto_class)

    def encode_targets(
        self, tokenizer: PreTrainedTokenizerBase, texts: list[str]
    ) -> list[list[int]]:
        """Target token ids, ending in EOS (generation learns to stop there)."""
        return [list(ids) for ids in tokenizer(texts)["input_ids"]]

    def forward(self, base: Any, inputs: dict[str, torch.Tensor], **kwargs: Any) -> Any:
        """The base's forward on ``inputs`` (``input_ids`` or ``inputs_embeds``, and
        ``attention_mask``) with ``labels`` etc.; ``logits`` line up with ``labels``."""
        return base(**inputs, **kwargs)

    def generate(self, base: Any, inputs: dict[str, torch.Tensor], **kwargs: Any) -> torch.Tensor:
        """Generated ids for ``inputs`` (the composed input, prompts included)."""
        return base.generate(**inputs, **kwargs)

    def label_log_likelihoods(
        self, base: Any, inputs: dict[str, torch.Tensor], targets: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """``[B, K]``: the summed log-likelihood of each target (``[B, T]`` labels, -100
        over padding) given each row's input. The encoder runs once, the decoder once per
        target."""
        import torch

        encoded = base.get_encoder()(**inputs, return_dict=True)
        return torch.stack([
            target_log_likelihood(base(encoder_outputs=encoded,
                                       attention_mask=inputs["attention_mask"],
                                       labels=labels).logits, labels)
            for labels in targets
        ], 1)


@dataclass(frozen=True)
class CausalFamily(ModelFamily):
    """Decoder-only bases: prompts and input are the context the target continues."""

    def encode_targets(
        self, tokenizer: PreTrainedTokenizerBase, texts: list[str]
    ) -> list[list[int]]:
        """The target's tokens without the tokenizer's specials (a BOS mid-sequence would
        be wrong) and then EOS, so the model learns where an answer ends."""
        eos = tokenizer.eos_token_id
        if eos is None:
            raise LangTransferError(
                f"tokenizer {type(tokenizer).__name__} has no EOS token: a causal base needs "
                "one to end its answers"
            )
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [list(row) + [int(eos)] for row in ids]

    def forward(
        self,
        base: Any,
        inputs: dict[str, torch.Tensor],
        labels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        import torch
        from transformers.modeling_outputs import CausalLMOutputWithPast

        if decoder_input_ids is not None or decoder_attention_mask is not None:
            raise LangTransferError("a causal base has no decoder inputs (decoder_input_ids)")
        embeds, mask = left_aligned(base, inputs)
        context = embeds.shape[1]
        if labels is None:
            check_positions(base, context)
            return base(inputs_embeds=embeds, attention_mask=mask,
                        position_ids=positions(mask), **kwargs)
        if context == 0:
            raise LangTransferError("a causal base needs at least one input token or prompt")
        target = labels != -100
        pad = _pad_id(base)
        target_embeds = base.get_input_embeddings()(labels.masked_fill(~target, pad))
        embeds = torch.cat([embeds, target_embeds.to(embeds.dtype)], 1)
        mask = torch.cat([mask, target.to(mask.dtype)], 1)
        check_positions(base, embeds.shape[1])
        width = labels.shape[1]
        extra = {"logits_to_keep": width + 1} if _keeps_logits(base.forward) else {}
        out = base(inputs_embeds=embeds, attention_mask=mask, position_ids=positions(mask),
                   **extra, **kwargs)
        # The logit at column c predicts the token at c + 1: the last context column
        # predicts the first target token, the target's last column predicts nothing.
        logits = out.logits[:, -(width + 1) : -1]
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
        )
        return CausalLMOutputWithPast(loss=loss, logits=logits)  # type: ignore[arg-type]

    def generate(self, base: Any, inputs: dict[str, torch.Tensor], **kwargs: Any) -> torch.Tensor:
        """Greedy/beam continuation of each left-aligned row; only the new tokens."""
        embeds, mask = left_aligned(base, inputs)
        check_positions(base, embeds.shape[1] + int(kwargs.get("max_new_tokens") or 0))
        if kwargs.get("pad_token_id") is None and base.generation_config.pad_token_id is None:
            kwargs["pad_token_id"] = _pad_id(base)
        # transformers computes positions from the mask; given only inputs_embeds, a
        # decoder-only model's generate returns just the new tokens.
        return base.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)

    def label_log_likelihoods(
        self, base: Any, inputs: dict[str, torch.Tensor], targets: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """The prompts and input run once (their KV cache kept); each target's tokens then
        run on a copy of that cache. The last input column's logits score every target's
        first token; a row's padding (-100) comes after its tokens, so it is masked and
        changes nothing before it."""
        import copy

        import torch

        embeds, mask = left_aligned(base, inputs)
        rows, context = mask.shape
        check_positions(base, context + max((t.shape[1] for t in targets), default=0))
        if context == 0:
            raise LangTransferError("a causal base needs at least one input token or prompt")
        extra = {"logits_to_keep": 1} if _keeps_logits(base.forward) else {}
        out = base(inputs_embeds=embeds, attention_mask=mask, position_ids=positions(mask),
                   use_cache=True, **extra)
        first = out.logits[:, -1].float().log_softmax(-1)
        following = mask.long().sum(1, keepdim=True)  # the position after each row's input
        scores = []
        for labels in targets:
            real = labels != -100
            score = first.gather(1, labels[:, :1].clamp(min=0)).squeeze(1) * real[:, 0]
            if labels.shape[1] > 1:
                step = labels[:, :-1].masked_fill(~real[:, :-1], _pad_id(base))
                width = step.shape[1]
                logits = base(
                    input_ids=step,
                    attention_mask=torch.cat([mask, real[:, :-1].to(mask.dtype)], 1),
                    position_ids=following + torch.arange(width, device=mask.device),
                    past_key_values=copy.deepcopy(out.past_key_values),
                    use_cache=True,
                ).logits
                score = score + target_log_likelihood(logits, labels[:, 1:])
            scores.append(score)
        return torch.stack(scores, 1)


SEQ2SEQ = ModelFamily("seq2seq", "AutoModelForSeq2SeqLM", "span_corruption")
CAUSAL = CausalFamily("causal", "AutoModelForCausalLM", "next_token")
FAMILIES = {f.name: f for f in (SEQ2SEQ, CAUSAL)}


def family_of(model_or_config: PreTrainedModel | PretrainedConfig) -> ModelFamily:
    """The family of a model (or its config): an encoder-decoder LM is seq2seq, a
    decoder-only LM causal. Encoder-only models (BERT, XLM-R), which transformers can
    also give an LM head, are neither; nor is anything without a generative head."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )

    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", "") or ""
    remote = getattr(config, "auto_map", None) or {}  # remote-code models name their class
    if getattr(config, "is_encoder_decoder", False):
        if model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES or (
            "AutoModelForSeq2SeqLM" in remote
        ):
            return SEQ2SEQ
    elif (
        model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    ) or "AutoModelForCausalLM" in remote:
        return CAUSAL
    name = getattr(config, "name_or_path", "") or getattr(config, "_name_or_path", "")
    raise IncompatibleModelError(
        f"base model {name or '(unnamed)'!r} (model_type {model_type or 'unknown'!r}) is "
        "neither a seq2seq LM (encoder-decoder, e.g. mt5, t5) nor a causal LM (decoder-only, "
        "e.g. llama, qwen2): langtransfer composes representations with those two families"
    )


def left_aligned(base: Any, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs_embeds, attention_mask)`` with each row's padding moved to its left end
    (a stable sort of the mask: the real tokens keep their order, whatever the padding
    side was)."""
    import torch

    embeds = inputs.get("inputs_embeds")
    if embeds is None:
        embeds = base.get_input_embeddings()(inputs["input_ids"])
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
    order = torch.argsort(mask, dim=1, stable=True)
    gathered = embeds.gather(1, order.unsqueeze(-1).expand_as(embeds))
    return gathered, mask.gather(1, order)


def target_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[B]``: the summed log-probability of ``labels`` ``[B, T]`` under ``logits``
    ``[B, T, V]``, positions labelled -100 left out."""
    logp = logits.float().log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1))
    return (logp.squeeze(-1) * (labels != -100)).sum(-1)


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids counted over real tokens only (padding gets 0 and is masked)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def max_positions(base: Any) -> int | None:
    return getattr(base.config, "max_position_embeddings", None)


def check_positions(base: Any, length: int) -> None:
    """A composed sequence longer than the base's positions is an error, not a wrap."""
    limit = max_positions(base)
    if limit is not None and length > limit:
        name = getattr(base.config, "name_or_path", "") or base.config._name_or_path
        raise LangTransferError(
            f"the composed sequence (prompts + input + target or new tokens) has {length} "
            f"positions but base model {name!r} takes at most {limit} "
            "(max_position_embeddings): use shorter prompts or a lower --max-length"
        )


def _pad_id(base: Any) -> int:
    pad = base.config.pad_token_id
    if pad is None:
        pad = base.generation_config.pad_token_id
    return int(pad) if pad is not None else 0  # masked everywhere: any id serves


def _keeps_logits(forward: Any) -> bool:
    """Whether the model's forward can compute only the last N logits (saves memory)."""
    return _takes_logits_to_keep(getattr(forward, "__func__", forward))


@functools.cache
def _takes_logits_to_keep(function: Any) -> bool:
    return "logits_to_keep" in inspect.signature(function).parameters
