"""``python -m benchmarks.schedule``: the paper grid's schedule on N GPUs, simulated.

Not a timed test: a discrete-event simulation of the paper config's real plan
(``plan(load_study_config(paper.yaml))``) under an estimated cost of each artefact
(:class:`langtransfer.study.graph.CostModel`, every figure a flag), for four policies:

- **shards today** (``--shard k/n`` before issue 20, one shard per GPU): each shard walks
  its own list (:func:`~langtransfer.study.run.shard_plan`) in plan order, builds what
  nobody built, and waits on the lock of an artefact another shard is building;
- **shards, ready work first** (issue 20's shards): the same lists, but a shard passes
  over an artefact another shard holds (or one needing an artefact not built) and builds
  the first ready one of its list, idling only when it has none;
- **Slurm executor**: every unit submitted at once with its dependencies; when a GPU is
  free, Slurm starts the eligible unit of the highest priority (the longest remaining
  path, :attr:`~langtransfer.study.graph.Unit.path`); each job pays ``--slurm-overhead``
  (queueing, start, imports, base load);
- **local executor**: the same order on long-lived workers that keep the base loaded
  (``--local-overhead`` per unit).

Each against the lower bound ``max(work / N, critical path)`` (the critical path of
artefacts: no schedule of any granularity beats it). Then one node failure when half of
the work is done: the GPU running the unit with the longest remaining path (the worst
place to fail) dies; its job loses the work since its last checkpoint (training: every
``save_steps`` steps, ``eval_steps`` where the best checkpoint is kept, from the plan's own
settings; evaluation: the cell in progress, finished cells are kept) and is requeued
after ``--requeue-delay`` seconds, when the node (or a spare) is back. Shards today have
no takeover: the dead shard's lock, held for a host that is gone, is broken only when
``--stale-after`` old (24 h), and everyone needing that artefact waits until then;
shards taking ready work first break it after ``--heartbeat-stale`` (10 min) without a
heartbeat.

Prints Markdown tables (docs/performance.md quotes them).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from langtransfer.study.graph import CostModel, Unit, units
from langtransfer.study.jobs import Artefact, LanguageJob, TaskJob

# -- what a job is, and what it costs to rerun ------------------------------------------


@dataclass
class Job:
    """A schedulable job: a unit (executors) or an artefact (shards). ``pieces``: its
    parts in the order it does them, each ``(seconds, kept)`` -- ``kept`` where finishing
    the piece survives a failure (a checkpoint, a written result record)."""

    id: str
    deps: tuple[str, ...]
    priority: float
    pieces: list[tuple[float, bool]]

    @property
    def cost(self) -> float:
        return sum(s for s, _ in self.pieces)

    def fail(self, elapsed: float) -> float:
        """The job dies ``elapsed`` seconds in: drop what it kept, return the lost work
        (what it did since the last kept piece, to be done again)."""
        done, kept_at, kept_index = 0.0, 0.0, 0
        for i, (seconds, kept) in enumerate(self.pieces):
            if done + seconds > elapsed:
                break
            done += seconds
            if kept:
                kept_at, kept_index = done, i + 1
        setup = [p for p in self.pieces[:kept_index] if not p[1]]  # a rerun sets up again
        self.pieces = setup + self.pieces[kept_index:]
        return elapsed - kept_at + sum(s for s, _ in setup)


def artefact_pieces(art: Artefact, cost: CostModel) -> list[tuple[float, bool]]:
    """Setup (the fixed cost, not kept), then checkpoints (training) or the one cell."""
    job = art.job
    if isinstance(job, LanguageJob | TaskJob):
        step = cost.language_step if isinstance(job, LanguageJob) else cost.task_step
        s = job.train
        every = s.eval_steps if isinstance(job, TaskJob) and s.keep_best and s.eval_steps \
            else s.save_steps
        chunks = [every] * (s.max_steps // every) + ([s.max_steps % every] if
                                                     s.max_steps % every else [])
        return [(cost.fixed, False)] + [(n * step, True) for n in chunks]
    return [(cost.artefact(art), True)]  # a cell (record written at its end), composed


def unit_jobs(graph: list[Unit], cost: CostModel, overhead: float) -> dict[str, Job]:
    jobs = {}
    for u in graph:
        pieces: list[tuple[float, bool]] = [(overhead, False)] if overhead else []
        for art in u.artefacts:
            pieces += artefact_pieces(art, cost)
        jobs[u.id] = Job(u.id, u.deps, u.path, pieces)
    return jobs


def artefact_paths(artefacts: list[Artefact], cost: CostModel) -> dict[str, float]:
    """Each artefact's cost plus the longest chain of artefacts waiting on it."""
    dependants: dict[str, list[str]] = {a.id: [] for a in artefacts}
    for a in artefacts:
        for d in a.deps:
            dependants[d].append(a.id)
    path: dict[str, float] = {}
    for a in reversed(artefacts):  # the plan lists dependencies first
        path[a.id] = cost.artefact(a) + max((path[d] for d in dependants[a.id]), default=0.0)
    return path


