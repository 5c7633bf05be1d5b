"""``langtransfer study CONFIG --dry-run``: the plan and a check of its data, before any work.

For every task x language x split the plan reads, :func:`langtransfer.study.data_check.check_data`
names the source (hub id + config + split + revision, or the local files) and, when it
cannot be read, what is missing and the fix; local corpus files are checked too. Nothing
is downloaded or trained. The text is meant to stay readable for the paper's grid (~2,700
cells): counts first, then the problems, then the sources per task, then what is to be
built grouped (one line per task and configuration, not per cell).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from langtransfer.study.data_check import DataCheck, check_data
from langtransfer.study.jobs import (
    STAGES,
    Artefact,
    CombinedJob,
    EvaluationJob,
    LanguageJob,
    LeftOut,
    TaskJob,
)

#: How many lines a group lists before "... and N more".
CAP = 30


@dataclass
class DryRun:
    """What ``--dry-run`` found: the data checks, corpus problems and left-out cells."""

    checks: list[DataCheck] = field(default_factory=list)
    corpus_problems: list[str] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)

    @property
    def missing(self) -> list[DataCheck]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corpus_problems


def data_cells(artefacts: Iterable[Artefact]) -> list[tuple[str, str, str, str | None]]:
    """(task, language, split, data) of every task data the plan reads, each once, in plan
    order. Validation is listed only where the config names it: otherwise training falls
    back to the task's validation split or a held-out part of the training data."""
    cells: dict[tuple[str, str, str], str | None] = {}
    for art in artefacts:
        job = art.job
        if isinstance(job, TaskJob):
            cells.setdefault((job.task, job.source, "train"), job.train_data)
            if job.validation_data is not None:
                cells.setdefault((job.task, job.source, "validation"), job.validation_data)
        elif isinstance(job, EvaluationJob):
            cells.setdefault((job.task, job.target, "test"), job.test_data)
    return [(*key, data) for key, data in cells.items()]


def check_plan(artefacts: list[Artefact], left_out: Iterable[LeftOut] = ()) -> DryRun:
    """Check the data and corpora of a plan (a shard's, or the whole grid's)."""
    result = DryRun(left_out=list(left_out))
    result.checks = [check_data(*cell) for cell in data_cells(artefacts)]
    for art in artefacts:
        job = art.job
        if isinstance(job, LanguageJob) and job.corpus != "wikipedia" and not Path(
            job.corpus
        ).exists():
            result.corpus_problems.append(
                f"corpus {job.language}: {job.corpus} does not exist -- fix: put the "
                f"{job.language} text there or point corpus.{job.language} at it"
            )
    result.corpus_problems = sorted(set(result.corpus_problems))
    return result


def _capped(lines: list[str], indent: str = "  ") -> list[str]:
    shown = [indent + line for line in lines[:CAP]]
    if len(lines) > CAP:
        shown.append(f"{indent}... and {len(lines) - CAP} more")
    return shown


def _missing_groups(missing: list[DataCheck]) -> list[str]:
    """Missing cells grouped by task, source and problem (one local directory missing for
    22 cells is one group), each with its languages and the fix per split."""
    groups: dict[tuple[str, str, str], dict[str, list[DataCheck]]] = {}
    for c in missing:
        by_split = groups.setdefault((c.task, c.source, c.problem or ""), {})
        by_split.setdefault(c.split, []).append(c)
    lines = []
    for (task, source, problem), by_split in groups.items():
        n = sum(len(cells) for cells in by_split.values())
        lines.append(f"{task} {source}: {problem} ({n} cell{'s' if n > 1 else ''})")
        for split, cells in by_split.items():
            lines.append(f"  {split} {' '.join(c.language for c in cells)} -- fix: {cells[0].fix}")
    return lines


def _stage_name(stage: str) -> str:
    return "evaluations" if stage == "evaluation" else f"{stage} representations"


def _weights(art: Artefact) -> tuple[tuple[str, float], ...]:
    assert isinstance(art.job, CombinedJob)
    return art.job.weights


def _names(values: Iterable[str]) -> str:
    values = list(dict.fromkeys(values))
    return f"{len(values)} ({' '.join(values)})"


