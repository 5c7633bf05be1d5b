"""The study: plan, resume after SIGKILL, shards, bad configs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from langtransfer.cli import main
from langtransfer.errors import LangTransferError, OutputExistsError, UnknownNameError
from langtransfer.study.config import StudyConfig
from langtransfer.study.load import load_study_config
from langtransfer.study.run import is_done, parse_shard, plan, run_study, shard_plan

FAST = {
    "model": "tiny",
    "sources": ["en"],
    "corpus": "fixtures",
    "data": "fixtures",
    "sequence_length": 64,
    "validation_documents": 3,
    "max_train_examples": 16,
    "max_eval_examples": 6,
    "language_training": {
        "prompt": {"max_steps": 4, "batch_size": 4, "num_tokens": 4, "save_steps": 2},
        "adapter": {"max_steps": 4, "batch_size": 4, "learning_rate": 1e-3, "save_steps": 2},
    },
    "task_training": {
        "prompt": {
            "max_steps": 4,
            "batch_size": 4,
            "num_tokens": 4,
            "eval_steps": 2,
            "save_steps": 2,
        },
        "adapter": {"max_steps": 4, "batch_size": 4, "eval_steps": 2, "save_steps": 2},
    },
    "evaluation": {"batch_size": 8, "max_new_tokens": 6},
}


def write_config(path: Path, **values) -> Path:
    path.write_text(yaml.safe_dump({**FAST, **values}), encoding="utf-8")
    return path


def small(tmp_path: Path, name: str = "study.yaml", **values) -> Path:
    defaults = {
        "output": str(tmp_path / "out"),
        "tasks": ["nli"],
        "targets": ["en", "sk"],
        "configurations": ["base", "ta", "slp+ta"],
    }
    return write_config(tmp_path / name, **{**defaults, **values})


# -- the plan -------------------------------------------------------------------------


def test_plan_has_exactly_the_expected_artefacts(tmp_path):
    config = load_study_config(
        small(tmp_path, tasks=["qa", "nli"], targets=["en", "sk", "ru"],
              configurations=["base", "ta", "stp", "la+ta", "la+stp", "slp+ta", "slp+stp"])
    )
    arts = plan(config)
    by_stage = {s: [a for a in arts if a.stage == s] for s in ("language", "task", "evaluation")}
    assert sorted(a.key for a in by_stage["language"]) == sorted(
        (k, lang) for k in ("adapter", "prompt") for lang in ("en", "sk", "ru")
    )
    assert len(by_stage["task"]) == 2 * 6  # every configuration but base, per task
    assert len(by_stage["evaluation"]) == 2 * 7 * 3
    assert len({a.id for a in arts}) == len(arts)  # each artefact listed once
    # Language representations are shared across tasks (and across configurations).
    users = [a for a in by_stage["evaluation"] if "language:prompt/sk" in a.deps]
    assert {a.key[0] for a in users} == {"qa", "nli"}
    assert {a.key[1] for a in users} == {"slp+ta", "slp+stp"}
    # A task representation is trained with the source's language representation.
    la_ta = next(a for a in by_stage["task"] if a.key == ("qa", "en", "la+ta"))
    assert la_ta.deps == ("language:adapter/en",)
    assert next(a for a in by_stage["task"] if a.key == ("qa", "en", "ta")).deps == ()
    # Dependencies come before their users.
    position = {a.id: i for i, a in enumerate(arts)}
    assert all(position[d] < position[a.id] for a in arts for d in a.deps)


def test_settings_change_only_invalidates_what_depends_on_it(tmp_path):
    base = load_study_config(small(tmp_path))
    changed = load_study_config(small(tmp_path, "b.yaml", language_training={
        "prompt": {"max_steps": 5, "batch_size": 4, "num_tokens": 4}}))
    h1 = {a.id: a.hash for a in plan(base)}
    h2 = {a.id: a.hash for a in plan(changed)}
    differ = {i for i in h1 if h1[i] != h2[i]}
    assert "language:prompt/sk" in differ and "task:nli/en/slp+ta" in differ
    assert "evaluation:nli/slp+ta/en/sk" in differ
    assert "task:nli/en/ta" not in differ and "evaluation:nli/base/en/sk" not in differ


def test_shards_partition_the_evaluations(tmp_path):
    config = load_study_config(small(tmp_path, tasks=["qa", "nli"]))
    arts = plan(config)
    evals = {a.id for a in arts if a.stage == "evaluation"}
    parts = [{a.id for a in shard_plan(arts, k, 3) if a.stage == "evaluation"} for k in (1, 2, 3)]
    assert set().union(*parts) == evals
    assert sum(len(p) for p in parts) == len(evals)
    # A shard gets every dependency of its cells.
    for k in (1, 2, 3):
        mine = {a.id for a in shard_plan(arts, k, 3)}
        assert all(d in mine for a in arts if a.id in mine for d in a.deps)
    assert parse_shard("2/4") == (2, 4)
    # A 0-based index (a Slurm array's ${SLURM_ARRAY_TASK_ID}) is written i%n: no index
    # reads two ways, and every shard of a 0-based array maps to one of k/n.
    assert [parse_shard(f"{i}%4") for i in range(4)] == [(k, 4) for k in range(1, 5)]
    with pytest.raises(LangTransferError, match=r"'0/8': k/n counts from 1.*write 0%8"):
        parse_shard("0/8")
    for bad in ("3/2", "x", "1/0", "4%4", "-1%4", "1%0", "1%2/3"):
        with pytest.raises(LangTransferError, match="shard"):
            parse_shard(bad)


# -- bad configs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "pattern"),
    [
        ({"targetz": ["sk"]}, "unknown key.*'targetz'.*targets"),
        ({"targets": ["sk", "xx"]}, "unknown language 'xx'.*sk"),
        ({"tasks": ["qa", "pos"]}, "unknown task 'pos'"),
        ({"configurations": ["slp+ta", "slp"]}, "unknown configuration 'slp'.*slp\\+ta"),
        (
            {"language_training": {"prompt": {"stepz": 3}}},
            "unknown key in language_training.prompt 'stepz'",
        ),
        ({"task_training": {"lora": {}}}, "unknown representation kind.*'lora'"),
    ],
)
def test_bad_configs_fail_before_any_work(tmp_path, capsys, values, pattern):
    path = small(tmp_path, **values)
    assert main(["study", str(path)]) == 2
    err = capsys.readouterr().err
    assert pytest.importorskip("re").search(pattern, err), err
    assert not (tmp_path / "out").exists()
    with pytest.raises(UnknownNameError):
        load_study_config(path)


def test_output_of_a_different_study_is_refused(tmp_path):
    config = load_study_config(small(tmp_path))
    built = []
    run_study(config, builder=lambda a: built.append(a.id), progress=False)
    other = load_study_config(small(tmp_path, "b.yaml", seed=7))
    with pytest.raises(OutputExistsError, match="different settings.*--overwrite"):
        run_study(other, builder=lambda a: None, progress=False)
    assert json.loads((tmp_path / "out" / "study.json").read_text())["config"]["seed"] == 42
    run_study(other, builder=lambda a: None, progress=False, overwrite=True)
    assert json.loads((tmp_path / "out" / "study.json").read_text())["config"]["seed"] == 7


def test_dry_run_prints_counts(tmp_path, capsys):
    assert main(["study", str(small(tmp_path)), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "language representations: 2 (0 done, 2 to build)" in out
    assert "task representations: 2 (0 done, 2 to build)" in out
    assert "evaluations: 6 (0 done, 6 to build)" in out
    assert not (tmp_path / "out").exists()


# -- real runs ---------------------------------------------------------------------------


def _records(out: Path) -> dict[str, dict]:
    records = {}
    for path in sorted((out / "results").rglob("*.json")):
        if path.name.startswith("."):
            continue
        r = json.loads(path.read_text())
        key = f"{r['task']}/{r['configuration']}/{r['source_language']}/{r['target_language']}"
        assert key not in records
        records[key] = {k: r[k] for k in ("metrics", "n_examples", "n_unparseable")}
    return records


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run of the small study."""
    tmp = tmp_path_factory.mktemp("reference")
    config = load_study_config(small(tmp))
    from langtransfer.composition.loaded_base import LoadedBase

    loads = LoadedBase.loads
    run = run_study(config, progress=False)
    assert run.counts == {"built": 10, "skipped": 0, "failed": 0, "blocked": 0}
    # One base for all 10 artefacts, evaluation cells included; nothing loaded another.
    assert run.base_loads == 1 and LoadedBase.loads - loads == 1
    assert "base loads: 1" in run.summary(tmp / "out")
    assert all(is_done(a) for a in plan(config))
    again = run_study(config, progress=False)
    assert again.counts == {"built": 0, "skipped": 10, "failed": 0, "blocked": 0}
    return _records(tmp / "out")