# -- the simulations ---------------------------------------------------------------------


@dataclass
class Outcome:
    makespan: float
    busy: float  # GPU-seconds spent building (lost work included)
    victim: str = ""
    lost: float = 0.0


@dataclass
class Failure:
    """One node failure once ``fraction`` of the total work is done."""

    fraction: float
    requeue: float
    stale_after: float = 86_400.0


@dataclass
class Clock:
    """Events in time order, and the work done so far (to place the failure)."""

    events: list[tuple[float, int, str, object]] = field(default_factory=list)
    now: float = 0.0
    work: float = 0.0
    busy: float = 0.0
    count: itertools.count = field(default_factory=itertools.count)

    def at(self, t: float, kind: str, what: object) -> None:
        heapq.heappush(self.events, (t, next(self.count), kind, what))

    def advance(self, t: float, running: int) -> None:
        self.work += (t - self.now) * running
        self.busy += (t - self.now) * running
        self.now = t

    def failure_time(self, running: int, threshold: float) -> float:
        return math.inf if running == 0 or self.work >= threshold else \
            self.now + (threshold - self.work) / running


def simulate_units(jobs: dict[str, Job], gpus: int, failure: Failure | None) -> Outcome:
    """Priority list scheduling: a free GPU starts the ready job of the highest priority."""
    total = sum(j.cost for j in jobs.values())
    dependants: dict[str, list[str]] = {i: [] for i in jobs}
    waiting = {i: len(j.deps) for i, j in jobs.items()}
    for i, j in jobs.items():
        for d in j.deps:
            dependants[d].append(i)
    order = {i: n for n, i in enumerate(jobs)}
    ready = [(-jobs[i].priority, order[i], i) for i in jobs if not waiting[i]]
    heapq.heapify(ready)
    running: dict[str, tuple[float, int]] = {}  # id -> (start, version)
    version = dict.fromkeys(jobs, 0)
    clock, free, done = Clock(), gpus, 0
    outcome = Outcome(0.0, 0.0)
    pending_failure = failure
    while done < len(jobs):
        while free and ready:
            _, _, i = heapq.heappop(ready)
            running[i] = (clock.now, version[i])
            clock.at(clock.now + jobs[i].cost, "end", (i, version[i]))
            free -= 1
        t_next = clock.events[0][0]
        if pending_failure is not None:
            t_fail = clock.failure_time(len(running), pending_failure.fraction * total)
            if t_fail <= t_next:
                clock.advance(t_fail, len(running))
                victim = max(running, key=lambda i: jobs[i].priority)
                start, _ = running.pop(victim)
                version[victim] += 1
                outcome.victim, outcome.lost = victim, jobs[victim].fail(t_fail - start)
                clock.at(t_fail + pending_failure.requeue, "requeue", victim)
                pending_failure = None
                continue
        t, _, kind, what = heapq.heappop(clock.events)
        clock.advance(t, len(running))
        if kind == "requeue":  # the node is back and the job eligible again
            free += 1
            i = str(what)
            heapq.heappush(ready, (-jobs[i].priority, order[i], i))
            continue
        i, v = cast(tuple[str, int], what)
        if v != version[i]:
            continue  # the end of a run that died
        running.pop(i)
        free += 1
        done += 1
        for d in dependants[i]:
            waiting[d] -= 1
            if not waiting[d]:
                heapq.heappush(ready, (-jobs[d].priority, order[d], d))
    outcome.makespan, outcome.busy = clock.now, clock.busy
    return outcome


