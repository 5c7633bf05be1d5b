"""Running a study's graph on Slurm: one ``sbatch`` job per unit, with Slurm's own
dependencies.

``langtransfer study CONFIG --executor slurm`` plans the study, takes the units that are
not built (:func:`langtransfer.study.graph.pending_units`) and submits each as a batch
job running ``langtransfer study CONFIG --unit ID`` with the submitter's Python, in the
graph's order (critical path first, so Slurm's first-come order starts the longest
chains first):

- ``--dependency=afterok:<ids>`` on the jobs of the units it needs (units already built
  are no dependency), ``--kill-on-invalid-dep=yes`` so that the dependants of a failed
  job are cancelled by Slurm instead of pending for ever;
- ``--requeue``: a job that dies with its node is run again, and resumes from the last
  checkpoint of the training it was doing (the unit skips what is built);
- job names ``lt:<study>:<unit>``, logs in ``<study>/slurm/logs/<unit>.<job>.log``
  (appended to by a requeued run);
- a last job (``afterany`` on all) runs ``--finish``: it records what was not built
  (failed with the job's end, or blocked) and writes the report.

The submission is written to ``<study>/slurm/submission.json`` (job ids per unit, time,
the marker); ``--status`` and ``--cancel`` read it, and a second submission is refused
while its jobs live. A job first checks for the marker file written at submission: a
node that cannot see it does not share the study directory, and the job ends with a
one-line error (exit code :data:`NOT_SHARED_EXIT`) that ``--status`` shows.

Slurm's command-line tools rather than a library on them (e.g. ``submitit``): what this
needs is ``sbatch --dependency``, ``squeue`` and ``scancel``, which every Slurm site
has and documents; ``submitit`` pickles a Python callable per job (this project never
unpickles), has no job dependencies, and would put a package between the user and the
``sbatch`` options their site asks for.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langtransfer.errors import LangTransferError
from langtransfer.io import write_json, write_text
from langtransfer.study.config import StudyConfig
from langtransfer.study.graph import Unit, pending_units, units
from langtransfer.study.jobs import plan
from langtransfer.study.slurm_settings import SlurmSettings
from langtransfer.study.status import FINISHED_JOB_STATES as FINISHED
from langtransfer.study.status import RUNNING_JOB_STATES as RUNNING
from langtransfer.study.status import JobInfo

SLURM_DIR = "slurm"
MANIFEST = "submission.json"
#: The job's exit code when the study directory (its marker) is not visible from the
#: node: ``EX_CONFIG`` of sysexits.h.
NOT_SHARED_EXIT = 78
NEEDED = ("sbatch", "squeue", "scancel")

def _run_tool(args: Sequence[str]) -> subprocess.CompletedProcess:
    """One of Slurm's tools, its output captured (a busy controller answers in seconds)."""
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120)


def require_slurm(tools: Iterable[str] = NEEDED) -> None:
    """Slurm's tools are on PATH; else a one-line error saying which was looked for."""
    for tool in tools:
        if shutil.which(tool) is None:
            raise LangTransferError(
                f"--executor slurm: no Slurm here: `{tool}` is not on PATH (it needs "
                f"{', '.join(NEEDED)}); run on a Slurm login node, or use --executor local"
            )


def slurm_dir(study_dir: str | Path) -> Path:
    return Path(study_dir) / SLURM_DIR


def manifest_path(study_dir: str | Path) -> Path:
    return slurm_dir(study_dir) / MANIFEST


def log_path(study_dir: str | Path, name: str, job: str = "%j") -> Path:
    """Where the job of unit ``name`` (or ``finish``) logs: Slurm fills in ``%j``."""
    return slurm_dir(study_dir) / "logs" / f"{name}.{job}.log"


