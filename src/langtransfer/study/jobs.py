"""Typed study jobs: one frozen record per artefact, holding exactly what builds it.

A job's fields are the arguments the builder passes to ``train_language``, ``train_task``
or ``evaluate`` (nothing else is read while building), and the artefact's settings hash
is computed from the same fields (:func:`job_settings`). So an option of the study config
either reaches a job field -- and then both the hash and the builder see it -- or it does
not exist: nothing can be accepted and silently dropped. ``tests/test_study_jobs.py``
walks every option of :class:`~langtransfer.study.config.StudyConfig` to check this.

Where an artefact goes (its directory, checkpoints, the paths of the artefacts it
depends on) is not part of a job: it follows from the study directory and the job's key
(:class:`Artefact`), and moving a study directory must not change any hash. Nor does
where the data lies: a data path is hashed by its content, a shipped file by its place
in the package (:mod:`langtransfer.study.fingerprints`), so the same study resumes from
any node or installation and an edited data file makes what read it stale.

:func:`plan` turns a study config into the artefacts of its grid, in dependency order.
A cell whose task has no source at all for a language (the task's ``unavailable``, e.g.
QA in Bulgarian: the reference's source does not exist) is left out when the config asks
for the hub there; :func:`left_out` lists those cells with the reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langtransfer import options
from langtransfer.configurations import get_configuration
from langtransfer.errors import CorruptFileError
from langtransfer.languages import get_language
from langtransfer.representations.kinds import SPEC_KEYS, SpecContext
from langtransfer.results.records import Key, cell_dir, record_path
from langtransfer.study.fingerprints import data_identity, remembered

if TYPE_CHECKING:
    from langtransfer.study.axes import Variant
    from langtransfer.study.config import CombinedSpec, EvaluationSettings, StudyConfig
    from langtransfer.training.settings import TrainSettings


@dataclass(frozen=True)
class LanguageJob:
    """Train one language representation (``train_language``); ``spec``: its kind's."""

    model: str
    language: str
    kind: str
    corpus: str
    max_documents: int | None
    validation_documents: int | float
    sequence_length: int
    train: TrainSettings
    spec: Any
    corpus_extent: str = "paper"
    max_tokens: int | None = None
    variant: str = ""
    profile: str = "method"

    stage = "language"

    @property
    def key(self) -> tuple[str, ...]:
        return (self.kind, self.language) + _variant_part(self.variant)


@dataclass(frozen=True)
class TaskJob:
    """Train one task representation on the source language (``train_task``), with the
    source's language representation of ``language_kind`` attached (None: ``ta``/``stp``).
    ``validation_data`` None means the task's validation split of ``train_data``.
    ``reference_slp_stp_quirk`` (slp+stp jobs only): the reference's training input.
    ``max_target_length``: the task's target length (labels are cut to it); ``spec``: the
    spec of the task representation's kind.
    ``label_order``, ``empty_answers``: how the data is read; ``profile``: the study's
    profile (:mod:`langtransfer.profiles`), recorded in the manifest."""

    model: str
    task: str
    source: str
    configuration: str
    kind: str
    language_kind: str | None
    train_data: str | None
    validation_data: str | None
    max_train_examples: int | None
    sequence_length: int
    max_target_length: int | None
    train: TrainSettings
    spec: Any
    reference_slp_stp_quirk: bool
    variant: str = ""
    label_order: str = "by_name"
    empty_answers: str = "drop"
    profile: str = "method"

    stage = "task"

    @property
    def key(self) -> tuple[str, ...]:
        return (self.task, self.source, self.configuration) + _variant_part(self.variant)


