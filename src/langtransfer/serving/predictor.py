"""Predictions from one loaded base for many (task, language) pairs: the Python API that
``langtransfer serve`` puts behind HTTP.

A :class:`Predictor` holds one
:class:`~langtransfer.composition.loaded_base.LoadedBase` and a set of *entries*: (task,
target language, configuration, source language) with the language and task
representation directories that compose it. Sources:

* a **study output directory** (it holds ``study.json``): one entry per result record of
  the loaded base, composed from the study's representation directories, predicting with
  the study's evaluation settings (scoring, generation budget, beams, input length), so a
  prediction equals the study's own prediction for the same input;
* **representation directories or hub ids**: every task representation is paired with
  each given language representation of the kind its configuration needs (its
  configuration is recorded in its training manifest); a configuration without a language
  representation (``ta``, ``stp``) serves every language given plus the task's source.

**The default** for a (task, language) when a request names no configuration or source:
from a study, its best entry on that target by the task's primary metric (ties: the
paper's configuration order, then the source); from representation directories, the first
in :data:`DEFAULT_PREFERENCE` (the target's own language representation before none), then
the source in the order given. ``Predictor.load(..., defaults={"nli": "la+ta"})`` names the
default configuration per task instead.

Inputs are the task's own example fields without the gold (``{"premise", "hypothesis"}``
for NLI; a plain string for a task with one input field), formatted by the task's
formatter. An input longer than ``max_length`` tokens is cut, keeping the end token, as
evaluation cuts it, and its prediction says ``truncated=True``. Before formatting and
tokenizing, each text field is cut to :func:`input_char_cap` characters, enough for
``max_length`` tokens, so a very long input costs no more than one at the cap. Outputs
are parsed by the task's (strict) parser into JSON-able values: answer text (QA), a list of
``{"type", "text"}`` spans (NER), a class name or ``None`` when unreadable
(classification); ``raw`` is the generated text (the chosen label word when ranking).

Batching: rows of entries that share a configuration and generation settings run in the
same length-sorted batches, one forward / generate each, whatever their tasks and
languages: one composed model holds the group's language and task representations as
banks (:meth:`~langtransfer.composition.composed.ComposedModel.set_languages` /
:meth:`~langtransfer.composition.composed.ComposedModel.set_tasks`). Different
configurations, scoring or generation budgets, or prompts of different lengths run as
separate calls; beam search with a kind that splits rows (adapters) runs each entry alone.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from langtransfer.base.loading import FINGERPRINT_KEYS, fingerprint
from langtransfer.composition.loaded_base import LoadedBase
from langtransfer.configurations import (
    STUDY_CONFIGURATIONS,
    configuration_for,
    get_configuration,
)
from langtransfer.errors import CorruptFileError, LangTransferError, UnknownNameError
from langtransfer.inference.evaluate import generate_texts, rank_labels
from langtransfer.languages import get_language
from langtransfer.options import REFERENCE_MAX_NEW_TOKENS, SCORING
from langtransfer.representations.kinds import get_kind, kind_of
from langtransfer.representations.location import MANIFEST
from langtransfer.representations.store import read_manifest
from langtransfer.tasks import get_task
from langtransfer.tasks.encoding import cut

#: The default configuration without study results: the paper's best on average first,
#: configurations with the target's own language representation before those without.
DEFAULT_PREFERENCE: tuple[str, ...] = ("slp+ta", "la+ta", "slp+stp", "la+stp", "ta", "stp",
                                       "base")
#: The study's marker file (``langtransfer.study.run.STUDY_FILE``; not imported: that module
#: pulls in training).
STUDY_FILE = "study.json"
DEFAULT_MAX_LENGTH = 256
#: The input cap is this many times ``max_length`` x the longest token, in characters.
CAP_FACTOR = 2


def max_token_chars(tokenizer: Any) -> int:
    """The most characters one token can stand for: the longest entry of the tokenizer's
    vocabulary, added and special tokens included (a text may hold ``</s>``). SentencePiece's
    ``▁`` stands for one space; a byte-level BPE piece has one character per byte, at least
    as many as the characters it covers; ByT5's byte tokens cover at most one."""
    return max(1, max(map(len, tokenizer.get_vocab()), default=1))


