"""``langtransfer train-language``: a soft language prompt or language adapter from text."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

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
        "train-language",
        help="train a language representation on unlabelled text (span corruption / next-token)",
        description=(
            "Train a soft language prompt or a language adapter on unlabelled text of one "
            "language with T5 span corruption (noise density 0.15, mean span 3) on a frozen "
            "seq2seq base, or next-token prediction in packed blocks of --sequence-length "
            "tokens on a frozen causal base. Runs on transformers' Trainer: checkpoints, "
            "--resume, and multi-GPU through `accelerate launch -m langtransfer "
            "train-language ...` (several CPU processes: `accelerate launch --multi_gpu "
            "--num_processes N`, which uses gloo without a GPU; `--cpu` alone starts one "
            "process unless MPI is set up)."
        ),
    )
    p.add_argument(
        "--language",
        required=True,
        help="language code or English name (see `langtransfer languages`)",
    )
    add_kind_option(p, "language")
    p.add_argument(
        "--corpus",
        default="wikipedia",
        help="'wikipedia' (wikimedia/wikipedia 20231101.<code>, streamed: its first 5%% of "
        "articles, English its first 1M, as the paper's reference; validation from the "
        "articles after), 'fixture' or 'fixtures' (the shipped sample text) or a "
        ".txt/.jsonl/.parquet file (default wikipedia)",
    )
    p.add_argument("--output", required=True, help="representation directory to write")
    add_model_option(p)
    p.add_argument(
        "--sequence-length", type=int, default=256,
        help="corrupted input length (seq2seq) or block length (causal) (default 256)",
    )
    p.add_argument("--max-documents", type=int, help="use only the first N documents")
    p.add_argument(
        "--max-tokens", type=int, help="use only the first N tokens of the training text"
    )
    p.add_argument(
        "--corpus-extent",
        choices=["paper", "full"],
        default="paper",
        help="'paper': the reference's slice (wikipedia: the first 5%%, English 1M "
        "articles), caps inside it; 'full': the whole source, validation on the dump's first "
        "articles (a local file: its seeded sample), caps on the rest (default paper)",
    )
    p.add_argument(
        "--validation-size",
        type=validation_size,
        metavar="N|FRACTION",
        help="held-out validation documents: an integer is a document count (500), "
        "a number with a decimal point a fraction of the documents in (0, 1) (0.05) "
        "(default: 10%% of a local file; for wikipedia 10%% of the training slice, at most "
        "1000)",
    )
    add_training_options(p, "language")
    add_profile_option(p, "a soft prompt's parameter rows (the reference's: 2 per token)")
    add_extension_options(p, tasks=False)
    p.set_defaults(func=run)


def validation_size(text: str) -> int | float:
    """``--validation-size``: ``5`` is five documents, ``0.05`` five percent; anything
    else (``2.5``, ``1.0``, ``0``) is refused rather than rounded into a count."""
    try:
        count = int(text)
    except ValueError:
        pass
    else:
        if count < 1:  # training validates before and after: it needs a document
            raise argparse.ArgumentTypeError(f"a document count must be >= 1, got {text!r}")
        return count
    try:
        fraction = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a document count or a fraction: {text!r}") from None
    if not 0.0 < fraction < 1.0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a document count (an integer) nor a fraction in (0, 1)")
    return fraction


def run(args: argparse.Namespace) -> int:
    from langtransfer.languages import get_language
    from langtransfer.representations import read_manifest
    from langtransfer.training.language import train_language

    lang = get_language(args.language)
    check_kind_options(args)
    # Trainer prints its log lines to stdout; keep stdout for the JSON summary alone.
    with contextlib.redirect_stdout(sys.stderr):
        out = train_language(
            model=args.model,
            language=lang.code,
            kind=args.kind,
            corpus=args.corpus,
            output=args.output,
            settings=settings_from_args(args, args.kind, "language"),
            spec=spec_from_args(args, "language", lang.name, lang.instruction),
            sequence_length=args.sequence_length,
            max_documents=args.max_documents,
            max_tokens=args.max_tokens,
            corpus_extent=args.corpus_extent,
            validation_size=args.validation_size,
            checkpoint_dir=args.checkpoint_dir,
            resume=args.resume,
            overwrite=args.overwrite,
            trust_remote_code=args.trust_remote_code,
            profile=args.profile,
        )
    training = read_manifest(out)["training"]
    keys = ("steps", "validation_loss_without", "validation_loss_initial", "validation_loss")
    if int(os.environ.get("RANK", "0")) != 0:  # one summary from a multi-process run
        return 0
    print(json.dumps({"output": str(out), **{k: training.get(k) for k in keys}}, indent=2))
    return 0
