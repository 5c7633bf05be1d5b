"""``langtransfer convert-peft``: a PEFT prompt's pickled ``adapter_model.bin`` as safetensors."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-peft",
        help="rewrite a PEFT prompt's pickled adapter_model.bin as safetensors",
        description=(
            "Read a PEFT prompt-tuning directory (or hub id) whose weights are a pickled "
            "adapter_model.bin, such as those the paper's reference code saves, with "
            "torch.load(weights_only=True) (tensors only; any other object is refused) and "
            "write DST: the same adapter_config.json and adapter_model.safetensors. "
            "langtransfer loads weights from safetensors only, so a .bin prompt needs this "
            "step once."
        ),
    )
    p.add_argument("source", metavar="SRC", help="PEFT directory or hub id with adapter_model.bin")
    p.add_argument("destination", metavar="DST", help="output PEFT directory (safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from langtransfer.representations.peft_format import convert_peft_bin

    print(convert_peft_bin(args.source, args.destination, overwrite=args.overwrite))
    return 0