def input_char_cap(max_length: int, token_chars: int) -> int:
    """Characters of one input field that hold the first ``max_length`` tokens of the input
    with room to spare: ``CAP_FACTOR * max_length * token_chars``.

    Why cutting a field there before tokenizing changes nothing the model reads: each
    token covers at most ``token_chars`` characters, so the first half of the cap holds at
    least ``max_length`` tokens, and the model reads only the first ``max_length - 1``
    tokens and the end token. A cut can change the tokens of the word it falls in, never
    those before it: SentencePiece and byte-level BPE tokenize each whitespace-separated
    word on its own; ByT5 maps each character to its bytes (only a special token's text,
    at most ``token_chars`` characters, spans several). The second half of the cap is that
    word's room. The fields before the cut one are whole, so the input's first
    ``max_length`` tokens come from text before the cut either way.

    Where that does not hold (docs/serving.md): text that yields fewer tokens than its
    length allows still counts toward the cap -- characters the tokenizer's normalizer
    drops or merges (runs of spaces for SentencePiece), URLs the check-worthiness formatter
    removes, a run of characters outside a SentencePiece vocabulary (one unknown token) --
    so of such a field the model reads the first cap characters; and in a word longer than
    half the cap (no whitespace: e.g. unspaced scripts) a SentencePiece or BPE segmentation
    could in principle depend on where the word ends (the tests found no case)."""
    return CAP_FACTOR * max_length * token_chars


def cap_input(value: Any, chars: int) -> tuple[Any, bool]:
    """A request input with each text field cut to ``chars`` characters (a list of tokens
    to ``chars`` characters joined by spaces), and whether any was cut. Anything else is
    left for the task to accept or refuse; what lies past the cap is never read."""
    if isinstance(value, str):
        return (value[:chars], True) if len(value) > chars else (value, False)
    if isinstance(value, (list, tuple)):
        total = 0
        for i, item in enumerate(value):
            if total >= chars:
                return value[:i], True
            if isinstance(item, str) and total + len(item) > chars:
                return [*value[:i], item[: chars - total]], True
            total += (len(item) if isinstance(item, str) else 1) + 1
        return value, False
    if isinstance(value, Mapping):
        fields = {k: cap_input(v, chars) if isinstance(v, (str, list, tuple)) else (v, False)
                  for k, v in value.items()}
        if any(cut for _, cut in fields.values()):
            return {k: v for k, (v, _) in fields.items()}, True
    return value, False


@dataclass(frozen=True)
class PredictRequest:
    """One row: a task input in a language, optionally naming the configuration and the
    source language of the task representation (else the documented default)."""

    task: str
    language: str
    input: Mapping[str, Any] | str
    configuration: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class Prediction:
    """``output``: the parsed, JSON-able task output; ``raw``: the generated text;
    ``truncated``: the input was cut to the model's input length."""

    output: Any
    raw: str
    truncated: bool
    configuration: str = ""
    source: str | None = None


EntryKey = tuple[str, str, str, "str | None"]  # task, language, configuration, source


class CallKey(NamedTuple):
    """What the rows of one forward / generate call share (see ``Predictor._call_key``)."""

    configuration: str
    scoring: str
    max_new_tokens: int
    num_beams: int
    language_bank: Hashable  # what the bank's representations must share (a prompt length)
    task_bank: Hashable
    alone: EntryKey | None


