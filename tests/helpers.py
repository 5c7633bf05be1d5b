"""Builders shared by tests: representations for every configuration, perturbed weights."""

from __future__ import annotations

import torch

from langtransfer.composition.composed import ComposedModel, compose
from langtransfer.configurations import configuration_kinds
from langtransfer.representations import (
    PromptConfig,
    Representation,
    new_adapter,
    new_prompt,
)

PROMPT_TOKENS = 8


def make_rep(role: str, kind: str, model, tok, subject: str) -> Representation:
    key = {"language": "language", "task": "task"}[role]
    if kind == "prompt":
        config = PromptConfig(num_tokens=PROMPT_TOKENS, init="text", init_text=f"{role} {subject}:")
        return new_prompt(role, model, tok, config, **{key: subject})
    return new_adapter(role, **{key: subject})


def build(model, tok, configuration: str, *, lang="sk", task="qa", train=None) -> ComposedModel:
    lang_kind, task_kind = configuration_kinds(configuration)
    language = make_rep("language", lang_kind, model, tok, lang) if lang_kind else None
    task_rep = make_rep("task", task_kind, model, tok, task) if task_kind else None
    return compose(model, configuration, language=language, task=task_rep, train=train)


def perturb(composed: ComposedModel, seed: int = 0) -> None:
    """Move every representation weight away from its initial value (adapters start ~identity)."""
    g = torch.Generator().manual_seed(seed)
    names = [r.name for r in composed.representations() if r.kind == "adapter"]
    with torch.no_grad():
        for n, p in composed.named_parameters():
            if n.startswith("prompts.") or any(f".adapters.{a}." in n for a in names):
                p.add_(torch.randn(p.shape, generator=g) * 0.5)


def batch(tok):
    enc = tok(
        ["question: who? context: Bratislava", "ahoj svet"], padding=True, return_tensors="pt"
    )
    labels = tok(["Bratislava", "svet"], padding=True, return_tensors="pt").input_ids
    labels[labels == tok.pad_token_id] = -100
    return {**enc, "labels": labels}
