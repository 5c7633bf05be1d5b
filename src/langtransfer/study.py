"""The transfer study as a plan of artefacts: language reps -> task reps -> evaluations.

Each artefact is a directory or file with a hash of the settings that produced it. The
runner builds what is missing or stale in dependency order and skips what exists with a
matching hash, so a killed study rerun continues where it stopped. ``shard=(k, n)`` gives
machine ``k`` of ``n`` its own evaluation cells (grouped by task representation) plus
whatever they depend on; artefacts shared by several shards are built once under a lock
file, so shards on a shared file system complete the grid together.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from langtransfer.configurations import configuration_kinds
from langtransfer.errors import CorruptFileError, LangTransferError, OutputExistsError
from langtransfer.io import write_json
from langtransfer.languages import get_language
from langtransfer.locks import file_lock
from langtransfer.representations import read_manifest
from langtransfer.study_config import StudyConfig

STAGES = ("language", "task", "evaluation")
STUDY_FILE = "study.json"


@dataclass(frozen=True)
class Artefact:
    """One unit of work: its stage, its key within the stage, where it goes, what it needs."""

    stage: str
    key: tuple[str, ...]
    path: Path
    settings: dict[str, Any] = field(compare=False, hash=False)
    deps: tuple[str, ...] = ()
    hash: str = ""

    @property
    def id(self) -> str:
        return f"{self.stage}:{'/'.join(self.key)}"


def language_rep_path(study_dir: str | Path, kind: str, language: str) -> Path:
    return Path(study_dir) / "representations" / "language" / kind / language


def task_rep_path(study_dir: str | Path, task: str, source: str, configuration: str) -> Path:
    return Path(study_dir) / "representations" / "task" / task / source / configuration


def _hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _corpus_for(config: StudyConfig, language: str) -> str:
    if isinstance(config.corpus, dict):
        if language not in config.corpus:
            raise LangTransferError(
                f"corpus lists no file for language {language!r}; it has {sorted(config.corpus)}"
            )
        return str(config.corpus[language])
    if config.corpus == "fixtures":
        from langtransfer.corpora import fixture_path

        return str(fixture_path(language))
    if config.corpus == "wikipedia":
        return "wikipedia"
    raise LangTransferError(
        f"corpus {config.corpus!r} must be 'wikipedia', 'fixtures' or a mapping language -> file"
    )


def _data_for(config: StudyConfig, task: str, language: str, split: str) -> str | None:
    """What ``train_task``/``evaluate`` take as ``data``: None (hub), 'fixtures', or a path.

    ``data`` is one value for everything, or a mapping task -> value, where a value is
    ``hub``, ``fixtures``, or a mapping language -> (value, or split -> file). Whatever is
    not listed comes from the hub.
    """
    value: Any = config.data
    for key in (task, language, split):
        if not isinstance(value, dict):
            break
        value = value.get(key, "hub")
    if value in ("hub", None):
        return None
    if isinstance(value, dict):
        raise LangTransferError(
            f"data for task {task!r}, language {language!r} lists no {split!r} split; "
            f"it has {sorted(value)}"
        )
    return str(value)


def plan(config: StudyConfig) -> list[Artefact]:
    """Every artefact of the study in dependency order, each listed once."""
    out = Path(config.output)
    arts: dict[str, Artefact] = {}

    def add(stage: str, key: tuple[str, ...], path: Path, settings: dict, deps: tuple[Artefact, ...]):
        payload = {"stage": stage, "key": key, "settings": settings, "deps": [d.hash for d in deps]}
        art = Artefact(stage, key, path, settings, tuple(d.id for d in deps), _hash(payload))
        return arts.setdefault(art.id, art)

    def language_rep(lang: str, kind: str) -> Artefact:
        settings = {
            "model": config.model,
            "language": lang,
            "kind": kind,
            "corpus": _corpus_for(config, lang),
            "max_documents": config.max_documents,
            "validation_documents": config.validation_documents,
            "sequence_length": config.sequence_length,
            "train": config.train_settings("language", kind).to_dict(),
            "prompt": config.prompt_config("language", get_language(lang).instruction).to_dict()
            if kind == "prompt"
            else None,
            "adapter": config.adapter_spec("language").to_dict() if kind == "adapter" else None,
        }
        return add("language", (kind, lang), language_rep_path(out, kind, lang), settings, ())

    def task_rep(task: str, source: str, configuration: str) -> Artefact:
        lang_kind, task_kind = configuration_kinds(configuration)
        deps = (language_rep(source, lang_kind),) if lang_kind else ()
        settings = {
            "model": config.model,
            "task": task,
            "source": source,
            "configuration": configuration,
            "kind": task_kind,
            "train_data": _data_for(config, task, source, "train"),
            "max_train_examples": config.max_train_examples,
            "sequence_length": config.sequence_length,
            "train": config.train_settings("task", task_kind).to_dict(),
            "prompt_tokens": config.task_training.get("prompt", {}).get("num_tokens"),
            "adapter": config.adapter_spec("task").to_dict() if task_kind == "adapter" else None,
            "seed": config.seed,
        }
        path = task_rep_path(out, task, source, configuration)
        return add("task", (task, source, configuration), path, settings, deps)

    for task in config.tasks:
        for source in config.sources:
            for configuration in config.configurations:
                lang_kind, task_kind = configuration_kinds(configuration)
                for target in config.targets:
                    deps: list[Artefact] = []
                    if task_kind:
                        deps.append(task_rep(task, source, configuration))
                    if lang_kind:
                        deps.append(language_rep(target, lang_kind))
                    settings = {
                        "model": config.model,
                        "task": task,
                        "configuration": configuration,
                        "source": source,
                        "target": target,
                        "test_data": _data_for(config, task, target, "test"),
                        "max_eval_examples": config.max_eval_examples,
                        "evaluation": config.evaluation,
                        "seed": config.seed,
                    }
                    path = out / "results" / task / configuration / f"{source}__{target}.json"
                    add("evaluation", (task, configuration, source, target), path, settings, tuple(deps))
    order = {s: i for i, s in enumerate(STAGES)}
    return sorted(arts.values(), key=lambda a: order[a.stage])


def parse_shard(text: str) -> tuple[int, int]:
    """``"k/n"`` with 1 <= k <= n (a 0-based SLURM array passes ``$((ID+1))/n``)."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise LangTransferError(f"shard {text!r} must look like k/n, e.g. 1/4") from None
    if n < 1 or not 1 <= k <= n:
        raise LangTransferError(f"shard {text!r}: need 1 <= k <= n")
    return k, n


