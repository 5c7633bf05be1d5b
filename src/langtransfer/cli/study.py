"""``langtransfer study``: the whole transfer grid from a YAML config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from langtransfer.cli.common import add_extension_options, add_profile_option
from langtransfer.cli.study_slurm import add_slurm_options
from langtransfer.study.locks import STALE_AFTER


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
            "`langtransfer report DIR`. Example configs: `langtransfer study --example demo`, "
            "`--example paper` (the published numbers) or `--example paper-method`."
        ),
    )
    p.add_argument("config", nargs="?", help="study YAML file")
    p.add_argument(
        "--example", choices=list(EXAMPLES),
        help="print a shipped example config and exit: "
        + "; ".join(f"{name}: {what}" for name, what in EXAMPLES.items()),
    )
    p.add_argument("--output", help="override the config's output directory")
    add_profile_option(
        p, "the config's 'profile' (every setting the profile decides; a study directory "
        "holds one profile)")
    p.add_argument(
        "--dry-run", action="store_true",
        help="print the plan with counts and, per task x language x split, the data source "
        "it reads, marking missing data with its fix; build nothing (exit 1 if data is missing)",
    )
    p.add_argument(
        "--shard", default="1/1",
        help="run shard k of n: k/n counting from 1 (default 1/1), or i%%n counting from 0, "
        "as a 0-based Slurm array passes it: --shard ${SLURM_ARRAY_TASK_ID}%%8",
    )
    p.add_argument(
        "--lock-stale-minutes", type=float, default=STALE_AFTER / 60, metavar="M",
        help="a lock of a shard on another host whose heartbeat (renewed while it builds) "
        "is older than M minutes is taken for dead and its artefact rebuilt (default 10)",
    )
    p.add_argument(
        "--unit", metavar="ID",
        help="build one unit of the study's graph in this process (one training artefact, "
        "or the evaluation cells sharing a task representation) and exit: what executors "
        "run; --dry-run counts the units",
    )
    g = p.add_argument_group(
        "executors (run the study's graph of units in parallel; default: this process, in "
        "plan order)")
    g.add_argument(
        "--executor", choices=["local", "slurm"],
        help="local: one worker process per device (--devices) or --workers N on this "
        "machine, each holding one loaded base, the longest remaining path first; slurm: "
        "submit the units not built as Slurm jobs with dependencies and return (see "
        "--status, --cancel and the Slurm options)",
    )
    g.add_argument(
        "--devices", metavar="LIST",
        help="with --executor local: GPUs, one worker each (CUDA_VISIBLE_DEVICES), e.g. 0,1,2,3",
    )
    g.add_argument(
        "--workers", type=int, metavar="N",
        help="with --executor local: N workers on what this process sees (CPU: each gets "
        "its share of the cores unless OMP_NUM_THREADS is set)",
    )
    p.add_argument(
        "--overwrite", action="store_true",
        help="reuse an output directory of a study with other settings: results these "
        "settings reproduce (same cell, same settings hash) are kept, the rest discarded",
    )
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_slurm_options(p)
    add_extension_options(p)
    p.set_defaults(func=run)


#: The shipped example configs (``configs/<name>.yaml``).
EXAMPLES = {
    "demo": "a small study on the embedded tiny model",
    "paper": "the paper's grid, reference profile (the published numbers)",
    "paper-method": "the paper's grid, method profile (the method as described)",
}


def example_path(name: str) -> Path:
    from importlib import resources

    return Path(str(resources.files("langtransfer") / "configs" / f"{name}.yaml"))


def run_and_report(config, args: argparse.Namespace) -> int:
    """Run (or dry-run) a study, then write and print its report. Exit code 1 when an
    artefact failed (the rest was built; a rerun retries what failed)."""
    from langtransfer.errors import LangTransferError
    from langtransfer.results.failures import format_failures
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
        from langtransfer.study.graph import describe_units, units

        print(describe_units(units(artefacts)))
        return 0 if result.ok else 1
    if getattr(args, "unit", None):
        return run_one_unit(config, args)
    for cell in left_out(config):
        print(f"left out of the grid: {cell.line()}")
    if not args.lock_stale_minutes > 0:
        raise LangTransferError(
            f"--lock-stale-minutes {args.lock_stale_minutes:g}: need a number above 0")
    if getattr(args, "executor", None) == "local":
        run = run_local_executor(config, args)
    else:
        run = run_study(config, shard=shard, overwrite=args.overwrite, progress=not args.quiet,
                        lock_stale_after=60 * args.lock_stale_minutes)
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
    write_report(config)
    return code


def write_report(config) -> None:
    """The study's report from its records and failure records, printed as tables."""
    from langtransfer.report.build import build_report, format_tables
    from langtransfer.results.failures import read_failures
    from langtransfer.results.records import read_records

    records = read_records(config.output)
    if not records:
        print("no results to report", file=sys.stderr)
        return
    build_report(records, Path(config.output) / "report", failures=read_failures(config.output))
    print(format_tables(records))
    print(f"report: {Path(config.output) / 'report' / 'report.md'}")


