"""The study configuration (YAML): what grid to run and with which settings.

Every key is checked before any training starts: an unknown key, language, task or
configuration is an error that names it and lists the valid values.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from langtransfer.base.loading import DEFAULT_MODEL
from langtransfer.configurations import (
    STUDY_CONFIGURATIONS,
    configuration_kinds,
    get_configuration,
)
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.languages import INSTRUCTION_TEMPLATE, get_language
from langtransfer.options import SCORING, unused_by_ranking
from langtransfer.profiles import DEFAULT_PROFILE, LONG_INPUTS, Profile, check_choice, get_profile
from langtransfer.representations.kinds import KINDS, SpecContext, get_kind
from langtransfer.study.axes import Variant, Within, parse_axes, parse_within
from langtransfer.study.slurm_settings import SlurmSettings, parse_slurm
from langtransfer.training.corpora import FIXTURE_SOURCES, fixture_path
from langtransfer.training.settings import TrainSettings, default_settings

#: Per kind, the spec keys of its ``language_training`` / ``task_training`` table.
SPEC_OPTION_KEYS: dict[str, tuple[str, ...]] = {
    name: tuple(option.key for option in kind.options) for name, kind in KINDS.items()
}
TRAIN_KEYS = tuple(f.name for f in fields(TrainSettings))
#: TrainSettings fields language training has no use for, refused in ``language_training``
#: rather than accepted and ignored: it validates only before and after training (no
#: best-checkpoint selection, no evaluation batches), and span-corruption rows all have
#: one length (nothing to group by).
LANGUAGE_UNUSED = ("eval_steps", "keep_best", "eval_batch_size", "group_by_length")
#: Keys of ``language_training`` / ``task_training`` per representation kind.
ROLE_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    role: {kind: SPEC_OPTION_KEYS[kind] + train_keys for kind in KINDS}
    for role, train_keys in (
        ("language", tuple(k for k in TRAIN_KEYS if k not in LANGUAGE_UNUSED)),
        ("task", TRAIN_KEYS),
    )
}
#: Task-table keys that are no spec field, each for the one configuration it concerns,
#: in the table of that configuration's task kind: ``reference_slp_stp_quirk`` trains the
#: slp+stp cells' task prompts as the reference did (language prompt twice in forward);
#: the other configurations have no such quirk and are trained as always.
TASK_FLAGS: dict[str, str] = {"reference_slp_stp_quirk": "slp+stp"}
for _flag, _configuration in TASK_FLAGS.items():
    _kind = get_configuration(_configuration).task_kind
    assert _kind is not None
    ROLE_KEYS["task"][_kind] += (_flag,)
TASK_PROMPT_FLAGS = tuple(TASK_FLAGS)  # the old name
KIND_KEYS = ROLE_KEYS["task"]
#: ``data: demo-fixtures`` (or per task): the demo's own small files, written so that the
#: embedded tiny model can learn each task in seconds (see docs/study.md); ``fixtures``
#: are the test fixtures, which the guard tests and the golden study read.
DEMO_DATA = "demo-fixtures"
DEMO_DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"


@dataclass(frozen=True)
class EvaluationSettings:
    """The ``evaluation`` section: ``evaluate()`` keywords a study may set (the rest --
    task, language, representations, data -- the study decides). Defaults are
    ``evaluate``'s; ``max_new_tokens`` None is evaluate's budget
    (:data:`~langtransfer.options.REFERENCE_MAX_NEW_TOKENS`, the reference's, for every
    task)."""

    batch_size: int = 64
    max_new_tokens: int | None = None
    num_beams: int = 1
    max_length: int = 256
    scoring: str = "generate"
    #: :data:`~langtransfer.profiles.LONG_INPUTS` (default: the profile's).
    long_inputs: str = "first"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["long_inputs"] == "first":  # absent at its old behaviour: earlier hashes hold
            del d["long_inputs"]
        return d


#: Keys of the ``evaluation`` section and the type of each value.
EVALUATION_KEYS: dict[str, type] = {
    f.name: str if f.type == "str" else int for f in fields(EvaluationSettings)
}


#: Study keys a ``models`` entry may set for its base alone, deep-merged over the study's
#: values (a mapping key by key, anything else replaced): what a base of another size or
#: family needs of its own. The grid, the data and the seed stay one per study, so every
#: base answers the same question.
PER_MODEL_KEYS = ("sequence_length", "language_training", "task_training", "evaluation")


@dataclass(frozen=True)
class Base:
    """One base model of a study: its name (``tiny``, a local directory or a hub id), its
    label, the path segment and record field that keeps its artefacts apart from the
    other bases' ("" in a single-model study: paths as before), and its ``overrides`` of
    :data:`PER_MODEL_KEYS` (see :meth:`StudyConfig.for_base`)."""

    label: str
    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def overridden(self) -> list[str]:
        """The overrides as ``key.path=value`` lines, e.g. ``evaluation.batch_size=8``."""
        def leaves(prefix: str, value: Any) -> list[str]:
            if isinstance(value, dict) and value:
                return [line for k, v in value.items() for line in leaves(f"{prefix}.{k}", v)]
            return [f"{prefix}={json.dumps(value, default=str)}"]

        return [line for k, v in self.overrides.items() for line in leaves(k, v)]


#: A model label: a path segment of letters, digits, '.', '_', '-' (never hidden, no '=').
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MODEL_ENTRY_KEYS = ("name", "label", *PER_MODEL_KEYS)


def _deep_merge(under: Any, over: Any) -> Any:
    """``over`` merged over ``under``: mappings key by key, anything else replaced."""
    if isinstance(under, dict) and isinstance(over, dict):
        return {**under, **{k: _deep_merge(under.get(k), v) for k, v in over.items()}}
    return over


def _overrides(entry: dict[str, Any]) -> dict[str, Any]:
    """The per-model keys of a models entry. Nothing given (``evaluation:`` or ``prompt:``
    with nothing under it) changes nothing, as the same key empty does in the study."""
    out = {k: v for k, v in entry.items() if k in PER_MODEL_KEYS and v is not None}
    for key in ("language_training", "task_training"):
        if isinstance(out.get(key), dict):
            out[key] = {kind: {} if s is None else s for kind, s in out[key].items()}
    return out


def default_label(name: str) -> str:
    """The label of a base named ``name``: its last path component (``mt0-base`` for
    ``bigscience/mt0-base``, the directory's name for a local one), other characters
    replaced by ``-``."""
    last = name.replace("\\", "/").rstrip("/").rpartition("/")[2]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", last).lstrip(".-_")


def _model_entry(entry: Any) -> Base:
    if isinstance(entry, str) and entry:
        return Base(default_label(entry), entry)
    if isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"]:
        for key in entry:
            if key in MODEL_ENTRY_KEYS:
                continue
            if key in {f.name for f in fields(StudyConfig)}:
                raise LangTransferError(
                    f"models entry {entry['name']!r}: {key!r} is one setting for the whole "
                    f"study, not per model; an entry may set {', '.join(MODEL_ENTRY_KEYS)}"
                )
            raise UnknownNameError("key in a models entry", key, MODEL_ENTRY_KEYS)
        label = entry.get("label", default_label(entry["name"]))
        if not isinstance(label, str):
            raise LangTransferError(f"models: label of {entry['name']!r} must be a string")
        return Base(label, entry["name"], _overrides(entry))
    raise LangTransferError(
        f"models: each entry is a model name or a mapping with 'name' (and 'label', or "
        f"settings of its own: {', '.join(PER_MODEL_KEYS)}), got {entry!r:.60}"
    )


def parse_models(models: Any) -> list[Base]:
    """The ``models`` list as bases, checked: names and labels unique, labels path-safe."""
    if not isinstance(models, list) or not models:
        raise LangTransferError(
            f"models must be a non-empty list of model names (or {{name, label}} mappings), "
            f"got {models!r:.60}"
        )
    bases: list[Base] = []
    for base in map(_model_entry, models):
        if not LABEL_RE.match(base.label):
            raise LangTransferError(
                f"models: label {base.label!r} of {base.name!r} must be letters, digits, "
                "'.', '_' or '-' (not starting with '.', '_' or '-'); give one with "
                f"{{name: {base.name}, label: ...}}"
            )
        for other in bases:
            if other.name == base.name:
                raise LangTransferError(f"models lists {base.name!r} twice")
            if other.label == base.label:
                raise LangTransferError(
                    f"models: label {base.label!r} names both {other.name!r} and "
                    f"{base.name!r}; give them different labels ({{name: ..., label: ...}})"
                )
        bases.append(base)
    return bases


@dataclass
class StudyConfig:
    """One transfer study: languages × tasks × configurations on one base model
    (``model``), or on each of several (``models``: names or ``{name, label}`` mappings,
    which may also override :data:`PER_MODEL_KEYS` for their base; see :meth:`bases` and
    :meth:`for_base`).

    ``corpus`` is ``wikipedia`` (streamed), ``fixtures`` (the shipped text), or a mapping
    language -> file. ``data`` is ``hub`` (the paper's sources), ``fixtures``, or a mapping
    task -> language -> split -> file. ``language_training`` and ``task_training`` map a
    representation kind (``prompt``/``adapter``...) to overrides of the paper's settings:
    the kind's spec keys and ``TrainSettings`` keys.
    ``task_modules`` (Python files or module names that call ``register_task``) and
    ``languages_file`` (YAML/JSON language lists) are loaded before anything is checked.
    ``composed``: language representations built without training (see
    :func:`combined_specs` and docs/study.md).
    ``axes`` lists language-representation variants compared with the study's own setting
    (:mod:`langtransfer.study.axes`).
    ``profile`` (:mod:`langtransfer.profiles`: ``method``, the default, or ``reference``)
    sets every setting that decides between the method as described and the published
    numbers; a key of ``task_training``/``evaluation`` given here wins over it
    (``reference_slp_stp_quirk``, ``keep_best``, ``long_inputs``).
    ``slurm``: what each job of ``--executor slurm`` asks Slurm for
    (:mod:`langtransfer.study.slurm_settings`); like ``output``, it changes where the study
    runs, not what it builds, so no hash and not the fingerprint holds it.
    """

    output: str
    model: str = "bigscience/mt0-base"
    models: list[Any] = field(default_factory=list)
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
    task_modules: list[str] = field(default_factory=list)
    languages_file: list[str] = field(default_factory=list)
    composed: list[dict[str, Any]] = field(default_factory=list)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    profile: str | None = None
    slurm: dict[str, Any] = field(default_factory=dict)
    #: Several training seeds (instead of ``seed``): every representation is trained and
    #: every cell evaluated once per seed; the first seed's artefacts keep the paths of a
    #: one-seed study, the others' go under ``seed=<n>/`` (see :meth:`seed_list`).
    seeds: list[int] | None = None

    # -- derived -------------------------------------------------------------------------

    def bases(self) -> list[Base]:
        """The base models the grid runs on: ``models`` with their labels, or the one
        ``model`` with the empty label (a single-model study keeps its paths)."""
        return parse_models(self.models) if self.models else [Base("", self.model)]

    def for_base(self, base: Base) -> StudyConfig:
        """The study as ``base`` runs it: its overrides merged over the study's values
        (the study itself when it has none, so its jobs and hashes are the study's)."""
        if not base.overrides:
            return self
        return replace(self, **{k: _deep_merge(getattr(self, k), v)
                                for k, v in base.overrides.items()})

    def seed_list(self) -> list[int]:
        """The training seeds: ``seeds``, or the one ``seed``."""
        return list(self.seeds) if self.seeds else [self.seed]

    def language_kinds(self) -> set[str]:
        return {k for c in self.configurations if (k := configuration_kinds(c)[0])}

    def variants(self, where: str = "study config") -> list[Variant]:
        """The language-representation variants of ``axes``, checked (see
        :func:`~langtransfer.study.axes.parse_axes`)."""
        prompt = self.language_training.get("prompt", {})
        within = self.axes_within(where).configurations or self.configurations
        return parse_axes(
            self.axes,
            default_init=prompt.get("init", "text"),
            default_template=prompt.get("init_text", INSTRUCTION_TEMPLATE),
            language_kinds={k for c in within if (k := configuration_kinds(c)[0])},
            where=where,
        )

    def axes_within(self, where: str = "study config") -> Within:
        """Where the variants run (``axes.within``; the whole grid when not given)."""
        grid = {"tasks": self.tasks, "targets": self.targets,
                "configurations": self.configurations}
        return parse_within(self.axes, grid, where)

    def profile_settings(self) -> Profile:
        """The study's profile (``method`` when it names none)."""
        return get_profile(self.profile)

    def train_settings(self, role: str, kind: str) -> TrainSettings:
        table = self.language_training if role == "language" else self.task_training
        overrides = {k: v for k, v in table.get(kind, {}).items() if k in TRAIN_KEYS}
        overrides.setdefault("seed", self.seed)
        for key, value in get_kind(kind).profile_training(role, self.profile_settings()).items():
            overrides.setdefault(key, value)
        return default_settings(kind, role, **overrides)

    def spec(self, role: str, kind: str, context: SpecContext) -> Any:
        """The spec of ``role``'s representations of ``kind``: the kind's default for
        ``context`` (a prompt: the role's instruction, ``{Language}`` filled in, the
        task's label words, the seed) with the table's spec keys over it."""
        table = self.language_training if role == "language" else self.task_training
        keys = SPEC_OPTION_KEYS[kind]
        values = {k: v for k, v in table.get(kind, {}).items() if k in keys}
        kind_obj = get_kind(kind)
        return kind_obj.profile_spec(kind_obj.spec(values, context), self.profile_settings())

    def reference_slp_stp_quirk(self, configuration: str) -> bool:
        """Whether ``configuration``'s task representation trains with the reference's
        quirk (a flag of :data:`TASK_FLAGS` in its task kind's table; else the profile's)."""
        flag = "reference_slp_stp_quirk"
        if configuration != TASK_FLAGS[flag]:
            return False
        kind = get_configuration(configuration).task_kind
        default = self.profile_settings().slp_stp_language_prompt_twice
        return bool(self.task_training.get(kind or "", {}).get(flag, default))

    def combined_specs(self) -> list[CombinedSpec]:
        """The ``composed`` entries, checked and with their weights resolved."""
        return combined_specs(self)

    def slurm_settings(self) -> SlurmSettings:
        return parse_slurm(self.slurm)

    def evaluation_settings(self) -> EvaluationSettings:
        return EvaluationSettings(**{"long_inputs": self.profile_settings().long_inputs,
                                     **self.evaluation})

    def corpus_for(self, language: str) -> str:
        """What ``train_language`` takes as ``corpus`` for ``language``."""
        if isinstance(self.corpus, dict):
            if language not in self.corpus:
                raise LangTransferError(
                    f"corpus lists no file for language {language!r}; it has {sorted(self.corpus)}"
                )
            return str(self.corpus[language])
        if self.corpus in FIXTURE_SOURCES:
            return str(fixture_path(language))
        if self.corpus == "wikipedia":
            return "wikipedia"
        raise LangTransferError(
            f"corpus {self.corpus!r} must be 'wikipedia', 'fixtures' or a mapping language -> file"
        )

    def data_for(self, task: str, language: str, split: str) -> str | None:
        """What ``train_task``/``evaluate`` take as ``data``: None (hub), 'fixtures', or a path.

        ``data`` is one value for everything, or a mapping task -> value, where a value is
        ``hub``, ``fixtures``, ``demo-fixtures`` (the task's directory of demo files, a
        path from here on), or a mapping language -> (value, or split -> file). Whatever
        is not listed comes from the hub. A split missing from a language's split mapping
        is an error.
        """
        value: Any = self.data
        for key in (task, language, split):
            if not isinstance(value, dict):
                break
            value = value.get(key, "hub")
        if value in ("hub", None):
            return None
        if value == DEMO_DATA:
            return str(demo_data_dir(task))
        if isinstance(value, dict):
            raise LangTransferError(
                f"data for task {task!r}, language {language!r} lists no {split!r} split; "
                f"it has {sorted(value)}"
            )
        return str(value)

    def validation_data_for(self, task: str, language: str) -> str | None:
        """The validation file a split mapping names for ``task`` in ``language``, or None:
        training then validates on the training source's validation split, or holds out
        part of the training examples."""
        value: Any = self.data
        for key in (task, language):
            value = value.get(key) if isinstance(value, dict) else None
        found = value.get("validation") if isinstance(value, dict) else None
        return None if found in (None, "hub") else str(found)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self, by_path: bool = False) -> str:
        """A hash of everything but the output directory: studies with different settings
        must not share an output directory. Where corpus and data files lie is left out
        (which tasks, languages and splits read local files is not): the same study run
        from another node, installation or copy of the data is the same study, and what
        its files hold is the artefacts' settings hashes' business (an edited file makes
        what read it stale). ``by_path``: the fingerprint of the paths as written, which
        studies had before (accepted once by :func:`~langtransfer.study.run.prepare_output`)."""
        d = self.to_dict()
        d.pop("output")
        d.pop("slurm")  # where the study runs, as its output directory
        for key in _ADDED_KEYS:  # absent or empty: the fingerprint studies had before it
            if not d[key]:
                d.pop(key)
        if d["profile"] in (None, DEFAULT_PROFILE):  # naming the default changes nothing
            d.pop("profile")
        if not by_path:
            d["corpus"], d["data"] = _unplaced(d["corpus"]), _unplaced(d["data"])
        if d.get("seeds") is not None and len(d["seeds"]) == 1:
            d.pop("seeds")  # one seed is `seed` (validation set it): the same study
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


#: What a study's fingerprint holds for a local corpus or data path.
LOCAL_PATH = "<local path>"


def _unplaced(value: Any) -> Any:
    """A corpus or data value with every path replaced by :data:`LOCAL_PATH`."""
    if isinstance(value, dict):
        return {k: _unplaced(v) for k, v in value.items()}
    names = (None, "hub", "wikipedia", DEMO_DATA, *FIXTURE_SOURCES)
    return value if value in names else LOCAL_PATH


def demo_data_dir(task: str) -> Path:
    """The directory of ``task``'s demo files; an error names the tasks that have some."""
    have = sorted(p.name for p in DEMO_DATA_DIR.iterdir() if p.is_dir())
    if task not in have:
        raise UnknownNameError(f"task with {DEMO_DATA}", task, have)
    return DEMO_DATA_DIR / task


#: Keys added after studies were run: left out of the fingerprint when empty.
_ADDED_KEYS = ("models", "axes", "composed", "seeds")


#: Keys of a ``composed`` entry.
COMPOSED_KEYS = ("language", "weights", "from", "name", "trained")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class CombinedSpec:
    """One ``composed`` entry resolved: the target ``language`` it stands for, its
    ``variant`` label (``composed=proxy``, ``composed=<name>``...), the parts' weights in
    order, and where they came from (``registry``: a proxy from the relatives by family
    and script; ``user``: the entry's ``weights``)."""

    language: str
    variant: str
    weights: tuple[tuple[str, float], ...]
    weights_from: str
    trained: bool = True


def combined_specs(config: StudyConfig, where: str = "study config") -> list[CombinedSpec]:
    """Check the ``composed`` entries and resolve their weights.

    An entry is ``{language: sk}`` (a proxy: weights from its relatives among the study's
    sources and targets, or among ``from``), or ``{language: sk, weights: {cs: 0.6, sl:
    0.4}}`` (weights given; they must sum to one). ``name`` sets the variant label
    (``composed=<name>``); the default is ``composed=proxy`` for a proxy and the weights
    spelled out (``composed=cs0.6_sl0.4``) otherwise. ``trained: false`` (a language
    with no corpus) leaves out its trained language representation and the cells that
    use it; it is then no part of any combination. Each error is one line naming the
    bad value.
    """
    from langtransfer.composition.combine import check_weights
    from langtransfer.languages import relatives

    entries = config.composed
    if not isinstance(entries, list):
        raise LangTransferError(f"{where}: 'composed' must be a list of entries, got "
                                f"{entries!r:.60}")
    if entries and not config.language_kinds():
        raise LangTransferError(
            f"{where}: 'composed' needs a configuration with a language representation "
            f"(la+ta, la+stp, slp+ta, slp+stp); configurations are {config.configurations}"
        )
    untrained = _untrained(config, where)
    specs: list[CombinedSpec] = []
    for i, entry in enumerate(entries, start=1):
        at = f"{where}: composed entry {i}"
        language = get_language(entry["language"]).code
        if language not in config.targets:
            raise LangTransferError(
                f"{at}: language {language!r} is not a target, so nothing would evaluate it "
                f"(targets: {', '.join(config.targets)})"
            )
        weights, pool = entry.get("weights"), entry.get("from")
        if weights is not None and pool is not None:
            raise LangTransferError(f"{at}: give 'weights' or 'from' (a proxy's candidates), "
                                    "not both")
        if weights is not None:
            if not isinstance(weights, dict) or not weights:
                raise LangTransferError(f"{at}: 'weights' must be a mapping language -> "
                                        f"weight, got {weights!r:.60}")
            resolved = _unique_codes(list(weights), f"{at} weights", untrained)
            chosen = check_weights(dict(zip(resolved, weights.values(), strict=True)),
                                   what=f"{at} ({language})")
            source = "user"
            default = "_".join(f"{c}{w:g}" for c, w in chosen.items())
        else:
            if pool is not None and (not isinstance(pool, list) or not pool):
                raise LangTransferError(f"{at}: 'from' must be a list of languages, got "
                                        f"{pool!r:.60}")
            candidates = (_unique_codes(pool, f"{at} from", untrained) if pool is not None
                          else [c for c in dict.fromkeys(config.sources + config.targets)
                                if c not in untrained])
            try:
                chosen = relatives(language, candidates)
            except LangTransferError as e:
                raise LangTransferError(f"{at}: {e}") from None
            source, default = "registry", "proxy"
        name = entry.get("name", default)
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise LangTransferError(f"{at}: name must be letters, digits, '.', '_' or '-', "
                                    f"got {name!r:.40}")
        spec = CombinedSpec(language, f"composed={name}", tuple(chosen.items()), source,
                            language not in untrained)
        for other in specs:
            if (other.language, other.variant) == (spec.language, spec.variant):
                raise LangTransferError(
                    f"{at}: {spec.variant} for {language} repeats an earlier entry; give "
                    "each a different name"
                )
        specs.append(spec)
    return specs


def _untrained(config: StudyConfig, where: str) -> set[str]:
    """The languages of entries with ``trained: false``, after checking each entry's
    shape; such a language may not be a source (its task representations would train
    with it) nor be given ``trained: true`` by another entry."""
    flags: dict[str, bool] = {}
    for i, entry in enumerate(config.composed, start=1):
        at = f"{where}: composed entry {i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("language"), str):
            raise LangTransferError(f"{at} must be a mapping with a 'language', got "
                                    f"{entry!r:.60}")
        for key in entry:
            if key not in COMPOSED_KEYS:
                raise UnknownNameError(f"key in {at}", key, COMPOSED_KEYS)
        trained = entry.get("trained", True)
        if not isinstance(trained, bool):
            raise LangTransferError(f"{at}: trained must be true or false, got {trained!r:.40}")
        language = get_language(entry["language"]).code
        if flags.setdefault(language, trained) != trained:
            raise LangTransferError(f"{at}: trained: {str(trained).lower()} for {language} "
                                    "contradicts an earlier entry")
        if not trained and language in config.sources:
            raise LangTransferError(
                f"{at}: {language} is a source, so its language representation is trained "
                "(task representations train with it); trained: false is for targets only"
            )
    return {lang for lang, trained in flags.items() if not trained}


def _unique_codes(values: list[Any], what: str, untrained: set[str]) -> list[str]:
    codes: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise LangTransferError(f"{what}: {value!r:.40} is not a language")
        code = get_language(value).code
        if code in codes:
            raise LangTransferError(f"{what}: language {code!r} repeats")
        if code in untrained:
            raise LangTransferError(f"{what}: {code} has no trained representation "
                                    "(trained: false)")
        codes.append(code)
    return codes


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_kind_tables(name: str, value: Any, where: str) -> None:
    role = name.removesuffix("_training")
    kind_keys = ROLE_KEYS[role]
    if not isinstance(value, dict):
        raise LangTransferError(f"{where}: {name} must be a mapping of prompt/adapter settings")
    for kind, settings in value.items():
        if kind not in kind_keys:
            raise UnknownNameError(f"representation kind in {name}", kind, kind_keys)
        if settings is None:  # `prompt:` with nothing under it: the defaults
            value[kind] = settings = {}
        if not isinstance(settings, dict):
            raise LangTransferError(f"{where}: {name}.{kind} must be a mapping of settings")
        options = {option.key: option for option in get_kind(kind).options}
        for key, item in settings.items():
            if key not in kind_keys[kind]:
                raise UnknownNameError(f"key in {name}.{kind}", key, kind_keys[kind])
            problem = options[key].problem(item) if key in options else None
            if key in TASK_FLAGS and not isinstance(item, bool):
                problem = "must be true or false"
            if problem:
                raise LangTransferError(f"{where}: {name}.{kind}.{key} {problem}, got {item!r:.40}")
        problem = get_kind(kind).check_values(role, settings)
        if problem:
            raise LangTransferError(f"{where}: {name}.{kind}.{problem}")


def _string_tree(value: Any, depth: int) -> bool:
    """A string, or (``depth`` levels of) mappings of strings to such trees."""
    if isinstance(value, str):
        return True
    return depth > 0 and isinstance(value, dict) and all(
        isinstance(k, str) and _string_tree(v, depth - 1) for k, v in value.items()
    )


def check_types(config: StudyConfig, where: str) -> None:
    """Each key holds a value of its type, so nothing later trips over a list given for a
    number (and no YAML alias bomb survives into hashing: values are shallow trees)."""

    def fail(key: str, wanted: str) -> None:
        value = getattr(config, key)
        raise LangTransferError(f"{where}: {key!r} must be {wanted}, got {value!r:.60}")

    for key in ("output", "model"):
        if not isinstance(getattr(config, key), str) or not getattr(config, key):
            fail(key, "a non-empty string")
    for key in ("sources", "targets", "tasks", "configurations"):
        value = getattr(config, key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            fail(key, "a list of names")
    for key in ("task_modules", "languages_file"):
        value = getattr(config, key)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            fail(key, "a path or module name, or a list of them")
    for key in ("seed", "sequence_length"):
        if not _is_int(getattr(config, key)):
            fail(key, "an integer")
    get_profile(config.profile)  # an unknown one names the profiles
    check_seeds(config.seeds, where)
    for key in ("max_documents", "max_train_examples", "max_eval_examples"):
        value = getattr(config, key)
        if value is not None and not (_is_int(value) and value >= 1):
            fail(key, "a positive integer or null")
    value = config.validation_documents
    if not ((_is_int(value) and value >= 1) or (isinstance(value, float) and 0 < value < 1)):
        fail("validation_documents", "a document count (>= 1) or a fraction in (0, 1)")
    if not _string_tree(config.corpus, 1) or (
        isinstance(config.corpus, str) and config.corpus not in ("wikipedia", *FIXTURE_SOURCES)
    ):
        fail("corpus", "'wikipedia', 'fixtures' or a mapping language -> file")
    if not _string_tree(config.data, 3):
        fail("data", f"'hub', 'fixtures', '{DEMO_DATA}', a path, or a mapping task -> language "
             "-> split -> file")
    if config.models != []:
        if config.model != DEFAULT_MODEL:
            raise LangTransferError(
                f"{where}: give either 'model' ({config.model}) or 'models', not both"
            )
        parse_models(config.models)
    _check_evaluation(config.evaluation, where)
    parse_slurm(config.slurm, where)


def check_seeds(seeds: Any, where: str) -> None:
    """``seeds``: absent, or a non-empty list of distinct integers."""
    if seeds is None:
        return
    if not isinstance(seeds, list) or not seeds:
        raise LangTransferError(f"{where}: 'seeds' must be a non-empty list of integers "
                                f"(training seeds, e.g. [42, 43, 44]), got {seeds!r:.60}")
    for i, seed in enumerate(seeds):
        if not _is_int(seed):
            raise LangTransferError(f"{where}: seeds: {seed!r:.40} is not an integer; seeds "
                                    "are integers, e.g. [42, 43, 44]")
        if seed in seeds[:i]:
            raise LangTransferError(f"{where}: seeds: {seed} is listed twice; each seed "
                                    "trains and evaluates the grid once")


def _check_evaluation(evaluation: Any, where: str) -> None:
    if not isinstance(evaluation, dict):
        raise LangTransferError(f"{where}: 'evaluation' must be a mapping of evaluation "
                                f"settings, got {evaluation!r:.60}")
    for key, item in evaluation.items():
        if key not in EVALUATION_KEYS:
            raise UnknownNameError("key in evaluation", key, EVALUATION_KEYS)
        if EVALUATION_KEYS[key] is str:
            ok, wanted = isinstance(item, str), "a string"
        else:  # max_new_tokens null: evaluate's budget, as when it is not given
            ok = (_is_int(item) and item >= 1) or (item is None and key == "max_new_tokens")
            wanted = "a positive integer"
        if not ok:
            raise LangTransferError(f"{where}: evaluation.{key} must be {wanted}, got {item!r:.40}")
    check_choice("evaluation.long_inputs", evaluation.get("long_inputs", "first"), LONG_INPUTS)
    scoring = evaluation.get("scoring", "generate")
    if scoring not in SCORING:
        raise UnknownNameError("evaluation.scoring", scoring, SCORING)
    unused = unused_by_ranking(**evaluation) if scoring == "rank" else []
    if unused:  # they would be hashed and ignored
        raise LangTransferError(
            f"{where}: evaluation.{unused[0]} has no effect with scoring 'rank' (label "
            "ranking generates nothing); drop it, or use scoring 'generate'"
        )


def check_settings(config: StudyConfig, where: str) -> None:
    """The checks of :data:`PER_MODEL_KEYS`' values, for the study and for each base."""
    if not _is_int(config.sequence_length):
        raise LangTransferError(f"{where}: 'sequence_length' must be an integer, got "
                                f"{config.sequence_length!r:.60}")
    if config.sequence_length < 16:
        raise LangTransferError(f"{where}: sequence_length {config.sequence_length} is below 16")
    _check_evaluation(config.evaluation, where)
    _check_kind_tables("language_training", config.language_training, where)
    _check_kind_tables("task_training", config.task_training, where)
    for role in ("language", "task"):
        for kind in KINDS:
            config.train_settings(role, kind)  # raise on bad values
            config.spec(role, kind, SpecContext(role, "Language", "an instruction",
                                                label_words=["label"], seed=config.seed))
            table = config.language_training if role == "language" else config.task_training
            if config.seeds and len(config.seeds) > 1 and "seed" in table.get(kind, {}):
                raise LangTransferError(
                    f"{where}: {role}_training.{kind}.seed would train every one of the "
                    f"seeds {config.seeds} alike; drop it (each seed of 'seeds' is used)"
                )
