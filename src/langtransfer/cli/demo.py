"""``langtransfer demo``: the small study on the embedded tiny models and shipped data."""

from __future__ import annotations

import argparse
from pathlib import Path

DISCLAIMER = (
    "NOTE: this demo runs two embedded tiny *random* models (seq2seq and decoder-only, about "
    "250k and 120k parameters)\ntrained for seconds on the demo's own small files, "
    "written with cues such models can learn. Its\nnumbers show the pipeline end to end, NOT "
    "the paper's results."
)
PAPER = (
    "The real study on bigscience/mt0-base (GPU and model hub needed):\n"
    "  langtransfer study --example paper > paper.yaml   # edit data paths, then\n"
    "  langtransfer study paper.yaml"
)


def guidance(output: Path) -> str:
    """What the demo prints last: where to look, how to read it, what it is not."""
    report = output / "report"
    # One heatmaps folder, or one per base model in a study of several.
    folders = sorted(report.glob("*/heatmaps")) if not (report / "heatmaps").is_dir() else []
    heatmaps = ", ".join(f"{f}/" for f in folders) or f"{report / 'heatmaps'}/"
    return "\n".join([
        "",
        f"Report:   {report / 'report.md'}  (every table, the summaries and notes)",
        f"Heatmaps: {heatmaps}  (one per task: configurations x target languages)",
        "How to read them: each cell is a configuration's score on one target language's test "
        "set, its task\nrepresentation trained on English only; compare each row with `base` "
        "(the untouched model) --\nreport.md's 'Difference to base' section has those "
        "differences, negative where transfer hurts.",
        DISCLAIMER,
        PAPER,
    ])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the demo study on the embedded tiny models (minutes on a CPU)",
        description=(
            "Run the small transfer study on both embedded tiny models (tiny: seq2seq; "
            "tiny-causal: decoder-only) with the demo's own small files: 4 target languages "
            "(en, de, sk, ru; Latin and Cyrillic), 2 tasks (NLI, check-worthiness), all seven "
            "configurations and two with a language LoRA (ll+ta, ll+tl) on each model. "
            "Prints the tables and writes the report, which compares the two models. "
            "Rerunning continues or reuses the finished work. " + DISCLAIMER.replace("\n", " ")
            + " " + PAPER.replace("\n", " ")
        ),
    )
    p.add_argument("--output", default="runs/demo", help="study directory (default runs/demo)")
    p.add_argument(
        "--overwrite", action="store_true",
        help="reuse --output holding a study with other settings: results the demo's settings "
        "reproduce are kept, the rest discarded (as study --overwrite)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from langtransfer.cli.study import example_path, run_and_report
    from langtransfer.study.load import load_study_config
    from langtransfer.study.locks import STALE_AFTER

    print(DISCLAIMER, flush=True)
    config = load_study_config(example_path("demo"), output=args.output)
    args.shard, args.dry_run, args.no_report = "1/1", False, False
    args.lock_stale_minutes = STALE_AFTER / 60
    code = run_and_report(config, args)
    print(guidance(Path(config.output)))
    return code