@dataclass
class Submission:
    """What one ``--executor slurm`` run submitted (``<study>/slurm/submission.json``)."""

    study: str
    config: str
    submitted: str
    marker: str
    jobs: dict[str, str] = field(default_factory=dict)  # unit id -> job id
    finish: str = ""  # the job writing the report
    host: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_submission(study_dir: str | Path) -> Submission | None:
    path = manifest_path(study_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Submission(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as e:
        raise LangTransferError(f"unreadable Slurm submission record {path}: {e}") from None


def parse_job_id(stdout: str) -> str:
    """``sbatch --parsable`` prints ``id`` or ``id;cluster``."""
    text = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    job = text.split(";")[0].strip()
    if not job.isdigit():
        raise LangTransferError(f"sbatch --parsable printed {stdout.strip()!r:.80}, not a job id")
    return job


def job_script(
    config: StudyConfig, config_path: Path, marker: Path, extra_args: Sequence[str]
) -> str:
    """The batch script every job runs (its arguments: ``--unit ID`` or ``--finish``):
    first the checks that the node sees what the submitter saw, then the submitter's
    Python on the study."""
    out = Path(config.output).resolve()
    # --profile too: the submitter's may override the config's, as --output does
    profile = ["--profile", config.profile] if config.profile else []
    command = [sys.executable, "-m", "langtransfer", "study", str(config_path),
               "--output", str(out), *profile, *extra_args, "--quiet"]
    not_shared = (f"the study directory {out} is not visible from node $(hostname) (the "
                  f"marker {marker.name} written at submission is missing): it must be on "
                  "a file system every node shares")
    q = shlex.quote
    return "\n".join([
        "#!/bin/bash",
        f"# langtransfer study --executor slurm: a job of study {out}; written at submission,",
        "# run as `sbatch ... job.sh --unit ID` (or `--finish`).",
        f"if [[ ! -e {q(str(marker))} ]]; then",
        f"    echo \"langtransfer: {not_shared}\" >&2",
        f"    exit {NOT_SHARED_EXIT}",
        "fi",
        f"if [[ ! -x {q(sys.executable)} || ! -r {q(str(config_path))} ]]; then",
        f"    echo \"langtransfer: the Python {sys.executable} or the study config "
        f"{config_path} is not visible from node $(hostname): both must be on a file system "
        "every node shares\" >&2",
        f"    exit {NOT_SHARED_EXIT}",
        "fi",
        "echo \"langtransfer: job $SLURM_JOB_ID (run $((${SLURM_RESTART_COUNT:-0} + 1))) "
        "on $(hostname) at $(date -u +%FT%TZ): $*\"",
        f"exec {' '.join(q(c) for c in command)} \"$@\"",
        "",
    ])


def sbatch_command(
    script: Path,
    job_args: Sequence[str],
    *,
    name: str,
    log: Path,
    workdir: Path,
    settings: SlurmSettings,
    dependency: str = "",
    unit: bool = True,
) -> list[str]:
    """The ``sbatch`` command of one job (``unit``: a unit's, else the last job's). The
    user's own options come after the executor's (sbatch takes the last of a repeated
    option)."""
    command = ["sbatch", "--parsable", f"--job-name={name}", f"--output={log}",
               "--open-mode=append", f"--chdir={workdir}", "--export=ALL"]
    if unit:
        command += ["--requeue", "--kill-on-invalid-dep=yes"]
    if dependency:
        command.append(f"--dependency={dependency}")
    command += settings.options(gpus=unit)
    return [*command, str(script), *job_args]


def dependency(unit: Unit, owner: Mapping[str, str], jobs: Mapping[str, str]) -> str:
    """The ``--dependency`` of ``unit``'s job. ``owner``: artefact id -> id of the unit
    building it; ``jobs``: unit id -> job id of the units submitted before (a unit not
    among them is built: no dependency).

    ``afterok`` on a unit every artefact of ``unit`` needs (a task representation for its
    evaluation cells, a language representation for its task representation): if it
    fails, Slurm cancels this job, which could build nothing. ``afterany`` on a unit only
    some artefacts need (the target's language representation of one evaluation cell):
    the job then runs however that ends, builds every cell it can and records the others
    blocked, as a local run does -- one failed language representation does not take
    every evaluation unit down with it.
    """
    ok: list[str] = []
    anyway: list[str] = []
    for dep in unit.deps:
        if dep in jobs:
            needed_by_all = all(any(owner.get(d) == dep for d in a.deps) for a in unit.artefacts)
            (ok if needed_by_all else anyway).append(jobs[dep])
    parts = [f"afterok:{':'.join(ok)}"] if ok else []
    parts += [f"afterany:{':'.join(anyway)}"] if anyway else []
    return ",".join(parts)


def job_name(study_dir: str | Path, unit_id: str) -> str:
    """``lt:<study directory's name>:<unit id>``; also how a job id that Slurm has since
    given to another job (ids restart after a clean controller start) is told apart."""
    return f"lt:{Path(study_dir).resolve().name}:{unit_id}"


def submitted_jobs(submission: Submission) -> dict[str, str]:
    """Job id -> its expected name, for every job of the submission."""
    named = {job: job_name(submission.study, unit) for unit, job in submission.jobs.items()}
    if submission.finish:
        named[submission.finish] = job_name(submission.study, "finish")
    return named


def live_jobs(submission: Submission) -> dict[str, JobInfo]:
    """The submission's jobs that are queued or running."""
    return {j: s for j, s in job_states(submitted_jobs(submission)).items() if s.live}


@dataclass
class Submitted:
    """What :func:`submit` did: the submission (None when nothing was pending)."""

    submission: Submission | None
    pending: int
    total: int


def submit(
    config: StudyConfig,
    config_path: str | Path,
    settings: SlurmSettings,
    *,
    extra_args: Sequence[str] = (),
    finish_args: Sequence[str] = (),
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> Submitted:
    """Claim the output directory (:func:`~langtransfer.study.run.prepare_output`), then
    submit every unit of the study that is not built, with its dependencies, and the job
    that records what was not built and writes the report (``--finish``, plus
    ``finish_args``). ``extra_args`` go to every job's ``langtransfer study`` command.
    Refused while the study's previous submission has jobs that live."""
    from langtransfer.study.locks import file_lock
    from langtransfer.study.run import STUDY_FILE, prepare_output

    out = Path(config.output).resolve()
    config_path = Path(config_path).resolve()
    claimed = (out / STUDY_FILE).is_file()
    if not claimed:  # a new directory: nothing was submitted into it yet
        prepare_output(config, overwrite=overwrite)
    with file_lock(slurm_dir(out) / ".submit.lock", timeout=600):
        previous = read_submission(out)
        if previous is not None:
            live = live_jobs(previous)
            if live:
                raise LangTransferError(_refusal(out, previous, live))
        if claimed:  # after the check: --overwrite discards results no live job writes
            prepare_output(config, overwrite=overwrite)
        all_units = units(plan(config))
        todo = pending_units(all_units, out)
        if not todo:
            log(f"study {out}: every unit is built; nothing to submit "
                f"(`langtransfer report {out}` writes the report)")
            return Submitted(None, 0, len(all_units))
        token = secrets.token_hex(8)
        for old in slurm_dir(out).glob("marker-*"):
            old.unlink(missing_ok=True)
        marker = slurm_dir(out) / f"marker-{token}"
        write_text(marker, f"langtransfer study {out}: submitted from {socket.gethostname()}\n")
        script = slurm_dir(out) / "job.sh"
        write_text(script, job_script(config, config_path, marker, extra_args))
        script.chmod(0o755)
        (slurm_dir(out) / "logs").mkdir(parents=True, exist_ok=True)
        submission = Submission(str(out), str(config_path),
                                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                marker.name, host=socket.gethostname())
        workdir = Path.cwd()
        try:
            owner = {a.id: u.id for u in all_units for a in u.artefacts}
            for unit in todo:
                command = sbatch_command(
                    script, ["--unit", unit.id], name=job_name(out, unit.id),
                    log=log_path(out, unit.id), workdir=workdir, settings=settings,
                    dependency=dependency(unit, owner, submission.jobs))
                submission.jobs[unit.id] = _sbatch(command, unit.id)
            command = sbatch_command(
                script, ["--finish", *finish_args], name=job_name(out, "finish"),
                log=log_path(out, "finish"), workdir=workdir, settings=settings,
                dependency="afterany:" + ":".join(submission.jobs.values()), unit=False)
            submission.finish = _sbatch(command, "finish")
        except LangTransferError as e:
            if submission.jobs:
                write_json(manifest_path(out), submission.to_dict())
                e.args = (f"{e}; {len(submission.jobs)} jobs were submitted before it "
                          "(--status shows them, --cancel cancels them)", *e.args[1:])
            raise
        write_json(manifest_path(out), submission.to_dict())
    return Submitted(submission, len(todo), len(all_units))


def _sbatch(command: list[str], what: str) -> str:
    result = _run_tool(command)
    if result.returncode != 0:
        said = (result.stderr or result.stdout or "").strip().splitlines()
        raise LangTransferError(
            f"sbatch refused the job of {what} (exit {result.returncode}): "
            f"{said[-1] if said else 'no message'}; the command was {shlex.join(command)}"
        )
    return parse_job_id(result.stdout)


def _refusal(out: Path, previous: Submission, live: Mapping[str, JobInfo]) -> str:
    running = sum(j.state in RUNNING for j in live.values())
    ids = sorted(live, key=int)
    shown = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
    return (
        f"study {out} is already submitted ({previous.submitted}): its jobs {shown} are "
        f"live ({running} running, {len(ids) - running} pending); wait for them "
        "(--status shows where they are) or cancel them with --cancel, then submit again"
    )


def job_states(names: Mapping[str, str]) -> dict[str, JobInfo]:
    """What Slurm knows of these jobs (job id -> expected name): squeue (which keeps
    finished jobs for a while, ``MinJobAge``), then ``sacct`` for the rest where the
    cluster has accounting. A job neither knows, or known under another name (its id
    reused), is left out."""
    ids = [j for j in names if j]
    if not ids:
        return {}
    found: dict[str, JobInfo] = {}
    result = _run_tool(["squeue", "--noheader", "--states=all", f"--jobs={','.join(ids)}",
                  "--format=%i|%T|%r|%N|%j"])
    if result.returncode == 0:
        for line in result.stdout.splitlines():
            parts = line.strip().split("|", 4)
            if len(parts) == 5 and parts[0] in names and parts[4] == names[parts[0]]:
                found[parts[0]] = JobInfo(parts[0], parts[1], reason=_none(parts[2]),
                                          node=parts[3])
    elif "Invalid job id" not in result.stderr:  # none of them known: not an error
        said = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise LangTransferError(f"squeue failed (exit {result.returncode}): {said}")
    rest = [j for j in ids if j not in found]
    if rest and shutil.which("sacct") is not None:
        result = _run_tool(["sacct", "--noheader", "--parsable2", f"--jobs={','.join(rest)}",
                      "--format=JobID,State,ExitCode,NodeList,JobName"])
        for line in result.stdout.splitlines() if result.returncode == 0 else []:
            parts = line.strip().split("|", 4)
            if len(parts) == 5 and parts[0] in rest and parts[4] == names[parts[0]]:
                found[parts[0]] = JobInfo(parts[0], parts[1].split()[0], node=parts[3],
                                          exit_code=_exit_code(parts[2]))
    return found


def _none(text: str) -> str:
    return "" if text in ("None", "(null)") else text


def _exit_code(text: str) -> int | None:
    """``78:0`` -> 78."""
    head = text.split(":")[0]
    return int(head) if head.isdigit() else None


def exit_code(job: str) -> int | None:
    """A finished job's exit code, from ``scontrol show job`` (while Slurm keeps it)."""
    result = _run_tool(["scontrol", "show", "job", "-o", job])
    for word in result.stdout.split() if result.returncode == 0 else []:
        if word.startswith("ExitCode="):
            return _exit_code(word.removeprefix("ExitCode="))
    return None


def last_line(path: Path) -> str:
    """The last non-empty line of a log (its end only: logs grow long)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def describe_end(study_dir: Path, unit_id: str, job: JobInfo) -> str:
    """One line on why a finished job built nothing: the study directory not shared, or
    its state and the last line of its log."""
    code = job.exit_code if job.exit_code is not None else (
        exit_code(job.id) if shutil.which("scontrol") else None)
    log = log_path(study_dir, unit_id, job.id)
    node = f" on {job.node}" if job.node else ""
    if code == NOT_SHARED_EXIT:
        said = last_line(log).removeprefix("langtransfer: ")
        return said or (f"the study directory {study_dir} is not visible from node "
                        f"{job.node or '?'}: it must be on a file system every node shares")
    said = last_line(log)
    where = f"log {log}" if log.is_file() else (
        f"no log at {log}: is the study directory on a file system {job.node or 'the node'} "
        "shares?")
    state = job.state + (f" ({job.reason})" if job.reason else "")
    code_text = f", exit {code}" if code not in (None, 0) else ""
    return f"job {job.id} ended {state}{code_text}{node}" + (
        f": {said}" if said else "") + f"; {where}"


def cancel(study_dir: str | Path) -> list[str]:
    """``scancel`` the live jobs of the study's submission; their ids."""
    submission = read_submission(study_dir)
    if submission is None:
        raise LangTransferError(f"study {study_dir} has no Slurm submission "
                                f"({manifest_path(study_dir)} does not exist)")
    live = list(live_jobs(submission))
    if live:
        result = _run_tool(["scancel", *live])
        if result.returncode != 0:
            said = (result.stderr.strip().splitlines() or ["no message"])[-1]
            raise LangTransferError(f"scancel failed (exit {result.returncode}): {said}")
    return live


def unit_jobs(study_dir: Path) -> tuple[Submission | None,
                                                                dict[str, JobInfo]]:
    """The study's submission and, per unit id (and ``finish``), what Slurm says of its
    job, with the one-line reason of a job that ended without success. Without Slurm's
    tools on PATH: the submission and no job states."""
    submission = read_submission(study_dir)
    if submission is None or shutil.which("squeue") is None:
        return submission, {}
    states = job_states(submitted_jobs(submission))
    out: dict[str, JobInfo] = {}
    for unit_id, job in [*submission.jobs.items(), ("finish", submission.finish)]:
        info = states.get(job)
        if info is None:
            info = JobInfo(job, "", log=str(log_path(study_dir, unit_id, job)))
        elif info.state in FINISHED and info.state != "COMPLETED":
            info = JobInfo(info.id, info.state, info.reason, info.node, info.exit_code,
                           error=describe_end(study_dir, unit_id, info),
                           log=str(log_path(study_dir, unit_id, job)))
        else:
            info = JobInfo(info.id, info.state, info.reason, info.node, info.exit_code,
                           log=str(log_path(study_dir, unit_id, job)))
        out[unit_id] = info
    return submission, out
