"""`langtransfer study --executor slurm` without a Slurm cluster: fake `sbatch`, `squeue`,
`scontrol` and `scancel` on PATH record their arguments and answer from a file, so the
command lines, the dependency wiring, the submission record, `--status`, `--cancel` and
the refusals are checked on every machine. tests/test_slurm_study.py runs the same on a
real Slurm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_study import FAST

from langtransfer.cli import main
from langtransfer.errors import LangTransferError
from langtransfer.results.failures import BLOCKED, FAILED, read_failures
from langtransfer.study.load import load_study_config
from langtransfer.study.slurm_settings import SlurmSettings, parse_slurm

FAKE = r'''#!{python}
import json, os, sys
from pathlib import Path

state = Path(os.environ["FAKE_SLURM"])
tool = Path(sys.argv[0]).name
with (state / "calls.jsonl").open("a") as f:
    f.write(json.dumps([tool, *sys.argv[1:]]) + "\n")
names = json.loads((state / "names.json").read_text()) if (state / "names.json").exists() else {{}}
# jobs.json: job id -> [state, reason, node] or [state, reason, node, exit code]
jobs = json.loads((state / "jobs.json").read_text()) if (state / "jobs.json").exists() else {{}}
if tool == "sbatch":
    n = len(names) + 1
    if int(os.environ.get("FAKE_SBATCH_FAIL_AT", "0")) == n:
        print("sbatch: error: Batch job submission failed: Invalid account", file=sys.stderr)
        sys.exit(1)
    job = str(100 + n)
    names[job] = next(a for a in sys.argv if a.startswith("--job-name=")).split("=", 1)[1]
    (state / "names.json").write_text(json.dumps(names))
    print(job)
elif tool == "squeue":
    ids = next(a for a in sys.argv if a.startswith("--jobs=")).split("=", 1)[1].split(",")
    known = [i for i in ids if i in jobs]
    if not known:
        print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
        sys.exit(1)
    for i in known:
        print("|".join([i, *jobs[i][:3], names.get(i, "?")]))
elif tool == "scontrol":
    job = sys.argv[-1]
    if job in jobs:
        code = jobs[job][3] if len(jobs[job]) > 3 else 0
        print(f"JobId={{job}} JobState={{jobs[job][0]}} ExitCode={{code}}:0")
'''
TOOLS = ("sbatch", "squeue", "scontrol", "scancel")
SMALL = {"tasks": ["nli"], "targets": ["en", "sk"], "configurations": ["base", "ta", "slp+ta"]}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """Fake Slurm tools first on PATH; returns their state directory."""
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm-state"
    bin_dir.mkdir()
    state.mkdir()
    for tool in TOOLS:
        script = bin_dir / tool
        script.write_text(FAKE.format(python=sys.executable), encoding="utf-8")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(state))
    monkeypatch.chdir(tmp_path)
    return state


def calls(state: Path, tool: str) -> list[list[str]]:
    path = state / "calls.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [row[1:] for row in rows if row[0] == tool]


def set_jobs(state: Path, jobs: dict[str, list]) -> None:
    (state / "jobs.json").write_text(json.dumps(jobs))


def study(tmp_path: Path, **values) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**FAST, **SMALL, "output": str(tmp_path / "out"),
                                    **values}), encoding="utf-8")
    return path


def option(command: list[str], name: str) -> str | None:
    found = [a.split("=", 1)[1] for a in command if a.startswith(f"{name}=")]
    return found[-1] if found else None


def submission(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out" / "slurm" / "submission.json").read_text())


# -- the slurm section ------------------------------------------------------------------


def test_slurm_settings_are_checked_and_become_sbatch_options(tmp_path):
    config = load_study_config(study(tmp_path, slurm={
        "partition": "gpu", "gpus": 1, "time": "1-00:00:00", "account": "proj", "cpus": 8,
        "mem": "32G", "sbatch": ["--qos=normal", "#SBATCH --constraint=a100"]}))
    settings = config.slurm_settings()
    assert settings.options() == [
        "--partition=gpu", "--account=proj", "--gpus=1", "--cpus-per-task=8", "--mem=32G",
        "--time=1-00:00:00", "--qos=normal", "--constraint=a100"]
    # the report's job asks for no GPU
    assert "--gpus=1" not in settings.options(gpus=False)
    # the command line wins key by key; sbatch lines add up
    merged = settings.merged(partition="short", time="30", sbatch=["--nice=10"])
    assert (merged.partition, merged.time, merged.account) == ("short", "30", "proj")
    assert merged.sbatch[-1] == "--nice=10" and len(merged.sbatch) == 3
    assert parse_slurm(None) == SlurmSettings()


@pytest.mark.parametrize("section, named", [
    ({"partitoin": "gpu"}, "partitoin"),
    ({"gpus": "two"}, "slurm.gpus"),
    ({"gpus": -1}, "slurm.gpus"),
    ({"cpus": 0}, "slurm.cpus"),
    ({"time": "1 day"}, "slurm.time"),
    ({"mem": "lots"}, "slurm.mem"),
    ({"partition": "a b"}, "slurm.partition"),
    ({"sbatch": ["qos=normal"]}, "qos=normal"),
    ({"sbatch": ["--dependency=afterok:1"]}, "--dependency"),
    ({"sbatch": "--job-name=x"}, "--job-name"),
    ("gpu", "'slurm' must be a mapping"),
])
def test_a_bad_slurm_section_is_one_line_naming_the_value(tmp_path, section, named):
    with pytest.raises(LangTransferError) as e:
        load_study_config(study(tmp_path, slurm=section))
    assert named in str(e.value) and "\n" not in str(e.value)


# -- submission -------------------------------------------------------------------------


def test_submission_wires_every_unit_to_the_jobs_it_needs(tmp_path, fake_slurm):
    config = study(tmp_path, slurm={"partition": "gpu", "gpus": 1, "time": "2:00:00"})
    code = main(["study", str(config), "--executor", "slurm", "--partition", "short",
                 "--sbatch=--qos=low"])
    assert code == 0
    sbatch = calls(fake_slurm, "sbatch")
    manifest = submission(tmp_path)
    units = [c[c.index("--unit") + 1] for c in sbatch if "--unit" in c]
    assert units == list(manifest["jobs"])
    assert set(units) == {"language.prompt.en", "language.prompt.sk", "task.nli.en.ta",
                          "task.nli.en.slp+ta", "evaluate.nli.en.base", "evaluate.nli.en.ta",
                          "evaluate.nli.en.slp+ta"}
    job = manifest["jobs"]
    by_unit = {c[c.index("--unit") + 1]: c for c in sbatch if "--unit" in c}
    out = (tmp_path / "out").resolve()
    for unit, command in by_unit.items():
        assert command[0] == "--parsable"
        assert option(command, "--job-name") == f"lt:out:{unit}"
        assert option(command, "--output") == f"{out}/slurm/logs/{unit}.%j.log"
        assert "--requeue" in command and "--kill-on-invalid-dep=yes" in command
        assert option(command, "--partition") == "short"  # the command line's
        assert option(command, "--gpus") == "1" and option(command, "--time") == "2:00:00"
        # the user's options come last, so they win over the executor's
        assert command.index("--partition=short") < command.index("--qos=low") < len(command) - 3
        assert command[-3:] == [str(out / "slurm" / "job.sh"), "--unit", unit]
    deps = {u: option(c, "--dependency") for u, c in by_unit.items()}
    assert deps["language.prompt.en"] is None and deps["task.nli.en.ta"] is None
    assert deps["evaluate.nli.en.base"] is None
    # a task representation needs its source's language representation: afterok
    assert deps["task.nli.en.slp+ta"] == f"afterok:{job['language.prompt.en']}"
    assert deps["evaluate.nli.en.ta"] == f"afterok:{job['task.nli.en.ta']}"
    # every cell needs the task representation (afterok); each target's language
    # representation only one cell (afterany: the other cells are built if it fails)
    assert deps["evaluate.nli.en.slp+ta"] == (
        f"afterok:{job['task.nli.en.slp+ta']},"
        f"afterany:{job['language.prompt.en']}:{job['language.prompt.sk']}")
    # submitted in topological order: every dependency's job exists before its user's
    position = {u: i for i, u in enumerate(units)}
    for unit, dep in deps.items():
        for other, jid in job.items():
            if dep and jid in dep.replace(",", ":").split(":"):
                assert position[other] < position[unit]
    # the last job writes the report after all, whatever happened, with no GPU
    last = sbatch[-1]
    assert last[-1] == "--finish" and manifest["finish"] == "108"
    assert option(last, "--dependency") == "afterany:" + ":".join(job.values())
    assert option(last, "--gpus") is None and "--requeue" not in last
    assert option(last, "--partition") == "short"
    script = (out / "slurm" / "job.sh").read_text()
    assert f"--output {out}" in script and sys.executable in script
    assert (out / "slurm" / manifest["marker"]).is_file()


def test_built_units_are_neither_submitted_nor_waited_for(tmp_path, fake_slurm, monkeypatch):
    import langtransfer.study.graph as graph

    done = {"language:prompt/en"}
    monkeypatch.setattr(graph, "is_done", lambda art: art.id in done)
    assert main(["study", str(study(tmp_path)), "--executor", "slurm"]) == 0
    by_unit = {c[c.index("--unit") + 1]: c for c in calls(fake_slurm, "sbatch") if "--unit" in c}
    job = submission(tmp_path)["jobs"]
    assert "language.prompt.en" not in by_unit
    assert option(by_unit["task.nli.en.slp+ta"], "--dependency") is None
    assert option(by_unit["evaluate.nli.en.slp+ta"], "--dependency") == (
        f"afterok:{job['task.nli.en.slp+ta']},afterany:{job['language.prompt.sk']}")


def test_a_second_submission_is_refused_while_the_first_lives(tmp_path, fake_slurm, capsys):
    config = str(study(tmp_path))
    assert main(["study", config, "--executor", "slurm"]) == 0
    job = submission(tmp_path)["jobs"]
    set_jobs(fake_slurm, {job["language.prompt.en"]: ["RUNNING", "None", "node1"],
                          job["evaluate.nli.en.base"]: ["PENDING", "Resources", ""],
                          job["language.prompt.sk"]: ["COMPLETED", "None", "node1"]})
    capsys.readouterr()
    assert main(["study", config, "--executor", "slurm"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "already submitted" in err
    assert f"{job['language.prompt.en']}, {job['evaluate.nli.en.base']}" in err
    assert "1 running, 1 pending" in err and "--cancel" in err
    assert len(calls(fake_slurm, "sbatch")) == 8  # nothing more submitted
    # --cancel cancels the live ones only, then a submission goes through
    assert main(["study", config, "--cancel"]) == 0
    assert calls(fake_slurm, "scancel") == [[job["language.prompt.en"],
                                             job["evaluate.nli.en.base"]]]
    set_jobs(fake_slurm, {j: ["CANCELLED", "None", ""] for j in job.values()})
    assert main(["study", config, "--executor", "slurm"]) == 0
    assert len(calls(fake_slurm, "sbatch")) == 16


def test_a_reused_job_id_is_not_the_study_s_job(tmp_path, fake_slurm):
    """Slurm's job ids restart after a clean controller start: a job of another name under
    an old id does not block a submission."""
    config = str(study(tmp_path))
    assert main(["study", config, "--executor", "slurm"]) == 0
    names = json.loads((fake_slurm / "names.json").read_text())
    job = submission(tmp_path)["jobs"]["language.prompt.en"]
    names[job] = "someone-elses-job"
    (fake_slurm / "names.json").write_text(json.dumps(names))
    set_jobs(fake_slurm, {job: ["RUNNING", "None", "node1"]})
    assert main(["study", config, "--executor", "slurm"]) == 0


def test_no_sbatch_on_path_is_one_line_saying_what_was_looked_for(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code = main(["study", str(study(tmp_path)), "--executor", "slurm"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "`sbatch` is not on PATH" in err and "--executor local" in err
    assert not (tmp_path / "out").exists()


def test_sbatch_refusing_a_job_keeps_the_record_of_what_was_submitted(
        tmp_path, fake_slurm, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_SBATCH_FAIL_AT", "3")
    assert main(["study", str(study(tmp_path)), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Invalid account" in err and "2 jobs were submitted" in err
    assert list(submission(tmp_path)["jobs"].values()) == ["101", "102"]


@pytest.mark.parametrize("extra, said", [
    (["--shard", "1/2"], "drop --shard"),
    (["--workers", "2"], "--workers is for --executor local"),
    (["--unit", "task.nli.en.ta"], "drop --executor"),
])
def test_executor_slurm_refuses_options_of_other_runs(tmp_path, fake_slurm, capsys, extra, said):
    assert main(["study", str(study(tmp_path)), "--executor", "slurm", *extra]) == 2
    assert said in capsys.readouterr().err
    assert not calls(fake_slurm, "sbatch")


# -- the job script ---------------------------------------------------------------------


def test_a_job_on_a_node_without_the_study_directory_fails_in_one_line(tmp_path, fake_slurm):
    assert main(["study", str(study(tmp_path)), "--executor", "slurm"]) == 0
    out = tmp_path / "out"
    (out / "slurm" / submission(tmp_path)["marker"]).unlink()  # what such a node sees
    result = subprocess.run(["bash", str(out / "slurm" / "job.sh"), "--unit", "task.nli.en.ta"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "must be on a file system every node shares" in lines[0]
    assert str(out.resolve()) in lines[0]


# -- status, finish ---------------------------------------------------------------------


def test_status_tells_each_unit_s_state_from_records_and_slurm(tmp_path, fake_slurm, capsys,
                                                                monkeypatch):
    import langtransfer.study.status as status

    config = str(study(tmp_path))
    assert main(["study", config, "--executor", "slurm"]) == 0
    job = submission(tmp_path)["jobs"]
    out = tmp_path / "out"
    built = {"language:prompt/en", "task:nli/en/slp+ta"}
    monkeypatch.setattr(status, "is_done", lambda art: art.id in built)
    log = out / "slurm" / "logs" / f"language.prompt.sk.{job['language.prompt.sk']}.log"
    log.write_text("langtransfer: job started\nTraceback ...\nOSError: corpus sk.txt missing\n")
    set_jobs(fake_slurm, {
        job["language.prompt.en"]: ["COMPLETED", "None", "n1"],
        job["language.prompt.sk"]: ["FAILED", "NonZeroExitCode", "n1", 1],
        job["task.nli.en.ta"]: ["FAILED", "NonZeroExitCode", "n2", 78],
        job["task.nli.en.slp+ta"]: ["COMPLETED", "None", "n1"],
        job["evaluate.nli.en.base"]: ["RUNNING", "None", "n2"],
        job["evaluate.nli.en.ta"]: ["CANCELLED", "DependencyNeverSatisfied", ""],
        job["evaluate.nli.en.slp+ta"]: ["PENDING", "Dependency", ""],
    })
    capsys.readouterr()
    assert main(["study", config, "--status"]) == 1  # something failed
    text = capsys.readouterr().out
    lines = {line.split()[1]: line for line in text.splitlines()[1:] if line.startswith("  ")}
    assert "7 units: 2 done, 1 running, 1 pending, 2 failed, 1 blocked, 0 missing" in text
    assert lines["language.prompt.sk"].split()[0] == "failed"
    assert "OSError: corpus sk.txt missing" in lines["language.prompt.sk"]
    assert lines["task.nli.en.ta"].split()[0] == "failed"
    assert "must be on a file system every node shares" in lines["task.nli.en.ta"]
    assert lines["evaluate.nli.en.ta"].split()[0] == "blocked"
    assert "by task.nli.en.ta" in lines["evaluate.nli.en.ta"]
    assert lines["evaluate.nli.en.base"].split()[:2] == ["running", "evaluate.nli.en.base"]
    assert f"job {job['evaluate.nli.en.base']} on n2" in lines["evaluate.nli.en.base"]
    assert lines["evaluate.nli.en.slp+ta"].split()[0] == "pending"
    assert "(Dependency)" in lines["evaluate.nli.en.slp+ta"]
    assert "language.prompt.en" not in lines  # done units are counted, not listed

    # The last job records what no process recorded, as a local run does.
    set_jobs(fake_slurm, {**json.loads((fake_slurm / "jobs.json").read_text()),
                          job["evaluate.nli.en.base"]: ["COMPLETED", "None", "n2"],
                          job["evaluate.nli.en.slp+ta"]: ["FAILED", "NonZeroExitCode", "n1", 1]})
    built |= {f"evaluation:nli/base/en/{t}" for t in ("en", "sk")}
    built |= {"evaluation:nli/slp+ta/en/en"}
    assert main(["study", config, "--finish", "--no-report"]) == 0
    failures = {f.artefact: f for f in read_failures(out)}
    assert failures["language:prompt/sk"].status == FAILED
    assert "OSError: corpus sk.txt missing" in failures["language:prompt/sk"].error
    assert failures["task:nli/en/ta"].status == FAILED
    assert {a: f.blocked_by for a, f in failures.items() if f.status == BLOCKED} == {
        "evaluation:nli/ta/en/en": ("task:nli/en/ta",),
        "evaluation:nli/ta/en/sk": ("task:nli/en/ta",),
        "evaluation:nli/slp+ta/en/sk": ("language:prompt/sk",),
    }


def test_status_without_a_submission_reads_the_study_directory(tmp_path, capsys):
    assert main(["study", str(study(tmp_path)), "--status"]) == 0
    text = capsys.readouterr().out
    assert "7 units: 0 done, 0 running, 0 pending, 0 failed, 0 blocked, 7 missing" in text
    assert "not built and not submitted" in text


def test_cancel_without_a_submission_says_so(tmp_path, capsys):
    assert main(["study", str(study(tmp_path)), "--cancel"]) == 2
    assert "no Slurm submission" in capsys.readouterr().err
