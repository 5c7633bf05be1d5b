"""Typed study jobs: every option of the study config reaches a job, its hash and the builder.

The options are found by introspection (StudyConfig's fields, the per-kind training
keys, the evaluation keys), not listed by hand, so an option added later without being
wired to a job makes ``test_every_option_reaches_the_hash_and_the_builder`` fail.
"""

from __future__ import annotations

import inspect
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from langtransfer.errors import UnknownNameError
from langtransfer.study.build import StudyBuilder
from langtransfer.study.config import (
    EVALUATION_KEYS,
    LANGUAGE_UNUSED,
    ROLE_KEYS,
    EvaluationSettings,
    StudyConfig,
)
from langtransfer.study.jobs import job_settings, plan
from langtransfer.study.load import load_study_config
from langtransfer.training.trainer import TrainSettings

BASE: dict[str, Any] = {
    "model": "tiny",
    "sources": ["en"],
    "targets": ["en", "sk"],
    "tasks": ["nli"],
    "configurations": ["base", "ta", "stp", "la+ta", "la+stp", "slp+ta", "slp+stp"],
    "corpus": "fixtures",
    # Per split, so each split's file is an option of its own (validation included).
    "data": {"nli": {"en": {"train": "fixtures", "validation": "fixtures", "test": "fixtures"},
                     "sk": {"test": "fixtures"}}},
    "sequence_length": 64,
    "validation_documents": 3,
    "max_train_examples": 16,
    "max_eval_examples": 6,
    "language_training": {"prompt": {}, "adapter": {}},
    "task_training": {"prompt": {}, "adapter": {}},
    "evaluation": {},
}

#: Options that do not parameterise a job: they choose which jobs exist (grid), where
#: they go (location) or what the registries hold (extensions). Each has its own test.
GRID = {"sources", "targets", "tasks", "configurations", "models", "axes", "composed", "seeds"}
LOCATION = {"output"}
#: Where the study runs: what each Slurm job asks for (changes no job, no hash).
EXECUTION = {"slurm"}
EXTENSIONS = {"task_modules", "languages_file"}

#: Valid other values for options whose values are names (anything else is derived from
#: the current value's type below).
NAMED = {
    "model": ["tiny", "some/other-base"],
    "optimizer": ["adamw", "adafactor"],
    "lr_scheduler": ["linear", "constant"],
    "init": ["text", "vocab", "random"],
    "config": ["seq_bn", "double_seq_bn"],
    "scoring": ["generate", "rank"],
    "init_text": ["Answer in {Language}:", "Work in {Language}:"],
    "report_to": [["none"], ["tensorboard"]],
    "corpus": ["fixtures", "wikipedia", {"en": "en.txt", "sk": "sk.txt", "de": "de.txt"}],
    "data": ["hub", "local/nli"],  # "fixtures" is what the per-split base says
    # naming the default ("method") changes no job: tests/test_profiles.py checks that
    "profile": ["reference"],
    "long_inputs": ["first", "last_chunk"],
}


def leaf_changes(tree: dict, new: str) -> list[dict]:
    """Copies of a nested mapping with one leaf at a time replaced by ``new``."""
    out = []
    for key, value in tree.items():
        subs = leaf_changes(value, new) if isinstance(value, dict) else [new]
        out += [{**tree, key: sub} for sub in subs]
    return out


def defaults_of(cls) -> dict[str, Any]:
    return {f.name: getattr(cls(), f.name) for f in fields(cls)}


def options(base: dict[str, Any]) -> list[tuple[tuple[str, ...], Any]]:
    """(path, current value) of every option: top-level keys, per-kind training keys, and
    evaluation keys, with their effective values in ``base``."""
    out: list[tuple[tuple[str, ...], Any]] = []
    config = StudyConfig(output="x", **{k: v for k, v in base.items()})
    for f in fields(StudyConfig):
        if f.name not in ("language_training", "task_training", "evaluation"):
            out.append(((f.name,), getattr(config, f.name)))
    for role in ("language", "task"):
        for kind, keys in ROLE_KEYS[role].items():
            train = config.train_settings(role, kind)
            prompt = {"num_tokens": 50, "init": "text", "init_text": None,
                      "reference_slp_stp_quirk": False}
            adapter = {"config": "seq_bn", "reduction_factor": 16}
            for key in keys:
                current = getattr(train, key) if hasattr(train, key) else {**prompt, **adapter}[key]
                out.append(((f"{role}_training", kind, key), current))
    evaluation = config.evaluation_settings()
    for key in EVALUATION_KEYS:
        out.append((("evaluation", key), getattr(evaluation, key)))
    return out


