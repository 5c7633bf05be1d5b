"""Where task data comes from: hub files, the reference's splits, and single local files.

Hub data is fetched **by file**, never through ``load_dataset(<hub id>, <config>)``.
Several of the paper's sets (``facebook/mlqa``, ``unimelb-nlp/wikiann``,
``kuznetsoffandrey/sberquad``, ``Divyanshu/indicxnli``, ``cjvt/si_nli``) keep a loading
script on their main branch, which ``datasets`` >= 4 refuses to run. Their parquet export
(revision ``refs/convert/parquet``) has no script and no README config metadata, so
``datasets`` (5.0.1, ``load.py`` ``HubDatasetModuleFactory``) infers the data files from
the directory layout alone: one ``default`` config whose ``train`` split globs
``**/train/**`` across *every* config, and a config name such as
``mlqa-translate-train.de`` raises "BuilderConfig ... not found". So every hub source here
names its files: ``huggingface_hub.snapshot_download(repo_type="dataset", revision=...,
allow_patterns=...)`` fetches ``<config>/<split>/*.parquet`` of the export (or a named
raw file), and ``datasets.load_dataset("parquet", data_files=...)`` reads them in shard
order, which is the order the reference's ``load_dataset`` produced.

The reference carves validation (and for single-split sets, test) out of a split with
``Dataset.train_test_split(test_size=0.15, seed=42)``; :func:`carve` calls exactly that on
an index dataset of the same length, so the rows chosen are the reference's whenever the
rows come in the reference's order.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langtransfer.errors import DataFormatError, LangTransferError, MissingSplitError

#: The revision holding the dataset viewer's parquet export of a hub dataset.
PARQUET_EXPORT = "refs/convert/parquet"
#: The reference's ``train_test_split`` arguments (``ref:src/tasks/tasks.py``).
REFERENCE_TEST_SIZE = 0.15
REFERENCE_SEED = 42

Records = list[dict[str, Any]]


@dataclass(frozen=True)
class DataSource:
    """Where one language/split of a task's data lives, and how the reference cut it.

    Hub: ``dataset`` (id), ``config`` and ``split`` of the set, read from ``revision``
    (the parquet export by default) through the files matching ``patterns`` (default
    ``<config or "default">/<split>/*.parquet``, the export's layout).
    Local (``dataset`` None): ``local`` names the files of the set's own release, relative
    to the directory the user passes; ``note`` says what the set is and where to get it.
    ``pick``: the reference's 85/15 ``train_test_split`` picks applied in turn to the
    whole set (``("test",)`` is the 15% part, ``("train", "test")`` 15% of the other 85%).
    ``prepare``: the reference's schema mapping of the whole set, before any pick.
    """

    dataset: str | None = None
    config: str | None = None
    split: str | None = None
    note: str = ""
    revision: str | None = PARQUET_EXPORT
    patterns: tuple[str, ...] = ()
    local: tuple[str, ...] = ()
    pick: tuple[str, ...] = ()
    prepare: Callable[[Records], Records] | None = None
    reader: Callable[[list[Path]], Records] | None = None

    @property
    def file_patterns(self) -> tuple[str, ...]:
        if self.patterns:
            return self.patterns
        return (f"{self.config or 'default'}/{self.split}/*.parquet",)

    def describe(self) -> str:
        if self.dataset is None:
            what = f"local {', '.join(self.local)}" if self.local else "local file only"
            text = f"{what} ({self.note})" if self.note else what
        else:
            config = f"[{self.config}]" if self.config else ""
            text = f"hub:{self.dataset}{config}:{self.split}"
            if self.revision:
                text += f"@{self.revision}"
        return text + describe_pick(self.pick)


def describe_pick(pick: Sequence[str]) -> str:
    """`` (85% train part, seed 42)``-style description of a carve."""
    if not pick:
        return ""
    names = {"train": "85%", "test": "15%"}
    parts = " of the ".join(names[p] for p in reversed(pick))
    return f" ({parts} part of train_test_split(test_size=0.15, seed=42))"


# ------------------------------------------------------------------- the carve
def carve(n: int, pick: Sequence[str], where: str = "<data>") -> list[int]:
    """Indices of the rows ``pick`` keeps out of ``n``, chosen by ``datasets`` itself."""
    import datasets

    index = datasets.Dataset.from_dict({"i": list(range(n))})
    for part in pick:
        if part not in ("train", "test"):
            raise ValueError(f"a pick is 'train' or 'test', not {part!r}")
        try:
            index = index.train_test_split(
                test_size=REFERENCE_TEST_SIZE, seed=REFERENCE_SEED
            )[part]
        except ValueError as e:  # fewer rows than a split needs
            raise DataFormatError(
                where, f"{len(index)} rows are too few to split 85/15: {e}"
            ) from e
    return list(index["i"])


def apply_pick(records: Sequence[Any], pick: Sequence[str], where: str) -> list[Any]:
    if not pick:
        return list(records)
    return [records[i] for i in carve(len(records), pick, where)]


# -------------------------------------------------------------- single files
_SPLIT_WORDS = {
    "train": "train", "training": "train",
    "dev": "validation", "validation": "validation", "valid": "validation", "val": "validation",
    "test": "test",
}


def named_split(path: Path) -> str | None:
    """The split a file's name says it holds (``dev-v2.0.json``: validation), if one."""
    words = {
        _SPLIT_WORDS[w] for w in re.split(r"[^a-z0-9]+", path.name.lower()) if w in _SPLIT_WORDS
    }
    return words.pop() if len(words) == 1 else None


def single_file_pick(path: Path, split: str) -> tuple[str, ...]:
    """How one file given for ``split`` is used so that no two splits share a row.

    The file's name says which split it is (``train``, ``dev``/``validation``/``val``,
    ``test`` as a word of the name), and it serves that split only, whole; a dev file may
    also serve test (the reference tests on dev files). A file whose name names no split is
    test data only: training on the file one evaluates on is the leak this refuses. Any
    other use raises, so asking a train file for validation falls back to training's own
    held-out part (``train_task`` carves it from the training examples).
    Returns the pick to apply (always whole here; the type is the carve's).
    """
    named = named_split(path)
    if named == split or (named == "validation" and split == "test"):
        return ()
    if named is None and split == "test":
        return ()
    said = f"its name says it is the {named} split" if named else (
        "its name names no split, so it is taken as test data only")
    raise MissingSplitError(
        f"refusing {path} as {split} data: {said}, and one file serving two splits could put "
        f"the same rows in both; give a file named for the {split} split or a directory of "
        "<language>.<split>.<ext> files"
    )


# ----------------------------------------------------------------- hub files
class MissingExportError(LangTransferError):
    """A hub source's parquet-export revision no longer exists on the hub."""


def matching_files(root: Path, patterns: Sequence[str]) -> list[Path]:
    """The files under ``root`` matching any of ``patterns``, in path order (shard order)."""
    return sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})


def missing_export_message(src: DataSource) -> str:
    """What to say, and to do, when ``src``'s parquet export is gone from the hub: one line
    short enough for a study's failure record (which keeps 400 characters)."""
    config = src.config or "default"
    layout = " or ".join(src.file_patterns)
    return (
        f"{src.dataset} config {config!r} split {src.split!r}: the hub has no parquet export "
        f"({src.revision}) of this dataset (deleted when main changes, not rebuilt for a "
        f"loading-script dataset); put a copy of its {layout} files at those paths in a "
        "directory and pass that as the data (path=, --data, data.<task>.<language>; "
        "docs/data.md)"
    )


def hub_files(src: DataSource) -> list[Path]:
    """Local paths of the source's files, fetched into (or found in) the hub cache.

    A parquet export that the hub no longer has (``RevisionNotFoundError`` for
    :data:`PARQUET_EXPORT`) raises :class:`MissingExportError` saying so and naming the
    way out: a local copy in the export's layout (see :func:`missing_export_message`).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RevisionNotFoundError

    assert src.dataset is not None
    patterns = list(src.file_patterns)
    try:
        root = Path(
            snapshot_download(
                src.dataset, repo_type="dataset", revision=src.revision, allow_patterns=patterns
            )
        )
    except RevisionNotFoundError as e:
        if src.revision != PARQUET_EXPORT:
            raise
        raise MissingExportError(missing_export_message(src)) from e
    files = matching_files(root, patterns)
    if not files:
        raise LangTransferError(
            f"{src.describe()}: no file matching {', '.join(patterns)} in the repository"
        )
    return files


def parquet_class_names(files: Sequence[Path]) -> dict[str, tuple[str, ...]]:
    """Column -> class names of every ``ClassLabel`` column that the ``datasets`` features
    stored in the parquet files' schema metadata (key ``huggingface``) declare.

    The hub's parquet export and ``Dataset.to_parquet`` both store them; files without
    that metadata (or not parquet) declare none. Shards that disagree are an error."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    found: dict[str, tuple[str, ...]] = {}
    for path in files:
        if path.suffix.lower() != ".parquet":
            continue
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException) as e:
            raise DataFormatError(path, f"cannot read parquet: {e}") from e
        if not schema.metadata or b"huggingface" not in schema.metadata:
            continue
        try:
            features = datasets.Features.from_arrow_schema(schema)
        except (ValueError, TypeError, KeyError) as e:
            raise DataFormatError(path, f"unreadable datasets features metadata: {e}") from e
        for column, feature in features.items():
            if not isinstance(feature, datasets.ClassLabel):
                continue
            names = tuple(feature.names)
            if found.setdefault(column, names) != names:
                raise DataFormatError(
                    path, f"class names of column {column!r} ({', '.join(names)}) differ from "
                    f"another file's ({', '.join(found[column])})"
                )
    return found


@contextmanager
def progress_bars(show: bool) -> Iterator[None]:
    """With ``show`` False, the loads inside print no progress bars: neither ``datasets``'
    ("Generating train split") nor ``huggingface_hub``'s ("Fetching N files"). Logging
    is untouched, so real warnings still print; the previous state comes back after."""
    if show:
        yield
        return
    import datasets
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    datasets_on, hub_off = datasets.is_progress_bar_enabled(), are_progress_bars_disabled()
    datasets.disable_progress_bars()
    disable_progress_bars()
    try:
        yield
    finally:
        if datasets_on:
            datasets.enable_progress_bars()
        if not hub_off:
            enable_progress_bars()


def read_parquet_files(files: Sequence[Path]) -> Records:
    """Rows of parquet files in order, read by ``datasets`` as the hub path does."""
    import datasets

    data = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    return data.to_list()


# ------------------------------------------------------------- text readers
def read_lines(path: Path) -> list[str]:
    """Lines as Python's ``readlines`` splits them (``\\n``, ``\\r``, ``\\r\\n``), ends dropped."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise LangTransferError(f"cannot read {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise DataFormatError(path, f"not UTF-8 text ({e.reason})") from e
    return [line.rstrip("\n") for line in io.StringIO(text, newline=None).readlines()]
