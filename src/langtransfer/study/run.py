"""Running the transfer study: language reps -> task reps -> evaluations.

The plan (:mod:`langtransfer.study.jobs`) lists every artefact with a hash of the job
that builds it. The runner builds what is missing or stale in dependency order and skips
what exists with a matching hash, so a killed study rerun continues where it stopped. An
artefact that raises is recorded (:mod:`langtransfer.results.failures`) and the study goes
on with everything that does not need it; what needs it is recorded as blocked.
``shard=(k, n)`` gives machine ``k`` of ``n`` its own evaluation cells (grouped by task
representation) plus whatever they depend on; artefacts shared by several shards are
built once under a lock file, so shards on a shared file system complete the grid
together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
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
from langtransfer.study.locks import file_lock

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
) -> StudyRun:
    """Build every missing or stale artefact of this shard and return what happened.

    An artefact whose builder raises is recorded as failed and the run goes on; an
    artefact needing a failed (or blocked) one is recorded as blocked and not attempted.
    ``KeyboardInterrupt`` (and any kill) stops the run: a rerun continues it.
    """
    from langtransfer.study.build import StudyBuilder

    artefacts = shard_plan(plan(config), *shard)
    out = prepare_output(config, overwrite=overwrite)
    build = builder if builder is not None else StudyBuilder(out)
    with _libraries_quiet():
        run = _run(artefacts, out, build, progress)
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


def _run(
    artefacts: list[Artefact],
    out: Path,
    build: Builder,
    progress: bool,
    not_built: Iterable[str] = (),
) -> StudyRun:
    """``not_built``: ids of artefacts outside ``artefacts`` known not to be built (their
    dependants are recorded blocked)."""
    run = StudyRun()
    not_built = set(not_built)
    bar = tqdm(artefacts, desc="study", unit="artefact", disable=not progress, dynamic_ncols=True)
    for art in bar:
        bar.set_postfix_str(art.id, refresh=True)
        if is_done(art):
            clear_failure(out, art.id)
            run.skipped += 1
            continue
        missing = tuple(d for d in art.deps if d in not_built)
        if missing:
            failure = Failure(art.id, BLOCKED, f"needs {', '.join(missing)}, which were not built",
                              missing, art.hash)
            write_failure(out, failure)
            run.failures.append(failure)
            not_built.add(art.id)
            continue
        try:
            with file_lock(art.path.parent / f".{art.path.name}.lock"):
                if is_done(art):  # another shard built it while we waited
                    run.skipped += 1
                else:
                    build(art)
                    run.built += 1
        except Exception as e:  # recorded; KeyboardInterrupt and kills stop the run
            failure = Failure(art.id, FAILED, one_line(e), (), art.hash,
                              traceback=traceback.format_exc())
            write_failure(out, failure)
            run.failures.append(failure)
            not_built.add(art.id)
            continue
        clear_failure(out, art.id)
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
