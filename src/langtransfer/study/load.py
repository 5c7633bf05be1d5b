"""Loading a study YAML: read, parse and validate it, and check that its grid can be
planned, before any work. Separate from :mod:`langtransfer.study.config` (the schema),
so the plan (:mod:`langtransfer.study.jobs`), which reads the schema's types, sits
between the two and no import goes in a circle."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from langtransfer.configurations import get_configuration
from langtransfer.errors import DataFormatError, LangTransferError, UnknownNameError
from langtransfer.languages import get_language
from langtransfer.study.config import (
    StudyConfig,
    check_settings,
    check_types,
    combined_specs,
    parse_models,
)
from langtransfer.study.jobs import plan


def check_bases(config: StudyConfig, where: str) -> None:
    """Each base's settings with its overrides, as the study's are checked; an error
    names the entry."""
    for base in config.bases():
        if not base.overrides:
            continue
        at = f"{where}: models entry {base.label!r}"
        try:
            effective = config.for_base(base)
            check_settings(effective, at)
            effective.variants(at)
        except LangTransferError as e:
            if at not in str(e):
                e.args = (f"{at}: {e}", *e.args[1:])
            raise


def validate(config: StudyConfig, where: str = "study config") -> StudyConfig:
    """Check names and value shapes; normalise language codes. Raises before any work."""
    from langtransfer.tasks.extensions import load_extensions
    from langtransfer.tasks.registry import get_task

    check_types(config, where)
    load_extensions(config.task_modules, config.languages_file)
    if not config.targets:
        raise LangTransferError(f"{where}: 'targets' lists no target language")
    if not config.tasks:
        raise LangTransferError(f"{where}: 'tasks' lists no task")
    config.sources = [get_language(c).code for c in config.sources]
    config.targets = [get_language(c).code for c in config.targets]
    for task in config.tasks:
        get_task(task)
    for c in config.configurations:
        get_configuration(c, study=True)
    if not config.sources:
        raise LangTransferError(f"{where}: 'sources' lists no source language")
    check_settings(config, where)
    combined_specs(config, where)
    config.variants(where)
    check_bases(config, where)
    check_inputs(config)
    return config


def check_inputs(config: StudyConfig) -> None:
    """Every artefact of the grid can be planned: each language has a corpus, each cell
    names its data, each prompt its initialisation (no file is opened)."""
    plan(config)


def load_study_config(path: str | Path, **overrides: Any) -> StudyConfig:
    """Read and validate a study YAML file; ``overrides`` replace top-level keys.

    Every problem raises a :class:`LangTransferError` whose message starts with the file
    (and names the line of a YAML syntax error).
    """
    path = Path(path)
    if not path.is_file():
        raise LangTransferError(f"study config {path} does not exist")
    try:
        raw_bytes = path.read_bytes()
    except OSError as e:
        raise LangTransferError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        text = raw_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw_bytes[: e.start].count(b"\n") + 1
        raise DataFormatError(path, f"not UTF-8 text ({e.reason})", line) from e
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        at = getattr(getattr(e, "problem_mark", None), "line", None)
        where = None if at is None else at + 1
        raise DataFormatError(path, f"not valid YAML ({e})", where) from e
    except RecursionError as e:
        raise DataFormatError(path, "not valid YAML (nested too deeply)") from e
    if not isinstance(raw, dict):
        raise DataFormatError(path, "a study config is a mapping of keys to values")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    valid = [f.name for f in fields(StudyConfig)]
    try:
        for key in raw:
            if key not in valid:
                raise UnknownNameError(f"key in {path}", key, valid)
        if "output" not in raw:
            raise DataFormatError(path, "missing 'output' (the study directory)")
        for key in ("sources", "targets", "tasks", "configurations", "task_modules",
                    "languages_file", "models"):
            if isinstance(raw.get(key), str):
                raw[key] = [raw[key]]
        if "models" in raw:
            if "model" in raw:
                raise LangTransferError(f"{path}: give either 'model' or 'models', not both")
            parse_models(raw["models"])  # an empty list is an error, not the default
        config = validate(StudyConfig(**raw), str(path))
        # Relative outputs are relative to the working directory, as on the command line.
        config.output = str(Path(config.output))
        return config
    except LangTransferError as e:
        if str(path) not in str(e):  # e.g. an unknown language: say which file names it
            e.args = (f"{path}: {e}", *e.args[1:])
        raise