def alternatives(name: str, current: Any) -> list[Any]:
    """Other valid values of an option (fails for an option with no known alternative)."""
    if name in NAMED:
        extra = leaf_changes(current, "local/file.jsonl") if isinstance(current, dict) else []
        return [v for v in NAMED[name] + extra if v != current]
    if isinstance(current, bool):
        return [not current]
    if isinstance(current, int):
        return [current + 1]
    if isinstance(current, float):
        return [current * 2 if current else 0.25]
    if current is None:
        return [3]
    raise AssertionError(f"no alternative value for option {name!r} ({current!r}): add one")


def config_with(tmp_path: Path, path: tuple[str, ...], value: Any, name: str) -> StudyConfig:
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    raw["output"] = str(tmp_path / "out")
    if path == ("models",):
        raw.pop("model")  # one or the other
    if path[0] == "evaluation" and path[1] == "scoring":
        raw["tasks"] = ["nli"]  # ranking needs a classification task: nli is one
    target = raw
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    file = tmp_path / f"{name}.yaml"
    file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_study_config(file)


class RecordingBuilder(StudyBuilder):
    """The real builder with the training/evaluation functions replaced by recorders."""

    def __init__(self, study_dir: Path, monkeypatch: pytest.MonkeyPatch):
        super().__init__(study_dir)
        self.calls: dict[str, dict[str, Any]] = {}
        self._current = ""

        def recorder(kind: str):
            def record(**kwargs: Any) -> Any:
                kwargs.pop("settings_hash", None)  # differs whenever anything does
                self.calls[self._current] = {"call": kind, **_plain(kwargs)}
                return {} if kind == "evaluate" else kwargs["output"]
            return record

        def write_record(study_dir: Any, record: dict) -> None:
            self.calls[self._current]["record"] = {
                k: v for k, v in record.items() if k != "settings_hash"}

        import langtransfer.inference.evaluate as evaluate_module
        import langtransfer.results.records as results_module
        import langtransfer.training.language as language_module
        import langtransfer.training.task as task_module

        monkeypatch.setattr(language_module, "train_language", recorder("train_language"))
        monkeypatch.setattr(task_module, "train_task", recorder("train_task"))
        monkeypatch.setattr(evaluate_module, "evaluate", recorder("evaluate"))
        monkeypatch.setattr(results_module, "write_record", write_record)

    def model(self, name: str) -> Any:
        return f"<base {name}>"

    def __call__(self, art) -> None:
        self._current = art.id
        super().__call__(art)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value


def builder_calls(config: StudyConfig, monkeypatch) -> dict[str, dict[str, Any]]:
    with monkeypatch.context() as m:
        builder = RecordingBuilder(Path(config.output), m)
        for art in plan(config):
            builder(art)
    return builder.calls


def test_the_walk_finds_every_option():
    found = {p for p, _ in options(BASE)}
    top = {p[0] for p in found if len(p) == 1}
    assert top | {"language_training", "task_training", "evaluation"} == {
        f.name for f in fields(StudyConfig)}
    # Every TrainSettings field is an option of task training, every one language
    # training uses is one of language training, and every evaluation setting is one.
    for kind in ("prompt", "adapter"):
        for f in fields(TrainSettings):
            assert ("task_training", kind, f.name) in found
            assert (("language_training", kind, f.name) in found) == (f.name not in LANGUAGE_UNUSED)
    assert {p[1] for p in found if p[0] == "evaluation"} == {
        f.name for f in fields(EvaluationSettings)
    }
    assert ("task_training", "prompt", "init") in found
    assert ("task_training", "prompt", "reference_slp_stp_quirk") in found
    assert ("language_training", "prompt", "reference_slp_stp_quirk") not in found
    assert len(found) > 90


def test_every_option_reaches_the_hash_and_the_builder(tmp_path, monkeypatch):
    reference = config_with(tmp_path, ("seed",), 42, "reference")
    ref_arts = {a.id: a for a in plan(reference)}
    ref_calls = builder_calls(reference, monkeypatch)
    assert set(ref_calls) == set(ref_arts)
    checked = 0
    for path, current in options(BASE):
        if path[0] in GRID | LOCATION | EXECUTION | EXTENSIONS:
            continue
        for i, value in enumerate(alternatives(path[-1], current)):
            what = f"{'.'.join(path)} = {value!r}"
            config = config_with(tmp_path, path, value, f"c{checked}_{i}")
            arts = {a.id: a for a in plan(config)}
            assert set(arts) == set(ref_arts), what  # not a grid option
            calls = builder_calls(config, monkeypatch)
            changed = [
                i for i in arts if job_settings(arts[i].job) != job_settings(ref_arts[i].job)
            ]
            assert changed, f"{what} reaches no job"
            for aid in arts:
                if aid in changed:
                    assert arts[aid].hash != ref_arts[aid].hash, f"{what}: {aid} hash unchanged"
                    assert calls[aid] != ref_calls[aid], f"{what}: {aid} builder call unchanged"
                else:  # nothing outside the job reaches the builder
                    assert calls[aid] == ref_calls[aid], f"{what}: {aid} changed outside its job"
                if arts[aid].hash == ref_arts[aid].hash:
                    assert not set(arts[aid].deps) & set(changed)
            checked += 1
    assert checked > 90


