"""``study --executor local``: the study's graph on worker processes of one machine."""

from __future__ import annotations

import json
import os
import re
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


def failures(out: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {f.artefact: (f.status, f.blocked_by) for f in read_failures(out)}


def test_two_workers_give_the_sequential_run_even_with_a_failure_and_killed_workers(
    tmp_path,
):
    """A config-level fault (sk's corpus file is missing) fails one language
    representation and blocks exactly the cell needing it, and workers SIGKILLed
    mid-training are replaced and their units run again: records, predictions and
    failure records are the sequential run's."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    values = {"corpus": {"en": str(fixture_path("en")), "sk": str(corpus / "sk.txt")}}
    sequential = load_study_config(small(tmp_path, "sequential.yaml",
                                         output=str(tmp_path / "seq"), **values))
    run = run_study(sequential, progress=False)
    assert run.counts == {"built": 8, "skipped": 0, "failed": 1, "blocked": 1}
    expected = outputs(tmp_path / "seq")
    assert len(expected) == 10  # 5 records, 5 prediction files
    assert failures(tmp_path / "seq") == {
        "language:prompt/sk": ("failed", ()),
        "evaluation:nli/slp+ta/en/sk": ("blocked", ("language:prompt/sk",))}

    config = small(tmp_path, **values)
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "langtransfer", "study", str(config), "--executor", "local",
           "--workers", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    checkpoints, killed = tmp_path / "out" / "checkpoints", None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and killed is None:
        # mid-training: a checkpoint is written, the training goes on
        if checkpoints.exists() and any(checkpoints.rglob("checkpoint-*")):
            running = workers_of(proc.pid)
            if running:  # both: the run is not over, so one at least dies with its unit
                killed = running
                for pid in running:
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    text, _ = proc.communicate(timeout=300)
    assert killed is not None, text
    assert proc.returncode == 1, text  # an artefact failed
    assert "died (exit code -9)" in text and "running it again" in text
    # a unit run again counts what its killed worker had built as already done
    counts = re.search(r"(\d+) artefacts built, (\d+) already done, 1 failed, 1 blocked", text)
    assert counts and int(counts[1]) + int(counts[2]) == 8, text
    assert "failed: language:prompt/sk: LangTransferError: corpus file" in text
    assert "## Failures" in (tmp_path / "out" / "report" / "report.md").read_text()
    assert outputs(tmp_path / "out") == expected
    assert failures(tmp_path / "out") == failures(tmp_path / "seq")


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
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out" / "results").exists()


def test_a_device_without_a_gpu_is_an_error(tmp_path, capsys):
    """On this CPU machine no GPU is visible: the worker says so, nothing is built."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    assert main(["study", str(small(tmp_path)), "--executor", "local", "--devices", "0",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "a study worker could not start: LangTransferError: device 0: no GPU is visible " \
        "with CUDA_VISIBLE_DEVICES=0" in err
    assert not (tmp_path / "out" / "results").exists()


def test_parse_devices():
    assert parse_devices("0, 1,GPU-3a") == ["0", "1", "GPU-3a"]
    with pytest.raises(LangTransferError, match="comma-separated"):
        parse_devices("")