@dataclass(frozen=True)
class EvaluationJob:
    """Evaluate one cell (``evaluate``): the target's language representation of
    ``language_kind`` and the task representation of (task, source, configuration).
    ``seed`` is not used by generation; it is written into the result record, as is
    ``metrics`` (the task's :meth:`~langtransfer.tasks.Task.metrics_fingerprint`: scoring
    that changes meaning changes the hash). ``evaluation.max_new_tokens`` is the
    effective budget (the config's, else evaluate's default). ``scoring_revision`` is
    :data:`~langtransfer.options.RANK_SCORING_REVISION` for ranked cells (0, left out of
    the hash, for generated ones): a change to label ranking rebuilds ranked results.
    ``label_order``, ``empty_answers`` (and ``evaluation.long_inputs``): how the test data
    is read; ``profile``: the study's profile, written into the result record."""

    model: str
    task: str
    configuration: str
    source: str
    target: str
    language_kind: str | None
    task_kind: str | None
    test_data: str | None
    max_eval_examples: int | None
    evaluation: EvaluationSettings
    metrics: str
    seed: int
    variant: str = ""
    scoring_revision: int = 0
    label_order: str = "by_name"
    empty_answers: str = "drop"
    profile: str = "method"

    stage = "evaluation"

    @property
    def key(self) -> tuple[str, ...]:
        return (self.task, self.configuration, self.source, self.target) + _variant_part(
            self.variant
        )


@dataclass(frozen=True)
class CombinedJob:
    """Build one language representation without training
    (``combine_language_representations``): the weighted combination of the trained
    language representations of ``kind`` of the languages in ``weights``, standing for
    ``language`` in the cells of ``variant``."""

    model: str
    language: str
    kind: str
    variant: str
    weights: tuple[tuple[str, float], ...]
    weights_from: str

    # On disk (stage, directory, artefact id, the YAML key and the variant label) the
    # combination keeps its first name, "composed", so existing studies stay valid.
    stage = "composed"

    @property
    def key(self) -> tuple[str, ...]:
        return (self.kind, self.language, self.variant)


Job = LanguageJob | CombinedJob | TaskJob | EvaluationJob

#: Job fields added after studies were run, with the value every earlier job had: left
#: out of the settings at that value, so the hashes of existing studies stay the same.
ADDED_FIELDS: dict[str, Any] = {
    "corpus_extent": "paper", "max_tokens": None, "variant": "", "scoring_revision": 0,
    # the method profile's, what every job had before profiles
    "label_order": "by_name", "empty_answers": "drop", "profile": "method",
}


def _variant_part(variant: str) -> tuple[str, ...]:
    """A variant's jobs are keyed by their label last; the paper's have no such part."""
    return (variant,) if variant else ()