def test_grid_location_and_extension_options_are_the_only_others(tmp_path):
    top = {f.name for f in fields(StudyConfig)}
    assert top >= GRID | LOCATION | EXECUTION | EXTENSIONS
    reference = {a.id: a for a in plan(config_with(tmp_path, ("seed",), 42, "r"))}
    for name in sorted(GRID):
        value = {"sources": ["en", "de"], "targets": ["en", "sk", "ru"],
                 "tasks": ["nli", "checkworthiness"],
                 "configurations": ["base", "slp+stp"], "models": ["tiny", "some/base"],
                 "axes": {"init": ["vocab"], "corpus_size": ["10"]},
                 "composed": [{"language": "sk"}], "seeds": [42, 43]}[name]
        arts = {a.id: a for a in plan(config_with(tmp_path, (name,), value, name))}
        assert set(arts) != set(reference), name
        # Jobs in both grids are the same jobs.
        assert all(arts[i].hash == reference[i].hash for i in set(arts) & set(reference)), name
    moved = {a.id: a for a in plan(config_with(tmp_path, ("output",), str(tmp_path / "o2"), "o"))}
    assert {i: a.hash for i, a in moved.items()} == {i: a.hash for i, a in reference.items()}
    assert all(moved[i].path != reference[i].path for i in moved)
    slurm = {"partition": "gpu", "gpus": 2, "time": "1-00:00:00", "sbatch": ["--qos=low"]}
    on_slurm = config_with(tmp_path, ("slurm",), slurm, "s")
    assert {a.id: a.hash for a in plan(on_slurm)} == {i: a.hash for i, a in reference.items()}
    assert on_slurm.fingerprint() == config_with(tmp_path, ("seed",), 42, "r2").fingerprint()


def test_task_prompt_init_reaches_train_task(tmp_path, monkeypatch):
    """The option issue 12 found dropped: task_training.prompt.init (and init_text)."""
    config = config_with(tmp_path, ("task_training", "prompt", "init"), "vocab", "v")
    calls = builder_calls(config, monkeypatch)
    prompt = calls["task:nli/en/stp"]["spec"]
    assert prompt["init"] == "vocab" and prompt["num_tokens"] == 50
    config = config_with(tmp_path, ("task_training", "prompt", "init"), "labels", "l")
    prompt = builder_calls(config, monkeypatch)["task:nli/en/slp+stp"]["spec"]
    assert prompt["init"] == "labels" and prompt["label_words"]
    config = config_with(
        tmp_path, ("task_training", "prompt", "init_text"), "Solve in {Language}:", "t"
    )
    prompt = builder_calls(config, monkeypatch)["task:nli/en/la+stp"]["spec"]
    assert prompt["init_text"] == "Solve in English:"


def test_evaluation_defaults_are_evaluates():
    from langtransfer.inference.evaluate import evaluate
    from langtransfer.profiles import get_profile

    params = inspect.signature(evaluate).parameters
    profile = get_profile(None).settings()  # evaluate's None: the default profile's
    for key, value in defaults_of(EvaluationSettings).items():
        default = params[key].default
        assert (profile[key] if default is None and key in profile else default) == value, key


def test_language_training_refuses_keys_it_would_ignore(tmp_path):
    for key in LANGUAGE_UNUSED:
        value = alternatives(key, getattr(TrainSettings(), key))[0]
        with pytest.raises(UnknownNameError, match=f"language_training.prompt '{key}'"):
            config_with(tmp_path, ("language_training", "prompt", key), value, key)
        config_with(tmp_path, ("task_training", "prompt", key), value, key)  # used there


def test_task_prompt_init_works_end_to_end(tmp_path):
    """A real (tiny) run: the trained soft task prompt records the init the config asked."""
    from langtransfer.representations import read_manifest
    from langtransfer.study.run import run_study

    raw = {**yaml.safe_load(yaml.safe_dump(BASE)), "output": str(tmp_path / "out"),
           "configurations": ["stp"], "targets": ["en"], "data": "fixtures",
           "task_training": {"prompt": {"init": "vocab", "num_tokens": 3, "max_steps": 2,
                                        "batch_size": 4, "eval_steps": 2, "save_steps": 2}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    run = run_study(load_study_config(tmp_path / "s.yaml"), progress=False)
    assert run.ok and run.built == 2
    manifest = read_manifest(tmp_path / "out" / "representations" / "task" / "nli" / "en" / "stp")
    assert manifest["prompt"]["init"] == "vocab" and manifest["prompt"]["num_tokens"] == 3