def shard_plan(artefacts: list[Artefact], k: int, n: int) -> list[Artefact]:
    """Shard ``k`` of ``n``: its evaluation cells and everything they depend on.

    Cells are grouped by task representation (task, source, configuration) and the
    groups dealt round-robin, so a task representation is needed by one shard only.
    """
    def group(a: Artefact) -> tuple[str, ...]:  # (task, source, configuration) of a cell
        task, configuration, source, _ = a.key
        return task, source, configuration

    by_id = {a.id: a for a in artefacts}
    cells = [a for a in artefacts if a.stage == "evaluation"]
    groups = sorted({group(a) for a in cells})
    mine = {g for i, g in enumerate(groups) if i % n == k - 1}
    needed: set[str] = set()
    stack = [a.id for a in cells if group(a) in mine]
    while stack:
        aid = stack.pop()
        if aid not in needed:
            needed.add(aid)
            stack.extend(by_id[aid].deps)
    return [a for a in artefacts if a.id in needed]


def is_done(art: Artefact) -> bool:
    """The artefact exists, is complete, and was built from the same settings."""
    try:
        if art.stage == "evaluation":
            record = json.loads(art.path.read_text(encoding="utf-8"))
            return record.get("settings_hash") == art.hash
        return read_manifest(art.path).get("settings_hash") == art.hash
    except (OSError, ValueError, CorruptFileError):
        return False


def describe(artefacts: list[Artefact]) -> str:
    """The plan with counts per stage and what is already done (``--dry-run``)."""
    lines = []
    for stage in STAGES:
        arts = [a for a in artefacts if a.stage == stage]
        done = sum(is_done(a) for a in arts)
        lines.append(f"{stage + ' representations' if stage != 'evaluation' else 'evaluations'}: "
                     f"{len(arts)} ({done} done, {len(arts) - done} to build)")
        lines.extend(f"  {'done ' if is_done(a) else 'todo '} {'/'.join(a.key)}" for a in arts)
    return "\n".join(lines)


