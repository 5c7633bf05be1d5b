"""Options shared by the verbs, and turning them into settings objects.

The user's extensions (``--task-module``, ``--languages-file``) are added to every verb
that takes a task or a language by :func:`add_extension_options` and loaded by
:func:`load_extension_options`, which ``langtransfer.cli.main`` calls before any verb
runs -- one place, so they work the same everywhere.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from langtransfer.base.loading import DEFAULT_MODEL

if TYPE_CHECKING:  # heavy imports (torch, transformers) wait until a verb runs
    from langtransfer.representations import AdapterSpec, PromptConfig
    from langtransfer.training.trainer import TrainSettings


def add_extension_options(parser: argparse.ArgumentParser, tasks: bool = True) -> None:
    """``--languages-file`` (and, with ``tasks``, ``--task-module``), both repeatable."""
    g = parser.add_argument_group("extensions (your own languages and tasks)")
    g.add_argument(
        "--languages-file", dest="languages_files", action="append", default=[],
        metavar="FILE",
        help="YAML/JSON file listing extra languages (code, name, script, family); repeatable",
    )
    if tasks:
        g.add_argument(
            "--task-module", dest="task_modules", action="append", default=[],
            metavar="FILE_OR_MODULE",
            help="Python file or module that calls langtransfer.tasks.register_task; "
            "imported (its code runs) before the verb; repeatable",
        )


def load_extension_options(args: argparse.Namespace) -> None:
    """Register the languages files and import the task modules the options name."""
    from langtransfer.tasks.extensions import load_extensions

    load_extensions(getattr(args, "task_modules", ()), getattr(args, "languages_files", ()))


def add_profile_option(parser: argparse.ArgumentParser, applies: str) -> None:
    """``--profile method|reference`` (:mod:`langtransfer.profiles`); ``applies`` says what
    it sets for this verb."""
    from langtransfer.profiles import DEFAULT_PROFILE, PROFILES

    parser.add_argument(
        "--profile", choices=list(PROFILES),
        help=f"'reference' reproduces the published numbers as the paper's reference code "
        f"computed them, 'method' is the method as described (default {DEFAULT_PROFILE}); "
        f"here it sets {applies} (docs/fidelity.md)",
    )


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"base model, a seq2seq or causal LM: a hub id or local directory "
        f"(safetensors weights), or 'tiny' / 'tiny-causal' for the embedded test models "
        f"(default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow a hub model to run its own Python code when loading (off by default: "
        "only pass it for a model whose code you have read)",
    )


def add_training_options(parser: argparse.ArgumentParser, role: str) -> None:
    """Training options; every default is the paper's setting for the chosen kind."""
    steps = "100000" if role == "language" else "50000"
    g = parser.add_argument_group("training (defaults: the paper's settings for --kind)")
    g.add_argument("--steps", type=int, help=f"training steps (default {steps})")
    g.add_argument("--batch-size", type=int, help="per-device batch size (default 32)")
    if role == "task":  # language training validates before and after, in fixed batches
        g.add_argument(
            "--eval-batch-size", type=int, help="validation batch size (default: batch size)"
        )
    g.add_argument(
        "--learning-rate", type=float, help="prompt 0.5 (Adafactor), adapter 5e-5 (AdamW)"
    )
    g.add_argument("--weight-decay", type=float, help="prompt 1e-5, adapter 0")
    g.add_argument("--optimizer", help="adafactor or adamw (prompt adafactor, adapter adamw)")
    g.add_argument("--warmup-steps", type=int, help="learning-rate warm-up steps (default 0)")
    g.add_argument(
        "--gradient-accumulation-steps", type=int, help="batches per optimiser step (default 1)"
    )
    g.add_argument("--save-steps", type=int, help="checkpoint every N steps (default 1000)")
    g.add_argument("--logging-steps", type=int, help="log the loss every N steps (default 50)")
    if role == "task":
        g.add_argument(
            "--eval-steps", type=int, help="validate every N steps and keep the best (default 1000)"
        )
    g.add_argument("--seed", type=int, help="random seed (default 42)")
    g.add_argument(
        "--bf16", action="store_true", default=None, help="bfloat16 mixed precision (GPU)"
    )
    g.add_argument(
        "--fp16", action="store_true", default=None, help="float16 mixed precision (GPU)"
    )
    g.add_argument(
        "--report-to", nargs="+", help="logging integrations, e.g. tensorboard wandb (default none)"
    )
    g.add_argument(
        "--skip-nonfinite-batches", action="store_true", default=None,
        help="skip a batch whose loss is NaN or infinite (counted in the log and the manifest) "
        "instead of stopping training at it",
    )
    g.add_argument("--checkpoint-dir", help="where checkpoints go (default: <output>.checkpoints)")
    g.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    g.add_argument(
        "--overwrite", action="store_true", help="replace an existing representation in --output"
    )

    # No argparse defaults here: an option given for the other --kind is refused
    # (check_kind_options), and the defaults are filled in by prompt_/adapter_from_args.
    p = parser.add_argument_group("soft prompt (--kind prompt)")
    p.add_argument("--prompt-tokens", type=int, help="virtual tokens (default 50)")
    p.add_argument(
        "--init",
        help="initialisation: text, vocab, random, labels (task prompts) or frequent (the "
        "language's most frequent tokens; language prompts) (default text)",
    )
    p.add_argument(
        "--init-text",
        help="instruction the text init embeds (default: the paper's for the language/task)",
    )

    a = parser.add_argument_group("adapter (--kind adapter)")
    a.add_argument("--adapter-config", help="an `adapters` config name (default seq_bn)")
    a.add_argument(
        "--reduction-factor", type=int, help="bottleneck reduction factor (default 16)"
    )


