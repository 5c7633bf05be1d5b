"""The Slurm cluster tests run against: the one-node cluster `.ci/slurm-up` starts on this
machine (docs/slurm-ci.md), or any Slurm whose commands are on PATH.

``slurm_available()`` says whether Slurm can be used, and why not; the session fixture
``slurm`` skips a test with that reason (fails it instead when LANGTRANSFER_REQUIRE_SLURM=1,
so that a CI run that started Slurm does not pass by skipping). Import it into a test
module with ``from slurm_cluster import slurm  # noqa: F401``.

Job states are read with squeue, which needs no slurmdbd: the cluster of `.ci/slurm-up`
keeps finished jobs for an hour (MinJobAge=3600). sacct is not used: it needs accounting.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pytest

# Node states (sinfo %T) in which the node runs jobs; "idle*" (not responding), "down",
# "drained" ... do not.
USABLE_NODE_STATES = {"idle", "mixed", "allocated", "completing"}
# Job states (squeue %T) after which a job will not run again unless requeued.
FINISHED_JOB_STATES = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
}
HINT = "start it with .ci/slurm-up (as root)"


def _run(args: Sequence[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def slurm_available() -> tuple[bool, str]:
    """(True, what is up) when sinfo answers and a node can run jobs; (False, why not)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return False, f"Slurm is not installed (no sinfo/sbatch on PATH): {HINT}"
    # scontrol ping answers at once; sinfo retries a controller that is down for ~9 s.
    try:
        ping = _run(["scontrol", "ping"], timeout=15)
    except subprocess.TimeoutExpired:
        return False, f"scontrol ping did not answer in 15 s: {HINT}"
    if ping.returncode != 0:
        said = (ping.stderr.strip() or ping.stdout.strip() or "no message").splitlines()
        reason = "slurmctld is not running" if " is DOWN" in said[0] else said[-1]
        return False, f"Slurm is not usable ({reason}): {HINT}"
    try:
        result = _run(["sinfo", "--noheader", "--Node", "--format=%N %T"], timeout=15)
    except subprocess.TimeoutExpired:
        return False, f"sinfo did not answer in 15 s: {HINT}"
    if result.returncode != 0:
        said = (result.stderr.strip().splitlines() or ["no message"])[-1]
        return False, f"Slurm is not running (sinfo: {said}): {HINT}"
    nodes = [line.split() for line in result.stdout.splitlines() if line.strip()]
    usable = [f"{name} {state}" for name, state in nodes if state in USABLE_NODE_STATES]
    if not usable:
        states = ", ".join(f"{name} {state}" for name, state in nodes) or "no nodes"
        return False, f"no Slurm node can run jobs ({states}): {HINT}"
    return True, "Slurm node " + ", ".join(usable)


@dataclass(frozen=True)
class Slurm:
    """Thin wrappers around sbatch, squeue and scancel for tests."""

    description: str

    def submit(self, *options: str, wrap: str | None = None, script: str | None = None) -> str:
        """`sbatch --parsable OPTIONS` with --wrap or a script path: the job id."""
        args = ["sbatch", "--parsable", *options]
        if wrap is not None:
            args.append(f"--wrap={wrap}")
        if script is not None:
            args.append(script)
        result = _run(args)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}")
        # --parsable prints "id" or "id;cluster".
        return result.stdout.strip().split(";")[0]

    def states(self, job_ids: Iterable[str]) -> dict[str, str]:
        """Each known job's state (squeue %T, finished jobs included): {id: state}."""
        ids = ",".join(job_ids)
        result = _run(["squeue", "--noheader", "--states=all", f"--jobs={ids}", "--format=%i %T"])
        if result.returncode != 0:
            raise RuntimeError(f"squeue --jobs={ids} failed: {result.stderr.strip()}")
        return dict(line.split() for line in result.stdout.splitlines() if line.strip())

    def wait(self, job_ids: Sequence[str], timeout: float = 60) -> dict[str, str]:
        """Wait until every job has finished (FINISHED_JOB_STATES): their states. A job
        still running after `timeout` seconds fails the test, with the states seen."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.states(job_ids)
            if all(states.get(job) in FINISHED_JOB_STATES for job in job_ids):
                return states
            if time.monotonic() > deadline:
                pytest.fail(f"Slurm jobs not finished after {timeout:.0f} s: {states}")
            time.sleep(0.25)

    def cancel(self, job_ids: Iterable[str]) -> None:
        _run(["scancel", *job_ids])


@pytest.fixture(scope="session")
def slurm() -> Slurm:
    """The Slurm cluster on this machine; skips the test when there is none that runs jobs
    (fails it when LANGTRANSFER_REQUIRE_SLURM=1)."""
    ok, reason = slurm_available()
    if not ok:
        if os.environ.get("LANGTRANSFER_REQUIRE_SLURM") == "1":
            pytest.fail(f"LANGTRANSFER_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    return Slurm(reason)
