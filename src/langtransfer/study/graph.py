"""The study as a graph of units: what an executor schedules.

The plan (:func:`langtransfer.study.jobs.plan`) lists artefacts; an executor runs
**units**, each one process's work on one loaded base:

- a ``train`` unit builds one training artefact (a language, combined or task
  representation);
- an ``evaluate`` unit builds the evaluation cells that share one task representation
  (``base`` cells: those of one task, source and configuration), on one base load.

So the paper's grid (2,822 artefacts) is a few hundred units, not thousands of jobs. A
unit depends on the units holding its artefacts' dependencies; :func:`units` returns them
in topological order, the unit with the longest remaining path first among those ready
(``Unit.path``: its own cost plus the longest chain of units waiting on it), which is the
order a scheduler should start them in. Costs are estimates (:class:`CostModel`), used
only to order units and to bound a run (:func:`critical_path`, :func:`lower_bound`).

Unit ids are stable (they follow from the artefacts' ids, not from the run) and safe as
file names and Slurm job names: ``language.prompt.sk``, ``task.nli.en.slp+ta``,
``evaluate.nli.en.slp+ta``, with a base's label and a variant as further parts
(``evaluate.tiny.nli.en.slp+ta.init=vocab``). Torch-free: the Slurm submitter and the
local executor's parent process plan without loading a model.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from langtransfer.errors import LangTransferError
from langtransfer.study.jobs import (
    Artefact,
    CombinedJob,
    EvaluationJob,
    LanguageJob,
    TaskJob,
    artefact_id,
    is_done,
)

TRAIN, EVALUATE = "train", "evaluate"

#: Characters of a unit id: safe in file names, Slurm job names and shell words.
UNIT_ID = re.compile(r"[A-Za-z0-9._+=-]+")

#: Test-set size estimates per task, in examples per cell, where a cell has no
#: ``max_eval_examples`` cap. The tasks' metadata does not hold their sizes, so these are
#: documented estimates: ner WikiANN's test split (10,000 in most of the paper's languages,
#: 1,000 in a few: an upper estimate); nli XNLI's test split (5,010); qa a middle between
#: SQuAD v1.1 dev (10,570) and XQuAD (1,190); checkworthiness an estimate for MultiClaim.
#: A task not listed counts :attr:`CostModel.default_test_examples`.
TEST_EXAMPLES: Mapping[str, int] = {"qa": 5000, "ner": 10000, "nli": 5010, "checkworthiness": 5000}


@dataclass(frozen=True)
class CostModel:
    """Estimated seconds of each artefact on one GPU. The defaults are mT0-base on one
    H100-class GPU at the paper's batch of 32 (issue 20's figures): 0.12 s a language
    training step, 0.10 s a task training step (validation included), evaluation at 40
    examples a second, and 30 s fixed per artefact (loading data and representations,
    writing outputs). ``test_examples`` maps a task (or ``task/language``, which wins) to
    its test-set size; ``unit_overhead`` is added once per unit (e.g. a job's start and
    base load)."""

    language_step: float = 0.12
    task_step: float = 0.10
    eval_examples_per_second: float = 40.0
    fixed: float = 30.0
    test_examples: Mapping[str, int] = field(default_factory=lambda: dict(TEST_EXAMPLES),
                                             hash=False)
    default_test_examples: int = 5000
    unit_overhead: float = 0.0

    def examples(self, task: str, language: str, cap: int | None = None) -> int:
        n = self.test_examples.get(f"{task}/{language}",
                                   self.test_examples.get(task, self.default_test_examples))
        return n if cap is None else min(n, cap)

    def artefact(self, art: Artefact) -> float:
        """Estimated seconds to build ``art``."""
        job = art.job
        if isinstance(job, LanguageJob):
            return self.fixed + job.train.max_steps * self.language_step
        if isinstance(job, TaskJob):
            return self.fixed + job.train.max_steps * self.task_step
        if isinstance(job, EvaluationJob):
            n = self.examples(job.task, job.target, job.max_eval_examples)
            return self.fixed + n / self.eval_examples_per_second
        assert isinstance(job, CombinedJob)
        return self.fixed  # no training: a weighted sum of trained representations


@dataclass(frozen=True)
class Unit:
    """One executor job. ``artefacts``: one training artefact, or the evaluation cells
    sharing one task representation; ``deps``: ids of the units that must finish first;
    ``cost``: estimated seconds; ``path``: ``cost`` plus the longest chain of units
    depending on this one (the scheduling priority); ``model``: the base it loads."""

    id: str
    kind: str
    artefacts: tuple[Artefact, ...]
    deps: tuple[str, ...]
    cost: float
    path: float = 0.0
    model: str = ""

    @property
    def artefact_ids(self) -> tuple[str, ...]:
        return tuple(a.id for a in self.artefacts)


def _safe(identifier: str) -> str:
    """``task:tiny/nli/en/slp+ta`` -> ``task.tiny.nli.en.slp+ta``."""
    text = identifier.replace(":", ".").replace("/", ".")
    if not UNIT_ID.fullmatch(text):
        raise LangTransferError(
            f"artefact {identifier!r} gives the unit id {text!r}, which holds characters "
            "outside letters, digits and . _ + = -; rename the task, language or label"
        )
    return text


def unit_id_of(art: Artefact) -> str:
    """The id of the unit that builds ``art``."""
    if art.stage != "evaluation":
        return _safe(art.id)
    task, configuration, source, _target, *variant = art.key
    if art.job.task_kind:  # type: ignore[union-attr]
        # the cells of one task representation: named after it (a combined cell shares
        # its trained cell's task representation, and so its unit)
        group = next(d for d in art.deps if d.startswith("task:"))
    else:
        group = artefact_id("task", (task, source, configuration, *variant), art.model_label)
    return "evaluate." + _safe(group).removeprefix("task.")


def units(artefacts: list[Artefact], cost: CostModel | None = None) -> list[Unit]:
    """The plan's units in topological order, the longest remaining path first among the
    ready ones. Dependencies outside ``artefacts`` (e.g. of a shard's part) are ignored."""
    cost = cost or CostModel()
    ids = {a.id for a in artefacts}
    groups: dict[str, list[Artefact]] = {}
    for art in artefacts:
        groups.setdefault(unit_id_of(art), []).append(art)
    owner = {a.id: uid for uid, arts in groups.items() for a in arts}
    deps = {
        uid: tuple(dict.fromkeys(owner[d] for a in arts for d in a.deps
                                 if d in ids and owner[d] != uid))
        for uid, arts in groups.items()
    }
    own = {uid: cost.unit_overhead + sum(cost.artefact(a) for a in arts)
           for uid, arts in groups.items()}
    dependants: dict[str, list[str]] = {uid: [] for uid in groups}
    for uid, ds in deps.items():
        for d in ds:
            dependants[d].append(uid)
    order = list(groups)  # plan order
    position = {uid: i for i, uid in enumerate(order)}
    path: dict[str, float] = {}
    for uid in reversed(_topological(order, deps, dependants)):
        path[uid] = own[uid] + max((path[d] for d in dependants[uid]), default=0.0)

    def unit(uid: str) -> Unit:
        arts = tuple(groups[uid])
        kind = EVALUATE if arts[0].stage == "evaluation" else TRAIN
        return Unit(uid, kind, arts, deps[uid], own[uid], path[uid], arts[0].job.model)

    waiting = {uid: len(ds) for uid, ds in deps.items()}
    ready = [(-path[uid], position[uid], uid) for uid in order if not waiting[uid]]
    heapq.heapify(ready)
    out: list[Unit] = []
    while ready:
        _, _, uid = heapq.heappop(ready)
        out.append(unit(uid))
        for d in dependants[uid]:
            waiting[d] -= 1
            if not waiting[d]:
                heapq.heappush(ready, (-path[d], position[d], d))
    return out


def _topological(
    order: list[str], deps: Mapping[str, tuple[str, ...]], dependants: Mapping[str, list[str]]
) -> list[str]:
    """``order`` rearranged so that every unit comes after its dependencies (Kahn)."""
    waiting = {uid: len(deps[uid]) for uid in order}
    queue = [uid for uid in order if not waiting[uid]]
    for uid in queue:  # grows while walked
        for d in dependants[uid]:
            waiting[d] -= 1
            if not waiting[d]:
                queue.append(d)
    if len(queue) != len(order):
        raise LangTransferError("the plan's units have a dependency cycle")
    return queue


def find_unit(all_units: Iterable[Unit], unit_id: str) -> Unit:
    """The unit called ``unit_id``; an unknown id is an error naming a few valid ones."""
    listed = list(all_units)
    for u in listed:
        if u.id == unit_id:
            return u
    close = [u.id for u in listed if u.id.split(".")[0] == unit_id.split(".")[0]] or [
        u.id for u in listed]
    raise LangTransferError(
        f"unknown unit {unit_id!r}; this study has {len(listed)} units, e.g. "
        f"{', '.join(close[:5])} (`langtransfer study CONFIG --dry-run` lists the count)"
    )


def pending_units(all_units: Iterable[Unit], out_dir: str | Path | None = None) -> list[Unit]:
    """The units with an artefact not built (or built from other settings), in order.
    ``out_dir`` is where the artefacts' paths point (the study directory they were
    planned for); it is not read otherwise."""
    del out_dir  # an artefact's path already holds its study directory
    return [u for u in all_units if not all(is_done(a) for a in u.artefacts)]


def critical_path(all_units: Iterable[Unit]) -> float:
    """Estimated seconds of the longest dependency chain: no number of GPUs runs the
    units faster."""
    return max((u.path for u in all_units), default=0.0)


def lower_bound(all_units: Iterable[Unit], workers: int) -> float:
    """``max(work / workers, critical path)``: no schedule on ``workers`` GPUs is faster."""
    listed = list(all_units)
    return max(sum(u.cost for u in listed) / workers, critical_path(listed))


def describe_units(all_units: list[Unit], todo: list[Unit] | None = None) -> str:
    """One line for ``--dry-run``: how many units, of which kind, and the estimated work."""
    n_train = sum(u.kind == TRAIN for u in all_units)
    work = sum(u.cost for u in all_units) / 3600
    text = (f"units: {len(all_units)} ({n_train} train, {len(all_units) - n_train} evaluate"
            + (f"; {len(todo)} to run" if todo is not None else "") + ")"
            f" -- what --executor and --unit ID run; estimated {work:,.1f} GPU-hours of work, "
            f"critical path {critical_path(all_units) / 3600:.1f} h "
            "(CostModel defaults: mT0-base on one H100-class GPU)")
    return text
