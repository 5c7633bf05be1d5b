"""Unlabelled text for training language representations.

A corpus comes from one of three places:

- ``"wikipedia"``: the language's ``wikimedia/wikipedia`` dump (config
  ``20231101.<code>``), *streamed* through ``datasets`` so nothing is downloaded in full,
  sliced as the paper's reference code slices it (``ref: src/language_modeling/run.py``,
  ``validation_split_percentage=5``): training on the dump's first 5% of articles
  (``train[:5%]``, rounded as ``datasets`` rounds percent slices), validation from the
  articles after them (``train[5%:]``); languages with ``wikipedia_max_articles``
  (English: 1M, as the reference) train on their first that many articles instead and
  validate on the ones after. The dump's size, needed for the 5%, is the split's row
  count in the dataset's metadata, or else counted by streaming its ``id`` column only
  (one pass over the ids); reaching the validation articles streams past the training
  slice once.
- ``"fixture"`` (or ``"fixtures"``, the study's spelling): the few dozen sentences shipped
  in ``langtransfer/data/text/<code>.txt``, enough for a demo and for tests, not for a
  useful representation.
- a local file: ``.txt``, ``.jsonl`` (one JSON object per line with a ``text`` field) or
  ``.parquet`` (a ``text`` column). A ``.txt`` file holds one document per line, unless
  blank lines separate its text: then each blank-line separated paragraph (its lines
  joined by newlines) is a document. Blank lines only at the start or end do not count.

Every source is split into training texts and a held-out validation slice, the same on
every run for the same seed. Local files are read whole; the validation documents are a
seeded random sample, the rest train in file order (training then draws batches at
random, as from any map-style dataset). Wikipedia's validation slice is the first
``validation_size`` documents after the training slice (the reference evaluates on up to
500k blocks of ``train[5%:]``, only once after training; nothing here trains on it).
Streamed training text is shuffled by language training with a buffer of
:data:`STREAM_SHUFFLE_BUFFER` blocks (see :mod:`langtransfer.training.language`).
Empty documents are dropped everywhere; a source with no text is an error before any
training starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from langtransfer.errors import DataFormatError, LangTransferError, UnknownNameError
from langtransfer.jsonl import iter_json_lines
from langtransfer.languages import WIKIPEDIA_DATASET, Language, get_language

SUPPORTED_EXTENSIONS = (".txt", ".jsonl", ".parquet")
#: Share of a local file's documents held out for validation when not given.
DEFAULT_VALIDATION_FRACTION = 0.1
#: Most documents held out from a stream when not given.
DEFAULT_STREAM_VALIDATION_DOCUMENTS = 1000
#: Share of a Wikipedia dump trained on (percent), the reference's ``train[:5%]``.
WIKIPEDIA_TRAIN_PERCENT = 5
#: Span-corruption blocks in the shuffle buffer of streamed training text: a map-style
#: dataset (the reference's) draws every batch at random from all blocks; a stream can
#: only mix within a window. 10k blocks of 284 tokens is ~110 MB of token lists.
STREAM_SHUFFLE_BUFFER = 10_000
#: How much of a source is read: the reference's slice (``paper``) or all of it.
EXTENTS = ("paper", "full")


@dataclass(frozen=True)
class Corpus:
    """Training texts and a held-out validation slice of one language.

    ``train`` is a list for local sources and a re-iterable stream for Wikipedia (each
    ``iter()`` streams it again, so it serves several epochs).
    """

    language: Language
    source: str
    train: Iterable[str]
    validation: list[str]
    max_documents: int | None = None

    @property
    def streaming(self) -> bool:
        return not isinstance(self.train, list)


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


class WikipediaTexts:
    """The non-empty texts of rows ``[start, start + count)`` of a streamed
    ``datasets.IterableDataset``; each ``iter()`` streams them again."""

    def __init__(self, stream: Any, start: int, count: int, text_field: str = "text"):
        self.stream, self.start, self.count = stream, start, count
        self.text_field = text_field

    def __iter__(self) -> Iterator[str]:
        rows = self.stream.skip(self.start) if self.start else self.stream
        for row in rows.take(self.count):
            if _is_text(row[self.text_field]):
                yield row[self.text_field]

    def __repr__(self) -> str:
        return f"WikipediaTexts(rows {self.start}..{self.start + self.count})"


def reference_slice_size(n_rows: int, percent: int = WIKIPEDIA_TRAIN_PERCENT) -> int:
    """Rows in ``train[:percent%]`` of a split of ``n_rows``, rounded as ``datasets``
    rounds percent slices (``closest``: ``round(percent * n / 100)``)."""
    return int(round(percent * n_rows / 100.0))


#: The names of the shipped sample text as a corpus source: ``fixture`` (the verbs'
#: spelling) and ``fixtures`` (the study's, as its ``data: fixtures``) are one source.
FIXTURE_SOURCES = ("fixture", "fixtures")


def fixture_path(language: str | Language) -> Path:
    """The bundled fixture text of a language (a few dozen sentences)."""
    lang = get_language(language)
    folder = resources.files("langtransfer") / "data" / "text"
    path = folder / f"{lang.code}.txt"
    if not path.is_file():
        available = sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".txt"))
        raise UnknownNameError("fixture language", lang.code, available)
    return Path(str(path))


def load_corpus(
    source: str | os.PathLike,
    language: str | Language,
    *,
    max_documents: int | None = None,
    validation_size: int | float | None = None,
    seed: int = 0,
    text_field: str = "text",
    extent: str = "paper",
) -> Corpus:
    """Load unlabelled text of ``language`` from ``source`` and hold out a validation slice.

    ``source`` is ``"wikipedia"``, ``"fixture"`` or a file path (a path object is always
    a path, so pass ``"./wikipedia"`` for a file of that name). ``max_documents`` keeps
    only the first that many documents. ``validation_size`` is a document count or, when
    the size is known (local files, capped streams), a fraction; the default is 10%, and
    for a stream at most 1000 documents.

    ``extent`` (see :data:`EXTENTS`): ``paper`` reads the reference's slice (above) and
    caps inside it; ``full`` reads the whole source, holding out the *same* validation
    documents whatever ``max_documents`` is (Wikipedia: the dump's first
    ``validation_size`` articles, training on the articles after them; a local file: the
    seeded sample of all its documents, training on the first ``max_documents`` of the
    rest), so representations trained on different amounts are validated alike.
    """
    lang = get_language(language)
    if max_documents is not None and (
        isinstance(max_documents, bool) or not isinstance(max_documents, int) or max_documents < 1
    ):
        raise LangTransferError(f"max_documents must be a positive integer, got {max_documents!r}")
    if extent not in EXTENTS:
        raise UnknownNameError("corpus extent", extent, EXTENTS)
    if isinstance(source, str) and source == "wikipedia":
        if extent == "full":
            return _load_wikipedia_full(lang, max_documents, validation_size, text_field)
        return _load_wikipedia(lang, max_documents, validation_size, text_field)
    fixture = isinstance(source, str) and source in FIXTURE_SOURCES
    path = fixture_path(lang) if fixture else Path(source)
    cap = max_documents if extent == "paper" else None
    docs = read_documents(path, text_field=text_field, max_documents=cap)
    if not docs:
        raise LangTransferError(f"corpus {path} contains no text")
    n_val = _validation_count(validation_size, len(docs), str(path))
    held_out = set(np.random.default_rng(seed).permutation(len(docs))[:n_val].tolist())
    train = [d for i, d in enumerate(docs) if i not in held_out]
    return Corpus(
        language=lang,
        source=str(path),
        train=train if cap is not None or max_documents is None else train[:max_documents],
        validation=[d for i, d in enumerate(docs) if i in held_out],
        max_documents=max_documents,
    )


def cap_tokens(texts: Iterable[str], tokenizer: Any, max_tokens: int) -> TokenCapped:
    """The first ``max_tokens`` tokens of ``texts`` (see :class:`TokenCapped`)."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise LangTransferError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    return TokenCapped(texts, tokenizer, max_tokens)


