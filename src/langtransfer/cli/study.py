"""``langtransfer study``: the whole transfer grid from a YAML config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="run a transfer study (languages x tasks x configurations) from a YAML config",
        description=(
            "Run the transfer study a YAML config describes: language representations "
            "(one per language and kind), task representations (one per task, source and "
            "configuration, trained with the source's language representation), and "
            "evaluations (one per task, configuration, source and target). Finished "
            "artefacts are skipped, so rerunning a killed study continues it. With "
            "--shard k/n, n machines sharing a file system split the grid; merge with "
            "`langtransfer report DIR`. Example configs: `langtransfer study --example demo` "
            "or `--example paper`."
        ),
    )
    p.add_argument("config", nargs="?", help="study YAML file")
    p.add_argument("--example", choices=["demo", "paper"], help="print a shipped example config and exit")
    p.add_argument("--output", help="override the config's output directory")
    p.add_argument("--dry-run", action="store_true", help="print the plan with counts; build nothing")
    p.add_argument("--shard", default="1/1", help="k/n: run shard k of n (default 1/1)")
    p.add_argument("--overwrite", action="store_true", help="reuse an output directory of a study with other settings, discarding its results")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def example_path(name: str) -> Path:
    from importlib import resources

    return Path(str(resources.files("langtransfer") / "configs" / f"{name}.yaml"))


def run_and_report(config, args: argparse.Namespace) -> int:
    """Run (or dry-run) a study, then write and print its report."""
    from langtransfer.study import describe, parse_shard, plan, run_study, shard_plan

    shard = parse_shard(args.shard)
    if args.dry_run:
        print(describe(shard_plan(plan(config), *shard)))
        return 0
    counts = run_study(config, shard=shard, overwrite=args.overwrite, progress=not args.quiet)
    print(f"study {config.output}: {counts['built']} artefacts built, {counts['skipped']} already done")
    if args.no_report:
        return 0
    if shard[1] > 1:
        print(f"shard {args.shard} done; when every shard has finished: langtransfer report {config.output}")
        return 0
    from langtransfer.report import build_report, format_tables
    from langtransfer.results import read_records

    records = read_records(config.output)
    build_report(records, Path(config.output) / "report")
    print(format_tables(records))
    print(f"report: {Path(config.output) / 'report' / 'report.md'}")
    return 0


def run(args: argparse.Namespace) -> int:
    from langtransfer.errors import LangTransferError
    from langtransfer.study_config import load_study_config

    if args.example:
        sys.stdout.write(example_path(args.example).read_text(encoding="utf-8"))
        return 0
    if not args.config:
        raise LangTransferError("give a study config file (or --example demo|paper to see one)")
    config = load_study_config(args.config, output=args.output)
    return run_and_report(config, args)