def prepare_output(config: StudyConfig, overwrite: bool = False) -> Path:
    """Claim the output directory for this study; refuse one from a study with other settings."""
    out = Path(config.output)
    marker = out / STUDY_FILE
    fingerprint = config.fingerprint()
    if marker.is_file():
        try:
            existing = json.loads(marker.read_text(encoding="utf-8")).get("fingerprint")
        except ValueError:
            existing = None
        if existing != fingerprint:
            if not overwrite:
                raise OutputExistsError(
                    f"{out} holds a study with different settings (fingerprint {existing} vs "
                    f"{fingerprint}); use another output directory or pass --overwrite to "
                    "discard its results"
                )
            for sub in ("results", "predictions", "report"):
                shutil.rmtree(out / sub, ignore_errors=True)
    elif out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out} is not empty and holds no {STUDY_FILE}; pass --overwrite")
    write_json(marker, {"fingerprint": fingerprint, "config": config.to_dict()})
    return out


Builder = Callable[[Artefact, StudyConfig], None]


def build_artefact(art: Artefact, config: StudyConfig) -> None:
    """Build one artefact with the library's own training and evaluation functions."""
    from langtransfer.evaluate import evaluate
    from langtransfer.language_training import train_language
    from langtransfer.results import write_record
    from langtransfer.task_training import train_task

    s = art.settings
    checkpoints = Path(config.output) / "checkpoints" / art.stage / "/".join(art.key)
    if art.stage == "language":
        train_language(
            model=s["model"],
            language=s["language"],
            kind=s["kind"],
            corpus=s["corpus"],
            output=art.path,
            settings=config.train_settings("language", s["kind"]),
            prompt=config.prompt_config("language", get_language(s["language"]).instruction)
            if s["kind"] == "prompt"
            else None,
            adapter=config.adapter_spec("language") if s["kind"] == "adapter" else None,
            sequence_length=s["sequence_length"],
            max_documents=s["max_documents"],
            validation_size=s["validation_documents"],
            checkpoint_dir=checkpoints,
            resume=True,
            overwrite=True,
            settings_hash=art.hash,
            show_progress=False,
        )
    elif art.stage == "task":
        lang_kind, _ = configuration_kinds(s["configuration"])
        train_task(
            model=s["model"],
            task=s["task"],
            language=s["source"],
            kind=s["kind"],
            output=art.path,
            language_rep=language_rep_path(config.output, lang_kind, s["source"])
            if lang_kind
            else None,
            data=s["train_data"],
            settings=config.train_settings("task", s["kind"]),
            prompt_tokens=s["prompt_tokens"],
            adapter=config.adapter_spec("task") if s["kind"] == "adapter" else None,
            max_length=s["sequence_length"],
            max_examples=s["max_train_examples"],
            checkpoint_dir=checkpoints,
            resume=True,
            overwrite=True,
            settings_hash=art.hash,
            show_progress=False,
        )
    else:
        task, configuration, source, target = art.key
        lang_kind, task_kind = configuration_kinds(configuration)
        record = evaluate(
            model=s["model"],
            task=task,
            language=target,
            language_rep=language_rep_path(config.output, lang_kind, target) if lang_kind else None,
            task_rep=task_rep_path(config.output, task, source, configuration) if task_kind else None,
            data=s["test_data"],
            output=Path(config.output) / "predictions" / task / configuration / f"{source}__{target}",
            max_examples=s["max_eval_examples"],
            show_progress=False,
            **config.evaluation,
        )
        record.update(
            source_language=source,
            target_language=target,
            configuration=configuration,
            settings_hash=art.hash,
            seed=config.seed,
        )
        write_record(Path(config.output), record)


def run_study(
    config: StudyConfig,
    *,
    shard: tuple[int, int] = (1, 1),
    overwrite: bool = False,
    progress: bool = True,
    builder: Builder = build_artefact,
) -> dict[str, int]:
    """Build every missing or stale artefact of this shard; return counts built/skipped."""
    artefacts = shard_plan(plan(config), *shard)
    prepare_output(config, overwrite=overwrite)
    for noisy in ("transformers", "adapters"):  # one progress bar, not per-run chatter
        logging.getLogger(noisy).setLevel(logging.ERROR)
    counts = {"built": 0, "skipped": 0}
    bar = tqdm(artefacts, desc="study", unit="artefact", disable=not progress, dynamic_ncols=True)
    for art in bar:
        bar.set_postfix_str(art.id, refresh=True)
        if is_done(art):
            counts["skipped"] += 1
            continue
        with file_lock(art.path.parent / f".{art.path.name}.lock"):
            if is_done(art):  # another shard built it while we waited
                counts["skipped"] += 1
                continue
            builder(art, config)
        counts["built"] += 1
    return counts
