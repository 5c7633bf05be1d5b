"""`langtransfer study --executor slurm` on a real Slurm (the one-node cluster of
`.ci/slurm-up`, docs/slurm-ci.md); skipped with the reason where none runs.

One small study runs once for the module (``scenario``), on Slurm and locally side by side:
tiny model, sources and targets en and sk, NLI, `base` and `slp+ta`, and a Slovak corpus
that does not exist, so the Slovak language representation fails. While it runs, the job
training the English language representation is requeued (what Slurm does when a node
dies) once it has written a checkpoint. The tests then check the records against the
local run's, the requeue, what the failure blocked, and `--status` against squeue.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.numpy import load_file
from slurm_cluster import Slurm, slurm  # noqa: F401  (the session fixture)
from test_study import FAST

from langtransfer.cli import main
from langtransfer.results.failures import read_failures
from langtransfer.study.load import load_study_config

pytestmark = pytest.mark.slurm

#: The units of the scenario's study and what becomes of each.
BUILT = {"language.prompt.en", "task.nli.en.slp+ta", "evaluate.nli.en.base",
         "evaluate.nli.sk.base"}
FAILED = {"language.prompt.sk"}
# slp+ta cells of en->sk need the Slovak prompt (their unit runs and builds en->en);
# the Slovak task prompt and its cells need it whole (Slurm cancels their jobs).
BLOCKED = {"evaluate.nli.en.slp+ta", "task.nli.sk.slp+ta", "evaluate.nli.sk.slp+ta"}
#: The whole study with a requeue: ~2.5 min on a loaded 2-core machine (pytest-timeout: 600 s).
TIMEOUT = 480


def write_study(tmp: Path, name: str, **values) -> Path:
    from langtransfer.training.corpora import fixture_path

    config = json.loads(json.dumps(FAST))
    config["language_training"]["prompt"].update(max_steps=40, save_steps=5)
    config.update(
        output=str(tmp / name), tasks=["nli"], sources=["en", "sk"], targets=["en", "sk"],
        configurations=["base", "slp+ta"],
        corpus={"en": str(fixture_path("en")), "sk": str(tmp / "no-such-corpus.sk.txt")},
        **values,
    )
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def cli(*args: str) -> tuple[int, str, str]:
    """The CLI in this process (a job's Python start is the slow part of a job, not the
    submitter's): exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def scontrol(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=30)


def submission(out: Path) -> dict:
    return json.loads((out / "slurm" / "submission.json").read_text())


def states_now(out: Path) -> dict[str, tuple[str, str]]:
    """{unit: (what --status says, what squeue says)}, taken together."""
    from langtransfer.study.graph import units
    from langtransfer.study.jobs import plan
    from langtransfer.study.slurm import unit_jobs
    from langtransfer.study.status import unit_states

    config = load_study_config(out.with_suffix(".yaml"))
    _, jobs = unit_jobs(out)
    return {s.unit.id: (s.state, jobs[s.unit.id].state if s.unit.id in jobs else "")
            for s in unit_states(units(plan(config)), out, jobs)}


@pytest.fixture(scope="module")
def scenario(slurm: Slurm, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp("slurm-study")
    on_slurm, local = write_study(tmp, "slurm"), write_study(tmp, "local")
    out = tmp / "slurm"
    # the local run, in parallel: its Python start overlaps the jobs'
    reference = subprocess.Popen(
        [sys.executable, "-m", "langtransfer", "study", str(local), "--quiet", "--no-report"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    code, said, err = cli("study", str(on_slurm), "--executor", "slurm")
    assert code == 0, err
    jobs = submission(out)["jobs"]
    found: dict = {"submitted": set(jobs), "said": said}
    try:
        found["second"] = cli("study", str(on_slurm), "--executor", "slurm")
        # Requeue the English language prompt's job once it has written a checkpoint.
        job = jobs["language.prompt.en"]
        checkpoints = out / "checkpoints" / "language" / "prompt" / "en"
        built = out / "representations" / "language" / "prompt" / "en" / "manifest.json"
        deadline = time.monotonic() + TIMEOUT
        while not list(checkpoints.glob("checkpoint-*")):
            assert time.monotonic() < deadline, "no checkpoint of language.prompt.en appeared"
            state = slurm.states([job]).get(job)
            assert state in ("PENDING", "RUNNING"), (
                f"job {job} is {state} before its first checkpoint: "
                + "".join(p.read_text() for p in (out / "slurm" / "logs").glob("language.*")))
            time.sleep(0.1)
        found["killed_at"] = sorted(p.name for p in checkpoints.glob("checkpoint-*"))
        found["built_when_killed"] = built.exists()
        requeued = scontrol("requeue", job)
        assert requeued.returncode == 0, requeued.stderr
        while slurm.states([job])[job] != "PENDING":  # Slurm holds it for 120 s ...
            time.sleep(0.1)
        found["while_requeued"] = states_now(out)
        assert scontrol("update", f"JobId={job}", "StartTime=now").returncode == 0  # ... not here
        found["final_jobs"] = slurm.wait([*jobs.values(), submission(out)["finish"]],
                                         timeout=TIMEOUT)
        found["seconds"] = time.monotonic() - started
        found["status"] = cli("study", str(on_slurm), "--status")
        found["states"] = states_now(out)
    finally:
        slurm.cancel([*jobs.values(), submission(out)["finish"]])
        _, ref_err = reference.communicate(timeout=TIMEOUT)
    assert reference.returncode == 1, ref_err  # the Slovak prompt fails locally too
    return {**found, "out": out, "local": tmp / "local", "config": on_slurm, "jobs": jobs}


def records(out: Path) -> dict[str, dict]:
    """Each result record and its predictions, the study directory written as <out>."""
    found = {}
    for path in sorted((out / "results").rglob("*.json")):
        cell = path.relative_to(out / "results").with_suffix("")
        text = path.read_text().replace(str(out), "<out>")
        predictions = (out / "predictions" / cell / "predictions.jsonl").read_text()
        found[str(cell)] = {"record": json.loads(text), "predictions": predictions}
    return found


def test_the_study_on_slurm_writes_the_records_of_a_local_run(scenario):
    on_slurm, local = records(scenario["out"]), records(scenario["local"])
    assert len(local) == 5  # 8 cells, one blocked, two whose task prompt is blocked
    assert on_slurm == local
    # the requeued training's weights, bit for bit
    name = Path("representations/language/prompt/en/prompt.safetensors")
    a, b = load_file(scenario["out"] / name), load_file(scenario["local"] / name)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_a_requeued_job_runs_again_and_resumes(scenario):
    assert scenario["killed_at"] and not scenario["built_when_killed"], (
        "the job was not requeued mid-training")
    job = scenario["jobs"]["language.prompt.en"]
    log = (scenario["out"] / "slurm" / "logs" / f"language.prompt.en.{job}.log").read_text()
    assert f"job {job} (run 1)" in log and f"job {job} (run 2)" in log
    assert log.count("1 artefacts built") == 1  # the first run never finished
    assert scenario["final_jobs"][job] == "COMPLETED"
    # its dependants waited for the second run instead of starting after the first
    assert scenario["while_requeued"]["task.nli.en.slp+ta"][1] == "PENDING"


def test_a_failing_artefact_blocks_exactly_its_dependants(scenario):
    states = scenario["states"]
    assert {u for u, (s, _) in states.items() if s == "done"} == BUILT
    assert {u for u, (s, _) in states.items() if s == "failed"} == FAILED
    assert {u for u, (s, _) in states.items() if s == "blocked"} == BLOCKED
    # Slurm cancelled the jobs that could build nothing; the partly blocked unit ran
    final = scenario["final_jobs"]
    jobs = scenario["jobs"]
    assert final[jobs["task.nli.sk.slp+ta"]] == "CANCELLED"
    assert final[jobs["evaluate.nli.sk.slp+ta"]] == "CANCELLED"
    assert final[jobs["language.prompt.sk"]] == "FAILED"
    assert final[jobs["evaluate.nli.en.slp+ta"]] == "FAILED"  # it built en->en, not en->sk
    # the failure records say what a local run's say (the last job wrote the blocked ones)
    def recorded(out: Path) -> dict[str, tuple]:
        return {f.artefact: (f.status, f.blocked_by, f.error.replace(str(out), "<out>"))
                for f in read_failures(out)}

    assert recorded(scenario["out"]) == recorded(scenario["local"])
    assert (scenario["out"] / "report" / "report.md").is_file()


def test_status_matches_slurm_and_the_study_directory(scenario):
    running = {"RUNNING", "COMPLETING", "CONFIGURING"}
    for unit, (status, job) in scenario["while_requeued"].items():
        if job in running:
            assert status == "running", unit
        elif job == "PENDING":
            assert status == "pending", unit
    assert scenario["while_requeued"]["language.prompt.en"] == ("pending", "PENDING")
    code, text, _ = scenario["status"]
    assert code == 1  # something failed
    assert "8 units: 4 done, 0 running, 0 pending, 1 failed, 3 blocked, 0 missing" in text
    line = next(x for x in text.splitlines() if "language.prompt.sk" in x)
    assert "no-such-corpus.sk.txt" in line and line.split()[0] == "failed"
    assert "report: job" in text and "COMPLETED" in text


def test_a_second_submission_is_refused_and_a_resubmission_takes_only_what_is_missing(
        scenario, slurm):  # noqa: F811
    code, _, err = scenario["second"]
    assert code == 2 and "already submitted" in err and "\n" not in err.strip()
    assert scenario["jobs"]["language.prompt.en"] in err
    # After the run: the same command submits the failed unit and what it blocked, only.
    # (Held, and cancelled: they would fail again, the corpus is still missing.)
    out = scenario["out"]
    built = {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.json")}
    code, _, err = cli("study", str(scenario["config"]), "--executor", "slurm", "--sbatch=--hold")
    assert code == 0, err
    again = submission(out)
    try:
        assert set(again["jobs"]) == FAILED | BLOCKED
        assert slurm.states(again["jobs"].values()) == {
            j: "PENDING" for j in again["jobs"].values()}
    finally:
        code, said, _ = cli("study", str(scenario["config"]), "--cancel")
    assert code == 0 and f"cancelled {len(again['jobs']) + 1} jobs" in said
    assert {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.json")} == built


def test_a_node_that_does_not_see_the_study_directory_fails_the_job_in_one_line(
        slurm, tmp_path):  # noqa: F811
    config = write_study(tmp_path, "unshared")
    out = tmp_path / "unshared"
    code, _, err = cli("study", str(config), "--executor", "slurm", "--sbatch=--hold")
    assert code == 0, err
    jobs = submission(out)["jobs"]
    # what a node with another file system at that path sees: no marker
    (out / "slurm" / submission(out)["marker"]).unlink()
    first = [jobs["language.prompt.en"], jobs["evaluate.nli.en.base"]]
    try:
        assert scontrol("release", ",".join(first)).returncode == 0
        assert slurm.wait(first, timeout=120) == dict.fromkeys(first, "FAILED")
        code, text, _ = cli("study", str(config), "--status")
    finally:
        cli("study", str(config), "--cancel")
    assert code == 1
    for unit in ("language.prompt.en", "evaluate.nli.en.base"):
        line = next(x for x in text.splitlines() if unit in x)
        assert line.split()[0] == "failed"
        assert "must be on a file system every node shares" in line
    log = out / "slurm" / "logs" / f"language.prompt.en.{jobs['language.prompt.en']}.log"
    assert len(log.read_text().strip().splitlines()) == 1
    assert not (out / "representations").exists()
