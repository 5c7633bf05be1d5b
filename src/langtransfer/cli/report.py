"""``langtransfer report``: tables and heatmaps from one or more study directories."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from langtransfer.cli.common import add_extension_options
from langtransfer.errors import LangTransferError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="tables (Markdown, CSV), heatmaps and summaries of a study's results",
        description=(
            "Read the result records of one or more study directories "
            "(DIR/results/<task>/<configuration>/<source>__<target>.json) and write a report: "
            "per task and source language a table of configurations × target languages "
            "(Markdown, CSV, heatmap PNG), averages per configuration overall, by script and "
            "by language family, and each configuration's difference to base (negative = "
            "negative transfer). Several directories, e.g. the outputs of shards, are merged "
            "into one record set; the same cell with different results is an error. The "
            "per-task tables are also printed."
        ),
        epilog=(
            "Values are each task's primary metric to one decimal, with a 95% bootstrap "
            "interval from the cells' per-example scores (kept beside each record; for "
            "older cells recomputed from their predictions). The best per column is marked "
            "(bold in Markdown, * in the terminal, the best_in column in CSV) where a paired "
            "test, Holm-corrected per table, finds it better than every other; otherwise "
            "the tied best are named (italic, ~, tied_best_in). – marks a cell not "
            "evaluated, and an average is shown only when all its cells are present."
        ),
    )
    p.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="study directory (the one holding results/); repeat to merge shards",
    )
    p.add_argument(
        "--output",
        "-o",
        type=Path,
        metavar="OUT",
        help="report directory (default: DIR/report of the first DIR); replaced as a whole "
        "if it holds an earlier report, refused if it holds anything else",
    )
    p.add_argument(
        "--metric", action="append", default=[], metavar="TASK=METRIC",
        help="show METRIC for TASK instead of its primary metric (the paper's reference "
        "computation), e.g. qa=mlqa_f1, nli=strict_accuracy, "
        "checkworthiness=macro_f1; repeat for several tasks (names as in metrics.json)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="do not print the tables")
    # languages: the report groups them by script and family; tasks: their metric code
    # turns per-example scores into intervals
    add_extension_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from langtransfer.report.build import LIST_PROBLEMS, build_report
    from langtransfer.results.failures import format_failures, read_failures
    from langtransfer.results.records import RESULTS_DIR, read_records

    records = read_records(args.dirs)
    if not records:
        raise LangTransferError(
            f"no result records in {', '.join(map(str, args.dirs))}: expected files "
            f"DIR/{RESULTS_DIR}/<task>/<configuration>/<source>__<target>.json (pass the study "
            "directory, not its results folder)"
        )
    out = args.output if args.output is not None else args.dirs[0] / "report"
    for d in args.dirs:
        if out.resolve().is_relative_to((d / RESULTS_DIR).resolve()):
            raise LangTransferError(
                f"report output {out} is inside {d / RESULTS_DIR}, where it would be read as "
                "results next time; choose another --output"
            )
    metrics = {}
    for item in args.metric:
        task, sep, metric = item.partition("=")
        if not sep or not task.strip() or not metric.strip():
            raise LangTransferError(
                f"--metric {item!r} must look like TASK=METRIC, e.g. qa=mlqa_f1"
            )
        metrics[task.strip()] = metric.strip()
    failures = read_failures(args.dirs)
    summary = build_report(records, out, failures=failures, metrics=metrics,
                           study_dirs=args.dirs)
    for line in summary.problems[:LIST_PROBLEMS]:
        print(line, file=sys.stderr)
    if len(summary.problems) > LIST_PROBLEMS:
        print(f"... and {len(summary.problems) - LIST_PROBLEMS} more cells without an interval "
              f"(listed in {summary.index})", file=sys.stderr)
    if not args.quiet:
        print(summary.text)
    best = summary.best_text()
    print(
        f"report of {summary.n_records} records written to {summary.index}"
        + (f" (best on average: {best})" if best else "")
    )
    if failures:
        print(format_failures(failures))
    return 0