def _to_build(artefacts: list[Artefact], done: dict[str, bool]) -> list[str]:
    """What is left to build, one line per stage and kind or task."""
    groups: dict[str, list[Artefact]] = {}
    for art in artefacts:
        if not done[art.id]:
            job = art.job
            name = job.kind if isinstance(job, (LanguageJob, CombinedJob)) else job.task
            where = f"{art.model_label}: " if art.model_label else ""
            # a variant's artefacts are a group of their own; a composed one names its own
            variant = f" [{job.variant}]" if job.variant and art.stage != "composed" else ""
            groups.setdefault(f"{where}{art.stage} {name}{variant}", []).append(art)
    lines = []
    for name, arts in groups.items():
        stage = arts[0].stage
        if stage == "language":
            lines.append(f"{name}: {_names(a.key[1] for a in arts)}")
        elif stage == "composed":  # no training: one line each, with its parts' weights
            lines += [f"{name} {a.key[1]} [{a.key[2]}] (no training) = "
                      + " + ".join(f"{w:.3g} {lang}" for lang, w in _weights(a))
                      for a in arts]
        elif stage == "task":
            lines.append(f"{name}: {len(arts)} = configurations "
                         f"{_names(a.key[2] for a in arts)} x sources "
                         f"{_names(a.key[1] for a in arts)}")
        else:
            lines.append(f"{name}: {len(arts)} cells = configurations "
                         f"{_names(a.key[1] for a in arts)} x sources "
                         f"{_names(a.key[2] for a in arts)} x targets "
                         f"{_names(a.key[3] for a in arts)}")
    return lines


def _variant_counts(artefacts: list[Artefact]) -> list[str]:
    """One line per language-representation variant (``axes``): what it adds to the plan."""
    counts: dict[str, dict[str, int]] = {}
    for art in artefacts:
        if art.job.variant:
            label = f"{art.job.variant} ({art.model_label})" if art.model_label else art.job.variant
            per_stage = counts.setdefault(label, dict.fromkeys(STAGES, 0))
            per_stage[art.stage] += 1
    return [
        f"variant {label}: "
        + (f"{n['composed']} composed representations (no training), " if n["composed"]
           else f"{n['language']} language representations, {n['task']} task representations, ")
        + f"{n['evaluation']} evaluations"
        for label, n in counts.items()
    ]


def describe_dry_run(
    artefacts: list[Artefact],
    result: DryRun,
    title: str = "plan",
    own_settings: Mapping[str, list[str]] | None = None,
) -> str:
    """The dry-run text: counts, problems, sources read, what is left to build.
    ``own_settings``: a base's label -> its overrides of the study's settings
    (:meth:`~langtransfer.study.config.Base.overridden`), listed under its counts."""
    from langtransfer.study.run import is_done

    done = {a.id: is_done(a) for a in artefacts}
    n_done = sum(done.values())
    lines = [f"{title}: {len(artefacts)} artefacts ({n_done} done, "
             f"{len(artefacts) - n_done} to build)"]
    for stage in STAGES:
        arts = [a for a in artefacts if a.stage == stage]
        k = sum(done[a.id] for a in arts)
        if stage == "composed" and not arts:
            continue  # a study without `composed:` prints what it always did
        note = ", no training" if stage == "composed" else ""
        lines.append(f"{_stage_name(stage)}: {len(arts)} ({k} done, {len(arts) - k} to build"
                     f"{note})")
    labels = list(dict.fromkeys(a.model_label for a in artefacts))
    stages = [s for s in STAGES if s != "composed" or any(a.stage == s for a in artefacts)]
    if any(labels):
        lines.append(f"models: {len(labels)}")
        for label in labels:
            arts = [a for a in artefacts if a.model_label == label]
            k = sum(done[a.id] for a in arts)
            per_stage = ", ".join(
                f"{sum(a.stage == stage for a in arts)} {stage}" for stage in stages
            )
            lines.append(f"  {label} ({arts[0].job.model}): {len(arts)} artefacts ({k} done, "
                         f"{len(arts) - k} to build) = {per_stage}")
            if own := (own_settings or {}).get(label):
                lines.append(f"    own settings: {', '.join(own)}")
    lines += _variant_counts(artefacts)
    missing = result.missing
    lines.append(f"data: {len(result.checks)} task x language x split cells, "
                 f"{len(result.checks) - len(missing)} ok, {len(missing)} missing")
    if result.left_out:
        lines.append(f"left out of the grid ({len(result.left_out)}; the task has no source "
                     "for the language):")
        lines += _capped([x.line() for x in result.left_out])
    if missing:
        lines.append("missing data (fix before running):")
        lines += _capped(_missing_groups(missing))
    if result.corpus_problems:
        lines.append("missing corpora (fix before running):")
        lines += _capped(result.corpus_problems)
    lines.append("sources read (task: language split -> source):")
    by_task: dict[str, list[DataCheck]] = {}
    for c in result.checks:
        by_task.setdefault(c.task, []).append(c)
    for task, checks in by_task.items():
        lines.append(f"  {task}:")
        lines += _capped([f"{c.language} {c.split}  {c.source}"
                          + ("" if c.ok else "  [MISSING]") for c in checks], "    ")
    todo = _to_build(artefacts, done)
    if todo:
        lines.append("to build:")
        lines += _capped(todo)
    return "\n".join(lines)