class TokenCapped:
    """Texts cut after ``max_tokens`` tokens of ``tokenizer`` (special tokens not counted):
    whole documents while they fit, then the start of the next one (its first tokens,
    decoded). Re-iterable, so a capped stream serves several epochs; ``tokens`` is the
    count the last full iteration yielded."""

    def __init__(self, texts: Iterable[str], tokenizer: Any, max_tokens: int):
        self.texts, self.tokenizer, self.max_tokens = texts, tokenizer, max_tokens
        self.tokens = 0

    def __iter__(self) -> Iterator[str]:
        left = self.max_tokens
        for text in self.texts:
            if left <= 0:
                break
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
            if len(ids) > left:
                ids = ids[:left]
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
            left -= len(ids)
            yield text
        self.tokens = self.max_tokens - left

    def __repr__(self) -> str:
        return f"TokenCapped({self.texts!r}, max_tokens={self.max_tokens})"


def _validation_count(
    size: int | float | None,
    n_docs: int | None,
    where: str,
    *,
    stream: bool = False,
    holdout: bool = False,
) -> int:
    """Resolve ``validation_size`` to a count that leaves at least one training document.

    ``n_docs`` is the corpus size, or for a stream its cap (``None``: unknown). With
    ``holdout`` the validation documents come from outside the ``n_docs`` (Wikipedia):
    a fraction is of ``n_docs`` and any count leaves them all for training.
    """
    if size is None:
        # 10%, but at most a fixed count for a stream: 10% of English's 1M articles would
        # be 100k documents held in memory.
        if n_docs is None:
            return DEFAULT_STREAM_VALIDATION_DOCUMENTS
        enough = n_docs >= 2 or holdout
        count = max(1, round(n_docs * DEFAULT_VALIDATION_FRACTION)) if enough else 0
        return min(count, DEFAULT_STREAM_VALIDATION_DOCUMENTS) if stream else count
    if isinstance(size, bool) or not isinstance(size, (int, float)) or size < 0:
        raise LangTransferError(
            f"validation_size must be a document count or a fraction in (0, 1), got {size!r}"
        )
    if isinstance(size, float):
        if not 0.0 < size < 1.0:
            raise LangTransferError(f"validation_size fraction must be in (0, 1), got {size}")
        if n_docs is None:
            raise LangTransferError(
                f"{where}: a stream's size is unknown, so validation_size must be a document "
                "count, not a fraction (or set max_documents)"
            )
        count = max(1, round(n_docs * size))
    else:
        count = size
    if n_docs is not None and count >= n_docs and not holdout:
        raise LangTransferError(
            f"{where}: validation_size {size} takes {count} of its {n_docs} documents and "
            "leaves none for training"
        )
    return count


