"""A failing artefact does not end the study: recorded, dependents blocked, others built."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from test_study import FAST

from langtransfer import io as ltio
from langtransfer.cli import main
from langtransfer.results.failures import failure_path, read_failures
from langtransfer.results.records import write_record
from langtransfer.study.load import load_study_config
from langtransfer.study.run import plan, run_study
from langtransfer.tasks import FIXTURES_DIR


def config_file(tmp_path: Path, **values) -> Path:
    raw = {**FAST, "output": str(tmp_path / "out"), "tasks": ["nli"], "targets": ["en", "sk"],
           "configurations": ["base", "ta", "slp+ta"], **values}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


class FakeBuilder:
    """Writes what the real builder would (a manifest, a result record) without training;
    raises on the artefacts in ``fail``."""

    def __init__(self, study_dir: Path, fail: set[str] = frozenset()):
        self.study_dir, self.fail, self.built = study_dir, set(fail), []

    def __call__(self, art) -> None:
        if art.id in self.fail:
            raise RuntimeError(f"boom in {art.id}\nsecond line of the message")
        self.built.append(art.id)
        if art.stage == "evaluation":
            task, configuration, source, target = art.key
            write_record(self.study_dir, {
                "task": task, "configuration": configuration, "source_language": source,
                "target_language": target, "metrics": {"accuracy": 50.0},
                "primary_metric": "accuracy", "n_examples": 1, "n_unparseable": 0,
                "n_truncated": 0, "model": {"name": "fake"},
                "representations": {"language": {} if "+" in configuration else None,
                                    "task": {} if configuration != "base" else None},
                "settings_hash": art.hash, "seed": 42})
        else:
            with ltio.atomic_dir(art.path) as tmp:
                ltio.write_json(tmp / "manifest.json", {
                    "format": "langtransfer.representation", "format_version": 1,
                    "kind": art.key[0] if art.stage == "language" else "adapter",
                    "role": art.stage, "base_model": {"d_model": 64},
                    "settings_hash": art.hash})


def test_failed_artefacts_are_recorded_dependents_blocked_the_rest_built(tmp_path):
    config = load_study_config(config_file(tmp_path))
    out = Path(config.output)
    everything = {a.id for a in plan(config)}
    fail = {"language:prompt/sk", "task:nli/en/ta"}
    builder = FakeBuilder(out, fail)
    run = run_study(config, progress=False, builder=builder)

    assert {f.artefact for f in run.failed} == fail
    blocked = {"evaluation:nli/slp+ta/en/sk", "evaluation:nli/ta/en/en", "evaluation:nli/ta/en/sk"}
    assert {f.artefact for f in run.blocked} == blocked
    assert set(builder.built) == everything - fail - blocked  # nothing else was skipped
    assert run.counts == {"built": len(everything) - 5, "skipped": 0, "failed": 2, "blocked": 3}
    assert not run.ok

    # What, why, the one-line error; blocked ones name what they wait for.
    record = json.loads(failure_path(out, "language:prompt/sk").read_text())
    assert record["status"] == "failed"
    assert record["error"] == "RuntimeError: boom in language:prompt/sk"
    assert "second line" in record["traceback"] and record["settings_hash"]
    blocked_record = json.loads(failure_path(out, "evaluation:nli/slp+ta/en/sk").read_text())
    assert blocked_record["status"] == "blocked"
    assert blocked_record["blocked_by"] == ["language:prompt/sk"]
    assert {f.artefact for f in read_failures(out)} == fail | blocked

    # A rerun retries exactly what failed or was blocked; the records go.
    again = FakeBuilder(out)
    rerun = run_study(config, progress=False, builder=again)
    assert set(again.built) == fail | blocked
    assert rerun.ok and rerun.counts["skipped"] == len(everything) - 5
    assert read_failures(out) == [] and not (out / "failures").exists()


def test_a_failing_cell_blocks_nothing_else_and_interrupts_still_stop(tmp_path):
    config = load_study_config(config_file(tmp_path))
    cell = "evaluation:nli/base/en/sk"
    run = run_study(config, progress=False, builder=FakeBuilder(Path(config.output), {cell}))
    assert [f.artefact for f in run.failures] == [cell]

    class Interrupting(FakeBuilder):
        def __call__(self, art) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # not recorded as a failure: the run stops
        run_study(config, progress=False, builder=Interrupting(Path(config.output)))
    assert [f.artefact for f in read_failures(config.output)] == [cell]


def test_missing_data_file_fails_its_cells_through_the_cli(tmp_path, capsys):
    missing = tmp_path / "data" / "sk.test.jsonl"
    path = config_file(tmp_path, configurations=["base", "ta"],
                       data={"nli": {"en": "fixtures", "sk": {"test": str(missing)}}})
    assert main(["study", str(path), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "1 artefacts built" not in captured.out
    assert "2 failed, 0 blocked" in captured.out + captured.err
    assert "\nbase loads: 1\n" in captured.out  # the summary counts them
    assert f"evaluation:nli/base/en/sk: LangTransferError: data file {missing} does not exist" \
        in captured.err
    out = tmp_path / "out"
    built = sorted(
        p.relative_to(out / "results").as_posix() for p in (out / "results").rglob("*.json")
    )
    assert built == ["nli/base/en__en.json", "nli/ta/en__en.json"]  # the en cells ran
    report = (out / "report" / "report.md").read_text()
    assert "## Failures" in report and "evaluation:nli/ta/en/sk" in report
    assert {f["artefact"] for f in json.loads((out / "report" / "report.json").read_text())
            ["failures"]} == {"evaluation:nli/base/en/sk", "evaluation:nli/ta/en/sk"}

    # Put the file in place: the rerun evaluates just the two failed cells.
    missing.parent.mkdir()
    shutil.copy(FIXTURES_DIR / "nli" / "sk.test.jsonl", missing)
    assert main(["study", str(path), "--quiet"]) == 0
    out_text = capsys.readouterr().out
    assert "2 artefacts built, 3 already done, 0 failed, 0 blocked" in out_text
    assert not (out / "failures").exists()
    assert "## Failures" not in (out / "report" / "report.md").read_text()


def test_a_training_that_changes_the_frozen_base_fails_its_artefact(tmp_path, monkeypatch):
    """The builder proves after each trained artefact that the base is unchanged: here a
    (broken) task training writes into the base's weights."""
    import torch

    import langtransfer.training.task as task_training
    from langtransfer.composition.loaded_base import LoadedBase

    real = task_training.train_task

    def corrupting(**kwargs):
        out = real(**kwargs)
        with torch.no_grad():
            next(kwargs["model"].model.parameters()).add_(1.0)
        return out

    monkeypatch.setattr(task_training, "train_task", corrupting)
    config = load_study_config(config_file(tmp_path, configurations=["base", "ta"]))
    loads = LoadedBase.loads
    run = run_study(config, progress=False)
    assert [f.artefact for f in run.failed] == ["task:nli/en/ta"]
    assert run.failed[0].error.startswith(
        "BaseChangedError: training task:nli/en/ta changed the frozen base model's weights")
    assert {f.artefact for f in run.blocked} == {"evaluation:nli/ta/en/en",
                                                 "evaluation:nli/ta/en/sk"}
    assert not (tmp_path / "out" / "representations" / "task" / "nli" / "en" / "ta").exists()
    # The base cells ran on a freshly loaded, unchanged base.
    assert run.base_loads == 2 and LoadedBase.loads - loads == 2
    assert run.counts["built"] == 2
    assert "base loads: 2" in run.summary(config.output)


