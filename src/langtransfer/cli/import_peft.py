"""``langtransfer import-peft``: a PEFT prompt-tuning prompt as a langtransfer prompt."""

from __future__ import annotations

import argparse

ROLES = ("language", "task")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-peft",
        help="save a PEFT prompt-tuning prompt as a langtransfer language or task prompt",
        description=(
            "Load a PEFT prompt-tuning directory or hub id (adapter_config.json with "
            "peft_type PROMPT_TUNING, adapter_model.safetensors) and save it as a langtransfer "
            "representation directory in DST. A seq2seq prompt's stored rows beyond "
            "num_virtual_tokens (the unused decoder half) are dropped. Without --role, a "
            "prompt whose init text is a language's instruction ('Generate the output in "
            "Slovak:') is that language's prompt. A directory can also be passed directly "
            "to --language-rep / --task-rep of the other verbs; import it when its role "
            "cannot be inferred or to record the base model's full fingerprint (--model)."
        ),
    )
    p.add_argument("source", metavar="SRC", help="PEFT directory or hub id")
    p.add_argument("destination", metavar="DST", help="output representation directory")
    p.add_argument("--role", choices=ROLES, help="language or task prompt (default: inferred)")
    p.add_argument("--language", help="the language a language prompt is for (code or name)")
    p.add_argument("--task", help="the task a task prompt is for (qa, ner, nli, ...)")
    p.add_argument(
        "--model",
        help="base model to check the prompt's width against and record (a hub id, local "
        "directory, 'tiny' or 'tiny-causal'); default: record only the width and the "
        "config's base name",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from langtransfer.representations import save_representation
    from langtransfer.representations.peft_format import load_peft_prompt

    model = None
    if args.task:
        from langtransfer.tasks import get_task

        args.task = get_task(args.task).name
    if args.model:
        from langtransfer.base.loading import load_base

        model, _ = load_base(args.model)
    rep = load_peft_prompt(
        args.source, role=args.role, language=args.language, task=args.task, model=model
    )
    print(save_representation(rep, args.destination, overwrite=args.overwrite))
    return 0
