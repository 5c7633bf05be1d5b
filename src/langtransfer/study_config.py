"""The study configuration (YAML): what grid to run and with which settings.

Every key is checked before any training starts: an unknown key, language, task or
configuration is an error that names it and lists the valid values.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from langtransfer.compose import STUDY_CONFIGURATIONS, configuration_kinds
from langtransfer.errors import DataFormatError, LangTransferError, UnknownNameError
from langtransfer.languages import get_language
from langtransfer.representations import AdapterSpec, PromptConfig
from langtransfer.train import TrainSettings, default_settings

PROMPT_KEYS = ("num_tokens", "init")
ADAPTER_KEYS = ("config", "reduction_factor")
TRAIN_KEYS = tuple(f.name for f in fields(TrainSettings))
KIND_KEYS = {"prompt": PROMPT_KEYS + TRAIN_KEYS, "adapter": ADAPTER_KEYS + TRAIN_KEYS}


@dataclass
class StudyConfig:
    """One transfer study: languages × tasks × configurations on one base model.

    ``corpus`` is ``wikipedia`` (streamed), ``fixtures`` (the shipped text), or a mapping
    language -> file. ``data`` is ``hub`` (the paper's sources), ``fixtures``, or a mapping
    task -> language -> split -> file. ``language_training`` and ``task_training`` map a
    representation kind (``prompt``/``adapter``) to overrides of the paper's settings.
    """

    output: str
    model: str = "bigscience/mt0-base"
    sources: list[str] = field(default_factory=lambda: ["en"])
    targets: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    configurations: list[str] = field(default_factory=lambda: list(STUDY_CONFIGURATIONS))
    seed: int = 42
    sequence_length: int = 256
    corpus: Any = "wikipedia"
    max_documents: int | None = None
    validation_documents: int = 100
    data: Any = "hub"
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    language_training: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_training: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)

    # -- derived -------------------------------------------------------------------------

    def language_kinds(self) -> set[str]:
        return {k for c in self.configurations if (k := configuration_kinds(c)[0])}

    def train_settings(self, role: str, kind: str) -> TrainSettings:
        table = self.language_training if role == "language" else self.task_training
        overrides = {k: v for k, v in table.get(kind, {}).items() if k in TRAIN_KEYS}
        overrides.setdefault("seed", self.seed)
        return default_settings(kind, role, **overrides)

    def prompt_config(self, role: str, init_text: str) -> PromptConfig:
        table = self.language_training if role == "language" else self.task_training
        values = {k: v for k, v in table.get("prompt", {}).items() if k in PROMPT_KEYS}
        return PromptConfig(init_text=init_text, seed=self.seed, **values)

    def adapter_spec(self, role: str) -> AdapterSpec:
        table = self.language_training if role == "language" else self.task_training
        return AdapterSpec(**{k: v for k, v in table.get("adapter", {}).items() if k in ADAPTER_KEYS})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> str:
        """A hash of everything but the output directory: studies with different settings
        must not share an output directory."""
        d = self.to_dict()
        d.pop("output")
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_kind_tables(name: str, value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise LangTransferError(f"{where}: {name} must be a mapping of prompt/adapter settings")
    for kind, settings in value.items():
        if kind not in KIND_KEYS:
            raise UnknownNameError(f"representation kind in {name}", kind, KIND_KEYS)
        for key in settings or {}:
            if key not in KIND_KEYS[kind]:
                raise UnknownNameError(f"key in {name}.{kind}", key, KIND_KEYS[kind])


def validate(config: StudyConfig, where: str = "study config") -> StudyConfig:
    """Check names and value shapes; normalise language codes. Raises before any work."""
    from langtransfer.tasks.registry import get_task

    if not config.targets:
        raise LangTransferError(f"{where}: 'targets' lists no target language")
    if not config.tasks:
        raise LangTransferError(f"{where}: 'tasks' lists no task")
    config.sources = [get_language(c).code for c in config.sources]
    config.targets = [get_language(c).code for c in config.targets]
    for task in config.tasks:
        get_task(task)
    for c in config.configurations:
        if c not in STUDY_CONFIGURATIONS:
            raise UnknownNameError("configuration", c, STUDY_CONFIGURATIONS)
    if not config.sources:
        raise LangTransferError(f"{where}: 'sources' lists no source language")
    _check_kind_tables("language_training", config.language_training, where)
    _check_kind_tables("task_training", config.task_training, where)
    if config.sequence_length < 16:
        raise LangTransferError(f"{where}: sequence_length {config.sequence_length} is below 16")
    for role in ("language", "task"):
        for kind in ("prompt", "adapter"):
            config.train_settings(role, kind)  # raises on bad values
        config.adapter_spec(role)
    return config


def load_study_config(path: str | Path, **overrides: Any) -> StudyConfig:
    """Read and validate a study YAML file; ``overrides`` replace top-level keys."""
    path = Path(path)
    if not path.is_file():
        raise LangTransferError(f"study config {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise DataFormatError(path, f"not valid YAML ({e})", None if line is None else line + 1) from e
    if not isinstance(raw, dict):
        raise DataFormatError(path, "a study config is a mapping of keys to values")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    valid = [f.name for f in fields(StudyConfig)]
    for key in raw:
        if key not in valid:
            raise UnknownNameError(f"key in {path}", key, valid)
    if "output" not in raw:
        raise DataFormatError(path, "missing 'output' (the study directory)")
    if not Path(raw["output"]).is_absolute():
        # Relative outputs are relative to the working directory, as on the command line.
        raw["output"] = str(Path(raw["output"]))
    for key in ("sources", "targets", "tasks", "configurations"):
        if isinstance(raw.get(key), str):
            raw[key] = [raw[key]]
    return validate(StudyConfig(**raw), str(path))
