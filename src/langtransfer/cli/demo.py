"""``langtransfer demo``: the small study on the embedded tiny model and shipped data."""

from __future__ import annotations

import argparse

DISCLAIMER = (
    "NOTE: this demo runs on an embedded tiny *random* model trained for seconds on a few "
    "dozen sentences.\nIts scores are NOT meaningful; it shows the pipeline end to end. For "
    "the real study on bigscience/mt0-base (GPU and model hub needed):\n"
    "  langtransfer study --example paper > paper.yaml   # edit data paths, then\n"
    "  langtransfer study paper.yaml"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the demo study on the embedded tiny model (minutes on a CPU)",
        description=(
            "Run the small transfer study on the embedded tiny model with the shipped "
            "fixtures: 4 target languages (en, de, sk, ru; Latin and Cyrillic), 2 tasks "
            "(NLI, check-worthiness), all seven configurations. Prints the tables and writes "
            "the report. "
            "Rerunning continues or reuses the finished work. " + DISCLAIMER.replace("\n", " ")
        ),
    )
    p.add_argument("--output", default="runs/demo", help="study directory (default runs/demo)")
    p.add_argument("--overwrite", action="store_true", help="discard a different study in --output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from langtransfer.cli.study import example_path, run_and_report
    from langtransfer.study_config import load_study_config

    print(DISCLAIMER, flush=True)
    config = load_study_config(example_path("demo"), output=args.output)
    args.shard, args.dry_run, args.no_report = "1/1", False, False
    code = run_and_report(config, args)
    print(DISCLAIMER)
    return code
