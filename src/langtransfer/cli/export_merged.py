"""``langtransfer export-merged``: (language, task) LoRA pairs merged for vLLM and SGLang."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-merged",
        help="merge (language, task) LoRA pairs into one LoRA each, for vLLM / SGLang",
        description=(
            "For chosen (language, task) pairs of a study directory (its ll+tl cells; "
            "--configuration tl: its task LoRAs alone) or of LoRA representation "
            "directories (every task LoRA with every "
            "language LoRA), write one LoRA per pair into OUTPUT/<task>-<target>: the "
            "language and task LoRA merged exactly (rank r_l + r_t), in PEFT's format with "
            "only the config keys vLLM's loader reads; and OUTPUT/README.md with the vLLM "
            "and SGLang command lines that serve them all from one base and a request "
            "naming a pair as the model (also OUTPUT/pairs.json). Causal bases only: vLLM "
            "and SGLang serve no encoder-decoder model (use `langtransfer serve`)."
        ),
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="a study output directory, or LoRA representation directories")
    p.add_argument("--output", required=True, help="directory to write the pairs into")
    p.add_argument("--pair", action="append", default=[], metavar="TASK:[SOURCE:]TARGET",
                   help="export only this pair (repeatable; default: every pair)")
    p.add_argument("--model-label", help="the base of a study of several models")
    p.add_argument("--configuration", choices=["ll+tl", "tl"],
                   help="a study's cells to export: ll+tl (language and task LoRA merged; "
                   "the default) or tl (the task LoRA alone)")
    p.add_argument("--base", help="the base name or path the engines load (default: the "
                   "base the LoRAs record)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from langtransfer.serving.export import export_merged, pairs_from, serving_readme

    pairs = pairs_from(args.sources, model_label=args.model_label, only=args.pair,
                       configuration=args.configuration)
    index = export_merged(pairs, args.output, base=args.base, overwrite=args.overwrite)
    print(serving_readme(index))
    return 0
