"""``langtransfer study``: the whole transfer grid from a YAML config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from langtransfer.cli.common import add_extension_options


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
    p.add_argument(
        "--example", choices=["demo", "paper"], help="print a shipped example config and exit"
    )
    p.add_argument("--output", help="override the config's output directory")
    p.add_argument(
        "--dry-run", action="store_true",
        help="print the plan with counts and, per task x language x split, the data source "
        "it reads, marking missing data with its fix; build nothing (exit 1 if data is missing)",
    )
    p.add_argument("--shard", default="1/1", help="k/n: run shard k of n (default 1/1)")
    p.add_argument(
        "--overwrite", action="store_true",
        help="reuse an output directory of a study with other settings: results these "
        "settings reproduce (same cell, same settings hash) are kept, the rest discarded",
    )
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_extension_options(p)
    p.set_defaults(func=run)


def example_path(name: str) -> Path:
    from importlib import resources

    return Path(str(resources.files("langtransfer") / "configs" / f"{name}.yaml"))


def run_and_report(config, args: argparse.Namespace) -> int:
    """Run (or dry-run) a study, then write and print its report. Exit code 1 when an
    artefact failed (the rest was built; a rerun retries what failed)."""
    from langtransfer.results.failures import format_failures, read_failures
    from langtransfer.study.jobs import left_out
    from langtransfer.study.run import parse_shard, plan, run_study, shard_plan

    shard = parse_shard(args.shard)
    if args.dry_run:
        from langtransfer.study.dry_run import check_plan, describe_dry_run

        artefacts = shard_plan(plan(config), *shard)
        result = check_plan(artefacts, left_out(config))
        title = f"plan of {config.output}" + (f" (shard {args.shard})" if shard[1] > 1 else "")
        own = {base.label: base.overridden() for base in config.bases() if base.overrides}
        print(describe_dry_run(artefacts, result, title, own))
        return 0 if result.ok else 1
    for cell in left_out(config):
        print(f"left out of the grid: {cell.line()}")
    run = run_study(config, shard=shard, overwrite=args.overwrite, progress=not args.quiet)
    print(run.summary(config.output))
    code = 0 if run.ok else 1
    if not run.ok:
        print(format_failures(run.failures), file=sys.stderr)
        print(f"failure records: {Path(config.output) / 'failures'}; rerun the same command "
              "to retry what failed", file=sys.stderr)
    if args.no_report:
        return code
    if shard[1] > 1:
        print(f"shard {args.shard} done; when every shard has finished: "
              f"langtransfer report {config.output}")
        return code
    from langtransfer.report.build import LIST_PROBLEMS, build_report
    from langtransfer.results.records import read_records

    records = read_records(config.output)
    if not records:
        print("no results to report", file=sys.stderr)
        return code
    summary = build_report(records, Path(config.output) / "report",
                           failures=read_failures(config.output), study_dirs=[config.output])
    for line in summary.problems[:LIST_PROBLEMS]:
        print(line, file=sys.stderr)
    print(summary.text)
    print(f"report: {Path(config.output) / 'report' / 'report.md'}")
    return code


def run(args: argparse.Namespace) -> int:
    from langtransfer.errors import LangTransferError
    from langtransfer.study.load import load_study_config

    if args.example:
        sys.stdout.write(example_path(args.example).read_text(encoding="utf-8"))
        return 0
    if not args.config:
        raise LangTransferError("give a study config file (or --example demo|paper to see one)")
    config = load_study_config(args.config, output=args.output)
    return run_and_report(config, args)