@dataclass(frozen=True)
class Entry:
    """One servable (task, language, configuration, source) and how it predicts."""

    task: str
    language: str
    configuration: str
    source: str | None
    language_rep: Path | str | None = None  # a directory, or a hub id as given
    task_rep: Path | str | None = None
    score: float | None = None  # the study's primary metric on this target
    scoring: str = "generate"
    max_new_tokens: int = REFERENCE_MAX_NEW_TOKENS
    num_beams: int = 1
    max_length: int = DEFAULT_MAX_LENGTH
    default: bool = False

    @property
    def key(self) -> EntryKey:
        return self.task, self.language, self.configuration, self.source

    def describe(self, loaded: LoadedBase) -> dict[str, Any]:
        ids = {role: loaded.representation(p).id if p is not None else None
               for role, p in (("language", self.language_rep), ("task", self.task_rep))}
        return {"task": self.task, "language": self.language,
                "configuration": self.configuration, "source": self.source,
                "representations": ids, "default": self.default, "score": self.score,
                "scoring": self.scoring}


class Predictor:
    """Parsed task outputs for rows in any (task, language) the loaded entries serve.

    Build one with :meth:`load`. Calls are serialised by a lock (one base, one forward at
    a time); the HTTP server's batcher feeds :meth:`predict_requests`.
    """

    def __init__(self, loaded: LoadedBase, entries: Iterable[Entry], *, batch_size: int = 32):
        """``entries``: what to serve (:meth:`load` builds them); the first of each
        (task, language) with ``default`` set is its default, else the first."""
        if batch_size < 1:
            raise LangTransferError(f"batch_size must be >= 1, got {batch_size}")
        self.loaded = loaded
        self.batch_size = batch_size
        self.entries: dict[EntryKey, Entry] = {}
        for entry in entries:
            self.entries.setdefault(entry.key, entry)
        if not self.entries:
            raise LangTransferError("nothing to serve: the sources hold no task entries")
        self.calls: dict[EntryKey, CallKey] = {k: self._call_key(e)
                                               for k, e in self.entries.items()}
        self._composed: dict[CallKey, Any] = {}
        self._lock = threading.Lock()

    # -- loading --------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        sources: str | Path | Sequence[str | Path],
        *,
        model: str | LoadedBase | None = None,
        batch_size: int = 32,
        defaults: Mapping[str, str] | None = None,
    ) -> Predictor:
        """A predictor for ``sources``: a study output directory, representation
        directories or hub ids (a mix is fine). ``model``: a base name or a
        :class:`LoadedBase` (default: the base the sources were trained on).
        ``defaults``: task -> the configuration its requests get by default."""
        if isinstance(sources, (str, Path)):
            sources = [sources]
        if not sources:
            raise LangTransferError("Predictor.load needs at least one source")
        studies = [Path(s) for s in sources if (Path(s) / STUDY_FILE).is_file()]
        reps = [s for s in sources if not (Path(s) / STUDY_FILE).is_file()]
        loaded = LoadedBase.of(model) if model is not None else LoadedBase.load(
            _trained_on(studies, reps)
        )
        entries: list[Entry] = []
        for study in studies:
            entries += _study_entries(study, loaded)
        entries += _representation_entries(reps, loaded)
        predictor = cls(loaded, _mark_defaults(entries, defaults or {}), batch_size=batch_size)
        predictor.prepare()
        return predictor

    def prepare(self) -> None:
        """Compose every call group now (adapters into the base), so a representation
        that will not load fails here and the first request pays no loading
        (:meth:`load` calls it; otherwise groups compose on first use)."""
        with self._lock:
            try:
                for call in dict.fromkeys(self.calls.values()):
                    self._composed_for(call)
            except BaseException:
                self._close()
                raise

    # -- what can be asked ------------------------------------------------------------

    def available(self) -> list[dict[str, Any]]:
        """Every entry: task, language, configuration, source, representation ids,
        whether it is the default for its (task, language), its study score."""
        return [e.describe(self.loaded) for e in self.entries.values()]

    def entry(self, request: PredictRequest) -> Entry:
        """The entry a request runs on; an unknown name is an :class:`UnknownNameError`
        naming the valid ones (for that task, language and configuration)."""
        task = request.task.strip().lower() if isinstance(request.task, str) else request.task
        entries = _pick(list(self.entries.values()), "task", task, lambda e: e.task)
        language = _language_code(request.language)
        entries = _pick(entries, f"language for task {task}", language, lambda e: e.language)
        if request.configuration is not None:
            entries = _pick(entries, f"configuration for {task} in {language}",
                            request.configuration, lambda e: e.configuration)
        if request.source is not None:
            entries = _pick(entries, f"source language for {task} in {language}",
                            _language_code(request.source), lambda e: e.source)
        # Entries are in preference order: the default first, then the next best.
        return entries[0]

    def validate(self, request: PredictRequest) -> None:
        """Raise :class:`UnknownNameError` (naming the valid values) for a request's
        unknown task, language, configuration or source, and a
        :class:`LangTransferError` for an input the task cannot read (up to the cap: what
        lies past it is never read)."""
        entry = self.entry(request)
        get_task(entry.task).request_input(self._cap(entry, request.input)[0])

    def cap(self, request: PredictRequest) -> tuple[PredictRequest, bool]:
        """``request`` with each text field of its input cut to :func:`input_char_cap`
        characters of its entry's ``max_length`` (and only the fields the task reads), and
        whether any was cut (its prediction is then ``truncated``). The server keeps only
        the cut inputs of queued requests; the predictor cuts what it is given itself, so
        this changes no prediction. An unknown name raises as :meth:`entry` does."""
        value, cut_ = self._cap(self.entry(request), request.input)
        return (request if value is request.input else replace(request, input=value)), cut_

    @functools.cached_property
    def token_chars(self) -> int:
        """:func:`max_token_chars` of the base's tokenizer."""
        return max_token_chars(self.loaded.tokenizer)

    def _cap(self, entry: Entry, value: Any) -> tuple[Any, bool]:
        """``value`` cut to the entry's cap; of an object, only the keys the task reads
        are kept (other keys are never read, and would be kept whole while queued)."""
        if isinstance(value, Mapping):
            task = get_task(entry.task)
            names = {n for f in task.input_fields for n in (f, *task.columns.get(f, ()))}
            value = {k: v for k, v in value.items() if k in names}
        return cap_input(value, input_char_cap(entry.max_length, self.token_chars))

    # -- predicting -------------------------------------------------------------------

    def predict(
        self,
        task: str,
        language: str,
        inputs: Sequence[Mapping[str, Any] | str] | Mapping[str, Any] | str,
        *,
        configuration: str | None = None,
        source: str | None = None,
    ) -> list[Prediction]:
        """Predictions for ``inputs`` (one input or a list) of one task and language, in
        batches of ``batch_size``; a bad input raises."""
        if isinstance(inputs, (str, Mapping)):
            inputs = [inputs]
        requests = [PredictRequest(task, language, x, configuration, source) for x in inputs]
        out: list[Prediction] = []
        for result in self.predict_requests(requests):
            if isinstance(result, LangTransferError):
                raise result
            out.append(result)
        return out

    def predict_requests(
        self, requests: Sequence[PredictRequest]
    ) -> list[Prediction | LangTransferError]:
        """Predictions for rows of any tasks and languages, in their order; a bad row gets
        its error in its place and does not stop the others. Rows whose entries share a
        call (:meth:`_call_key`) run in the same batches."""
        results: list[Prediction | LangTransferError | None] = [None] * len(requests)
        calls: dict[CallKey, list[tuple[int, Entry, list[int], bool]]] = {}
        tokenizer = self.loaded.tokenizer
        for i, request in enumerate(requests):
            try:
                entry = self.entry(request)
                value, capped = self._cap(entry, request.input)
                text = get_task(entry.task).request_input(value)
            except LangTransferError as e:
                results[i] = e
                continue
            ids = tokenizer(text, truncation=False)["input_ids"]
            calls.setdefault(self.calls[entry.key], []).append(
                (i, entry, cut(ids, entry.max_length), capped or len(ids) > entry.max_length)
            )
        with self._lock:
            for call, rows in calls.items():
                try:
                    texts = self._run(call, [(e, r) for _, e, r, _ in rows])
                except LangTransferError as e:  # e.g. a representation that will not load
                    for i, *_ in rows:
                        results[i] = e
                    continue
                for (i, entry, _, truncated), raw in zip(rows, texts, strict=True):
                    output = _jsonable(get_task(entry.task).parse(raw))
                    results[i] = Prediction(output, raw, truncated, entry.configuration,
                                            entry.source)
        return [r for r in results if r is not None]

    def _call_key(self, entry: Entry) -> CallKey:
        """What rows must share to run in one forward / generate: the configuration (its
        kinds), the scoring and generation settings, and what each bank's representations
        must share (their kind's ``bank_key``: a gather stacks prompts of one length). Beam
        search on a kind that splits rows (adapters: ``BatchSplit`` needs fixed row counts)
        cannot run a batch of several entries, so such an entry runs alone."""
        configuration = entry.configuration.split(" ")[0]  # a variant label: same kinds
        kinds = get_configuration(configuration)
        banks = []
        for path in (entry.language_rep, entry.task_rep):
            rep = self.loaded.representation(path) if path is not None else None
            banks.append(kind_of(rep).bank_key(rep) if rep is not None else None)
        alone = entry.num_beams != 1 and any(get_kind(k).splits_rows for k in kinds.kinds if k)
        return CallKey(configuration, entry.scoring, entry.max_new_tokens, entry.num_beams,
                       banks[0], banks[1], entry.key if alone else None)

    def _run(self, call: CallKey, rows: list[tuple[Entry, list[int]]]) -> list[str]:
        """One call group's rows through one composed model holding every language and
        task representation of the group as banks; rows name theirs by bank index."""
        composed, language_bank, task_bank = self._composed_for(call)
        tokenizer = self.loaded.tokenizer
        language_ids = [language_bank[str(e.language_rep)] for e, _ in rows] if (
            language_bank) else None
        task_ids = [task_bank[str(e.task_rep)] for e, _ in rows] if task_bank else None
        tokens = [r for _, r in rows]
        if call.scoring == "rank":
            tasks = [get_task(e.task) for e, _ in rows]
            return rank_labels(composed, tokenizer, tokens,
                               [list(t.label_words.values()) for t in tasks],
                               batch_size=self.batch_size, language_ids=language_ids,
                               task_ids=task_ids,
                               max_target_length=[t.target_length for t in tasks])
        return generate_texts(composed, tokenizer, tokens, batch_size=self.batch_size,
                              max_new_tokens=call.max_new_tokens, num_beams=call.num_beams,
                              language_ids=language_ids, task_ids=task_ids)

    def _composed_for(self, call: CallKey) -> tuple[Any, dict[str, int], dict[str, int]]:
        """The composed model of a call group (built on first use) and its banks' indices
        by representation directory."""
        cached = self._composed.get(call)
        if cached is not None:
            return cached
        members = [e for k, e in self.entries.items() if self.calls[k] == call]
        loaded = self.loaded
        paths = {role: list(dict.fromkeys(str(p) for e in members
                                          if (p := getattr(e, f"{role}_rep")) is not None))
                 for role in ("language", "task")}
        composed = loaded.compose("base")
        try:
            if paths["language"]:
                composed.set_languages({p: loaded.representation(p) for p in paths["language"]})
            if paths["task"]:
                composed.set_tasks({p: loaded.representation(p) for p in paths["task"]})
        except BaseException:
            composed.close()
            raise
        composed.eval()
        banks = tuple({p: i for i, p in enumerate(paths[r])} for r in ("language", "task"))
        self._composed[call] = cached = (composed, *banks)
        return cached

    def close(self) -> None:
        """Give the base back as it was loaded (every composed model closed)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        for composed, _, _ in self._composed.values():
            composed.close()
        self._composed.clear()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- helpers ------------------------------------------------------------------------


def _language_code(value: object) -> object:
    """A language code or English name -> its code; anything else as is (then named)."""
    try:
        return get_language(value).code if isinstance(value, str) else value
    except UnknownNameError:
        return value


def _pick(entries: list[Entry], what: str, value: object, attr: Any) -> list[Entry]:
    kept = [e for e in entries if attr(e) == value]
    if not kept:
        raise UnknownNameError(what, value, {str(attr(e)) for e in entries})
    return kept


def _jsonable(value: Any) -> Any:
    """Parsed task outputs as JSON values: NER spans become ``{"type", "text"}``."""
    if isinstance(value, tuple) and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return [{"type": k, "text": t} for k, t in value]
    return value


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"{path}: cannot read ({e})") from e


def _study_bases(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, name) of each base model of a study (label "" in a single-model study)."""
    from langtransfer.study.config import parse_models

    if config.get("models"):
        return [(b.label, b.name) for b in parse_models(config["models"])]
    model = config.get("model")
    return [("", model)] if isinstance(model, str) else []


