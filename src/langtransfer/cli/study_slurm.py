"""``langtransfer study CONFIG --executor slurm`` and its companions ``--status``,
``--cancel`` and ``--finish`` (the submission's last job): the options and what they do.
Part of the ``study`` verb (:mod:`langtransfer.cli.study`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langtransfer.study.config import StudyConfig


def add_slurm_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "Slurm (--executor slurm; each also a key of the config's 'slurm' section, which "
        "these override)"
    )
    g.add_argument("--partition", help="sbatch --partition of every job")
    g.add_argument("--account", help="sbatch --account of every job")
    g.add_argument("--gpus", type=int, help="sbatch --gpus: GPUs per job (not the report's)")
    g.add_argument("--cpus", type=int, help="sbatch --cpus-per-task of every job")
    g.add_argument("--mem", help="sbatch --mem of every job, e.g. 32G")
    g.add_argument("--time", help="sbatch --time: each job's time limit, e.g. 24:00:00")
    g.add_argument(
        "--sbatch", action="append", default=[], metavar="OPTION",
        help="another sbatch option for every job, e.g. --sbatch=--qos=normal; repeatable",
    )
    g.add_argument(
        "--status", action="store_true",
        help="show each unit's state (done, running, pending, failed, blocked, missing) from "
        "the study directory and Slurm; build nothing",
    )
    g.add_argument("--cancel", action="store_true",
                   help="scancel the jobs of the study's Slurm submission")
    g.add_argument(
        "--finish", action="store_true",
        help="record what was not built (failed or blocked) and write the report: the last "
        "job of a Slurm submission; by hand after its jobs were cancelled",
    )


def settings_from(config: StudyConfig, args: argparse.Namespace):
    return config.slurm_settings().merged(
        partition=args.partition, account=args.account, gpus=args.gpus, cpus=args.cpus,
        mem=args.mem, time=args.time, sbatch=args.sbatch)


def submit(config: StudyConfig, args: argparse.Namespace) -> int:
    from langtransfer.study.jobs import left_out
    from langtransfer.study.slurm import log_path, require_slurm
    from langtransfer.study.slurm import submit as submit_jobs

    require_slurm()
    settings = settings_from(config, args)
    for cell in left_out(config):
        print(f"left out of the grid: {cell.line()}")
    extra = [f"--task-module={m}" for m in args.task_modules]
    extra += [f"--languages-file={f}" for f in args.languages_files]
    done = submit_jobs(config, args.config, settings, extra_args=extra,
                       overwrite=args.overwrite,
                       finish_args=["--no-report"] if args.no_report else [])
    if done.submission is None:
        return 0
    sub = done.submission
    print(f"study {sub.study}: submitted {len(sub.jobs)} jobs for the {done.pending} units "
          f"not built (of {done.total}), and job {sub.finish} to write the report when they "
          "end")
    print(f"progress: langtransfer study {args.config} --status; logs: "
          f"{log_path(sub.study, '<unit>', '<job>')}")
    return 0


def status(config: StudyConfig) -> int:
    from langtransfer.study.graph import units
    from langtransfer.study.jobs import plan
    from langtransfer.study.slurm import unit_jobs
    from langtransfer.study.status import FAILED, format_status, unit_states

    out = Path(config.output)
    submission, jobs = unit_jobs(out)
    statuses = unit_states(units(plan(config)), out, jobs)
    title = f"study {out}"
    if submission is not None:
        title += f" (Slurm submission of {submission.submitted}, {len(submission.jobs)} jobs)"
    print(format_status(statuses, title))
    if submission is not None:
        finish = jobs.get("finish")
        if finish is None:
            print("Slurm's squeue is not on PATH: job states unknown, states above are from "
                  "the study directory")
        elif finish.state:
            print(f"report: {finish.where()} {finish.state}"
                  + (f": {finish.error}" if finish.error else ""))
    return 1 if any(s.state == FAILED for s in statuses) else 0


def cancel(config: StudyConfig) -> int:
    from langtransfer.study.slurm import cancel as cancel_jobs

    cancelled = cancel_jobs(config.output)
    if not cancelled:
        print(f"study {config.output}: no live Slurm jobs to cancel")
        return 0
    ids = sorted(cancelled, key=int)
    shown = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
    print(f"study {config.output}: cancelled {len(ids)} jobs ({shown}); what they built "
          "and their checkpoints stay: submit again to continue")
    return 0


def finish(config: StudyConfig) -> None:
    """Record failed and blocked units as a local run does (the report follows)."""
    from langtransfer.study.graph import units
    from langtransfer.study.jobs import plan
    from langtransfer.study.slurm import unit_jobs
    from langtransfer.study.status import format_status, record_unbuilt, unit_states

    out = Path(config.output)
    _, jobs = unit_jobs(out)
    statuses = unit_states(units(plan(config)), out, jobs)
    recorded = record_unbuilt(out, statuses)
    print(format_status(statuses, f"study {out}"))
    if recorded:
        print(f"{recorded} failure records written under {out / 'failures'}")