def simulate_shards(
    artefacts: list[Artefact],
    lists: Sequence[list[str]],
    cost: CostModel,
    paths: dict[str, float],
    failure: Failure | None,
    ready_first: bool = False,
) -> Outcome:
    """``--shard k/n``: shard k walks ``lists[k]`` in order; an artefact done is skipped,
    else built, and one being built by another shard is waited on (its lock) -- or, with
    ``ready_first`` (issue 20's shards), passed over, as is one needing an artefact not
    built: the shard builds the first ready artefact of its list, scanning from the
    start after every build, and idles only when it has none."""
    jobs = {a.id: Job(a.id, a.deps, paths[a.id], artefact_pieces(a, cost)) for a in artefacts}
    total = sum(j.cost for j in jobs.values())
    state: dict[str, str] = dict.fromkeys(jobs, "todo")  # todo, building, dead, done
    holder: dict[str, tuple[int, float, float]] = {}  # artefact -> (shard, start, lock time)
    waiters: dict[str, list[int]] = {i: [] for i in jobs}
    waiting_on: list[str | None] = [None] * len(lists)
    position = [0] * len(lists)
    alive = [True] * len(lists)
    building: dict[int, str] = {}
    clock, outcome = Clock(), Outcome(0.0, 0.0)
    pending_failure = failure
    epoch = [0] * len(lists)  # a shard's incarnation: events of a dead one are void

    def advance(k: int) -> None:
        if ready_first:
            for i in lists[k]:
                if state[i] == "todo" and all(state[d] == "done" for d in jobs[i].deps):
                    position[k] = lists[k].index(i)
                    build(k, i, clock.now)
                    return
            if any(state[i] != "done" for i in lists[k]):
                waiting_on[k] = "*"  # until something is built or a lock is broken
            return
        while position[k] < len(lists[k]):
            i = lists[k][position[k]]
            if state[i] == "done":
                position[k] += 1
                continue
            if state[i] in ("building", "dead"):
                waiters[i].append(k)
                waiting_on[k] = i
                return
            build(k, i, clock.now)
            return

    def build(k: int, i: str, lock_time: float) -> None:
        waiting_on[k] = None
        state[i] = "building"
        holder[i] = (k, clock.now, lock_time)
        building[k] = i
        clock.at(clock.now + jobs[i].cost, "end", (k, i, epoch[k]))

    while any(state[i] != "done" for i in jobs):
        for k in range(len(lists)):  # shards that can move
            if alive[k] and k not in building and waiting_on[k] is None:
                advance(k)
        t_next = clock.events[0][0] if clock.events else math.inf
        if pending_failure is not None:
            t_fail = clock.failure_time(len(building), pending_failure.fraction * total)
            if t_fail <= t_next:
                clock.advance(t_fail, len(building))
                k = max(building, key=lambda s: jobs[building[s]].priority)
                i = building.pop(k)
                _, start, lock_time = holder[i]
                outcome.victim, outcome.lost = i, jobs[i].fail(t_fail - start)
                alive[k], epoch[k] = False, epoch[k] + 1
                state[i] = "dead"  # its lock stays until it is judged stale
                clock.at(lock_time + pending_failure.stale_after, "stale", i)
                clock.at(t_fail + pending_failure.requeue, "requeue", k)
                pending_failure = None
                continue
        t, _, kind, what = heapq.heappop(clock.events)
        clock.advance(t, len(building))
        if kind == "requeue":  # the array element runs again, from its list's start
            k = cast(int, what)
            alive[k], position[k] = True, 0
            continue
        if ready_first:  # every idle shard looks at its list again
            for shard, on in enumerate(waiting_on):
                if on == "*":
                    waiting_on[shard] = None
        if kind == "stale":  # the first waiter breaks the lock and builds (resuming)
            i = str(what)
            state[i] = "todo"
            if waiters[i]:
                k = waiters[i].pop(0)
                build(k, i, clock.now)
            continue
        k, i, e = cast(tuple[int, str, int], what)
        if e != epoch[k]:
            continue
        building.pop(k)
        state[i] = "done"
        position[k] += 1
        for shard in waiters[i]:  # they move on in the next round
            waiting_on[shard] = None
        waiters[i] = []
    outcome.makespan, outcome.busy = clock.now, clock.busy
    return outcome


# -- the tables ---------------------------------------------------------------------------


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


POLICIES = {
    "shards": "shards today",
    "ready": "shards, ready work first",
    "slurm": "Slurm executor",
    "local": "local executor",
}