def test_reference_run_writes_every_cell(reference):
    assert len(reference) == 6
    assert all(r["n_examples"] == 6 for r in reference.values())


def test_killed_study_resumes_with_the_same_results(tmp_path, reference):
    config = small(tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "langtransfer", "study", str(config), "--no-report", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = tmp_path / "out" / "results"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if results.exists() and any(results.rglob("*.json")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the study finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _records(tmp_path / "out")
    assert 0 < len(partial) < 6
    assert main(["study", str(config), "--no-report", "--quiet"]) == 0
    assert _records(tmp_path / "out") == reference


def test_two_shards_merge_to_the_unsharded_result(tmp_path, reference):
    from langtransfer.results.records import read_records

    for k in (1, 2):
        out = tmp_path / f"shard{k}"
        assert (
            main(["study", str(small(tmp_path, output=str(out))), "--shard", f"{k}/2", "--quiet"])
            == 0
        )
    parts = [_records(tmp_path / f"shard{k}") for k in (1, 2)]
    assert parts[0] and parts[1] and not parts[0].keys() & parts[1].keys()
    assert {**parts[0], **parts[1]} == reference
    merged = read_records([tmp_path / "shard1", tmp_path / "shard2"])
    assert len(merged) == 6
    assert main(["report", str(tmp_path / "shard1"), str(tmp_path / "shard2"),
                 "--output", str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "report.md").is_file()


def test_study_config_dataclass_defaults_are_the_paper():
    config = StudyConfig(output="x")
    assert config.model == "bigscience/mt0-base"
    assert config.configurations == ["base", "ta", "stp", "la+ta", "la+stp", "slp+ta", "slp+stp"]
    s = config.train_settings("language", "prompt")
    assert (s.max_steps, s.batch_size, s.learning_rate, s.optimizer) == (
        100_000,
        32,
        0.5,
        "adafactor",
    )
    s = config.train_settings("task", "adapter")
    assert (s.max_steps, s.eval_steps, s.keep_best, s.learning_rate) == (50_000, 1000, True, 5e-5)