def _open_dump(lang: Language, text_field: str) -> tuple[str, Any, int]:
    """(name, stream, row count) of the language's dump."""
    import datasets

    where = f"{WIKIPEDIA_DATASET} {lang.wikipedia_config}"

    def stream(**kwargs: Any) -> Any:
        try:
            return datasets.load_dataset(
                WIKIPEDIA_DATASET, lang.wikipedia_config, split="train", streaming=True, **kwargs
            )
        except Exception as e:  # network, missing config, hub errors: all user-fixable here
            raise LangTransferError(f"cannot stream {where}: {type(e).__name__}: {e}") from e

    rows = stream()
    columns = getattr(rows, "column_names", None)
    if columns is not None and text_field not in columns:
        raise LangTransferError(f"{where} has no {text_field!r} column (columns: {columns})")
    return where, rows, _split_rows(rows, stream, where)


def _load_wikipedia(
    lang: Language,
    max_documents: int | None,
    validation_size: int | float | None,
    text_field: str,
) -> Corpus:
    where, rows, n_rows = _open_dump(lang, text_field)
    if lang.wikipedia_max_articles is not None:
        boundary = min(lang.wikipedia_max_articles, n_rows)
    else:
        boundary = reference_slice_size(n_rows)
    n_train = min(boundary, max_documents) if max_documents is not None else boundary
    if n_train < 1:
        raise LangTransferError(
            f"{where} has {n_rows} articles; its first {WIKIPEDIA_TRAIN_PERCENT}% is none"
        )
    n_val = _validation_count(validation_size, n_train, where, stream=True, holdout=True)
    if n_rows - boundary < 1:
        raise LangTransferError(
            f"{where} has no articles after the {n_train} trained on to validate with"
        )
    # Validation: the first documents after the training slice (the reference's
    # train[5%:], or English's articles after the first 1M); they never overlap.
    validation = list(WikipediaTexts(rows, boundary, n_val, text_field))
    train = WikipediaTexts(rows, 0, n_train, text_field)
    if next(iter(train), None) is None:
        raise LangTransferError(f"{where} yielded no text in its first {n_train} articles")
    if not validation:
        raise LangTransferError(f"{where} yielded no validation text after article {boundary}")
    return Corpus(
        language=lang,
        source=where,
        train=train,
        validation=validation,
        max_documents=n_train,
    )