def _trained_on(studies: list[Path], reps: list[str | Path]) -> str:
    """The base model the sources were trained on (one name, or an error naming them)."""
    from langtransfer.representations.store import resolve_location

    names: dict[str, str] = {}
    for study in studies:
        for _, name in _study_bases(_read_json(study / STUDY_FILE).get("config") or {}):
            names.setdefault(name, str(study))
    for location in reps:
        name = read_manifest(resolve_location(location))["base_model"].get("name")
        if isinstance(name, str) and name:
            names.setdefault(name, str(location))
    if len(names) != 1:
        found = ", ".join(f"{n} ({w})" for n, w in names.items()) or "none recorded"
        raise LangTransferError(
            f"the sources name {len(names)} base models ({found}): choose one with model= "
            "(`serve --model`)"
        )
    return next(iter(names))


def _fits(recorded: Mapping[str, Any], loaded: LoadedBase) -> bool:
    """Whether a record's base-model fingerprint is the loaded base's."""
    actual = fingerprint(loaded.model)
    return all(recorded.get(k, actual[k]) == actual[k] for k in ("name", *FINGERPRINT_KEYS))


def _study_entries(study: Path, loaded: LoadedBase) -> list[Entry]:
    """One entry per result record of ``study`` made on the loaded base (in a
    multi-model study, the records of the base of that name, or of that shape)."""
    from langtransfer.results.records import read_records
    from langtransfer.study.jobs import language_rep_path, task_rep_path

    config = _read_json(study / STUDY_FILE).get("config") or {}
    max_length = (config.get("evaluation") or {}).get("max_length", DEFAULT_MAX_LENGTH)
    records = read_records(study)
    bases = _study_bases(config)
    label = next((lab for lab, name in bases if name == loaded.name), None)
    fitting = [r for r in records if (r.get("model_label") or "") == label] if (
        label is not None) else [r for r in records if _fits(r.get("model") or {}, loaded)]
    if records and not fitting:
        raise LangTransferError(
            f"{study}: no result was made on base model {loaded.name!r}; the study's: "
            f"{', '.join(name for _, name in bases) or 'none recorded'} (pass model=)"
        )
    # A study of several training seeds serves its first seed's representations (the
    # later seeds' replicate them, for the report's intervals).
    fitting = [r for r in fitting if not r.get("replicate")]
    output = config.get("output")
    entries = []
    for r in fitting:
        task, configuration = r["task"], r["configuration"]
        source, target = r["source_language"], r["target_language"]
        variant, model_label = r.get("variant") or "", r.get("model_label") or ""
        kinds = get_configuration(configuration)
        paths: dict[str, Path | str | None] = {"language": None, "task": None}
        for role, layout in (
            ("language", language_rep_path(study, kinds.language_kind or "", target,
                                           model_label, variant)),
            ("task", task_rep_path(study, task, source, configuration, model_label, variant)),
        ):
            if kinds.kind(role) is None:
                continue
            recorded = ((r.get("representations") or {}).get(role) or {}).get("path")
            candidates = [] if not recorded else [Path(recorded)]
            if recorded and isinstance(output, str) and Path(recorded).is_relative_to(output):
                # The study wrote paths under its output as given; it may have moved.
                candidates.append(study / Path(recorded).relative_to(output))
            found = next((p for p in (*candidates, layout) if (p / MANIFEST).is_file()), None)
            if found is None:
                raise CorruptFileError(
                    f"{study}: the {role} representation of {task}/{configuration}/"
                    f"{source}->{target} is missing (looked at {recorded or layout})"
                )
            paths[role] = found
        generation = r.get("generation") or {}
        label = f"{configuration} [{variant}]" if variant else configuration
        primary = r.get("primary_metric")
        score = (r.get("metrics") or {}).get(primary) if isinstance(primary, str) else None
        entries.append(Entry(
            task, target, label, source, paths["language"], paths["task"],
            score=score if isinstance(score, (int, float)) else None,
            scoring=str(r.get("scoring")) if r.get("scoring") in SCORING else "generate",
            max_new_tokens=generation.get("max_new_tokens") or REFERENCE_MAX_NEW_TOKENS,
            num_beams=generation.get("num_beams") or 1,
            max_length=max_length,
        ))
    return entries


