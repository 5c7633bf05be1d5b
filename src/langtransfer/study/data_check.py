"""Where each task x language x split cell's data comes from, checked before any work.

:func:`check_data` takes what a study passes to ``train_task``/``evaluate`` as ``data``
(``None``: the paper's source; ``"fixtures"``; a local path) and says which source would be
read (hub id, config, split, revision and the reference's carve, or the local files) and,
when that cannot work, what is missing and how to fix it. It downloads nothing: hub sources
are taken to exist (their ids are the ones documented in ``docs/data.md``); local paths,
the splits a source has and the languages a task has a source for are checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.tasks import get_task


@dataclass(frozen=True)
class DataCheck:
    """One cell: ``source`` is what would be read; ``problem``/``fix`` are set when not ``ok``.

    ``no_source``: the reference itself has no valid source for this task and language
    (``Task.unavailable``, e.g. QA in Bulgarian), so a study leaves the cell out rather than
    asking the user for data.
    """

    task: str
    language: str
    split: str
    source: str
    ok: bool
    problem: str | None = None
    fix: str | None = None
    no_source: bool = False

    def line(self) -> str:
        """One line for a listing: ``qa en test  hub:rajpurkar/squad[...]`` or the problem."""
        head = f"{self.task} {self.language} {self.split}"
        if self.ok:
            return f"{head}  {self.source}"
        return f"{head}  MISSING: {self.problem} -- fix: {self.fix}"


def check_data(task: str, language: str, split: str, data: str | Path | None) -> DataCheck:
    """Check one cell; never raises for missing data (``ok=False`` with the fix instead)."""
    t = get_task(task)
    key = f"data.{t.name}.{language}"

    def missing(source: str, problem: str, fix: str) -> DataCheck:
        return DataCheck(t.name, language, split, source, False, problem, fix)

    if split not in t.splits:
        return missing("-", f"task {t.name} has no split {split!r} (splits: "
                       f"{', '.join(t.splits)})", f"ask for one of {', '.join(t.splits)}")
    if data is None or str(data) in ("hub", "paper"):
        return _check_paper(t.name, language, split, key)
    if str(data) == "fixtures":
        try:
            return DataCheck(t.name, language, split, t.resolve(language, split,
                                                                   source="fixtures"), True)
        except LangTransferError as e:
            return missing("fixtures", str(e), "use the hub or a local path for this cell "
                           "(fixtures are a few languages for tests and demos)")
    path = Path(data)
    try:
        return DataCheck(t.name, language, split, t.resolve(language, split, path), True)
    except LangTransferError as e:
        if not path.exists():
            src = t.sources.get(language, {}).get(split)
            if src is not None and src.local:
                fix = (f"put {src.note}: {', '.join(src.local)} in {path} (docs/data.md says "
                       f"where to get it), or point {key} at it")
            else:
                fix = f"put the data in {path}, or point {key} at it"
        else:
            fix = f"put the {split} data there or point {key}.{split} at another file"
        return missing(str(path), str(e), fix)


def _check_paper(task: str, language: str, split: str, key: str) -> DataCheck:
    t = get_task(task)

    def missing(problem: str, fix: str, source: str = "-") -> DataCheck:
        return DataCheck(t.name, language, split, source, False, problem, fix)

    if language in t.unavailable:
        return DataCheck(
            t.name, language, split, "-", False,
            f"task {t.name} has no source for {language!r}: {t.unavailable[language]}",
            f"leave {t.name}/{language} out of the study, or give local data with {key}",
            no_source=True,
        )
    try:
        src = t.data_source(language, split)
    except UnknownNameError:
        return missing(f"task {t.name} has no paper source for language {language!r}",
                       f"give local data with {key}")
    except LangTransferError:
        have = ", ".join(t.sources[language])
        return missing(f"the paper's {t.name} source for {language!r} has no {split} split "
                       f"(it has: {have})",
                       f"use {language!r} only where a {have} split is needed "
                       f"(e.g. as a target, not a source), or give {key}.{split}")
    if src.dataset is None:
        return missing(f"{src.note or 'this set'} is not public",
                       f"get it and set {key} to the directory holding "
                       f"{', '.join(src.local)}", src.describe())
    return DataCheck(t.name, language, split, src.describe(), True)
