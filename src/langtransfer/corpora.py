"""Unlabelled text for training language representations.

A corpus comes from one of three places:

- ``"wikipedia"``: the language's ``wikimedia/wikipedia`` dump (config
  ``20231101.<code>``), *streamed* through ``datasets`` so nothing is downloaded in full.
  Languages with ``wikipedia_max_articles`` (English: 1M, as in the paper) are cut to
  their first that many articles.
- ``"fixture"``: the few dozen sentences shipped in ``langtransfer/data/text/<code>.txt``,
  enough for a demo and for tests, not for a useful representation.
- a local file: ``.txt``, ``.jsonl`` (one JSON object per line with a ``text`` field) or
  ``.parquet`` (a ``text`` column). A ``.txt`` file holds one document per line, unless
  blank lines separate its text: then each blank-line separated paragraph (its lines
  joined by newlines) is a document. Blank lines only at the start or end do not count.

Every source is split into training texts and a held-out validation slice, the same on
every run for the same seed. Local files are read whole; the validation documents are a
seeded random sample, the rest train in file order. A stream cannot be sampled without
reading it, so its validation slice is its first documents and training starts after them.
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
#: Most documents held out from a stream when not given (a stream has no known size).
DEFAULT_STREAM_VALIDATION_DOCUMENTS = 1000


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
    """The texts of a streamed ``datasets.IterableDataset``, after the validation slice."""

    def __init__(self, stream: Any, skip: int, text_field: str = "text"):
        self.stream, self.skip, self.text_field = stream, skip, text_field

    def __iter__(self) -> Iterator[str]:
        for row in self.stream.skip(self.skip):
            if _is_text(row[self.text_field]):
                yield row[self.text_field]

    def __repr__(self) -> str:
        return f"WikipediaTexts(skip={self.skip})"


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
) -> Corpus:
    """Load unlabelled text of ``language`` from ``source`` and hold out a validation slice.

    ``source`` is ``"wikipedia"``, ``"fixture"`` or a file path (a path object is always
    a path, so pass ``"./wikipedia"`` for a file of that name). ``max_documents`` keeps
    only the first that many documents. ``validation_size`` is a document count or, when
    the size is known (local files, capped streams), a fraction; the default is 10%, and
    for a stream at most 1000 documents.
    """
    lang = get_language(language)
    if max_documents is not None and (
        isinstance(max_documents, bool) or not isinstance(max_documents, int) or max_documents < 1
    ):
        raise LangTransferError(f"max_documents must be a positive integer, got {max_documents!r}")
    if isinstance(source, str) and source == "wikipedia":
        return _load_wikipedia(lang, max_documents, validation_size, text_field)
    path = fixture_path(lang) if isinstance(source, str) and source == "fixture" else Path(source)
    docs = read_documents(path, text_field=text_field, max_documents=max_documents)
    if not docs:
        raise LangTransferError(f"corpus {path} contains no text")
    n_val = _validation_count(validation_size, len(docs), str(path))
    held_out = set(np.random.default_rng(seed).permutation(len(docs))[:n_val].tolist())
    return Corpus(
        language=lang,
        source=str(path),
        train=[d for i, d in enumerate(docs) if i not in held_out],
        validation=[d for i, d in enumerate(docs) if i in held_out],
        max_documents=max_documents,
    )


def _validation_count(
    size: int | float | None, n_docs: int | None, where: str, *, stream: bool = False
) -> int:
    """Resolve ``validation_size`` to a count that leaves at least one training document.

    ``n_docs`` is the corpus size, or for a stream its cap (``None``: unknown).
    """
    if size is None:
        # 10%, but at most a fixed count for a stream: 10% of English's 1M articles would
        # be 100k documents held in memory.
        if n_docs is None:
            return DEFAULT_STREAM_VALIDATION_DOCUMENTS
        count = max(1, round(n_docs * DEFAULT_VALIDATION_FRACTION)) if n_docs >= 2 else 0
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
    if n_docs is not None and count >= n_docs:
        raise LangTransferError(
            f"{where}: validation_size {size} takes {count} of its {n_docs} documents and "
            "leaves none for training"
        )
    return count


def _load_wikipedia(
    lang: Language,
    max_documents: int | None,
    validation_size: int | float | None,
    text_field: str,
) -> Corpus:
    import datasets

    caps = [c for c in (max_documents, lang.wikipedia_max_articles) if c is not None]
    cap = min(caps) if caps else None
    where = f"{WIKIPEDIA_DATASET} {lang.wikipedia_config}"
    try:
        stream = datasets.load_dataset(
            WIKIPEDIA_DATASET, lang.wikipedia_config, split="train", streaming=True
        )
    except Exception as e:  # network, missing config, hub errors: all user-fixable here
        raise LangTransferError(f"cannot stream {where}: {type(e).__name__}: {e}") from e
    columns = getattr(stream, "column_names", None)
    if columns is not None and text_field not in columns:
        raise LangTransferError(f"{where} has no {text_field!r} column (columns: {columns})")
    if cap is not None:
        stream = stream.take(cap)
    n_val = _validation_count(validation_size, cap, where, stream=True)

    # The first documents are the validation slice; training restarts the stream after
    # them, so the two never overlap.
    validation: list[str] = []
    rows = iter(stream)
    consumed = 0
    while len(validation) < n_val:
        row = next(rows, None)
        if row is None:
            break
        consumed += 1
        if _is_text(row[text_field]):
            validation.append(row[text_field])
    has_train = any(_is_text(row[text_field]) for row in rows)
    if not validation and not has_train:
        raise LangTransferError(f"{where} yielded no text")
    if not has_train:
        raise LangTransferError(
            f"{where} has only {len(validation)} documents and all went to validation "
            f"(validation_size {n_val}); lower validation_size"
        )
    return Corpus(
        language=lang,
        source=where,
        train=WikipediaTexts(stream, consumed, text_field),
        validation=validation,
        max_documents=cap,
    )


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
        line = raw[: e.start].count(b"\n") + 1
        raise DataFormatError(path, f"not UTF-8 text ({e.reason})", line) from e
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