#: The options of each --kind (dest -> flag); the other kind's are refused, not ignored.
KIND_OPTIONS: dict[str, dict[str, str]] = {
    "prompt": {"prompt_tokens": "--prompt-tokens", "init": "--init", "init_text": "--init-text"},
    "adapter": {"adapter_config": "--adapter-config", "reduction_factor": "--reduction-factor"},
}


def check_kind_options(args: argparse.Namespace) -> None:
    """Refuse a prompt option with ``--kind adapter`` and an adapter option with
    ``--kind prompt``: training would not use it."""
    from langtransfer.errors import LangTransferError

    for kind, options in KIND_OPTIONS.items():
        given = [flag for dest, flag in options.items() if getattr(args, dest) is not None]
        if kind != args.kind and given:
            raise LangTransferError(
                f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for --kind {kind}, "
                f"not --kind {args.kind}"
            )


def settings_from_args(args: argparse.Namespace, kind: str, role: str) -> TrainSettings:
    """The paper's settings for ``kind`` and ``role`` with the options given; a task
    prompt keeps the best checkpoint unless ``--profile`` says otherwise."""
    from langtransfer.profiles import get_profile
    from langtransfer.training.trainer import default_settings

    keep_best = None
    if role == "task" and kind == "prompt":
        keep_best = get_profile(getattr(args, "profile", None)).task_prompt_keep_best
    return default_settings(
        kind,
        role,
        keep_best=keep_best,
        max_steps=args.steps,
        batch_size=args.batch_size,
        eval_batch_size=getattr(args, "eval_batch_size", None),
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        warmup_steps=args.warmup_steps,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        save_steps=args.save_steps,
        logging_steps=args.logging_steps,
        eval_steps=getattr(args, "eval_steps", None),
        seed=args.seed,
        bf16=args.bf16,
        fp16=args.fp16,
        report_to=args.report_to,
        skip_nonfinite=args.skip_nonfinite_batches,
    )


def prompt_from_args(
    args: argparse.Namespace, default_text: str, label_words: list[str] | None = None
) -> PromptConfig:
    from langtransfer.profiles import get_profile
    from langtransfer.representations import PromptConfig

    config = PromptConfig(
        **_given(num_tokens=args.prompt_tokens, init=args.init),
        init_text=args.init_text or default_text,
        label_words=label_words,
        seed=args.seed if args.seed is not None else 42,
    )
    rows = get_profile(getattr(args, "profile", None)).prompt_parameter_rows(config.num_tokens)
    return config if rows is None else replace(config, parameter_rows=rows)


def adapter_from_args(args: argparse.Namespace) -> AdapterSpec:
    from langtransfer.representations import AdapterSpec

    return AdapterSpec(**_given(config=args.adapter_config, reduction_factor=args.reduction_factor))


def _given(**options: Any) -> dict[str, Any]:
    """The options the command line set; the rest keep the config class's own defaults."""
    return {name: value for name, value in options.items() if value is not None}