def _representation_entries(locations: list[str | Path], loaded: LoadedBase) -> list[Entry]:
    """Entries pairing each task representation with the language ones its
    configuration needs (see the module docstring)."""
    languages: dict[tuple[str, str], str | Path] = {}  # (kind, language) -> location
    tasks = []
    for location in locations:
        rep = loaded.representation(location)
        if rep.role == "language":
            assert rep.language is not None
            languages.setdefault((rep.kind, rep.language), location)
        else:
            tasks.append((rep, location))
    entries = []
    for rep, location in tasks:
        configuration = rep.training.get("configuration")
        source = rep.training.get("source_language")
        if configuration is None or get_configuration(configuration).task_kind != rep.kind:
            configuration = configuration_for(None, rep.kind).name  # no language rep recorded
        kind = get_configuration(configuration).language_kind
        source = source if isinstance(source, str) else None
        if kind is not None:
            for (k, language), where in languages.items():
                if k == kind:
                    entries.append(Entry(rep.task or "", language, configuration, source,
                                         where, location))
        else:
            codes = dict.fromkeys([lang for _, lang in languages] + ([source] if source else []))
            entries += [Entry(rep.task or "", language, configuration, source, None, location)
                        for language in codes]
    if locations and not tasks:
        raise LangTransferError(
            "the representation sources hold no task representation: a predictor needs at "
            "least one (a study directory holds them all)"
        )
    return entries


