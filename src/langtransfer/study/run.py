"""Running the transfer study: language reps -> task reps -> evaluations.

The plan (:mod:`langtransfer.study.jobs`) lists every artefact with a hash of the job
that builds it. The runner builds what is missing or stale in dependency order and skips
what exists with a matching hash, so a killed study rerun continues where it stopped. An
artefact that raises is recorded (:mod:`langtransfer.results.failures`) and the study goes
on with everything that does not need it; what needs it is recorded as blocked.
``shard=(k, n)`` gives machine ``k`` of ``n`` its own evaluation cells (grouped by task
representation) plus whatever they depend on; artefacts shared by several shards are
built once under a lock file (:mod:`langtransfer.study.locks`), so shards on a shared
file system complete the grid together. A shard does not wait on an artefact another
shard is building: it builds the ready work of its list meanwhile and comes back to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from langtransfer.errors import LangTransferError, OutputExistsError
from langtransfer.io import write_json
from langtransfer.profiles import DEFAULT_PROFILE
from langtransfer.results.failures import (
    BLOCKED,
    FAILED,
    Failure,
    clear_failure,
    one_line,
    write_failure,
)
from langtransfer.study.config import StudyConfig
from langtransfer.study.jobs import (  # re-exported: the plan is part of the study's API
    STAGES,
    Artefact,
    is_done,
    language_rep_path,
    plan,
    task_rep_path,
)
from langtransfer.study.locks import STALE_AFTER, FileLock

__all__ = [
    "STAGES",
    "Artefact",
    "StudyRun",
    "is_done",
    "language_rep_path",
    "parse_shard",
    "plan",
    "prepare_output",
    "run_study",
    "run_unit",
    "shard_plan",
    "task_rep_path",
]

STUDY_FILE = "study.json"


def parse_shard(text: str) -> tuple[int, int]:
    """Shard ``k`` of ``n`` as ``(k, n)`` with 1 <= k <= n, from ``"k/n"`` (counting from
    1: ``1/8`` .. ``8/8``) or ``"i%n"`` (counting from 0, read "index i modulo n": ``0%8``
    .. ``7%8``, what a 0-based Slurm array passes, ``${SLURM_ARRAY_TASK_ID}%8``). Two
    separators, so no index is read in two ways."""
    sep = "%" if "%" in text else "/"
    try:
        k, n = (int(x) for x in text.split(sep))
    except ValueError:
        raise LangTransferError(
            f"shard {text!r} must look like k/n counting from 1 (e.g. 1/4) or i%n counting "
            "from 0 (e.g. 0%4)") from None
    if sep == "%":
        if n < 1 or not 0 <= k < n:
            raise LangTransferError(f"shard {text!r}: i%n counts from 0, need 0 <= i < n")
        return k + 1, n
    if n < 1 or not 1 <= k <= n:
        hint = f" (a 0-based index, such as a Slurm array's: write {k}%{n})" if k == 0 else ""
        raise LangTransferError(f"shard {text!r}: k/n counts from 1, need 1 <= k <= n{hint}")
    return k, n


def shard_plan(artefacts: list[Artefact], k: int, n: int) -> list[Artefact]:
    """Shard ``k`` of ``n``: its evaluation cells and everything they depend on.

    Cells are grouped by task representation (base, task, source, configuration) and the
    groups dealt round-robin, so a task representation is needed by one shard only.
    """
    def group(a: Artefact) -> tuple[str, ...]:  # (base, task, source, configuration[, variant])
        task, configuration, source, _, *variant = a.key
        return (a.model_label, task, source, configuration, *variant)

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


def discard_stale_results(out: Path, artefacts: list[Artefact]) -> int:
    """Remove every result record (and its predictions) that is not a finished cell of
    ``artefacts`` with the same settings, so results of two configs never mix; return how
    many. Representations stay: they are rebuilt only where their hash changed."""
    keep = {a.path for a in artefacts if a.stage == "evaluation" and is_done(a)}
    removed = 0
    for path in sorted((out / "results").rglob("*.json")) if (out / "results").is_dir() else []:
        if path not in keep:
            cell = path.relative_to(out / "results").with_suffix("")
            path.unlink()
            shutil.rmtree(out / "predictions" / cell, ignore_errors=True)
            removed += 1
    return removed


def _other_profile(held: Any, config: StudyConfig) -> str:
    """``; profile method vs reference`` when the directory's study has another profile:
    results of two profiles never share a directory."""
    before = (held.get("config") or {}).get("profile") if isinstance(held, dict) else None
    before = before if isinstance(before, str) else DEFAULT_PROFILE
    now = config.profile_settings().name
    return f"; profile {before} vs {now}" if before != now else ""


def prepare_output(config: StudyConfig, overwrite: bool = False) -> Path:
    """Claim the output directory for this study; refuse one from a study with other
    settings unless ``overwrite``, which keeps the results the new settings reproduce
    (same cell, same hash) and discards the rest."""
    out = Path(config.output)
    marker = out / STUDY_FILE
    fingerprint = config.fingerprint()
    if marker.is_file():
        try:
            held = json.loads(marker.read_text(encoding="utf-8"))
            existing = held.get("fingerprint")
        except (ValueError, AttributeError):
            held, existing = {}, None
        if existing == config.fingerprint(by_path=True):
            existing = fingerprint  # written before data paths were left out: the same study
        if existing != fingerprint:
            if not overwrite:
                raise OutputExistsError(
                    f"{out} holds a study with different settings (fingerprint {existing} vs "
                    f"{fingerprint}{_other_profile(held, config)}); use another output "
                    "directory or pass --overwrite to discard the results these settings do "
                    "not reproduce"
                )
            discard_stale_results(out, plan(config))
            for sub in ("report", "failures"):
                shutil.rmtree(out / sub, ignore_errors=True)
    elif not overwrite and out.is_dir() and any(
        # another shard starting on the same new directory may be writing the marker
        not p.name.startswith(f".{STUDY_FILE}.") for p in out.iterdir()
    ):
        raise OutputExistsError(f"{out} is not empty and holds no {STUDY_FILE}; pass --overwrite")
    write_json(marker, {"fingerprint": fingerprint, "config": config.to_dict()})
    return out


Builder = Callable[[Artefact], None]


@dataclass
class StudyRun:
    """What one run of a study (shard) did. ``base_loads``: how often the builder loaded
    the base model (None when the builder does not count)."""

    built: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)
    base_loads: int | None = None

    @property
    def failed(self) -> list[Failure]:
        return [f for f in self.failures if f.status == FAILED]

    @property
    def blocked(self) -> list[Failure]:
        return [f for f in self.failures if f.status == BLOCKED]

    @property
    def counts(self) -> dict[str, int]:
        return {"built": self.built, "skipped": self.skipped, "failed": len(self.failed),
                "blocked": len(self.blocked)}

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self, study_dir: str | Path) -> str:
        c = self.counts
        text = (f"study {study_dir}: {c['built']} artefacts built, {c['skipped']} already done, "
                f"{c['failed']} failed, {c['blocked']} blocked")
        if self.base_loads is not None:
            text += f"\nbase loads: {self.base_loads}"
        return text


def run_study(
    config: StudyConfig,
    *,
    shard: tuple[int, int] = (1, 1),
    overwrite: bool = False,
    progress: bool = True,
    builder: Builder | None = None,
    lock_stale_after: float = STALE_AFTER,
) -> StudyRun:
    """Build every missing or stale artefact of this shard and return what happened.

    An artefact whose builder raises is recorded as failed and the run goes on; an
    artefact needing a failed (or blocked) one is recorded as blocked and not attempted.
    ``KeyboardInterrupt`` (and any kill) stops the run: a rerun continues it.
    ``lock_stale_after``: seconds without a heartbeat after which the lock of a shard on
    another host is taken for dead (:mod:`langtransfer.study.locks`).
    """
    from langtransfer.study.build import StudyBuilder

    artefacts = shard_plan(plan(config), *shard)
    out = prepare_output(config, overwrite=overwrite)
    build = builder if builder is not None else StudyBuilder(out)
    with _libraries_quiet():
        run = _run(artefacts, out, build, progress, stale_after=lock_stale_after)
    run.base_loads = getattr(build, "base_loads", None)
    return run


@contextlib.contextmanager
def _libraries_quiet() -> Iterator[None]:
    """transformers' and adapters' info and warnings off for the run, back as they were
    after: one progress bar, not per-run chatter, and a caller's logging left alone."""
    loggers = [logging.getLogger(name) for name in ("transformers", "adapters")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


#: Seconds a shard sleeps when every artefact left is being built by another shard (or
#: needs one that is): the first wait, doubled while nothing changes, up to the last.
WAIT = (0.05, 5.0)


def _run(
    artefacts: list[Artefact],
    out: Path,
    build: Builder,
    progress: bool,
    not_built: Iterable[str] = (),
    stale_after: float = STALE_AFTER,
) -> StudyRun:
    """Build ``artefacts`` (in plan order: dependencies first) and return what happened.

    ``not_built``: ids of artefacts outside ``artefacts`` known not to be built (their
    dependants are recorded blocked). An artefact whose lock another live process holds
    (a shard building it) is passed over for the ready work after it and tried again
    later; so is one that needs such an artefact. The list is scanned from its start
    again after every build, so plan order (dependencies, and what others wait for)
    comes first. ``stale_after``: see :class:`~langtransfer.study.locks.FileLock`."""
    run = StudyRun()
    ours = {a.id for a in artefacts}
    finished: set[str] = set()  # done, found done, failed or blocked
    not_built = set(not_built)
    pending = list(artefacts)
    wait = WAIT[0]
    bar = tqdm(total=len(artefacts), desc="study", unit="artefact", disable=not progress,
               dynamic_ncols=True)

    def settle(art: Artefact, failure: Failure | None = None) -> None:
        finished.add(art.id)
        if failure is not None:
            write_failure(out, failure)
            run.failures.append(failure)
            not_built.add(art.id)
        else:
            clear_failure(out, art.id)
        bar.update(1)

    with bar:
        while pending:
            worked = False
            for art in list(pending):
                bar.set_postfix_str(art.id, refresh=True)
                if is_done(art):
                    run.skipped += 1
                    settle(art)
                    pending.remove(art)
                    continue
                missing = tuple(d for d in art.deps if d in not_built)
                if missing:
                    settle(art, Failure(art.id, BLOCKED, f"needs {', '.join(missing)}, which "
                                        "were not built", missing, art.hash))
                    pending.remove(art)
                    continue
                if any(d in ours and d not in finished for d in art.deps):
                    continue  # a dependency another shard is building: later
                lock = FileLock(art.path.parent / f".{art.path.name}.lock",
                                stale_after=stale_after)
                try:
                    if not lock.acquire(blocking=False):
                        continue  # another shard is building it: other ready work first
                    try:
                        if is_done(art):  # another shard built it since we looked
                            run.skipped += 1
                        else:
                            build(art)
                            run.built += 1
                    finally:
                        lock.release()
                except Exception as e:  # recorded; KeyboardInterrupt and kills stop the run
                    settle(art, Failure(art.id, FAILED, one_line(e), (), art.hash,
                                        traceback=traceback.format_exc()))
                else:
                    settle(art)
                pending.remove(art)
                worked = True
                break  # from the start: what others held may be done now
            if pending and not worked:
                time.sleep(wait)
                wait = min(2 * wait, WAIT[1])
            elif worked:
                wait = WAIT[0]
    return run


def run_unit(
    config: StudyConfig,
    unit_id: str,
    *,
    study_dir: str | Path | None = None,
    progress: bool = False,
    builder: Builder | None = None,
    artefacts: list[Artefact] | None = None,
) -> StudyRun:
    """Build the artefacts of one unit of the study's graph
    (:func:`langtransfer.study.graph.units`) in this process: what an executor's job or
    worker runs (``langtransfer study CONFIG --unit ID``).

    As in :func:`run_study`: what is done is skipped, an artefact that raises is recorded
    as failed, and one whose dependency (in another unit) is not built -- it failed, was
    blocked, or has not run -- is recorded as blocked; ``StudyRun.ok`` says whether all
    of the unit is built. ``study_dir`` overrides the config's output; ``builder``: a
    long-lived worker passes its own, so the base stays loaded across units;
    ``artefacts``: the plan, when the caller already has it.
    """
    from langtransfer.study.build import StudyBuilder
    from langtransfer.study.graph import find_unit, units

    if study_dir is not None and Path(study_dir) != Path(config.output):
        config = dataclasses.replace(config, output=str(study_dir))
        artefacts = None
    artefacts = plan(config) if artefacts is None else artefacts
    unit = find_unit(units(artefacts), unit_id)
    out = prepare_output(config)  # refuses another study's directory
    by_id = {a.id: a for a in artefacts}
    outside = {d for a in unit.artefacts for d in a.deps} - set(unit.artefact_ids)
    build = builder if builder is not None else StudyBuilder(out)
    with _libraries_quiet():
        run = _run(list(unit.artefacts), out, build, progress,
                   not_built={d for d in outside if not is_done(by_id[d])})
    run.base_loads = getattr(build, "base_loads", None)
    return run
