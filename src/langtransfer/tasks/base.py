"""The task abstraction: data sources, text-to-text formats, parsers and metrics.

A task turns a raw record (a row of a hub dataset or a local file) into an
:class:`Example` with the model's ``input`` and ``target`` text and the ``gold`` value the
metric compares against; it parses generated text back into a prediction and scores
predictions against golds. Training and evaluation only go through this interface, so a
user adds a task by subclassing :class:`Task` and calling
:func:`langtransfer.tasks.register_task`, without editing the package.

Where data comes from, for ``load(language, split, path=None, source=...)``:

* ``path`` given: a directory holding ``<language>.<split>.<ext>`` files, or a set's own
  release as the reference read it (``squad-2.0-cs/dev-v2.0.json``, MultiClaim's
  ``train-all.csv``...: the source's ``local`` files); or one file (``.json``, ``.jsonl``,
  ``.csv``, ``.tsv``, ``.parquet``), cut so no two splits overlap
  (:func:`~langtransfer.tasks.sources.single_file_pick`).
* ``source="paper"`` (default): the data the paper's reference implementation used, from the
  Hugging Face hub by file (:mod:`langtransfer.tasks.sources`) where public, with the
  reference's splits; non-public sets need ``path``.
* ``source="fixtures"``: the small original files shipped in ``langtransfer/data/tasks/
  <task>/<language>.<split>.<ext>``, for tests and demos without network.

Every metric is a percentage (0-100), as the paper reports them.

Readings: where the paper's reference code reads generated text more leniently than a
careful evaluation would (an unrecognised NLI answer counted as ``Maybe``, NER pieces
that are not ``TYPE: text`` dropped), a task has two readings. The **reference** reading
gives the unprefixed metrics and the primary metric, the figures the paper reports; the
**strict** reading (unrecognised text is wrong) gives the same metrics prefixed
``strict_``. ``n_unparseable`` always counts what the strict parser could not read.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langtransfer import profiles
from langtransfer.errors import (
    DataFormatError,
    LangTransferError,
    MissingSplitError,
    UnknownNameError,
)
from langtransfer.jsonl import iter_json_lines, json_error
from langtransfer.tasks.sources import (
    DataSource,
    apply_pick,
    describe_pick,
    hub_files,
    matching_files,
    parquet_class_names,
    read_parquet_files,
    single_file_pick,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

#: Splits every built-in task knows. Not every language has every split.
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: Where the shipped fixture files live: ``<FIXTURES_DIR>/<task>/<language>.<split>.<ext>``.
FIXTURES_DIR = Path(__file__).resolve().parents[1] / "data" / "tasks"
#: Names accepted for ``load(..., source=...)``.
SOURCE_NAMES: tuple[str, ...] = ("paper", "fixtures")
#: Column names a file may use to say which language a row is in (rows are filtered).
LANGUAGE_COLUMNS: tuple[str, ...] = ("language", "lang")

_EXTENSIONS = (".json", ".jsonl", ".csv", ".tsv", ".parquet")
#: Prefix of the metrics of the strict reading, for tasks that also have a reference reading.
STRICT_PREFIX = "strict_"
#: How integer labels are read where the data names its classes (the ``datasets``
#: features a parquet file carries, as the hub's export does): ``by_name`` maps each id
#: to the task class its name says (the default); ``positional`` reads id ``i`` as the
#: task's ``classes[i]`` whatever the names, as the reference did.
LABEL_ORDERS: tuple[str, ...] = profiles.LABEL_ORDERS
#: What happens to a row whose gold answer text is empty (QA): ``drop`` it (the default),
#: or ``keep`` it, as the reference did (it then scores 0 F1); rows without any answer
#: entry are dropped either way.
EMPTY_ANSWERS: tuple[str, ...] = profiles.EMPTY_ANSWERS


@dataclass(frozen=True)
class Example:
    """One example: model input and target text plus the gold value the metric uses.

    ``gold`` is task-specific: a tuple of answer strings (QA), a tuple of ``(type, text)``
    spans (NER), or a class name (classification tasks).
    """

    id: str
    language: str
    input: str
    target: str
    gold: Any


@dataclass(frozen=True)
class Row:
    """A raw record and where it came from (``line``: 1-based line or row number)."""

    data: dict[str, Any]
    line: int | None = None


@dataclass(frozen=True)
class TaskData:
    """What :meth:`Task.load_data` read: the examples, where from (``where``, as errors
    name it), and ``label_mapping``: a note when the data's class names and the
    reference's positional reading of its integer labels disagree (which one was used
    and what the other would have given; written into ``metrics.json``), else None."""

    examples: list[Example]
    where: str
    label_mapping: str | None = None


@dataclass(frozen=True)
class _Read:
    """Rows as read, before the label reading, the source's schema mapping and its cut
    (``source``: the paper source whose ``prepare``/``pick`` apply; None for plain files)."""

    where: str
    rows: list[Row]
    class_names: Mapping[str, tuple[str, ...]]
    source: DataSource | None = None


class Task:
    """Base class of tasks. Subclasses set the class attributes and implement the hooks.

    Class attributes:
        name: registry name (``qa``, ``ner``...).
        prompt_init_text: text a soft task prompt is initialised from, with ``{Language}``.
        label_words: class name -> target word, for classification tasks (empty otherwise).
        primary_metric: the metric training keeps the best checkpoint by.
        columns: canonical field -> accepted column names (first found wins); all required.
        optional_columns: the same for fields that may be absent (``id``...).
        file_types: local file extensions the task reads.
        sources: language -> split -> :class:`DataSource`, the paper's data.
        unavailable: language -> why the reference has no valid source for it (the cell
            is left out of a study rather than failing mid-run; see ``data_check``).
        splits: the splits this task knows.
        empty_prediction: the prediction used for a missing one (scores as wrong).
        target_length: target (label) length in tokens, end token included, that training
            cuts labels to (the reference's ``max_answer_length``); ``None``: not cut.
        reference_reading: whether :meth:`parse_reference` reads generations differently
            from :meth:`parse` (then both readings are scored, see the module docstring).
        metric_notes: metric name -> what it is, written into ``metrics.json``.
        metrics_version: bump it whenever parsing or scoring changes what a metric means
            (not only its note): :meth:`metrics_fingerprint` carries it into the settings
            hash of every study evaluation, so results scored the old way are rebuilt.
        target_fields: the required fields the target and gold come from (``label``,
            ``answers``); a prediction request gives the others (:attr:`input_fields`),
            which :meth:`format_input` must read alone.
    """

    name: str = ""
    prompt_init_text: str = ""
    label_words: Mapping[str, str] = {}
    primary_metric: str = ""
    columns: Mapping[str, tuple[str, ...]] = {}
    optional_columns: Mapping[str, tuple[str, ...]] = {"id": ("id",)}
    file_types: tuple[str, ...] = _EXTENSIONS
    sources: Mapping[str, Mapping[str, DataSource]] = {}
    unavailable: Mapping[str, str] = {}
    splits: tuple[str, ...] = SPLITS
    empty_prediction: Any = None
    target_length: int | None = None
    reference_reading: bool = False
    metric_notes: Mapping[str, str] = {}
    metrics_version: int = 1
    target_fields: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # ----------------------------------------------------------------- prompts
    def prompt_init(self, language_name: str) -> str:
        """The soft task prompt's init text for a language (its English name, ``Slovak``)."""
        return self.prompt_init_text.replace("{Language}", language_name)

    @property
    def fixtures_dir(self) -> Path:
        return FIXTURES_DIR / self.name

    # ------------------------------------------------------------------ loading
    def load(
        self,
        language: str,
        split: str,
        path: str | Path | None = None,
        *,
        source: str = "paper",
        label_order: str = "by_name",
        empty_answers: str = "drop",
    ) -> list[Example]:
        """Examples of one language and split, from ``path``, the hub, or the fixtures.

        ``label_order``: how integer labels are read where the data names its classes
        (see :data:`LABEL_ORDERS`); :meth:`load_data` also says when that mattered.
        ``empty_answers``: :data:`EMPTY_ANSWERS`."""
        return self.load_data(language, split, path, source=source,
                              label_order=label_order, empty_answers=empty_answers).examples

    def load_data(
        self,
        language: str,
        split: str,
        path: str | Path | None = None,
        *,
        source: str = "paper",
        label_order: str = "by_name",
        empty_answers: str = "drop",
    ) -> TaskData:
        """:meth:`load`'s examples with where they came from and how their labels were read."""
        if split not in self.splits:
            raise UnknownNameError(f"split of task {self.name}", split, self.splits)
        if label_order not in LABEL_ORDERS:
            raise UnknownNameError("label order", label_order, LABEL_ORDERS)
        profiles.check_choice("empty_answers", empty_answers, EMPTY_ANSWERS)
        if path is not None:
            read = self._read_path(Path(path), language, split)
        elif source == "fixtures":
            read = self._read_path(self.fixtures_dir, language, split, fixtures=True)
        elif source == "paper":
            read = self._read_source(self.data_source(language, split))
        else:
            raise UnknownNameError("data source", source, SOURCE_NAMES)
        where = read.where
        rows, label_mapping = self.read_labels(read.rows, read.class_names, where, label_order)
        if read.source is not None:
            rows = self._prepared(rows, read.source, where)
        rows = self.select(rows, language, where)
        rows = self._usable_rows(rows, where, keep_empty_answers=empty_answers == "keep")
        if not rows:
            raise DataFormatError(where, f"no {self.name} examples for language {language!r}")
        return TaskData(self._examples(rows, language, split, where), where, label_mapping)

    def read_labels(
        self, rows: list[Row], class_names: Mapping[str, tuple[str, ...]], where: str,
        label_order: str,
    ) -> tuple[list[Row], str | None]:
        """Rows with their labels read as ``label_order`` says, given the class names the
        data declares per column, and a note when that reading differs from the other one.
        Tasks without class labels keep the rows as they are."""
        return rows, None

    def resolve(
        self, language: str, split: str, path: str | Path | None = None, *, source: str = "paper"
    ) -> str:
        """Where :meth:`load` would read this language and split, without reading or
        downloading anything; a :class:`LangTransferError` says what is missing."""
        if split not in self.splits:
            raise UnknownNameError(f"split of task {self.name}", split, self.splits)
        if path is None and source == "paper":
            return self.data_source(language, split).describe()
        if path is None and source != "fixtures":
            raise UnknownNameError("data source", source, SOURCE_NAMES)
        directory = self.fixtures_dir if path is None else Path(path)
        if not directory.exists():
            raise LangTransferError(f"local path {directory} does not exist")
        if directory.is_file():
            return str(directory) + describe_pick(single_file_pick(directory, split))
        layout = None if path is None else self._layout(directory, language, split)
        if layout is None:
            return str(self._find_in_dir(directory, language, split, path is None))
        src, files, hub_copy = layout
        if hub_copy:  # src.describe() ends with the cut
            return f"{directory} (a copy of {src.describe()})"
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            copy = "" if src.dataset is None else (
                f", or from a copy of {src.describe()} laid out as the hub serves it "
                f"({' or '.join(src.file_patterns)})")
            raise LangTransferError(
                f"not found: {', '.join(missing)} (task {self.name} reads "
                f"{src.note or 'this set'} from {', '.join(src.local)} under {directory}{copy})"
            )
        return ", ".join(str(f) for f in files) + describe_pick(src.pick)

    def _usable_rows(self, rows: list[Row], where: str, keep_empty_answers: bool = False
                     ) -> list[Row]:
        """Drop the rows :meth:`usable` rejects (unanswerable questions); all gone: an error.
        ``keep_empty_answers`` is asked of :meth:`usable` only when set (a task of
        one's own may define ``usable(raw)`` alone)."""
        def usable(raw: Mapping[str, Any]) -> bool:
            if keep_empty_answers:
                return self.usable(raw, keep_empty_answers=True)
            return self.usable(raw)

        kept = [r for r in rows if usable(r.data)]
        if rows and not kept:
            raise DataFormatError(where, self.unusable_message(len(rows)))
        return kept

    def data_source(self, language: str, split: str) -> DataSource:
        """The paper's source for a language and split; errors name what exists."""
        if language in self.unavailable:
            raise LangTransferError(
                f"task {self.name} has no source for {language!r}: {self.unavailable[language]}; "
                f"languages with a {self.name} source: {', '.join(sorted(self.sources))}"
            )
        if language not in self.sources:
            raise UnknownNameError(f"language for task {self.name}", language, self.sources)
        by_split = self.sources[language]
        if split not in by_split:
            raise MissingSplitError(
                f"task {self.name} has no {split} data for {language!r}; available splits: "
                f"{', '.join(by_split) or 'none'} (or pass a local file with path=)"
            )
        return by_split[split]

    def _read_source(self, src: DataSource) -> _Read:
        """The paper's source: hub files (or a local-only set's error), with its class names;
        the source's schema mapping and cut are applied by the caller."""
        where = src.describe()
        if src.dataset is None:
            raise LangTransferError(
                f"task {self.name}: this data is not downloadable ({src.note or 'local file'}); "
                f"pass the directory holding {', '.join(src.local) or 'it'} with path= "
                "(CLI: --data; study: data.<task>.<language>)"
            )
        try:
            files = hub_files(src)
            return self._read_hub_files(src, files, where)
        except LangTransferError:
            raise
        except Exception as e:  # network, missing revision, offline mode: all user-fixable
            raise LangTransferError(
                f"cannot load {where} from the Hugging Face hub ({type(e).__name__}: {e}); "
                "download it first or pass a local file with path="
            ) from e

    def _read_hub_files(self, src: DataSource, files: list[Path], where: str) -> _Read:
        """A hub source's files, fetched or in a local copy laid out as the hub serves them:
        parquet through ``datasets`` (as the hub path always reads it), other files by type."""
        if all(f.suffix == ".parquet" for f in files):
            rows = [Row(r, i + 1) for i, r in enumerate(read_parquet_files(files))]
        elif len(files) == 1:  # its rows keep their line numbers
            rows = self.read_records(files[0])
        else:
            records = [r.data for f in files for r in self.read_records(f)]
            rows = [Row(r, i + 1) for i, r in enumerate(records)]
        return _Read(where, rows, parquet_class_names(files), src)

    def _prepared(self, rows: list[Row], src: DataSource, where: str) -> list[Row]:
        """The source's schema mapping (on the whole set, keeping its order), then its pick."""
        if src.prepare is not None:
            records = [r.data for r in rows]
            try:
                records = src.prepare(records)
            except KeyError as e:
                found = ", ".join(map(str, records[0])) if records else "none"
                raise DataFormatError(
                    where, f"{self.name} data is missing column {e} (found: {found})"
                ) from e
            except ValueError as e:
                raise DataFormatError(where, str(e)) from e
            rows = [Row(r, i + 1) for i, r in enumerate(records)]
        return apply_pick(rows, src.pick, where)

    def _read_path(
        self, path: Path, language: str, split: str, fixtures: bool = False
    ) -> _Read:
        if path.is_dir():
            layout = None if fixtures else self._layout(path, language, split)
            if layout is not None:
                return self._read_layout(path, *layout, language=language, split=split)
            path = self._find_in_dir(path, language, split, fixtures)
            return _Read(str(path), self.read_records(path), parquet_class_names([path]))
        if not path.exists():
            raise LangTransferError(
                f"data file {path} does not exist (data is a file, a directory of "
                "<language>.<split>.<ext> files, or 'fixtures' for the shipped samples)"
            )
        pick = single_file_pick(path, split)
        rows = apply_pick(self.read_records(path), pick, str(path))
        return _Read(str(path) + describe_pick(pick), rows, parquet_class_names([path]))

    def _layout(
        self, directory: Path, language: str, split: str
    ) -> tuple[DataSource, list[Path], bool] | None:
        """How a directory given for this cell is read, when it is not a directory of
        ``<language>.<split>.<ext>`` files (None): the paper source whose files it holds,
        those files, and whether they are a copy of a hub source (read as the hub's are).

        In order: the set's own release (the source's ``local`` names, all present); a
        copy of a hub source laid out as the hub serves it (files matching the source's
        patterns: ``<config>/<split>/*.parquet`` of the parquet export, or the raw files
        it names); ``<language>.<split>.<ext>`` files; else the release with its missing
        files (:meth:`resolve` names them). A directory that is none of these, for a hub
        source, is an error naming both layouts."""
        src = self.sources.get(language, {}).get(split)
        if src is None:
            return None
        release = [directory / name for name in src.local]
        if release and all(f.exists() for f in release):
            return src, release, False
        if src.dataset is not None:
            files = matching_files(directory, src.file_patterns)
            if files:
                return src, files, True
        if any(f.name.startswith(f"{language}.") for f in directory.iterdir()):
            return None
        if release:
            return src, release, False
        if src.dataset is not None:
            try:
                self._find_in_dir(directory, language, split, fixtures=False)
            except UnknownNameError as e:  # no <language>.* file: say what else would do
                raise LangTransferError(
                    f"{e}; nor is {directory} a copy of {src.describe()} laid out as the hub "
                    f"serves it ({' or '.join(src.file_patterns)})"
                ) from e
        return None

    def _read_layout(
        self, directory: Path, src: DataSource, files: list[Path], hub_copy: bool, *,
        language: str, split: str,
    ) -> _Read:
        where = self.resolve(language, split, directory)  # names any missing file
        if hub_copy:
            return self._read_hub_files(src, files, where)
        if src.reader is not None:
            rows = [Row(r, i + 1) for i, r in enumerate(src.reader(files))]
        else:
            rows = [r for f in files for r in self.read_records(f)]
        return _Read(where, rows, parquet_class_names(files), src)

    def _find_in_dir(self, directory: Path, language: str, split: str, fixtures: bool) -> Path:
        """``<language>.<split>.<ext>`` in a directory; errors list what the directory has."""
        found: dict[str, list[str]] = {}
        for f in sorted(directory.iterdir()):
            parts = f.name.split(".")
            if len(parts) == 3 and f".{parts[2]}" in self.file_types:
                found.setdefault(parts[0], []).append(parts[1])
                if parts[0] == language and parts[1] == split:
                    return f
        what = f"{self.name} fixtures" if fixtures else f"{self.name} files in {directory}"
        if language not in found:
            raise UnknownNameError(f"language for {what}", language, found)
        raise MissingSplitError(
            f"no {split} split for {language!r} in {what}; available splits: "
            f"{', '.join(found[language])} (files are named <language>.<split>.<ext>)"
        )

    def read_records(self, path: Path) -> list[Row]:
        """Rows of a local file, by extension. Subclasses add nested formats (SQuAD JSON)."""
        ext = path.suffix.lower()
        if ext not in self.file_types:
            raise DataFormatError(
                path, f"task {self.name} reads {', '.join(self.file_types)} files, not {ext!r}"
            )
        try:
            if ext == ".jsonl":
                return read_jsonl(path)
            if ext == ".json":
                return self._json_rows(path, read_json(path))
            if ext in (".csv", ".tsv"):
                return read_delimited(path, "\t" if ext == ".tsv" else ",")
            return read_parquet(path)
        except UnicodeDecodeError as e:
            raise DataFormatError(path, f"not UTF-8 text: {e}") from e

    def _json_rows(self, path: Path, obj: Any) -> list[Row]:
        """A JSON file: a list of records, or ``{"data": [...]}``."""
        if isinstance(obj, dict) and isinstance(obj.get("data"), list):
            obj = obj["data"]
        if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
            raise DataFormatError(path, "expected a JSON list of records or {'data': [...]}")
        return [Row(r, i + 1) for i, r in enumerate(obj)]

    def select(self, rows: list[Row], language: str, where: str) -> list[Row]:
        """Keep the rows in ``language`` when the file has a language column.

        Files holding several languages (the original XNLI TSV, a multilingual CSV) are
        filtered; a file without such a column is taken to be all in ``language``.
        """
        if not rows:
            return rows
        col = next((c for c in LANGUAGE_COLUMNS if isinstance(rows[0].data.get(c), str)), None)
        if col is None:
            return rows
        kept = [r for r in rows if str(r.data.get(col, "")).strip().lower() == language.lower()]
        if not kept:
            found = {str(r.data.get(col, "")).strip() for r in rows}
            raise UnknownNameError(f"language in {where} (column {col!r})", language, found)
        return kept

    def _examples(self, rows: list[Row], language: str, split: str, where: str) -> list[Example]:
        examples: list[Example] = []
        seen: dict[str, int] = {}
        checked: set[frozenset[str]] = set()
        for i, row in enumerate(rows):
            keys = frozenset(row.data)
            if keys not in checked:
                self.check_columns(row.data, where, row.line)
                checked.add(keys)
            try:
                raw = self.canonical(row.data)
                ex_id = raw.get("id")
                ex_id = str(i) if ex_id is None or str(ex_id) == "" else str(ex_id)
                # Ids key predictions; a repeated id gets a suffix so none is lost.
                seen[ex_id] = seen.get(ex_id, 0) + 1
                if seen[ex_id] > 1:
                    ex_id = f"{ex_id}#{seen[ex_id]}"
                examples.append(
                    Example(
                        id=ex_id,
                        language=language,
                        input=self.format_input(raw),
                        target=self.format_target(raw),
                        gold=self.gold(raw),
                    )
                )
            except (ValueError, TypeError) as e:
                if isinstance(e, DataFormatError):
                    raise
                raise DataFormatError(where, str(e), row.line) from e
        return examples

    # ------------------------------------------------------------------ columns
    def missing_columns(self, columns: Iterable[str]) -> list[str]:
        """Descriptions of the required fields none of whose accepted names is present."""
        have = set(columns)
        return [
            field if names == (field,) else f"{field} (any of: {', '.join(names)})"
            for field, names in self.columns.items()
            if not have.intersection(names) and field not in have
        ]

    def check_columns(self, columns: Iterable[str], where: str, line: int | None = None) -> None:
        columns = list(columns)
        missing = self.missing_columns(columns)
        if missing:
            raise DataFormatError(
                where,
                f"{self.name} data is missing column(s): {'; '.join(missing)} "
                f"(found: {', '.join(map(str, columns)) or 'none'})",
                line,
            )

    def fields(
        self, raw: Mapping[str, Any], *, only: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """Raw record -> dict keyed by canonical field names (aliases resolved).

        ``only``: resolve (and require) just these fields, e.g. :attr:`input_fields` for
        a prediction request, which has no gold."""
        if only is None:
            wanted = {**self.optional_columns, **self.columns}
            missing = self.missing_columns(raw)
        else:
            wanted = {f: self.columns.get(f, (f,)) for f in only}
            missing = [f for f, names in wanted.items() if not {*names, f} & set(raw)]
        if missing:
            raise DataFormatError("<record>", f"missing column(s): {'; '.join(missing)}")
        out: dict[str, Any] = {}
        for field, names in wanted.items():
            # The canonical name itself is always accepted, so canonical() is idempotent.
            for n in (*names, field):
                if n in raw:
                    out[field] = raw[n]
                    break
        return out

    @property
    def input_fields(self) -> tuple[str, ...]:
        """The fields :meth:`format_input` reads: the required ones but the targets."""
        return tuple(f for f in self.columns if f not in self.target_fields)

    def request_input(self, value: Mapping[str, Any] | str) -> str:
        """A prediction request's input (the task's input fields, or a plain string for a
        task with one) -> the model's input text; a bad one is a one-line error naming
        the fields the task reads."""
        fields = self.input_fields
        if isinstance(value, str):
            if len(fields) != 1:
                raise LangTransferError(
                    f"task {self.name} takes an object with fields {', '.join(fields)}; a "
                    "plain string is accepted only for a task with one input field"
                )
            value = {fields[0]: value}
        if not isinstance(value, Mapping):
            raise LangTransferError(
                f"task {self.name} input must be an object with fields {', '.join(fields)}, "
                f"got {type(value).__name__}"
            )
        try:
            self.fields(value, only=fields)  # names a missing field before the formatter
            return self.format_input(value)
        except (ValueError, TypeError, KeyError) as e:
            detail = e.args[0] if isinstance(e, KeyError) and e.args else e
            if isinstance(e, DataFormatError):
                detail = str(e).removeprefix("<record>: ")
            raise LangTransferError(
                f"bad {self.name} input ({detail}); fields: {', '.join(fields)}"
            ) from e

    # ------------------------------------------------------------ task hooks
    def canonical(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and normalise a raw record (``ValueError`` naming a bad value).

        The result is accepted again by every hook, so formatting is idempotent.
        """
        return self.fields(raw)

    def usable(self, raw: Mapping[str, Any], *, keep_empty_answers: bool = False) -> bool:
        """Whether a record can be an example; the rest are dropped (unanswerable questions).
        ``keep_empty_answers``: a record whose gold answer is an empty text counts as usable
        (:data:`EMPTY_ANSWERS` ``keep``; tasks without answers ignore it)."""
        return True

    def unusable_message(self, n: int) -> str:
        return f"none of the {n} records can be used"

    def format_input(self, raw: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def format_target(self, raw: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def gold(self, raw: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def parse(self, generated: str) -> Any:
        """Generated text -> prediction (the strict reading); unparseable text gives a value
        that scores wrong."""
        raise NotImplementedError

    def parse_reference(self, generated: str) -> Any:
        """Generated text -> prediction as the paper's reference code read it."""
        return self.parse(generated)

    def coerce(self, value: Any, *, reference: bool = False) -> Any:
        """A predictions-file value -> prediction: strings are generated text, parsed (by
        the reference reading with ``reference``); ``None`` (no prediction) scores wrong."""
        if value is None:
            return self.empty_prediction
        if isinstance(value, str):
            return self.parse_reference(value) if reference else self.parse(value)
        raise ValueError(f"expected the generated text (a string), got {value!r}")

    def reference_golds(
        self, examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase | None = None
    ) -> list[Any]:
        """The gold values the reference reading is scored against (by default the golds)."""
        return [ex.gold for ex in examples]

    def score_examples(
        self,
        values: Sequence[Any],
        examples: Sequence[Example],
        *,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> dict[str, float]:
        """Every metric for raw prediction values (generated text, parsed values, ``None``
        for a missing one) aligned with ``examples``: the reference reading unprefixed, the
        strict reading prefixed ``strict_`` (tasks with one reading: just its metrics).

        ``tokenizer`` serves tasks whose reference golds went through the tokenizer (NER).
        """
        golds = [ex.gold for ex in examples]
        strict = self.score([self.coerce(v) for v in values], golds)
        if not self.reference_reading:
            return strict
        ref_golds = self.reference_golds(examples, tokenizer)
        ref = self.score([self.coerce(v, reference=True) for v in values], ref_golds)
        out = {k: v for k, v in ref.items() if not k.startswith("n_")}
        out.update({STRICT_PREFIX + k: v for k, v in strict.items() if not k.startswith("n_")})
        out.update({k: v for k, v in strict.items() if k.startswith("n_")})
        return out

    def metrics_fingerprint(self) -> str:
        """A short hash of what this task's metrics are: :attr:`metrics_version`, the
        primary metric, the readings scored and the metric notes. A study evaluation's
        settings hash covers it, so a changed metric definition rebuilds the results."""
        what = {"version": self.metrics_version, "primary": self.primary_metric,
                "reference_reading": self.reference_reading,
                "notes": dict(sorted(self.metric_notes.items()))}
        text = json.dumps(what, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def metric_definitions(self, names: Iterable[str]) -> dict[str, str]:
        """What each of ``names`` is (from :attr:`metric_notes`; ``strict_`` names too)."""
        out = {}
        for name in names:
            base = name.removeprefix(STRICT_PREFIX) if self.reference_reading else name
            note = self.metric_notes.get(base)
            if note is None:
                continue
            if self.reference_reading:
                reading = "strict reading" if name != base else "reference reading"
                note = f"{note} ({reading})"
            out[name] = note
        return out

    def is_unparseable(self, prediction: Any) -> bool:
        """Whether a parsed prediction came from text the parser could not read."""
        return prediction is None

    def score(self, predictions: Sequence[Any], golds: Sequence[Any]) -> dict[str, float]:
        """Metrics (percentages) plus ``n_examples`` and ``n_unparseable``."""
        raise NotImplementedError

    def _check_lengths(self, predictions: Sequence[Any], golds: Sequence[Any]) -> None:
        if len(predictions) != len(golds):
            raise ValueError(
                f"{len(predictions)} predictions for {len(golds)} gold values; they must align"
            )


# ---------------------------------------------------------------- file readers
def _decode(path: Path, raw: bytes, encoding: str = "utf-8-sig") -> str:
    """Bytes -> text; invalid UTF-8 is a DataFormatError naming the line it is on."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataFormatError(path, f"not UTF-8 text ({e.reason})", line) from e


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise LangTransferError(f"cannot read {path}: {e.strerror or e}") from e


def read_json(path: Path) -> Any:
    text = _decode(path, _read_bytes(path))
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise json_error(path, e) from e


def read_jsonl(path: Path) -> list[Row]:
    """One JSON object per line; blank lines are skipped; errors name the line."""
    rows: list[Row] = []
    try:
        for n, obj in iter_json_lines(path):
            if not isinstance(obj, dict):
                raise DataFormatError(path, f"expected a JSON object, got {obj!r:.60}", n)
            rows.append(Row(obj, n))
    except OSError as e:
        raise LangTransferError(f"cannot read {path}: {e.strerror or e}") from e
    return rows


def read_delimited(path: Path, delimiter: str) -> list[Row]:
    """CSV (quoted fields may span lines) or TSV (no quoting, as in XNLI and MNLI).

    Row line numbers are the physical line each row starts on, so errors point there.
    """
    rows: list[Row] = []
    kind = "TSV" if delimiter == "\t" else "CSV"
    text = _decode(path, _read_bytes(path))
    stream = io.StringIO(text, newline="")
    reader = (csv.reader(stream, delimiter=delimiter, quoting=csv.QUOTE_NONE) if kind == "TSV"
              else csv.reader(stream, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL))
    start = 1
    try:
        header = next(reader, None)
        if header is None:
            raise DataFormatError(path, "empty file (expected a header row)")
        header = [h.strip() for h in header]
        start = reader.line_num + 1
        for values in reader:
            if any(v.strip() for v in values):
                if len(values) != len(header):
                    raise DataFormatError(
                        path,
                        f"{len(values)} fields where the header has {len(header)}",
                        start,
                    )
                rows.append(Row(dict(zip(header, values, strict=True)), start))
            start = reader.line_num + 1
    except csv.Error as e:
        raise DataFormatError(path, f"malformed {kind}: {e}", start) from e
    return rows


def read_parquet(path: Path) -> list[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise DataFormatError(path, f"cannot read parquet: {e}") from e
    return [Row(r, i + 1) for i, r in enumerate(table.to_pylist())]


_WS = re.compile(r"\s+")


def collapse_whitespace(text: str) -> str:
    return _WS.sub(" ", text).strip()


def percent(numerator: float, denominator: float) -> float:
    """100 * n / d, and 0.0 for an empty denominator (metrics of nothing are 0)."""
    return 100.0 * numerator / denominator if denominator else 0.0


class ClassificationTask(Task):
    """A task whose target is one word per class (NLI, check-worthiness).

    ``classes`` are in label-id order (a data label ``i`` is ``classes[i]``); gold values
    and predictions are class names, ``None`` for a generation naming no class.
    Subclasses implement :meth:`parse` and may extend :meth:`label_from_data`.
    """

    classes: tuple[str, ...] = ()
    primary_metric = "accuracy"
    empty_prediction = None
    #: A class whose binary F1 is also reported (``f1_<class>``), as scikit-learn's
    #: ``f1_score(average="binary")`` with that class as the positive label computes it.
    positive_class: str | None = None
    target_fields = ("label",)
    #: Other names data sets give the classes (lower case, words separated by one space)
    #: -> class, for reading labels by the class names the data declares.
    class_aliases: Mapping[str, str] = {}

    def label_from_data(self, value: Any) -> str:
        """A data label -> class name: an id (int or digit string), class name or word."""
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value < len(self.classes):
                return self.classes[value]
        elif isinstance(value, str):
            key = value.strip().lower()
            if key.isascii() and key.isdigit() and int(key) < len(self.classes):
                return self.classes[int(key)]
            for cls in self.classes:
                if key in (cls.lower(), self.label_words[cls].lower()):
                    return cls
        raise ValueError(
            f"unknown {self.name} label {value!r}; valid: ids 0..{len(self.classes) - 1} "
            f"({', '.join(self.classes)}) or words {', '.join(self.label_words.values())}"
        )

    def class_of_name(self, name: str) -> str | None:
        """The class a data set's class name means (a class name, a label word or one of
        :attr:`class_aliases`, any case, ``_``/``-`` as spaces), None if none; numerals
        name no class."""
        key = " ".join(re.split(r"[\s_-]+", name.strip().lower()))
        if key in self.class_aliases:
            return self.class_aliases[key]
        if not key or key.isdigit():
            return None
        try:
            return self.label_from_data(key)
        except ValueError:
            return None

    def read_labels(
        self, rows: list[Row], class_names: Mapping[str, tuple[str, ...]], where: str,
        label_order: str,
    ) -> tuple[list[Row], str | None]:
        """Integer labels of a label column whose classes the data names (``datasets``
        ``ClassLabel`` features) read by those names (``by_name``) or as ``classes[id]``
        (``positional``, the reference's reading). Names that are all numerals say
        nothing, so the ids are read by position. By name, a name that is no class of
        this task is an error naming both lists. Returns the rows and, when the two
        readings differ, a note saying which was used and what the other gives."""
        column = next((c for c in self.columns.get("label", ()) if c in class_names), None)
        if column is None:
            return rows, None
        names = class_names[column]
        if all(n.strip().isdigit() for n in names):
            return rows, None
        by_name = [self.class_of_name(n) for n in names]
        positional = [self.classes[i] if i < len(self.classes) else None
                      for i in range(len(names))]
        if label_order == "by_name" and None in by_name:
            raise DataFormatError(
                where, f"class names of column {column!r} ({', '.join(names)}) are not all "
                f"{self.name} labels ({', '.join(self.classes)}; or the words "
                f"{', '.join(self.label_words.values())})"
            )
        if by_name == positional:
            return rows, None
        data_says = ", ".join(
            f"{i} {name}" + (f" = {cls}" if cls and cls != name.strip().lower() else "")
            for i, (name, cls) in enumerate(zip(names, by_name, strict=True))
        )
        by_position = ", ".join(f"{i} {cls or '(no class)'}" for i, cls in enumerate(positional))
        if label_order == "positional":
            return rows, (f"column {column!r}: label ids read by position, as the reference "
                          f"did ({by_position}); the data's class names say {data_says}")
        note = (f"column {column!r}: label ids read by the data's class names ({data_says}); "
                f"the reference read them by position ({by_position})")
        mapped = []
        for row in rows:
            value = row.data.get(column)
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
                row = Row({**row.data, column: by_name[value]}, row.line)
            mapped.append(row)
        return mapped, note

    def canonical(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        rec = self.fields(raw)
        rec["label"] = self.label_from_data(rec["label"])
        return rec

    def format_target(self, raw: Mapping[str, Any]) -> str:
        return self.label_words[self.canonical(raw)["label"]]

    def gold(self, raw: Mapping[str, Any]) -> str:
        return self.canonical(raw)["label"]

    def coerce(self, value: Any, *, reference: bool = False) -> str | None:
        """Generated text (parsed), ``null`` (no output), or a class id or name."""
        if isinstance(value, int) and not isinstance(value, bool):
            return self.label_from_data(value)
        if isinstance(value, str) and value in self.classes:
            return value
        return super().coerce(value, reference=reference)

    def score(self, predictions: Sequence[Any], golds: Sequence[Any]) -> dict[str, float]:
        """Accuracy and macro F1; ``None`` (unparseable) is wrong for its gold class.

        Macro F1 averages per-class F1 over the classes occurring in the golds or the
        parsed predictions (scikit-learn's default label set); an unparseable prediction
        is a false negative of its gold class and a false positive of none.
        """
        self._check_lengths(predictions, golds)
        pairs = list(zip(predictions, golds, strict=True))
        present = {g for _, g in pairs} | {p for p, _ in pairs if p is not None}
        f1s = [class_f1(pairs, cls) for cls in sorted(present)]
        out = {
            "accuracy": percent(sum(p == g for p, g in pairs), len(pairs)),
            "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
        }
        if self.positive_class is not None:
            out[f"f1_{self.positive_class}"] = class_f1(pairs, self.positive_class)
        return {**out, "n_examples": len(pairs), "n_unparseable": sum(p is None for p, _ in pairs)}


def class_f1(pairs: Sequence[tuple[Any, Any]], cls: str) -> float:
    """F1 of one class over (prediction, gold) pairs: 2TP / (2TP + FP + FN), 0 when the
    class is neither predicted nor gold (scikit-learn's ``zero_division`` default)."""
    tp = sum(p == cls and g == cls for p, g in pairs)
    fp = sum(p == cls and g != cls for p, g in pairs)
    fn = sum(p != cls and g == cls for p, g in pairs)
    return percent(2 * tp, 2 * tp + fp + fn)
