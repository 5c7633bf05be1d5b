"""Options shared by the verbs, and turning them into settings objects.

The user's extensions (``--task-module``, ``--languages-file``) are added to every verb
that takes a task or a language by :func:`add_extension_options` and loaded by
:func:`load_extension_options`, which ``langtransfer.cli.main`` calls before any verb
runs -- one place, so they work the same everywhere.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from langtransfer.base.loading import DEFAULT_MODEL
from langtransfer.representations.kinds import KINDS, SpecContext, get_kind

if TYPE_CHECKING:
    from langtransfer.training.settings import TrainSettings


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
    defaults = {name: kind.training_defaults for name, kind in KINDS.items()}
    shown = {"adafactor": "Adafactor", "adamw": "AdamW"}  # the optimisers' own spellings

    def number(value: float) -> str:
        return f"{value:g}".replace("e-0", "e-")  # 5e-5, not 5e-05

    g.add_argument("--learning-rate", type=float, help=", ".join(
        f"{name} {number(d['learning_rate'])} ({shown[d['optimizer']]})"
        for name, d in defaults.items()))
    g.add_argument("--weight-decay", type=float, help=", ".join(
        f"{name} {number(d['weight_decay'])}" for name, d in defaults.items()))
    g.add_argument("--optimizer", help="adafactor or adamw (" + ", ".join(
        f"{name} {d['optimizer']}" for name, d in defaults.items()) + ")")
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

    # No argparse defaults here: an option given for another --kind is refused
    # (check_kind_options), and the defaults are filled in by the kind (spec_from_args).
    for kind in KINDS.values():
        group = parser.add_argument_group(f"{kind.label} (--kind {kind.name})")
        for option in kind.options:
            group.add_argument(option.flag, type=option.type, help=option.help)


def add_kind_option(parser: argparse.ArgumentParser, role: str) -> None:
    """``--kind``: one of the registered representation kinds."""
    parser.add_argument(
        "--kind", required=True, choices=list(KINDS),
        help=" or ".join(f"{role} {kind.label}" for kind in KINDS.values()),
    )


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


#: The options of each --kind (dest -> flag); another kind's are refused, not ignored.
KIND_OPTIONS: dict[str, dict[str, str]] = {
    name: {_dest(option.flag): option.flag for option in kind.options}
    for name, kind in KINDS.items()
}


def check_kind_options(args: argparse.Namespace) -> None:
    """Refuse an option of another ``--kind`` (a prompt option with ``--kind adapter``):
    training would not use it."""
    from langtransfer.errors import LangTransferError

    for kind, options in KIND_OPTIONS.items():
        given = [flag for dest, flag in options.items() if getattr(args, dest) is not None]
        if kind != args.kind and given:
            raise LangTransferError(
                f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for --kind {kind}, "
                f"not --kind {args.kind}"
            )


def settings_from_args(args: argparse.Namespace, kind: str, role: str) -> TrainSettings:
    """The paper's settings for ``kind`` and ``role`` with the options given, and what
    ``--profile`` sets for the kind (a task prompt keeps the best checkpoint, or not)."""
    from langtransfer.profiles import get_profile
    from langtransfer.training.settings import default_settings

    chosen = get_profile(getattr(args, "profile", None))
    return default_settings(
        kind,
        role,
        **get_kind(kind).profile_training(role, chosen),
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


def spec_from_args(
    args: argparse.Namespace, role: str, language_name: str, default_text: str,
    label_words: list[str] | None = None,
) -> Any:
    """The ``--kind``'s spec: the options given over the kind's defaults for ``role`` (a
    prompt: ``default_text``, the language's or the task's instruction), shaped by
    ``--profile`` (a prompt's parameter rows)."""
    from langtransfer.profiles import get_profile

    kind = get_kind(args.kind)
    given = {option.key: getattr(args, _dest(option.flag)) for option in kind.options}
    seed = args.seed if args.seed is not None else 42
    spec = kind.spec(_given(**given), SpecContext(role, language_name, default_text,
                                                  label_words=label_words, seed=seed))
    return kind.profile_spec(spec, get_profile(getattr(args, "profile", None)))


def _given(**options: Any) -> dict[str, Any]:
    """The options the command line set; the rest keep the config class's own defaults."""
    return {name: value for name, value in options.items() if value is not None}
