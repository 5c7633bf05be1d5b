"""``langtransfer train-task``: a task adapter or soft task prompt on source-language data."""

from __future__ import annotations

import argparse
import json

from langtransfer.cli.common import (
    add_extension_options,
    add_kind_option,
    add_model_option,
    add_profile_option,
    add_training_options,
    check_kind_options,
    settings_from_args,
    spec_from_args,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-task",
        help="train a task representation on labelled source-language data",
        description=(
            "Train a task adapter or soft task prompt on labelled data in the source "
            "language, with that language's representation (--language-rep) attached "
            "and frozen: this is how la+ta, la+stp, slp+ta and slp+stp are trained; "
            "without --language-rep it trains ta or stp. Validates every --eval-steps "
            "and keeps the best checkpoint (lowest validation loss; with --profile reference "
            "a task prompt keeps its final step, as the paper's reference code did)."
        ),
    )
    p.add_argument(
        "--task", required=True, help="qa, ner, nli, checkworthiness, or a registered task"
    )
    p.add_argument("--language", required=True, help="source language of the training data")
    add_kind_option(p, "task")
    p.add_argument(
        "--language-rep", help="the source language's representation directory (or hub id)"
    )
    p.add_argument(
        "--data",
        help="local file or directory of <language>.<split>.<ext> files, or 'fixtures' "
        "(shipped samples); default: the paper's source on the hub",
    )
    p.add_argument("--output", required=True, help="representation directory to write")
    add_model_option(p)
    p.add_argument(
        "--max-length", type=int, default=256, help="input tokens kept per example (default 256)"
    )
    p.add_argument(
        "--max-target-length", type=int,
        help="target tokens kept, end token included (default: the task's, as the paper's "
        "reference: 30 for qa and ner, 3 for nli, 4 for checkworthiness)",
    )
    p.add_argument("--max-examples", type=int, help="use only the first N training examples")
    p.add_argument(
        "--reference-slp-stp-quirk", action="store_true",
        help="slp+stp only (--kind prompt with a soft language prompt as --language-rep): "
        "train as the paper's reference code did, with the language prompt twice in the "
        "encoder input of every forward (training and validation loss); generation at test "
        "time sees it once. Off by default, on where it applies with --profile reference "
        "(docs/fidelity.md)",
    )
    add_training_options(p, "task")
    add_profile_option(
        p, "keep-best for task prompts (the reference's final step), a prompt's parameter "
        "rows, the slp+stp quirk (where the configuration is slp+stp) and how the data is "
        "read (label order, empty QA answers)")
    add_extension_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from langtransfer.configurations import get_configuration
    from langtransfer.errors import LangTransferError
    from langtransfer.languages import get_language
    from langtransfer.representations import read_manifest
    from langtransfer.tasks import get_task
    from langtransfer.training.task import train_task

    task, lang = get_task(args.task), get_language(args.language)
    check_kind_options(args)
    quirk = get_configuration("slp+stp")
    if args.reference_slp_stp_quirk and (args.kind != quirk.task_kind or not args.language_rep):
        # train_task refuses a language adapter as --language-rep once it has loaded it
        raise LangTransferError(
            "--reference-slp-stp-quirk applies to slp+stp only: --kind prompt with a soft "
            f"language prompt as --language-rep (got --kind {args.kind}, "
            f"--language-rep {args.language_rep or 'none'})"
        )
    label_words = list(task.label_words.values()) or None
    out = train_task(
        model=args.model,
        task=task.name,
        language=lang.code,
        kind=args.kind,
        output=args.output,
        language_rep=args.language_rep,
        data=args.data,
        settings=settings_from_args(args, args.kind, "task"),
        spec=spec_from_args(args, "task", lang.name, task.prompt_init(lang.name), label_words),
        max_length=args.max_length,
        max_target_length=args.max_target_length,
        max_examples=args.max_examples,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
        overwrite=args.overwrite,
        trust_remote_code=args.trust_remote_code,
        # not given: the profile's, where the configuration is slp+stp
        reference_slp_stp_quirk=True if args.reference_slp_stp_quirk else None,
        profile=args.profile,
    )
    training = read_manifest(out)["training"]
    keys = (
        "configuration",
        "steps",
        "train_examples",
        "validation_examples",
        "validation_loss",
        "best_checkpoint",
    )
    print(json.dumps({"output": str(out), **{k: training.get(k) for k in keys}}, indent=2))
    return 0