def _mark_defaults(entries: list[Entry], defaults: Mapping[str, str]) -> list[Entry]:
    """The entries of each (task, language) in preference order, the first marked as the
    default (see the module docstring)."""
    for task, configuration in defaults.items():
        have = {e.configuration for e in entries if e.task == task}
        if configuration not in have:
            raise UnknownNameError(f"default configuration for task {task}", configuration, have)
    order = {name: i for i, name in enumerate(DEFAULT_PREFERENCE)}
    paper = {name: i for i, name in enumerate(STUDY_CONFIGURATIONS)}
    sources = {e.source: i for i, e in reversed(list(enumerate(entries)))}

    def rank(e: Entry) -> tuple:
        named = defaults.get(e.task)
        if named is not None:
            return (e.configuration != named, sources[e.source])
        if e.score is not None:
            return (0, -e.score, paper.get(e.configuration.split(" ")[0], 99),
                    e.configuration, str(e.source))
        return (1, order.get(e.configuration, 99), sources[e.source])

    groups: dict[tuple[str, str], list[Entry]] = {}
    for e in entries:
        groups.setdefault((e.task, e.language), []).append(e)
    out = []
    for group in groups.values():
        group.sort(key=rank)
        out += [replace(group[0], default=True), *group[1:]]
    return out


__all__ = ["DEFAULT_PREFERENCE", "Entry", "PredictRequest", "Prediction", "Predictor", "cap_input",
           "input_char_cap", "max_token_chars"]
