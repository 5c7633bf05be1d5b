"""``langtransfer export-peft``: a langtransfer prompt in PEFT's prompt-tuning format."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-peft",
        help="write a langtransfer prompt in PEFT's prompt-tuning format",
        description=(
            "Write the soft prompt in SRC (a langtransfer representation directory or hub "
            "id) as a PEFT prompt-tuning directory DST (adapter_config.json, "
            "adapter_model.safetensors with 'prompt_embeddings'), which "
            "peft.PeftModel.from_pretrained(base, DST) loads on the same base model."
        ),
    )
    p.add_argument("source", metavar="SRC", help="langtransfer prompt directory or hub id")
    p.add_argument("destination", metavar="DST", help="output PEFT directory")
    p.add_argument(
        "--base-model",
        help="base_model_name_or_path to write (default: the base the prompt records)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from langtransfer.representations import load_representation
    from langtransfer.representations.peft_format import export_peft_prompt

    rep = load_representation(args.source)
    print(export_peft_prompt(rep, args.destination, base_model_name_or_path=args.base_model,
                             overwrite=args.overwrite))
    return 0
