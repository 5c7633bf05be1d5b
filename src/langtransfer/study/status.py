"""Where each unit of a study stands: from the study directory (built artefacts, failure
records) and, for a study run by a scheduler, what it says of the unit's job.

A unit is, first match wins:

- ``running`` / ``pending``: its job lives (queued, waiting on a dependency, requeued...);
- ``done``: every artefact of it is built with the current settings;
- ``failed``: an artefact of it has a failure record, or its job ended without success
  (killed at its time limit, out of memory, its node lost, the study directory not
  visible from the node...);
- ``blocked``: a unit it needs failed or is blocked (Slurm cancels such a job);
- ``missing``: not built and no job: never submitted, or its job was cancelled.

Torch-free: ``--status`` reads manifests and JSON only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from langtransfer.results.failures import BLOCKED, FAILED, Failure, read_failures, write_failure
from langtransfer.study.graph import Unit
from langtransfer.study.jobs import is_done

DONE, RUNNING, PENDING, MISSING = "done", "running", "pending", "missing"
STATES = (DONE, RUNNING, PENDING, FAILED, BLOCKED, MISSING)

#: Slurm job states after which a job does not run again (unless requeued by hand); any
#: other state, one this list does not know included, counts as live.
FINISHED_JOB_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
    "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT", "REVOKED",
})
RUNNING_JOB_STATES = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT",
                                "SIGNALING"})


@dataclass(frozen=True)
class JobInfo:
    """A unit's job as the scheduler reports it. ``state``: Slurm's (``RUNNING``,
    ``PENDING``, ``FAILED``...), "" when the scheduler no longer knows the job; ``error``:
    one line on why it ended without success."""

    id: str
    state: str
    reason: str = ""
    node: str = ""
    exit_code: int | None = None
    error: str = ""
    log: str = ""

    @property
    def live(self) -> bool:
        return bool(self.state) and self.state not in FINISHED_JOB_STATES

    def where(self) -> str:
        """``job 123 (Dependency)`` or ``job 123 on node7``."""
        text = f"job {self.id}"
        if self.state in RUNNING_JOB_STATES and self.node:
            return f"{text} on {self.node}"
        return f"{text} ({self.reason})" if self.reason else text


@dataclass(frozen=True)
class UnitStatus:
    """One unit's state and one line of detail; ``unbuilt``: its artefacts not built."""

    unit: Unit
    state: str
    detail: str = ""
    job: JobInfo | None = None
    blocked_by: tuple[str, ...] = ()
    unbuilt: tuple[str, ...] = ()
    recorded: bool = False  # the failure or block is already in a failure record


def unit_states(
    all_units: Iterable[Unit], study_dir: str | Path, jobs: Mapping[str, JobInfo] | None = None
) -> list[UnitStatus]:
    """Each unit's state (``all_units`` in topological order, as
    :func:`~langtransfer.study.graph.units` gives them); ``jobs``: unit id -> its job."""
    jobs = jobs or {}
    listed = list(all_units)
    hashes = {a.id: a.hash for u in listed for a in u.artefacts}
    failures = {f.artefact: f for f in read_failures(study_dir)
                if f.artefact in hashes and f.settings_hash in ("", hashes[f.artefact])}
    found: dict[str, UnitStatus] = {}
    for unit in listed:
        found[unit.id] = _state(unit, jobs.get(unit.id), failures, found)
    return [found[u.id] for u in listed]


def _state(
    unit: Unit, job: JobInfo | None, failures: Mapping[str, Failure],
    before: Mapping[str, UnitStatus],
) -> UnitStatus:
    unbuilt = tuple(a.id for a in unit.artefacts if not is_done(a))
    if job is not None and job.live:
        state = RUNNING if job.state in RUNNING_JOB_STATES else PENDING
        return UnitStatus(unit, state, job.where(), job, unbuilt=unbuilt)
    if not unbuilt:
        return UnitStatus(unit, DONE, job=job)
    failed = [failures[a] for a in unbuilt if a in failures and failures[a].status == FAILED]
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return UnitStatus(unit, FAILED, failed[0].line() + more, job, unbuilt=unbuilt,
                          recorded=True)
    bad = tuple(d for d in unit.deps if before.get(d) and before[d].state in (FAILED, BLOCKED))
    if bad:
        return UnitStatus(unit, BLOCKED, f"by {', '.join(bad)}", job, blocked_by=bad,
                          unbuilt=unbuilt,
                          recorded=all(a in failures for a in unbuilt))
    if job is not None and job.state == "CANCELLED":
        return UnitStatus(unit, MISSING, f"{job.where()} was cancelled; submit again", job,
                          unbuilt=unbuilt)
    if job is not None and job.state and job.state != "COMPLETED":
        return UnitStatus(unit, FAILED, job.error or f"{job.where()} ended {job.state}", job,
                          unbuilt=unbuilt)
    blocked = [failures[a] for a in unbuilt if a in failures]
    if blocked:  # its dependencies were not built when it ran; they are now
        return UnitStatus(unit, MISSING, f"{blocked[0].line()} when it ran; submit again",
                          job, unbuilt=unbuilt)
    if job is not None and not job.state:
        return UnitStatus(unit, FAILED, f"job {job.id} ended without building it and the "
                          "scheduler no longer knows how" + (f"; log {job.log}" if job.log
                                                              else ""), job, unbuilt=unbuilt)
    if job is not None:  # COMPLETED, yet not built: built over since, or settings changed
        return UnitStatus(unit, MISSING, f"not built with the current settings (job {job.id} "
                          "completed); submit again", job, unbuilt=unbuilt)
    return UnitStatus(unit, MISSING, "not built and not submitted", unbuilt=unbuilt)


def counts(statuses: Iterable[UnitStatus]) -> dict[str, int]:
    listed = list(statuses)
    return {state: sum(s.state == state for s in listed) for state in STATES}


def format_status(statuses: list[UnitStatus], title: str) -> str:
    """A count line, then one line per unit that is not done, in the graph's order."""
    c = counts(statuses)
    lines = [f"{title}: {len(statuses)} units: " + ", ".join(f"{c[s]} {s}" for s in STATES)]
    width = max((len(s.unit.id) for s in statuses), default=0)
    lines += [f"  {s.state:<8} {s.unit.id:<{width}}  {s.detail}".rstrip()
              for s in statuses if s.state != DONE]
    return "\n".join(lines)


def record_unbuilt(study_dir: str | Path, statuses: Iterable[UnitStatus]) -> int:
    """Write failure records for what a scheduler left unbuilt and no process recorded:
    the artefacts of a unit whose job ended without success (failed), and those of units
    whose job never ran because a dependency failed (blocked), as a local run records
    them; return how many."""
    listed = list(statuses)
    unbuilt = {aid for s in listed for aid in s.unbuilt}
    written = 0
    for status in listed:
        if status.recorded or status.state not in (FAILED, BLOCKED):
            continue
        arts = {a.id: a for a in status.unit.artefacts}
        for aid in status.unbuilt:
            art = arts[aid]
            if status.state == FAILED:
                failure = Failure(aid, FAILED, status.detail, (), art.hash)
            else:
                missing = tuple(d for d in art.deps if d in unbuilt)
                failure = Failure(aid, BLOCKED, f"needs {', '.join(missing)}, which were not "
                                  "built", missing, art.hash)
            write_failure(study_dir, failure)
            written += 1
    return written