def test_overwrite_after_editing_the_config_keeps_what_it_reproduces(tmp_path):
    """Fixing a failed cell by editing the config: --overwrite keeps the results the new
    config reproduces and discards the others (a changed cell, a cell left the grid)."""
    missing = tmp_path / "nowhere.jsonl"
    config = load_study_config(config_file(
        tmp_path, targets=["en", "sk", "ru"], configurations=["base", "ta"],
        data={"nli": {"en": "fixtures", "ru": "fixtures", "sk": {"test": str(missing)}}}))
    out = Path(config.output)
    run_study(config, progress=False, builder=FakeBuilder(out, {"evaluation:nli/ta/en/ru"}))
    (out / "predictions" / "nli" / "base" / "en__ru").mkdir(parents=True)
    assert len(list((out / "results").rglob("*.json"))) == 5

    fixed = load_study_config(config_file(tmp_path, targets=["en", "sk"],
                                          configurations=["base", "ta"], data="fixtures"))
    with pytest.raises(Exception, match="different settings.*--overwrite"):
        run_study(fixed, progress=False, builder=FakeBuilder(out))
    again = FakeBuilder(out)
    run = run_study(fixed, progress=False, builder=again, overwrite=True)
    assert sorted(again.built) == ["evaluation:nli/base/en/sk", "evaluation:nli/ta/en/sk"]
    assert run.ok and run.skipped == 3  # the task representation and both en cells
    after = {p.relative_to(out / "results").as_posix() for p in (out / "results").rglob("*.json")}
    assert after == {"nli/base/en__en.json", "nli/ta/en__en.json", "nli/base/en__sk.json",
                     "nli/ta/en__sk.json"}  # ru left the grid: its record and predictions go
    assert not (out / "predictions" / "nli" / "base" / "en__ru").exists()
    assert not (out / "failures").exists()


def test_the_study_quiets_library_logs_for_its_run_only(tmp_path, caplog):
    """transformers/adapters warnings are off while the study runs (one progress bar), and
    the caller's logging levels are back afterwards, also when the run is interrupted."""
    import logging

    config = load_study_config(config_file(tmp_path))
    loggers = {name: logging.getLogger(name) for name in ("transformers", "adapters")}
    before = {name: logger.level for name, logger in loggers.items()}
    loggers["transformers"].setLevel(logging.INFO)  # a caller who wants to hear it
    seen: list[int] = []

    class Interrupting(FakeBuilder):
        def __call__(self, art) -> None:
            seen.append(loggers["transformers"].getEffectiveLevel())
            logging.getLogger("transformers.trainer").warning("per-run chatter")
            if len(seen) == 2:
                raise KeyboardInterrupt
            super().__call__(art)

    try:
        with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
            run_study(config, progress=False, builder=Interrupting(tmp_path / "out"))
        assert seen == [logging.ERROR, logging.ERROR]
        assert "per-run chatter" not in caplog.text
        assert loggers["transformers"].level == logging.INFO
        assert loggers["adapters"].level == before["adapters"]
    finally:
        for name, level in before.items():
            loggers[name].setLevel(level)