def run(
    artefacts: list[Artefact],
    shard_plan: Callable[[list[Artefact], int, int], list[Artefact]],
    gpus: Sequence[int],
    cost: CostModel,
    slurm_overhead: float,
    local_overhead: float,
    failure: Failure,
    heartbeat_stale: float,
) -> str:
    graph = units(artefacts, cost)
    paths = artefact_paths(artefacts, cost)
    work = sum(cost.artefact(a) for a in artefacts)
    chain = max(paths.values())
    n_train = sum(u.kind == "train" for u in graph)
    names = list(POLICIES.values())
    lines = [
        f"{len(artefacts):,} artefacts in {len(graph)} units ({n_train} train, "
        f"{len(graph) - n_train} evaluate); work {work / 3600:,.0f} GPU-hours; critical path "
        f"{hours(chain)} (of units: {hours(max(u.path for u in graph))}); cost model "
        f"{cost.language_step} s/language step, {cost.task_step} s/task step, "
        f"{cost.eval_examples_per_second:g} eval examples/s, {cost.fixed:g} s per artefact; "
        f"Slurm {slurm_overhead:g} s per job, local {local_overhead:g} s per unit",
        "",
        "| GPUs | lower bound | " + " | ".join(f"{n} | ÷ bound" for n in names)
        + " | GPU utilisation (" + " / ".join(POLICIES) + ") |",
        "|---|---|" + "---|---|" * len(names) + "---|",
    ]
    fail_rows = []
    for n in gpus:
        bound = max(work / n, chain)
        lists = [[a.id for a in shard_plan(artefacts, k, n)] for k in range(1, n + 1)]
        new_locks = Failure(failure.fraction, failure.requeue, heartbeat_stale)
        runs = {
            "shards": [simulate_shards(artefacts, lists, cost, paths, f)
                       for f in (None, failure)],
            "ready": [simulate_shards(artefacts, lists, cost, paths, f, ready_first=True)
                      for f in (None, new_locks)],
            **{name: [simulate_units(unit_jobs(graph, cost, overhead), n, f)
                      for f in (None, failure)]
               for name, overhead in (("slurm", slurm_overhead), ("local", local_overhead))},
        }
        row = [str(n), hours(bound)]
        for name in POLICIES:
            row += [hours(runs[name][0].makespan), f"{runs[name][0].makespan / bound:.2f}×"]
        row.append(" / ".join(f"{work / (n * runs[m][0].makespan):.0%}" for m in POLICIES))
        lines.append("| " + " | ".join(row) + " |")
        cells = [str(n)]
        for name in POLICIES:
            clean, failed = runs[name]
            delta = failed.makespan - clean.makespan
            allowance = failed.lost + failure.requeue
            cells.append(f"{hours(failed.makespan)} ({delta / 60:+,.0f} min; lost "
                         f"{failed.lost / 60:,.0f} + requeue {failure.requeue / 60:g} min"
                         f"{'' if delta <= allowance + 1 else ', more'}) in {failed.victim}")
        fail_rows.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"One node failure at {failure.fraction:.0%} of the work (the job with the longest "
        f"remaining path dies; requeue {failure.requeue:g} s; a dead shard's lock is broken "
        f"after {failure.stale_after / 3600:g} h today, {heartbeat_stale / 60:g} min without "
        "a heartbeat with ready work first):",
        "",
        "| GPUs | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *fail_rows,
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from langtransfer.cli.study import example_path
    from langtransfer.study.load import load_study_config
    from langtransfer.study.run import plan, shard_plan

    p = argparse.ArgumentParser(prog="python -m benchmarks.schedule", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="study config (default: the shipped paper grid)")
    p.add_argument("--gpus", type=int, nargs="+", default=[8, 16, 64])
    defaults = CostModel()
    p.add_argument("--language-step", type=float, default=defaults.language_step)
    p.add_argument("--task-step", type=float, default=defaults.task_step)
    p.add_argument("--eval-rate", type=float, default=defaults.eval_examples_per_second,
                   help="evaluation examples per second")
    p.add_argument("--fixed", type=float, default=defaults.fixed, help="seconds per artefact")
    p.add_argument("--test-examples", action="append", default=[], metavar="TASK[/LANG]=N",
                   help="a test-set size (default: CostModel's per-task estimates)")
    p.add_argument("--slurm-overhead", type=float, default=60.0,
                   help="seconds per Slurm job: scheduling, start, imports, base load")
    p.add_argument("--local-overhead", type=float, default=0.0,
                   help="seconds per unit on a local worker (its base stays loaded)")
    p.add_argument("--requeue-delay", type=float, default=300.0)
    p.add_argument("--stale-after", type=float, default=86_400.0,
                   help="age at which today's lock of a dead host is broken")
    p.add_argument("--heartbeat-stale", type=float, default=600.0,
                   help="seconds without a heartbeat after which a shard taking ready work "
                   "first breaks a dead host's lock")
    p.add_argument("--fail-at", type=float, default=0.5, help="fraction of the work done")
    args = p.parse_args(argv)
    sizes = dict(defaults.test_examples)
    for item in args.test_examples:
        key, _, value = item.partition("=")
        sizes[key] = int(value)
    cost = CostModel(args.language_step, args.task_step, args.eval_rate, args.fixed, sizes)
    config = load_study_config(args.config or example_path("paper"))
    print(run(plan(config), shard_plan, args.gpus, cost, args.slurm_overhead,
              args.local_overhead, Failure(args.fail_at, args.requeue_delay, args.stale_after),
              args.heartbeat_stale))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