def _load_wikipedia_full(
    lang: Language,
    max_documents: int | None,
    validation_size: int | float | None,
    text_field: str,
) -> Corpus:
    """The whole dump (``extent="full"``): validation on its first articles, training on
    the (first ``max_documents``) articles after them, so every cap validates alike."""
    where, rows, n_rows = _open_dump(lang, text_field)
    n_val = _validation_count(validation_size, n_rows, where, stream=True, holdout=True)
    rest = n_rows - n_val
    if rest < 1:
        raise LangTransferError(
            f"{where} has {n_rows} articles: none left to train on after {n_val} validation ones"
        )
    n_train = min(rest, max_documents) if max_documents is not None else rest
    validation = list(WikipediaTexts(rows, 0, n_val, text_field))
    train = WikipediaTexts(rows, n_val, n_train, text_field)
    if not validation:
        raise LangTransferError(f"{where} yielded no validation text in its first {n_val} articles")
    if next(iter(train), None) is None:
        raise LangTransferError(f"{where} yielded no text in articles {n_val}..{n_val + n_train}")
    return Corpus(
        language=lang, source=where, train=train, validation=validation, max_documents=n_train
    )


def _split_rows(rows: Any, stream: Any, where: str) -> int:
    """The dump's row count: the split's metadata (``datasets`` resolves ``train[:5%]``
    from the same figure), or else counted by streaming only the ``id`` column."""
    splits = getattr(getattr(rows, "info", None), "splits", None)
    if splits and "train" in splits and splits["train"].num_examples:
        return int(splits["train"].num_examples)
    columns = getattr(rows, "column_names", None) or []
    key = "id" if "id" in columns else (columns[0] if columns else "text")
    ids = stream(columns=[key])
    return sum(len(batch[key]) for batch in ids.iter(batch_size=10_000))


def read_documents(
    path: str | os.PathLike, *, text_field: str = "text", max_documents: int | None = None
) -> list[str]:
    """The non-empty documents of a local ``.txt``, ``.jsonl`` or ``.parquet`` file."""
    path = Path(path)
    if not path.exists():
        raise LangTransferError(
            f"corpus file {path} does not exist (a corpus source is 'wikipedia', 'fixture' "
            f"or a path to a {', '.join(SUPPORTED_EXTENSIONS)} file)"
        )
    if path.is_dir():
        raise LangTransferError(f"corpus {path} is a directory; give a file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise DataFormatError(
            path,
            f"unsupported corpus extension {suffix or '(none)'!r}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}",
        )
    reader = {".txt": _read_txt, ".jsonl": _read_jsonl, ".parquet": _read_parquet}[suffix]
    docs: list[str] = []
    for doc in reader(path, text_field):
        if doc.strip():
            docs.append(doc)
            if max_documents is not None and len(docs) >= max_documents:
                break
    return docs


def _read_txt(path: Path, text_field: str) -> Iterator[str]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        at = raw[: e.start].count(b"\n") + 1
        raise DataFormatError(path, f"not UTF-8 text ({e.reason})", at) from e
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blank = [not line.strip() for line in lines]
    text_at = [i for i, b in enumerate(blank) if not b]
    if not text_at:
        return
    lines = lines[text_at[0] : text_at[-1] + 1]
    if not any(not line.strip() for line in lines):
        yield from lines
        return
    paragraph: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            paragraph.append(line)
        elif paragraph:
            yield "\n".join(paragraph)
            paragraph = []


def _read_jsonl(path: Path, text_field: str) -> Iterator[str]:
    for lineno, obj in iter_json_lines(path):
        if not isinstance(obj, dict):
            raise DataFormatError(
                path, f"expected a JSON object with a {text_field!r} field", lineno
            )
        if text_field not in obj:
            raise DataFormatError(
                path, f"no {text_field!r} field (fields: {', '.join(obj) or 'none'})", lineno
            )
        value = obj[text_field]
        if value is None:
            continue
        if not isinstance(value, str):
            raise DataFormatError(
                path, f"{text_field!r} must be a string, got {type(value).__name__}", lineno
            )
        yield value


def _read_parquet(path: Path, text_field: str) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise DataFormatError(path, f"not a readable Parquet file: {e}") from e
    names = pf.schema_arrow.names
    if text_field not in names:
        raise DataFormatError(
            path, f"no column {text_field!r}; columns present: {', '.join(names) or 'none'}"
        )
    kind = pf.schema_arrow.field(text_field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataFormatError(path, f"column {text_field!r} holds {kind}, expected strings")
    for batch in pf.iter_batches(columns=[text_field], batch_size=4096):
        for value in batch.column(0).to_pylist():
            if value is not None:
                yield value
