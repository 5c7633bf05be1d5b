"""Running a study's graph on one machine: one long-lived worker process per device.

``langtransfer study CONFIG --executor local --devices 0,1,2,3`` (or ``--workers N``)
starts one worker per GPU (``CUDA_VISIBLE_DEVICES`` set to it) or N workers on what the
process sees. Each worker loads the study, then takes units
(:mod:`langtransfer.study.graph`) one at a time and builds them with
:func:`~langtransfer.study.run.run_unit` on its own
:class:`~langtransfer.study.build.StudyBuilder`, so its base stays loaded across units
(one base per worker; a worker is given units of the base it holds while there are
any). The parent process loads no model: it hands a ready unit (every unit it depends on
finished) to an idle worker, the longest remaining path first, and counts what happened.

Failures are isolated as in a sequential run: an artefact that raises is recorded by the
worker, and the units depending on it still run, recording as blocked exactly the
artefacts that need it. A worker that dies (killed, out of host memory) is replaced on
the same device and its unit run again (training resumes from its last checkpoint);
a unit that kills its worker twice is recorded as failed. Ctrl-C stops the workers:
a rerun continues where they stopped.

Workers are started with the ``spawn`` method (a fresh interpreter: no CUDA state or
locks inherited), so each one re-reads the config from its file (:class:`StudySource`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from langtransfer.errors import LangTransferError
from langtransfer.results.failures import FAILED, Failure, clear_failure, one_line, write_failure
from langtransfer.study.graph import CostModel, Unit, pending_units, units
from langtransfer.study.jobs import is_done, plan

if TYPE_CHECKING:
    from langtransfer.study.config import StudyConfig
    from langtransfer.study.run import StudyRun

#: How often a unit may kill its worker before it is recorded as failed.
RETRIES = 1
#: A device whose worker dies this many times in a row without finishing a unit stops
#: the run (a bad device id, a broken installation), instead of restarting for ever.
MAX_STARTS = 3


@dataclass(frozen=True)
class StudySource:
    """Where a worker gets the study: the config file, the ``--output`` override and the
    extensions the command line loaded (a spawned process starts with none).
    ``fingerprint``: the parent's, so a config edited after the start is noticed.
    ``profile``: the ``--profile`` override, as ``output``."""

    config: str
    output: str | None = None
    task_modules: tuple[str, ...] = ()
    languages_files: tuple[str, ...] = ()
    fingerprint: str = ""
    profile: str | None = None

    def load(self) -> StudyConfig:
        from langtransfer.study.load import load_study_config
        from langtransfer.tasks.extensions import load_extensions

        load_extensions(self.task_modules, self.languages_files)
        config = load_study_config(self.config, output=self.output, profile=self.profile)
        if self.fingerprint and config.fingerprint() != self.fingerprint:
            raise LangTransferError(
                f"{self.config} changed after the study started (settings fingerprint "
                f"{config.fingerprint()} vs {self.fingerprint}); rerun the command"
            )
        return config


def parse_devices(text: str) -> list[str]:
    """``"0,1,2,3"`` -> ``["0", "1", "2", "3"]`` (ids or GPU UUIDs, as
    ``CUDA_VISIBLE_DEVICES`` takes them)."""
    devices = [d.strip() for d in text.split(",")]
    if not all(devices) or any(" " in d for d in devices):
        raise LangTransferError(f"--devices {text!r} must be a comma-separated list, e.g. 0,1,2,3")
    repeated = sorted({d for d in devices if devices.count(d) > 1})
    if repeated:
        raise LangTransferError(f"--devices {text!r} names {', '.join(repeated)} twice")
    return devices


def _work(source: StudySource, conn: Connection, device: str | None = None) -> None:
    """A worker: load the study once, then build the units it is sent until ``None``.
    ``device``: the GPU it was given (``CUDA_VISIBLE_DEVICES``), which must be visible
    (torch would otherwise train on the CPU without a word)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops workers on Ctrl-C
    try:
        from langtransfer.study.build import StudyBuilder
        from langtransfer.study.run import run_unit

        if device is not None:
            import torch

            if not torch.cuda.is_available():
                raise LangTransferError(
                    f"device {device}: no GPU is visible with CUDA_VISIBLE_DEVICES={device} "
                    "(--devices takes the ids or UUIDs nvidia-smi lists; on CPU use --workers N)"
                )
        config = source.load()
        artefacts = plan(config)
        builder = StudyBuilder(config.output)
    except Exception as e:
        conn.send(("error", None, one_line(e), traceback.format_exc()))
        return
    while True:
        try:
            unit_id = conn.recv()
        except EOFError:  # the parent is gone
            return
        if unit_id is None:
            return
        try:
            run = run_unit(config, unit_id, builder=builder, artefacts=artefacts)
        except Exception as e:  # outside the artefacts' own failures: recorded by the parent
            conn.send(("error", unit_id, one_line(e), traceback.format_exc()))
            continue
        conn.send(("done", unit_id, run))


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` while a worker is spawned (it inherits them)."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class _Worker:
    slot: int
    device: str | None
    env: dict[str, str]
    process: Any = None
    conn: Connection | None = None
    unit: Unit | None = None
    model: str = ""
    base_loads: int = 0  # of earlier processes on this slot
    current_loads: int = 0
    starts: int = 0  # in a row without a finished unit

    def start(self, source: StudySource) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        # not daemonic: a worker may start processes of its own (data loading)
        self.process = ctx.Process(target=_work, args=(source, child, self.device),
                                   name=f"langtransfer-worker-{self.slot}")
        with _environment(self.env):
            self.process.start()
        child.close()
        self.conn, self.model, self.unit = parent, "", None
        self.base_loads += self.current_loads
        self.current_loads = 0
        self.starts += 1
        if self.starts > MAX_STARTS:
            where = f"device {self.device}" if self.device is not None else f"slot {self.slot}"
            raise LangTransferError(
                f"the worker on {where} died {MAX_STARTS} times in a row without finishing a "
                "unit; check the device id (--devices) and that a single unit runs "
                "(langtransfer study CONFIG --unit ID)"
            )

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert self.conn is not None
            self.conn.send(None)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)


@dataclass
class _Schedule:
    """Which units are ready (every unit they depend on finished) and which wait."""

    todo: list[Unit]
    waiting: dict[str, set[str]] = field(init=False)
    dependants: dict[str, list[str]] = field(init=False)
    ready: list[Unit] = field(init=False)
    by_id: dict[str, Unit] = field(init=False)

    def __post_init__(self) -> None:
        ids = {u.id for u in self.todo}
        self.waiting = {u.id: {d for d in u.deps if d in ids} for u in self.todo}
        self.dependants = {u.id: [] for u in self.todo}
        for u in self.todo:
            for d in self.waiting[u.id]:
                self.dependants[d].append(u.id)
        self.by_id = {u.id: u for u in self.todo}
        self.ready = [u for u in self.todo if not self.waiting[u.id]]

    def take(self, model: str) -> Unit | None:
        """The ready unit with the longest remaining path, of ``model`` if there is one
        (a worker keeps its base while it has work for it)."""
        if not self.ready:
            return None
        same = [u for u in self.ready if u.model == model]
        unit = max(same or self.ready, key=lambda u: u.path)
        self.ready.remove(unit)
        return unit

    def finished(self, unit: Unit) -> None:
        for d in self.dependants[unit.id]:
            self.waiting[d].discard(unit.id)
            if not self.waiting[d]:
                self.ready.append(self.by_id[d])


def run_local(
    source: StudySource,
    *,
    devices: Sequence[str] | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    cost: CostModel | None = None,
) -> StudyRun:
    """Build every missing or stale artefact of the study on ``devices`` (one worker
    each, ``CUDA_VISIBLE_DEVICES`` set to it) or on ``workers`` workers, and return what
    happened, counted as :func:`~langtransfer.study.run.run_study` counts it."""
    from langtransfer.study.run import StudyRun, prepare_output

    if (devices is None) == (workers is None):
        raise LangTransferError("give the devices (--devices 0,1,...) or a number of workers "
                                "(--workers N), one of them")
    if workers is not None and workers < 1:
        raise LangTransferError(f"--workers {workers}: need at least 1")
    config = source.load()
    source = replace(source, fingerprint=config.fingerprint())
    artefacts = plan(config)
    out = prepare_output(config, overwrite=overwrite)
    graph = units(artefacts, cost)
    todo = pending_units(graph)
    run = StudyRun(base_loads=0)
    pending = {u.id for u in todo}
    for u in graph:
        if u.id not in pending:
            run.skipped += len(u.artefacts)
            for a in u.artefacts:
                clear_failure(out, a.id)
    if not todo:
        return run
    if devices is not None:
        slots: list[dict[str, str]] = [{"CUDA_VISIBLE_DEVICES": d} for d in devices]
    else:
        assert workers is not None
        # CPU workers share the cores: one thread pool each of its share, unless set
        threads = {} if "OMP_NUM_THREADS" in os.environ else {
            "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}
        slots = [dict(threads) for _ in range(workers)]
    names: list[str | None] = list(devices) if devices is not None else [None] * len(slots)
    pool = [_Worker(i, d, env) for i, (d, env) in enumerate(zip(names, slots, strict=True))]
    pool = pool[: len(todo)]  # no more workers than units
    schedule = _Schedule(todo)
    attempts: dict[str, int] = {}
    bar = tqdm(total=len(todo), desc="study", unit="unit", disable=not progress,
               dynamic_ncols=True)

    def record(unit: Unit, error: str, trace: str = "") -> None:
        """The unit did not run to its end: its artefacts not built fail with ``error``."""
        for a in unit.artefacts:
            if not is_done(a):
                failure = Failure(a.id, FAILED, error, (), a.hash, traceback=trace)
                write_failure(out, failure)
                run.failures.append(failure)

    def finish(worker: _Worker, unit: Unit) -> None:
        worker.unit = None
        schedule.finished(unit)
        bar.update(1)
        bar.set_postfix_str(f"{sum(w.unit is not None for w in pool)} running, "
                            f"{len(run.failed)} failed, {len(run.blocked)} blocked")

    try:
        for w in pool:
            w.start(source)
        done = 0
        while done < len(todo):
            for w in pool:
                if w.unit is None:
                    unit = schedule.take(w.model)
                    if unit is None:
                        break
                    if not w.process.is_alive():  # died while idle: a fresh one
                        w.start(source)
                    w.unit, w.model = unit, unit.model
                    assert w.conn is not None
                    with contextlib.suppress(OSError):  # died just now: seen below
                        w.conn.send(unit.id)
            busy = [w for w in pool if w.unit is not None]
            if not busy:
                raise AssertionError("no unit is running and none is ready")  # a cycle
            handles: dict[Any, _Worker] = {}
            for w in busy:
                handles[w.conn] = w
                handles[w.process.sentinel] = w
            for handle in wait(list(handles), timeout=1.0):
                w = handles[handle]
                unit = w.unit
                if unit is None:  # already handled through its other handle
                    continue
                message = None
                try:
                    assert w.conn is not None
                    if w.conn.poll():
                        message = w.conn.recv()
                except (EOFError, OSError):  # the worker is gone: let it finish dying
                    w.process.join(10)
                if message is None:
                    if w.process.is_alive():
                        continue
                    # the worker died with its unit: run it again (it resumes), once
                    code = w.process.exitcode
                    attempts[unit.id] = attempts.get(unit.id, 0) + 1
                    w.unit = None
                    w.start(source)
                    if attempts[unit.id] <= RETRIES:
                        bar.write(f"worker {w.slot} died (exit code {code}) in {unit.id}; "
                                  "running it again")
                        schedule.ready.append(unit)
                    else:
                        record(unit, f"WorkerDied: the worker died (exit code {code}) "
                               f"building unit {unit.id}, {attempts[unit.id]} times")
                        done += 1
                        finish(w, unit)
                    continue
                kind, unit_id, *rest = message
                if kind == "error" and unit_id is None:  # the worker could not start
                    raise LangTransferError(f"a study worker could not start: {rest[0]}")
                assert unit_id == unit.id, (unit_id, unit.id)
                w.starts = 0
                if kind == "done":
                    result: StudyRun = rest[0]
                    run.built += result.built
                    run.skipped += result.skipped
                    run.failures += result.failures
                    w.current_loads = result.base_loads or 0
                    for f in result.failed if progress else ():
                        bar.write(f"failed: {f.line()}")
                else:
                    record(unit, rest[0], rest[1])
                    if progress:
                        bar.write(f"failed: unit {unit.id}: {rest[0]}")
                done += 1
                finish(w, unit)
    except BaseException:
        for w in pool:  # Ctrl-C or an error: stop every worker now; a rerun continues
            if w.process is not None and w.process.is_alive():
                w.process.terminate()
        for w in pool:
            if w.process is not None:
                w.process.join(10)
        raise
    finally:
        bar.close()
    for w in pool:
        w.stop()
    run.base_loads = sum(w.base_loads + w.current_loads for w in pool)
    return run