def check_executor_options(args: argparse.Namespace) -> None:
    """--devices/--workers belong to --executor local, which runs the whole grid."""
    from langtransfer.errors import LangTransferError

    executor = getattr(args, "executor", None)
    given = [f for f, v in (("--devices", getattr(args, "devices", None)),
                            ("--workers", getattr(args, "workers", None))) if v is not None]
    if executor is None:
        if given:
            raise LangTransferError(f"{given[0]} needs --executor local")
        return
    if args.unit:
        raise LangTransferError("--unit runs one unit in this process; drop --executor")
    if args.shard != "1/1":
        raise LangTransferError("--executor runs the whole grid; drop --shard")
    if executor == "slurm" and given:
        raise LangTransferError(f"{given[0]} is for --executor local; each Slurm job gets "
                                "its GPUs with --gpus")
    if executor == "local" and len(given) != 1:
        raise LangTransferError("--executor local needs --devices 0,1,... (one worker per GPU) "
                                "or --workers N, one of them")


def run_local_executor(config, args: argparse.Namespace):
    from langtransfer.study.local import StudySource, parse_devices, run_local

    source = StudySource(args.config, args.output, tuple(getattr(args, "task_modules", ())),
                         tuple(getattr(args, "languages_files", ())), profile=args.profile)
    devices = parse_devices(args.devices) if args.devices is not None else None
    return run_local(source, devices=devices, workers=args.workers, overwrite=args.overwrite,
                     progress=not args.quiet)


def run_one_unit(config, args: argparse.Namespace) -> int:
    """``--unit ID``: build one unit, print what happened; exit 1 when an artefact of it
    failed or is blocked. No report: the executor writes it when every unit is done."""
    from langtransfer.errors import LangTransferError
    from langtransfer.results.failures import format_failures
    from langtransfer.study.run import run_unit

    if args.shard != "1/1":
        raise LangTransferError("--unit builds one unit of the whole grid; drop --shard")
    run = run_unit(config, args.unit, progress=not args.quiet)
    print(f"unit {args.unit}: " + run.summary(config.output))
    if not run.ok:
        print(format_failures(run.failures), file=sys.stderr)
    return 0 if run.ok else 1


def run(args: argparse.Namespace) -> int:
    from langtransfer.errors import LangTransferError
    from langtransfer.study.load import load_study_config

    if args.example:
        sys.stdout.write(example_path(args.example).read_text(encoding="utf-8"))
        return 0
    if not args.config:
        raise LangTransferError(
            f"give a study config file (or --example {'|'.join(EXAMPLES)} to see one)")
    check_executor_options(args)
    config = load_study_config(args.config, output=args.output, profile=args.profile)
    from langtransfer.cli import study_slurm

    if args.status:
        return study_slurm.status(config)
    if args.cancel:
        return study_slurm.cancel(config)
    if args.finish:
        study_slurm.finish(config)
        if not args.no_report:
            write_report(config)
        return 0
    if args.executor == "slurm" and not args.dry_run:
        return study_slurm.submit(config, args)
    return run_and_report(config, args)
