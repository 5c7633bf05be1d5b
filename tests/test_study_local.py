"""``study --executor local``: the study's graph on worker processes of one machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_study import small

from langtransfer.cli import main
from langtransfer.errors import LangTransferError
from langtransfer.results.failures import read_failures
from langtransfer.study.graph import Unit
from langtransfer.study.load import load_study_config
from langtransfer.study.local import parse_devices
from langtransfer.study.run import run_study
from langtransfer.training.corpora import fixture_path

REPO = Path(__file__).resolve().parents[1]


def outputs(out: Path) -> dict[str, object]:
    """Every result record's metrics and counts, and every cell's predictions, by path."""
    found: dict[str, object] = {}
    for path in sorted((out / "results").rglob("*.json")):
        r = json.loads(path.read_text())
        found[path.relative_to(out).as_posix()] = {
            k: r[k] for k in ("metrics", "n_examples", "n_unparseable", "settings_hash")}
    for path in sorted((out / "predictions").rglob("predictions.jsonl")):
        found[path.relative_to(out).as_posix()] = path.read_text()
    return found


def workers_of(pid: int) -> list[int]:
    """The spawned worker processes among ``pid``'s children (not its resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def test_two_workers_give_the_sequential_results_and_survive_a_killed_worker(tmp_path):
    sequential = load_study_config(small(tmp_path, "sequential.yaml", output=str(tmp_path / "seq")))
    assert run_study(sequential, progress=False).counts["built"] == 10
    expected = outputs(tmp_path / "seq")
    assert len(expected) == 12  # 6 records, 6 prediction files

    config = small(tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "langtransfer", "study", str(config), "--executor", "local",
           "--workers", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    results, killed = tmp_path / "out" / "results", None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and killed is None:
        if results.exists() and any(results.rglob("*.json")):
            running = workers_of(proc.pid)
            if running:
                killed = running[0]
                os.kill(killed, signal.SIGKILL)  # a worker dies with its unit
        time.sleep(0.05)
    text, _ = proc.communicate(timeout=300)
    assert killed is not None, text
    assert proc.returncode == 0, text
    assert "died (exit code -9)" in text and "running it again" in text
    assert "0 failed, 0 blocked" in text
    assert (tmp_path / "out" / "report" / "report.md").is_file()  # reported at the end
    assert outputs(tmp_path / "out") == expected

    # A rerun finds everything built and starts no worker.
    assert main(["study", str(config), "--executor", "local", "--workers", "2", "--quiet",
                 "--no-report"]) == 0


def test_a_failing_artefact_blocks_exactly_its_dependants(tmp_path, capsys):
    missing = tmp_path / "sk.txt"
    config = small(tmp_path, configurations=["base", "slp+ta"],
                   corpus={"en": str(fixture_path("en")), "sk": str(missing)})
    code = main(["study", str(config), "--executor", "local", "--workers", "2", "--quiet"])
    captured = capsys.readouterr()
    assert code == 1, captured
    assert "5 artefacts built, 0 already done, 1 failed, 1 blocked" in captured.out
    failures = {f.artefact: f for f in read_failures(tmp_path / "out")}
    assert set(failures) == {"language:prompt/sk", "evaluation:nli/slp+ta/en/sk"}
    assert failures["language:prompt/sk"].status == "failed"
    assert str(missing) in failures["language:prompt/sk"].error
    assert failures["evaluation:nli/slp+ta/en/sk"].blocked_by == ("language:prompt/sk",)
    built = sorted(p.relative_to(tmp_path / "out" / "results").as_posix()
                   for p in (tmp_path / "out" / "results").rglob("*.json"))
    assert built == ["nli/base/en__en.json", "nli/base/en__sk.json", "nli/slp+ta/en__en.json"]
    assert "## Failures" in (tmp_path / "out" / "report" / "report.md").read_text()


def test_the_schedule_takes_the_longest_path_and_keeps_a_workers_base():
    from langtransfer.study.local import _Schedule

    def unit(uid, path, model="a", deps=()):
        return Unit(uid, "train", (), tuple(deps), 1.0, path, model)

    schedule = _Schedule([unit("x", 5), unit("y", 9, "b"), unit("z", 7),
                          unit("w", 1, deps=["x", "y"])])
    assert schedule.take("a").id == "z"  # the longest path of the worker's base
    assert schedule.take("c").id == "y"  # no unit of its base: the longest overall
    assert schedule.take("a").id == "x"
    assert schedule.take("a") is None  # w waits for x and y
    schedule.finished(unit("x", 5))
    assert schedule.take("a") is None
    schedule.finished(unit("y", 9, "b"))
    assert schedule.take("b").id == "w"


@pytest.mark.parametrize(("argv", "message"), [
    (["--devices", "0,1"], "--devices needs --executor local"),
    (["--executor", "local"], "needs --devices 0,1,... .* or --workers N"),
    (["--executor", "local", "--workers", "2", "--shard", "1/2"], "drop --shard"),
    (["--executor", "local", "--devices", "0,,1"], "comma-separated"),
    (["--executor", "local", "--devices", "0,1,0"], "names 0 twice"),
    (["--executor", "local", "--workers", "0"], "--workers 0: need at least 1"),
])
def test_executor_options_are_checked(tmp_path, capsys, argv, message):
    assert main(["study", str(small(tmp_path)), *argv]) == 2
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)
    assert not (tmp_path / "out" / "results").exists()


def test_parse_devices():
    assert parse_devices("0, 1,GPU-3a") == ["0", "1", "GPU-3a"]
    with pytest.raises(LangTransferError, match="comma-separated"):
        parse_devices("")
