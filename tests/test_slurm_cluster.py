"""The one-node Slurm cluster of `.ci/slurm-up` runs dependent jobs in order (docs/slurm-ci.md).
Skipped, with the reason, where Slurm is not running."""

from __future__ import annotations

from pathlib import Path

from slurm_cluster import Slurm, slurm  # noqa: F401  (the session fixture)

# A job that records when it started and ended (seconds since the epoch, with nanoseconds)
# and whether the other job's file existed when it started.
STAMP = (
    "echo start $(date +%s.%N) > {name}.txt; "
    "test -e {other}.txt && echo saw-{other} >> {name}.txt; "
    "sleep 1; echo end $(date +%s.%N) >> {name}.txt"
)


def _stamps(path: Path) -> dict[str, str]:
    """{"start": ..., "end": ..., "saw-x": ""} from a job's file."""
    lines = path.read_text().splitlines()
    return {key: value for key, _, value in (line.partition(" ") for line in lines)}


def test_a_dependent_job_runs_after_the_job_it_depends_on(slurm: Slurm, tmp_path):  # noqa: F811
    common = ("--chdir", str(tmp_path), "--output", str(tmp_path / "%j.out"))
    first = slurm.submit(*common, "--job-name=first", wrap=STAMP.format(name="a", other="b"))
    second = slurm.submit(
        *common,
        "--job-name=second",
        f"--dependency=afterok:{first}",
        wrap=STAMP.format(name="b", other="a"),
    )
    try:
        states = slurm.wait([first, second], timeout=60)
    finally:
        slurm.cancel([first, second])
    assert states == {first: "COMPLETED", second: "COMPLETED"}
    a, b = _stamps(tmp_path / "a.txt"), _stamps(tmp_path / "b.txt")
    assert "saw-b" not in a, "the first job started after the second"
    assert "saw-a" in b, "the second job started before the first wrote its file"
    assert float(b["start"]) >= float(a["end"]), (a, b)


def test_a_job_that_depends_on_a_failed_job_is_cancelled(slurm: Slurm, tmp_path):  # noqa: F811
    """DependencyParameters=kill_invalid_depend: not pending forever."""
    common = ("--chdir", str(tmp_path), "--output", str(tmp_path / "%j.out"))
    failing = slurm.submit(*common, wrap="exit 3")
    dependant = slurm.submit(*common, f"--dependency=afterok:{failing}", wrap="touch ran")
    try:
        states = slurm.wait([failing, dependant], timeout=60)
    finally:
        slurm.cancel([failing, dependant])
    assert states == {failing: "FAILED", dependant: "CANCELLED"}
    assert not (tmp_path / "ran").exists()