def _plain(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value


#: Job fields naming data the job reads: hashed by what they hold, not where it lies
#: (:func:`~langtransfer.study.fingerprints.data_identity`).
DATA_FIELDS = ("corpus", "train_data", "validation_data", "test_data")


def job_settings(job: Job) -> dict[str, Any]:
    """Every field of the job as plain JSON-able values: what the settings hash covers
    (an :data:`ADDED_FIELDS` field at its old value is left out; a :data:`DATA_FIELDS`
    path as its content's identity). A training job's spec is under its kind's name,
    beside the :data:`SPEC_KEYS` every such job has held."""
    settings: dict[str, Any] = {}
    for f in fields(job):
        value = getattr(job, f.name)
        if f.name == "spec":
            assert isinstance(job, (LanguageJob, TaskJob))  # the jobs that train one
            settings.update({key: None for key in SPEC_KEYS})
            settings[job.kind] = _plain(value)
        elif f.name in ADDED_FIELDS and value == ADDED_FIELDS[f.name]:
            continue
        else:
            settings[f.name] = data_identity(value) if f.name in DATA_FIELDS else _plain(value)
    return settings


# -- jobs from a study config ----------------------------------------------------------


def language_job(
    config: StudyConfig,
    language: str,
    kind: str,
    model: str | None = None,
    variant: Variant | None = None,
) -> LanguageJob:
    """``model``: the base's name (default: the config's single ``model``); ``variant``:
    the study's language job with that variant's one setting changed."""
    lang = get_language(language)
    spec = config.spec("language", kind, SpecContext("language", lang.name, lang.instruction,
                                                     seed=config.seed))
    if variant is not None:
        spec = replace(spec, **variant.spec_changes(lang))
    corpus = variant is not None and variant.axis == "corpus_size"
    return LanguageJob(
        model=config.model if model is None else model,
        language=lang.code,
        kind=kind,
        corpus=config.corpus_for(lang.code),
        max_documents=variant.max_documents if variant and corpus else config.max_documents,
        validation_documents=config.validation_documents,
        sequence_length=config.sequence_length,
        train=config.train_settings("language", kind),
        spec=spec,
        corpus_extent=variant.extent if variant and corpus else "paper",
        max_tokens=variant.max_tokens if variant and corpus else None,
        variant=variant.label if variant else "",
        profile=config.profile_settings().name,
    )


def task_job(
    config: StudyConfig,
    task: str,
    source: str,
    configuration: str,
    model: str | None = None,
    variant: str = "",
) -> TaskJob:
    from langtransfer.tasks import get_task

    task_obj, lang = get_task(task), get_language(source)
    language_kind, kind = get_configuration(configuration, study=True).kinds
    assert kind is not None, f"{configuration} trains no task representation"
    train = config.train_settings("task", kind)
    spec = config.spec("task", kind, SpecContext(
        "task", lang.name, task_obj.prompt_init(lang.name),
        label_words=list(task_obj.label_words.values()) or None, seed=train.seed,
    ))
    return TaskJob(
        model=config.model if model is None else model,
        task=task_obj.name,
        source=lang.code,
        configuration=configuration,
        kind=kind,
        language_kind=language_kind,
        train_data=config.data_for(task_obj.name, lang.code, "train"),
        validation_data=config.validation_data_for(task_obj.name, lang.code),
        max_train_examples=config.max_train_examples,
        sequence_length=config.sequence_length,
        max_target_length=task_obj.target_length,
        train=train,
        spec=spec,
        reference_slp_stp_quirk=config.reference_slp_stp_quirk(configuration),
        variant=variant,
        **_reading(config),
    )


def _reading(config: StudyConfig) -> dict[str, str]:
    """How task and evaluation jobs read their data, and the profile they record."""
    profile = config.profile_settings()
    return {"label_order": profile.label_order, "empty_answers": profile.empty_answers,
            "profile": profile.name}


def combined_job(
    config: StudyConfig, spec: CombinedSpec, kind: str, model: str | None = None
) -> CombinedJob:
    return CombinedJob(
        model=config.model if model is None else model,
        language=spec.language,
        kind=kind,
        variant=spec.variant,
        weights=spec.weights,
        weights_from=spec.weights_from,
    )


def evaluation_job(
    config: StudyConfig,
    task: str,
    configuration: str,
    source: str,
    target: str,
    model: str | None = None,
    variant: str = "",
) -> EvaluationJob:
    from langtransfer.tasks import get_task

    language_kind, task_kind = get_configuration(configuration, study=True).kinds
    evaluation = config.evaluation_settings()
    if evaluation.max_new_tokens is None:  # evaluate's default, made explicit for the hash
        evaluation = replace(evaluation, max_new_tokens=options.REFERENCE_MAX_NEW_TOKENS)
    return EvaluationJob(
        model=config.model if model is None else model,
        task=task,
        configuration=configuration,
        source=source,
        target=target,
        language_kind=language_kind,
        task_kind=task_kind,
        test_data=config.data_for(task, target, "test"),
        max_eval_examples=config.max_eval_examples,
        evaluation=evaluation,
        metrics=get_task(task).metrics_fingerprint(),
        seed=config.seed,
        variant=variant,
        scoring_revision=options.RANK_SCORING_REVISION if evaluation.scoring == "rank" else 0,
        **_reading(config),
    )


# -- artefacts: a job, where it goes, what it needs -------------------------------------

STAGES = ("language", "composed", "task", "evaluation")


@dataclass(frozen=True)
class Artefact:
    """One unit of work: its job, where it goes, the ids of the artefacts it needs, and
    the hash of its job and of theirs. ``inputs`` maps a role (``language``, ``task``) to
    the directory of the representation the builder attaches; ``work`` is where training
    checkpoints or predictions go. ``model_label`` is the base's label in a study of
    several models ("" with one): part of where the artefact goes and of its id, not of
    its hash (the job's ``model`` is)."""

    job: Job
    path: Path
    deps: tuple[str, ...] = ()
    hash: str = ""
    inputs: dict[str, Path] = field(default_factory=dict, compare=False, hash=False)
    work: Path | None = None
    model_label: str = ""

    @property
    def stage(self) -> str:
        return self.job.stage

    @property
    def key(self) -> tuple[str, ...]:
        return self.job.key

    @property
    def id(self) -> str:
        return artefact_id(self.stage, self.key, self.model_label)

    @property
    def settings(self) -> dict[str, Any]:
        return job_settings(self.job)


def is_done(art: Artefact) -> bool:
    """The artefact exists, is complete, and was built from the same settings."""
    from langtransfer.representations import read_manifest  # torch: only when asked

    try:
        if art.stage == "evaluation":
            record = json.loads(art.path.read_text(encoding="utf-8"))
            return record.get("settings_hash") == art.hash
        return read_manifest(art.path).get("settings_hash") == art.hash
    except (OSError, ValueError, CorruptFileError):
        return False


def artefact_id(stage: str, key: tuple[str, ...], model_label: str = "") -> str:
    """``language:prompt/sk``, or ``language:tiny/prompt/sk`` for the base labelled tiny."""
    return f"{stage}:{'/'.join((model_label, *key) if model_label else key)}"


def _under(study_dir: str | Path, top: str, model_label: str, variant: str = "") -> Path:
    """``<study>/<top>``, then ``/<label>`` in a study of several models and ``/<variant>``
    for a variant's artefacts (labels are path-safe and a variant's contains ``=``, so
    neither clashes with a kind or a task)."""
    return Path(study_dir, top, *(s for s in (model_label, variant) if s))


def language_rep_path(
    study_dir: str | Path, kind: str, language: str, model_label: str = "", variant: str = ""
) -> Path:
    return _under(study_dir, "representations", model_label, variant) / "language" / kind / language


def combined_rep_path(
    study_dir: str | Path, kind: str, language: str, variant: str, model_label: str = ""
) -> Path:
    return (
        _under(study_dir, "representations", model_label) / "composed" / kind / variant
        / language
    )


def task_rep_path(
    study_dir: str | Path,
    task: str,
    source: str,
    configuration: str,
    model_label: str = "",
    variant: str = "",
) -> Path:
    return (
        _under(study_dir, "representations", model_label, variant)
        / "task" / task / source / configuration
    )


def _hash(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class LeftOut:
    """A task x language the grid leaves out, as a source or a target, and why."""

    task: str
    language: str
    role: str  # "source" or "target"
    reason: str

    def line(self) -> str:
        return f"{self.task} {self.language} (as {self.role}): {self.reason}"


def left_out(config: StudyConfig) -> list[LeftOut]:
    """The (task, language) pairs the grid leaves out: the task has no source for the
    language and the config does not give local data for it."""
    from langtransfer.tasks import get_task

    out = []
    for task in config.tasks:
        unavailable = get_task(task).unavailable
        for role, languages, split in (("source", config.sources, "train"),
                                       ("target", config.targets, "test")):
            for lang in languages:
                if lang in unavailable and config.data_for(task, lang, split) is None:
                    out.append(LeftOut(task, lang, role, unavailable[lang]))
    return out


def plan(config: StudyConfig) -> list[Artefact]:
    """Every artefact of the study in dependency order, each listed once (without the
    cells :func:`left_out` names). With several base models, all of one base's artefacts
    come before the next base's, so a process holds one base at a time and loads each
    once; their directories (and, through the job's ``model``, their hashes) differ.
    Each base's jobs are made from the study as that base runs it
    (:meth:`~langtransfer.study.config.StudyConfig.for_base`: its own settings merged
    in), so an override reaches exactly the jobs, hashes and builder calls it changes."""
    out = Path(config.output)
    skip = {(x.task, x.language, x.role) for x in left_out(config)}
    arts: dict[str, Artefact] = {}
    order = {s: i for i, s in enumerate(STAGES)}
    planned: list[Artefact] = []
    with remembered():  # each data path's content identified once per plan
        for base in config.bases():
            start = len(arts)
            _plan_base(config.for_base(base), base.name, base.label, out, skip, arts)
            planned += sorted(list(arts.values())[start:], key=lambda a: order[a.stage])
    return planned


def _plan_base(
    config: StudyConfig,
    model: str,
    label: str,
    out: Path,
    skip: set[tuple[str, str, str]],
    arts: dict[str, Artefact],
) -> None:
    """Add the artefacts of the grid on one base (``model``, labelled ``label``) to ``arts``."""

    def add(job: Job, path: Path, deps: tuple[Artefact, ...], **where: Any) -> Artefact:
        payload = {"stage": job.stage, "key": job.key, "settings": job_settings(job),
                   "deps": [d.hash for d in deps]}
        art = Artefact(job, path, tuple(d.id for d in deps), _hash(payload), model_label=label,
                       **where)
        return arts.setdefault(art.id, art)

    def checkpoints(job: Job) -> Path:
        return _under(out, "checkpoints", label) / job.stage / "/".join(job.key)

    def language_rep(lang: str, kind: str, variant: Variant | None) -> Artefact:
        name = variant.label if variant else ""
        aid = artefact_id("language", (kind, lang, *_variant_part(name)), label)
        if aid in arts:  # shared by many cells: build its job once
            return arts[aid]
        job = language_job(config, lang, kind, model, variant)
        return add(job, language_rep_path(out, kind, lang, label, name), (),
                   work=checkpoints(job))

    def task_rep(task: str, source: str, configuration: str, variant: Variant | None) -> Artefact:
        name = variant.label if variant else ""
        aid = artefact_id("task", (task, source, configuration, *_variant_part(name)), label)
        if aid in arts:
            return arts[aid]
        job = task_job(config, task, source, configuration, model, name)
        inputs = ({"language": language_rep(source, job.language_kind, variant)}
                  if job.language_kind else {})
        return add(job, task_rep_path(out, task, source, configuration, label, name),
                   tuple(inputs.values()), inputs={role: d.path for role, d in inputs.items()},
                   work=checkpoints(job))

    def combined_rep(spec: CombinedSpec, kind: str) -> Artefact:
        aid = artefact_id("composed", (kind, spec.language, spec.variant), label)
        if aid in arts:
            return arts[aid]
        parts = {lang: language_rep(lang, kind, None) for lang, _ in spec.weights}
        return add(combined_job(config, spec, kind, model),
                   combined_rep_path(out, kind, spec.language, spec.variant, label),
                   tuple(parts.values()), inputs={lang: d.path for lang, d in parts.items()})

    within = config.axes_within()
    specs = config.combined_specs()
    untrained = {spec.language for spec in specs if not spec.trained}
    for variant in [None, *config.variants()]:
        name = variant.label if variant else ""
        for task in config.tasks:
            for source in config.sources:
                if (task, source, "source") in skip:
                    continue
                for configuration in config.configurations:
                    language_kind = get_configuration(configuration, study=True).kinds[0]
                    if variant is not None and not variant.applies_to(language_kind):
                        continue
                    # the paper's rows: the trained cells, then each composed one (with a
                    # language representation only: the same task representation, the
                    # target's language representation combined from trained ones)
                    cells: list[tuple[str, CombinedSpec | None]] = [
                        (t, None) for t in config.targets
                        if not (language_kind and t in untrained)
                    ]
                    if variant is None and language_kind:
                        cells += [(spec.language, spec) for spec in specs
                                  if within.covers(task, configuration, spec.language)]
                    for target, spec in cells:
                        if (task, target, "target") in skip:
                            continue
                        if variant is not None and not within.covers(task, configuration, target):
                            continue
                        cell_variant = spec.variant if spec is not None else name
                        job = evaluation_job(config, task, configuration, source, target, model,
                                             cell_variant)
                        deps: dict[str, Artefact] = {}
                        if job.task_kind:
                            deps["task"] = task_rep(task, source, configuration, variant)
                        if job.language_kind:
                            deps["language"] = (
                                combined_rep(spec, job.language_kind) if spec is not None
                                else language_rep(target, job.language_kind, variant)
                            )
                        cell = Key(task, configuration, source, target, model_label=label,
                                   variant=cell_variant)
                        add(job, record_path(out, cell), tuple(deps.values()),
                            inputs={role: d.path for role, d in deps.items()},
                            work=out / "predictions" / cell_dir(cell))
