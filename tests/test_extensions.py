"""A user's task module and languages file work from every verb and from a study config.

The runnable example in ``examples/custom-task/`` is run here exactly as its README
lists it.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil

import pytest
import yaml
from conftest import REPO

from langtransfer.cli import main
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.study.load import load_study_config

EXAMPLE = REPO / "examples" / "custom-task"


@pytest.fixture
def registries():
    """Each test starts from the built-in tasks and languages and leaves them so."""
    from langtransfer import languages
    from langtransfer.tasks import extensions, registry

    saved = dict(registry._REGISTRY), dict(languages._REGISTRY), dict(extensions._LOADED)
    yield
    for target, copy in zip((registry._REGISTRY, languages._REGISTRY, extensions._LOADED),
                            saved, strict=True):
        target.clear()
        target.update(copy)


@pytest.fixture
def workdir(tmp_path, monkeypatch, registries):
    """A working directory holding a copy of the example, as the repository root does."""
    shutil.copytree(EXAMPLE, tmp_path / "examples" / "custom-task")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def readme_commands() -> list[list[str]]:
    text = (EXAMPLE / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [
        shlex.split(line)[1:] for line in block.splitlines() if line.startswith("langtransfer ")
    ]


def test_the_example_runs_from_every_verb(workdir, capsys):
    commands = readme_commands()
    verbs = [c[0] for c in commands]
    assert verbs == ["languages", "train-language", "train-task", "evaluate", "score", "study",
                     "report"]
    outputs = {}
    for argv in commands:
        assert main(argv) == 0, argv
        outputs[argv[0]] = capsys.readouterr().out
    assert re.search(r"^hsb\s+Upper Sorbian\s+Latin\s+Slavic", outputs["languages"], re.M)
    manifest = json.loads((workdir / "runs/custom/slp-hsb/manifest.json").read_text())
    assert manifest["language"] == "hsb"
    assert json.loads((workdir / "runs/custom/ta-sentiment/manifest.json").read_text())["task"] \
        == "sentiment"
    metrics = json.loads((workdir / "runs/custom/eval-hsb/metrics.json").read_text())
    assert metrics["task"] == "sentiment" and metrics["language"] == "hsb"
    assert metrics["configuration"] == "slp+ta" and metrics["n_examples"] == 6
    assert re.search(r"^n_examples\s+6$", outputs["score"], re.M)
    records = sorted((workdir / "runs/custom-task/results/sentiment").rglob("*.json"))
    assert [p.relative_to(workdir / "runs/custom-task/results").as_posix() for p in records] == [
        f"sentiment/{c}/en__{t}.json" for c in ("base", "slp+ta", "ta") for t in ("en", "hsb")]
    # The report groups the new language by the script and family its file gives.
    scripts = (workdir / "runs/custom-task/report/summary/scripts.csv").read_text()
    families = (workdir / "runs/custom-task/report/summary/families.csv").read_text()
    assert "unknown" not in scripts + families and "Slavic" in families


def test_without_the_extensions_the_names_are_unknown(workdir, capsys):
    argv = ["evaluate", "--task", "sentiment", "--language", "en", "--model", "tiny",
            "--data", "examples/custom-task/data", "--output", "x"]
    assert main(argv) == 2
    assert "unknown task 'sentiment'" in capsys.readouterr().err
    config = yaml.safe_load((workdir / "examples/custom-task/study.yaml").read_text())
    del config["languages_file"]
    (workdir / "bare.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(UnknownNameError, match="unknown language 'hsb'"):
        load_study_config(workdir / "bare.yaml")


def test_a_module_named_twice_registers_once(workdir):
    config = load_study_config(workdir / "examples/custom-task/study.yaml")
    assert config.tasks == ["sentiment"] and config.targets == ["en", "hsb"]
    # The same file from the command line and the config: no "already registered".
    assert main(["study", "examples/custom-task/study.yaml", "--dry-run",
                 "--task-module", "examples/custom-task/sentiment.py",
                 "--languages-file", "examples/custom-task/languages.yaml"]) == 0


def test_a_module_by_name_works_too(workdir, monkeypatch):
    from langtransfer.tasks.extensions import load_task_module

    monkeypatch.syspath_prepend(str(workdir / "examples" / "custom-task"))
    assert load_task_module("sentiment") == ["sentiment"]
    assert load_task_module("sentiment") == ["sentiment"]  # imported once


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        (None, r"task module .*nothere\.py does not exist"),
        ("x = 1\n", r"task module .*bad\.py registered no task: it must call .*register_task"),
        ("raise ValueError('no config for you')\n",
         r"task module .*bad\.py failed to import: ValueError: no config for you"),
        ("import not_a_module_anywhere\n",
         r"task module .*bad\.py: ModuleNotFoundError: No module named 'not_a_module_anywhere'"),
    ],
)
def test_bad_task_modules_are_one_line_errors(workdir, capsys, source, pattern):
    path = workdir / ("nothere.py" if source is None else "bad.py")
    if source is not None:
        path.write_text(source)
    argv = ["score", "--task-module", str(path), "--task", "nli", "--language", "en",
            "--source", "fixtures", "--predictions", "p.jsonl"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(pattern, err), err
    from langtransfer.tasks.extensions import load_task_module

    with pytest.raises(LangTransferError, match=pattern):
        load_task_module(str(path))


def test_languages_register_is_the_same_as_languages_file(workdir, capsys):
    assert main(["languages", "--register", "examples/custom-task/languages.yaml", "--json"]) == 0
    assert "hsb" in {row["code"] for row in json.loads(capsys.readouterr().out)}
