"""Tables and heatmaps from result records: how the seven configurations compare.

Conventions (the same in every table):

- One table per task and source language (``qa/en``): configurations are rows in the
  paper's order (only those with results), target languages are columns in the language
  registry's order, then ``avg``. A language-representation variant is a row of its own,
  ``<configuration> [<variant>]`` (``slp+ta [init=vocab]``), after its configuration's
  default row. Tables are not averaged over source languages, because
  a task representation trained in another language is a different model.
- Values are the record's primary metric (the reference's figure; higher is better) to
  one decimal, or the metric chosen for the task (``metrics={"qa": "mlqa_f1"}``, CLI
  ``--metric qa=mlqa_f1``), named in each table's title.
- An average is shown only when every cell it covers is present; otherwise it is ``–``,
  since an average over fewer languages is not comparable with the full ones. Cells
  themselves are never dropped: a missing cell is ``–`` in Markdown and text, and an
  empty field in CSV (what CSV readers treat as missing).
- The best value per column is **bold** in Markdown, ``*``-suffixed in text, and listed
  in the trailing ``best_in`` CSV column of its row (``;``-separated column names). Best
  is decided on the displayed (rounded) values, so ties are all marked; a column whose
  displayed values are all equal has no best.
- Summaries weigh every table equally: the average per configuration is the mean of the
  per-table averages; by script (or family) it is, for each table that has target
  languages of that script, the mean over those languages, then the mean over tables.
  Languages the registry does not know are grouped under ``unknown``.
- Deltas are ``configuration - base`` per cell; negative means the configuration is
  worse than the untouched model there (negative transfer).

Output layout (``report.json`` holds every number and marks the directory as a report,
so it may be replaced as a whole next time)::

    report.md  report.json
    tables/<task>.<source>.md|csv     deltas/<task>.<source>.md|csv
    heatmaps/<task>.<source>.png      summary/{configurations,deltas,scripts,families}.md|csv
    plots/trained_vs_composed.png     summary/trained_vs_composed.md|csv  (composed cells only)
    axes/<axis>.<task>.<source>.png|csv   (studies with ``axes``: see report_axes)

Composed language representations (study ``composed:``, variant ``composed=...``) get a
section of their own: each composed cell beside its trained counterpart (same task
representation, same configuration) and ``base``, and a scatter plot of the two.

With several base models (records with different ``model_label``), each model's tables,
deltas, heatmaps and summaries go under ``<label>/`` as above, and the top level holds the
cross-model summary: ``summary/models.md|csv|png`` (each configuration's average on each
base), ``summary/models.deltas.md|csv`` and ``summary/models.agreement.md|csv`` (the best
configuration per task, target language and base, and whether the bases agree).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any

from langtransfer.configurations import STUDY_CONFIGURATIONS
from langtransfer.errors import LangTransferError, OutputExistsError, UnknownNameError
from langtransfer.io import atomic_dir, atomic_path, write_json, write_text
from langtransfer.languages import all_languages, get_language
from langtransfer.profiles import DEFAULT_PROFILE, PROFILES
from langtransfer.report.axes import axis_section
from langtransfer.report.grid import (
    AVG,
    MISSING,
    Grid,
    format_interval,
    format_value,
    mean_if_complete,
)
from langtransfer.report.intervals import (
    HOW_TO_READ,
    UNTESTED,
    average_estimates,
    best_sets,
    delta_estimates,
    detectable,
    estimate_task_grids,
    mark_best,
    zero_tests,
)
from langtransfer.results.failures import Failure
from langtransfer.results.records import Key, cell_name, merge_records, record_key, row_label
from langtransfer.results.statistics import Resampler, combine

if TYPE_CHECKING:
    from langtransfer.inference.scoring import ExampleScores

GENERATOR = "langtransfer report"


@dataclass(frozen=True)
class ReportSummary:
    """What :func:`build_report` wrote, and the headline numbers."""

    out_dir: Path
    index: Path
    files: tuple[Path, ...]
    n_records: int
    tables: tuple[str, ...]
    average_by_configuration: dict[str, float | None]
    #: With several base models: label -> configuration -> average over the tables every
    #: model has (``average_by_configuration`` is then empty, ``tables`` are
    #: ``<label>/<task>.<source>``).
    average_by_model: dict[str, dict[str, float | None]] = field(default_factory=dict)
    #: The tables as text (what ``langtransfer report`` prints).
    text: str = ""
    #: One line per cell without an interval (or left out), naming it and what to do.
    problems: tuple[str, ...] = ()
    #: Tested reports: per model label ("" with one model), the configuration(s) best on
    #: average -- one when the paired test finds it better than every other, else the
    #: tied set.
    best_average: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def best_configuration(self) -> str | None:
        """The configuration with the highest complete average, if any is complete (tested:
        only one significantly better than every other)."""
        if "" in self.best_average:
            best = self.best_average[""]
            return best[0] if len(best) == 1 else None
        return _best_of(self.average_by_configuration)

    @property
    def best_by_model(self) -> dict[str, str | None]:
        """Per base model (several-model reports): its best configuration on average."""
        return {label: (b[0] if len(b) == 1 else None) if (b := self.best_average.get(label))
                else _best_of(avgs) for label, avgs in self.average_by_model.items()}

    def best_text(self) -> str:
        """The best configuration(s) on average as the CLI says it ("" for none)."""
        def one(label: str, fallback: str | None) -> str:
            best = self.best_average.get(label)
            if best is None:
                return fallback or ""
            return best[0] if len(best) == 1 else "tied " + " = ".join(best)

        if self.average_by_model:
            return "; ".join(f"{label}: {one(label, b) or '-'}"
                             for label, b in self.best_by_model.items())
        return one("", self.best_configuration)


def _best_average(grids: Mapping[str, Grid]) -> dict[str, tuple[str, ...]]:
    """Per label, the tested best (or tied best) of the per-configuration summary's
    average column; labels whose summary is untested are left out."""
    out = {}
    for label, grid in grids.items():
        if grid.tested:
            best = grid.best(AVG) or grid.tied(AVG)
            if best:
                out[label] = tuple(sorted(best, key=_row_order))
    return out


def _best_of(averages: Mapping[str, float | None]) -> str | None:
    """The highest complete average's configuration; None when none is complete or all
    complete ones are equal (as displayed), as for best marks."""
    complete = {c: v for c, v in averages.items() if v is not None}
    if len({round(v, 1) for v in complete.values()}) < 2:
        return None
    return max(complete, key=complete.__getitem__)


def _language_info(code: str) -> tuple[str, str]:
    """(script, family) from the registry; ``unknown`` for codes it does not know."""
    try:
        lang = get_language(code)
    except UnknownNameError:
        return "unknown", "unknown"
    return lang.script, lang.family


def _language_order(codes: Iterable[str]) -> list[str]:
    """Registry order (the paper's), then codes the registry does not know, by code."""
    rank = {lang.code: i for i, lang in enumerate(all_languages())}
    return sorted(set(codes), key=lambda c: (rank.get(c, len(rank)), c))


def _row_order(label: str) -> tuple[int, str]:
    """A row label (``slp+ta`` or ``slp+ta [init=vocab]``): its configuration's place in
    the paper's order, then the variant (the default one, "", first)."""
    configuration, _, variant = label.partition(" [")
    return STUDY_CONFIGURATIONS.index(configuration), variant


def _ordered_configurations(labels: Iterable[str]) -> list[str]:
    """Row labels in the paper's order of configurations, each one's variants after it."""
    present = {r for r in labels if r.partition(" [")[0] in STUDY_CONFIGURATIONS}
    return sorted(present, key=_row_order)


def _row(record: Mapping[str, Any]) -> str:
    return row_label(record["configuration"], record_key(record).variant)


# --- building the tables ---------------------------------------------------------------


@dataclass
class _Tables:
    records: list[dict[str, Any]]
    tasks: list[Grid]
    deltas: list[Grid]
    by_configuration: Grid
    delta_summary: Grid | None
    by_script: Grid
    by_family: Grid


def _check_comparable(records: list[dict[str, Any]]) -> None:
    """Refuse to put results of different base models into one table set (a study of
    several models labels them: :func:`build_report` reports each label apart)."""
    models: dict[str, dict[str, Any]] = {}
    for r in records:
        models.setdefault(json.dumps(r["model"], sort_keys=True), r)
    if len(models) > 1:
        a, b = list(models.values())[:2]
        raise LangTransferError(
            "records come from different base models and are not comparable: "
            f"{cell_name(record_key(a))} used {a['model']}, {cell_name(record_key(b))} used "
            f"{b['model']}; report them separately"
        )


def _task_grid(
    task: str, source: str, records: list[dict[str, Any]], chosen: str | None = None
) -> Grid:
    """One task × source table of the records' primary metric, or of ``chosen``."""
    if chosen is None:
        metrics = {r["primary_metric"] for r in records}
        if len(metrics) > 1:
            raise LangTransferError(
                f"task {task} (source {source}) mixes primary metrics "
                f"{', '.join(sorted(metrics))}; a table needs one"
            )
        metric = metrics.pop()
    else:
        metric = chosen
        lacking = [r for r in records if metric not in r["metrics"]]
        if lacking:
            raise UnknownNameError(
                f"metric of task {task} (in {cell_name(record_key(lacking[0]))})", metric,
                lacking[0]["metrics"],
            )
    made_by = {_profile(r) for r in records}
    if len(made_by) > 1:
        raise LangTransferError(
            f"task {task} (source {source}) mixes results of the profiles "
            f"{', '.join(sorted(made_by))}; a table needs one (report them separately)"
        )
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:  # one record per training seed of the cell
        cells.setdefault((_row(r), r["target_language"]), []).append(r)
    values = {where: fmean(float(r["metrics"][metric]) for r in rs)
              for where, rs in cells.items()}
    grid = Grid(
        name=f"{task}.{source}",
        title=f"{task} — source {source}, metric {metric}, profile {made_by.pop()}",
        rows=_ordered_configurations(_row(r) for r in records),
        columns=_language_order(r["target_language"] for r in records),
        values=values,
        metric=metric,
    )
    grid.cells = {where: sorted(rs, key=_seed_order) for where, rs in cells.items()}
    grid.notes = _cell_notes(grid, records)
    return grid


def _seed_order(record: Mapping[str, Any]) -> tuple[int, str]:
    seed = record.get("seed")
    return (0, str(seed)) if seed is None else (1, f"{seed:020d}" if seed >= 0 else str(seed))


def _seeds_text(seeds: Iterable[Any]) -> str:
    return ", ".join(str(s) for s in sorted(seeds, key=lambda s: (s is None, s or 0)))


def _check_seeds(
    records: list[dict[str, Any]], failed: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every cell must have been evaluated with the same training seeds (one record per
    seed), else their values are not comparable: an error naming two cells and their
    seeds -- unless the study recorded failures (``failed``), which explain a missing
    seed: those cells are then left out, each named in a note."""
    seeds: dict[Key, set[Any]] = {}
    for r in records:
        seeds.setdefault(record_key(r).cell(), set()).add(r.get("seed"))
    every: set[Any] = set().union(*seeds.values()) if seeds else set()
    short = {k: s for k, s in seeds.items() if s != every}
    if not short:
        return records, []
    if not failed:
        (k, mine), (other, theirs) = next(iter(short.items())), next(
            (k2, s2) for k2, s2 in seeds.items() if s2 != short[next(iter(short))])
        raise LangTransferError(
            f"cells were evaluated with different training seeds: {cell_name(k)} with "
            f"{_seeds_text(mine)}, {cell_name(other)} with {_seeds_text(theirs)}; report "
            "directories of one study, and rerun it until every seed of every cell is "
            "evaluated"
        )
    notes = [f"{cell_name(k)}: seed(s) {_seeds_text(every - s)} not evaluated (see "
             "Failures), so the cell is shown as not evaluated" for k, s in short.items()]
    return [r for r in records if record_key(r).cell() not in short], notes


def _profile(record: Mapping[str, Any]) -> str:
    """The profile that made a record (records from before profiles: the default's
    settings, which the method profile keeps)."""
    return str(record.get("profile") or DEFAULT_PROFILE)


def _profile_line(records: Iterable[Mapping[str, Any]]) -> str:
    """The report's first line: which profile made its tables."""
    made_by = sorted({_profile(r) for r in records})
    said = [f"`{name}` ({PROFILES[name].summary})" if name in PROFILES else f"`{name}`"
            for name in made_by]
    if len(said) == 1:
        return f"Profile {said[0]}: it made every table (docs/fidelity.md)."
    return (f"Profiles {', '.join(said)}: each table's title names the one that made it "
            "(docs/fidelity.md).")


def _cell_notes(grid: Grid, records: list[dict[str, Any]]) -> list[str]:
    """Unparseable outputs and cut inputs where there are any, and every language on
    which all configurations score 0 -- said in words, not left as a silent zero."""
    order = {(r, c): i for i, (r, c) in enumerate(
        (r, c) for r in grid.rows for c in grid.columns)}
    by_cell = sorted(records, key=lambda r: order.get((_row(r), r["target_language"]),
                                                      len(order)))
    notes = []
    for field_name, what in (
        ("n_unparseable", "unparseable outputs (the strict reading's; scored as wrong, or as "
                          "the reference reading's fallback class)"),
        ("n_truncated", "inputs cut at the evaluation's max_length"),
    ):
        cells = [f"{_row(r)}/{r['target_language']}"
                 + (f" ({record_key(r).replicate or 'seed=' + str(r['seed'])})"
                    if len(grid.cells.get((_row(r), r["target_language"]), ())) > 1 else "")
                 + f" {r[field_name]} of {r['n_examples']}" for r in by_cell if r.get(field_name)]
        if cells:
            notes.append(f"{what}: {', '.join(cells)}")
    for c in grid.columns:
        column = [grid.get(r, c) for r in grid.rows]
        if len(grid.rows) > 1 and all(v is not None and round(v, 1) == 0 for v in column):
            notes.append(f"{c}: every configuration scores 0 -- this target is out of this "
                         "model's reach here (see any counts above), not a result to compare")
    return notes


def _delta_grid(grid: Grid) -> Grid | None:
    if "base" not in grid.rows:
        return None
    rows = [r for r in grid.rows if r != "base"]
    values = {}
    for r in rows:
        for c in grid.columns:
            v, b = grid.get(r, c), grid.get("base", c)
            if v is not None and b is not None:
                values[(r, c)] = v - b
    averages = {}
    for r in rows:
        v, b = grid.get(r, AVG), grid.get("base", AVG)
        averages[r] = v - b if v is not None and b is not None else None
    delta = Grid(
        name=grid.name,
        title=f"{grid.title} — difference to base (negative = negative transfer)",
        rows=rows,
        columns=list(grid.columns),
        values=values,
        metric=grid.metric,
        averages=averages,
    )
    if grid.estimates:
        delta_estimates(delta, grid)
    return delta


def _label(grid: Grid, grids: list[Grid]) -> str:
    task, source = grid.name.split(".", 1)
    sources = {g.name.split(".", 1)[1] for g in grids if g.name.split(".", 1)[0] == task}
    return task if len(sources) == 1 else f"{task}/{source}"


def _summary_grid(grids: list[Grid], name: str, title: str) -> Grid:
    rows = _ordered_configurations(r for g in grids for r in g.rows)
    columns = [_label(g, grids) for g in grids]
    values = {
        (r, col): v
        for g, col in zip(grids, columns, strict=True)
        for r in rows
        if (v := g.get(r, AVG)) is not None
    }
    averages = {r: mean_if_complete([values.get((r, c)) for c in columns]) for r in rows}
    grid = Grid(name, title, rows, columns, values, averages=averages)
    grid.estimates = {
        (r, col): e
        for g, col in zip(grids, columns, strict=True)
        for r in rows
        if (r, col) in values and (e := g.estimates.get((r, AVG))) is not None
    }
    if grid.estimates:
        average_estimates(grid)
        mark_best(grid)
    return grid


def _group_grid(grids: list[Grid], kind: str) -> Grid:
    """Average per configuration over the target languages of each script (or family)."""
    index = 0 if kind == "script" else 1
    groups: dict[str, None] = {}
    members: list[dict[str, list[str]]] = []  # per table: group -> its languages there
    for g in grids:
        by_group: dict[str, list[str]] = {}
        for code in g.columns:
            group = _language_info(code)[index]
            by_group.setdefault(group, []).append(code)
            groups.setdefault(group, None)
        members.append(by_group)
    columns = sorted(groups, key=lambda s: (s == "unknown", s))
    rows = _ordered_configurations(r for g in grids for r in g.rows)
    values = {}
    estimates = {}
    for r in rows:
        for group in columns:
            per_table = [
                mean_if_complete([g.get(r, code) for code in by_group[group]])
                for g, by_group in zip(grids, members, strict=True)
                if group in by_group
            ]
            if (mean := mean_if_complete(per_table)) is not None:
                values[(r, group)] = mean
                parts = [[g.estimates.get((r, code)) for code in by_group[group]]
                         for g, by_group in zip(grids, members, strict=True)
                         if group in by_group]
                if all(e is not None for part in parts for e in part):
                    estimates[(r, group)] = combine(
                        [combine([e for e in part if e is not None]) for part in parts])
    name = "families" if kind == "family" else "scripts"
    title = f"Average primary metric per configuration by target-language {kind}"
    grid = Grid(name, title, rows, columns, values, with_avg=False)
    grid.estimates = estimates
    mark_best(grid)
    return grid


def _by_model(
    records: Iterable[Mapping[str, Any]],
    metrics: Mapping[str, str] | None = None,
    notes: list[str] | None = None,
    failed: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """The merged records per model label (sorted; "" alone in a single-model study),
    after checking that every task ``metrics`` names has records and that every cell has
    the same training seeds (:func:`_check_seeds`; its notes are added to ``notes``)."""
    merged = merge_records(records)
    if not merged:
        raise LangTransferError("no result records to report")
    tasks = sorted({r["task"] for r in merged})
    unknown = sorted(set(metrics or {}) - set(tasks))
    if unknown:
        raise UnknownNameError("task for --metric", unknown[0], tasks)
    merged, seed_notes = _check_seeds(merged, failed)
    if notes is not None:
        notes += seed_notes
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in merged:
        groups.setdefault(record_key(r).model_label, []).append(r)
    return dict(sorted(groups.items()))


def _build_tables(
    records: Iterable[Mapping[str, Any]],
    metrics: Mapping[str, str] | None = None,
    scores: Mapping[Key, ExampleScores] | None = None,
    resampler: Resampler | None = None,
) -> _Tables:
    """The tables of one model's records; with ``scores`` (per-example scores by cell),
    each value's bootstrap estimate and the paired tests' marks."""
    records = merge_records(records)
    if not records:
        raise LangTransferError("no result records to report")
    _check_comparable(records)
    present = {r["task"] for r in records}
    metrics = {t: m for t, m in (metrics or {}).items() if t in present}
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        cells.setdefault((r["task"], r["source_language"]), []).append(r)
    tasks = [_task_grid(t, s, rs, metrics.get(t)) for (t, s), rs in sorted(cells.items())]
    if scores is not None:
        estimate_task_grids(tasks, scores, resampler or Resampler())
    deltas = [d for g in tasks if (d := _delta_grid(g)) is not None]
    by_configuration = _summary_grid(
        tasks, "configurations", "Average primary metric per configuration and task"
    )
    delta_summary = None
    if deltas:
        delta_summary = _summary_grid(
            deltas,
            "deltas",
            "Average difference to base per task (negative = negative transfer)",
        )
        zero_tests(delta_summary)
    return _Tables(
        records,
        tasks,
        deltas,
        by_configuration,
        delta_summary,
        _group_grid(tasks, "script"),
        _group_grid(tasks, "family"),
    )


# --- rendering ---------------------------------------------------------------------------


def _cells(grid: Grid, signed: bool, intervals: bool = False) -> list[list[str]]:
    """Each cell's text: the value, then ``▲``/``▼`` where a difference is significant and,
    with ``intervals``, the 95% interval."""
    out = []
    for r in grid.rows:
        row = []
        for c in grid.all_columns:
            text = format_value(grid.get(r, c), signed)
            if (mark := grid.marks.get((r, c))) is not None:
                text += f" {mark}"
            if intervals and grid.get(r, c) is not None and grid.interval(r, c) is not None:
                text += f" {format_interval(grid.interval(r, c), signed)}"
            row.append(text)
        out.append(row)
    return out


def _best_notes(grid: Grid) -> list[str]:
    """Tested tables: which configurations tie for best where none is significantly
    better, and the columns where none can be separated from any other."""
    if not grid.tested:
        return []
    tied, none = [], []
    for c in grid.all_columns:
        rows = grid.tied(c)
        if not rows:
            continue
        present = {r for r in grid.rows if grid.get(r, c) is not None}
        if rows == present:
            none.append(c)
        else:
            tied.append(f"{c}: {_joined(rows, ', ')}")
    notes = []
    if tied:
        notes.append("tied best (the paired test cannot separate them; *italic*): "
                     + "; ".join(tied))
    if none:
        notes.append("no configuration separable from the others in: " + ", ".join(none))
    return notes


def to_markdown(grid: Grid, *, signed: bool = False, mark_best: bool = True) -> str:
    """A Markdown table with each value's 95% interval where it has one; the best value
    per column in bold (tested tables: only where significantly best, the tied best in
    italics)."""
    best = {c: grid.best(c) for c in grid.all_columns} if mark_best else {}
    tied = {c: grid.tied(c) for c in grid.all_columns} if mark_best else {}
    lines = [
        "| configuration | " + " | ".join(grid.all_columns) + " |",
        "|---|" + "---:|" * len(grid.all_columns),
    ]
    for r, row in zip(grid.rows, _cells(grid, signed, intervals=True), strict=True):
        shown = [
            f"**{text}**" if r in best.get(c, ()) else f"*{text}*" if r in tied.get(c, ())
            else text
            for c, text in zip(grid.all_columns, row, strict=True)
        ]
        lines.append(f"| {r} | " + " | ".join(shown) + " |")
    notes = grid.notes + (_best_notes(grid) if mark_best else [])
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def to_csv(grid: Grid, *, signed: bool = False, mark_best: bool = True) -> str:
    """CSV with empty fields for missing cells and a trailing ``best_in`` column (tested
    tables: also ``tied_best_in``)."""
    tested = mark_best and grid.tested
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["configuration", *grid.all_columns] + (["best_in"] if mark_best else [])
                    + (["tied_best_in"] if tested else []))
    for r in grid.rows:
        row = ["" if (v := grid.get(r, c)) is None else format_value(v, signed)
               for c in grid.all_columns]
        best_in = [c for c in grid.all_columns if r in grid.best(c)] if mark_best else None
        tied_in = [c for c in grid.all_columns if r in grid.tied(c)]
        writer.writerow([r, *row] + ([";".join(best_in)] if best_in is not None else [])
                        + ([";".join(tied_in)] if tested else []))
    return buf.getvalue()


def to_intervals_csv(grid: Grid, *, mark_best: bool = True) -> str:
    """One row per cell: ``configuration, column, value, low, high, n`` (the 95%
    interval; empty without one; ``n`` the test examples behind the value), ``seeds``,
    and ``best`` (``yes``: significantly best; ``tied``) or ``significant`` (a
    difference's ``▲``/``▼``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    extra = ["best"] if mark_best else ["significant"]
    writer.writerow(["configuration", "column", "value", "low", "high", "n", "seeds", *extra])

    def number(v: float | None) -> str:
        return "" if v is None else f"{v:.3f}"

    for r in grid.rows:
        for c in grid.all_columns:
            value = grid.get(r, c)
            if value is None:
                continue
            e = grid.estimates.get((r, c))
            low, high = grid.interval(r, c) or (None, None)
            if mark_best:
                flag = "yes" if r in grid.best(c) else "tied" if r in grid.tied(c) else ""
            else:
                flag = {"▲": "higher", "▼": "lower"}.get(grid.marks.get((r, c), ""), "")
            writer.writerow([r, c, number(value), number(low), number(high),
                             e.n if e is not None else "", e.seeds if e is not None else "",
                             flag])
    return buf.getvalue()


def to_text(grid: Grid, *, signed: bool = False, mark_best: bool = True) -> str:
    """An aligned plain-text table for terminals; the best value per column ends in ``*``
    (tested tables: significantly best), the tied best in ``~``."""
    best = {c: grid.best(c) for c in grid.all_columns} if mark_best else {}
    tied = {c: grid.tied(c) for c in grid.all_columns} if mark_best else {}
    body = [
        [r]
        + [
            text + ("*" if r in best.get(c, ()) else "~" if r in tied.get(c, ())
                    else " " if mark_best else "")
            for c, text in zip(grid.all_columns, row, strict=True)
        ]
        for r, row in zip(grid.rows, _cells(grid, signed), strict=True)
    ]
    header = ["configuration"] + [c + (" " if mark_best else "") for c in grid.all_columns]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([cells[0].ljust(widths[0]), *padded]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    notes = [""] + [f"note: {n}" for n in grid.notes] if grid.notes else []
    return "\n".join([grid.title, line(header), rule, *map(line, body), *notes]) + "\n"


@dataclass
class _Prepared:
    """The report's tables per model label, the cross-model comparison (several models),
    and the lines about the data (cells without per-example scores, missing seeds)."""

    per_model: dict[str, _Tables]
    cross: _CrossModel | None
    problems: list[str]
    scored: int = 0
    recomputed: int = 0

    @property
    def tested(self) -> bool:
        return any(g.tested for t in self.per_model.values() for g in t.tasks)


def _prepare(
    records: Iterable[Mapping[str, Any]],
    metrics: Mapping[str, str] | None,
    study_dirs: Sequence[str | os.PathLike] | None,
    failed: bool = False,
    resampler: Resampler | None = None,
) -> _Prepared:
    """Tables of every model; with ``study_dirs``, their per-example scores (stored or
    recomputed from predictions) give each value its interval and the marks their tests."""
    from langtransfer.results.example_scores import load_example_scores

    problems: list[str] = []
    groups = _by_model(records, metrics, problems, failed)
    scores = None
    recomputed = 0
    if study_dirs is not None:
        loaded = load_example_scores(study_dirs, [r for rs in groups.values() for r in rs])
        scores, recomputed = loaded.scores, loaded.recomputed
        problems += loaded.problems
    resampler = resampler or Resampler()
    per_model = {label: _build_tables(rs, metrics, scores, resampler)
                 for label, rs in groups.items()}
    cross = _cross_model(per_model) if len(per_model) > 1 else None
    return _Prepared(per_model, cross, problems, len(scores or {}), recomputed)


def _format(prepared: _Prepared) -> str:
    per_model = prepared.per_model
    parts = []
    for label, tables in per_model.items():
        if len(per_model) > 1:
            parts.append(f"== model {label} ({_model_name(tables)}) ==\n")
        parts += [to_text(g) for g in tables.tasks]
        if len(tables.tasks) > 1:
            parts.append(to_text(tables.by_configuration))
    if prepared.cross is not None:
        cross = prepared.cross
        parts += ["== across models ==\n", to_text(cross.by_model),
                  "\n".join(cross.findings()) + "\n"]
    if prepared.tested:
        note = (f"* significantly best in column (paired test, Holm-corrected per table); "
                f"~ tied best (not separable from the top); {MISSING} not evaluated "
                "(averages need every cell); intervals in report.md")
    else:
        note = (f"* best in column (none where all are equal); {MISSING} not evaluated "
                "(averages need every cell)")
    return "\n".join(parts) + note + "\n"


def format_tables(
    records: Iterable[Mapping[str, Any]],
    metrics: Mapping[str, str] | None = None,
    *,
    study_dirs: Sequence[str | os.PathLike] | None = None,
) -> str:
    """The per-task tables (and, with several tasks, the per-configuration summary) as text;
    with several base models, those of each model and then the cross-model summary.
    ``metrics``: task -> metric to show instead of its primary one (see :func:`build_report`);
    ``study_dirs``: where the records' per-example scores are, for tested best marks."""
    return _format(_prepare(records, metrics, study_dirs))


def _heatmap(grid: Grid, path: Path, marks: Mapping[tuple[str, str], str] | None = None) -> None:
    """A configurations × languages heatmap with annotated values, written atomically;
    ``marks`` (the differences to base the paired test finds) follow their cell's value.

    Uses the Agg canvas directly rather than pyplot, so building a report never touches
    the process-wide backend of a user's interactive session.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = grid.all_columns
    data = np.array(
        [[np.nan if (v := grid.get(r, c)) is None else v for c in columns] for r in grid.rows]
    )
    size = (1.6 + 0.75 * len(columns), 1.2 + 0.45 * len(grid.rows))
    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(data), cmap="viridis", aspect="auto")
    ax.set_facecolor("0.85")
    ax.set_xticks(range(len(columns)), labels=columns)
    ax.set_yticks(range(len(grid.rows)), labels=grid.rows)
    ax.set_title(grid.title, fontsize=10)
    if grid.with_avg:
        ax.axvline(len(grid.columns) - 0.5, color="white", linewidth=3)
    finite = data[np.isfinite(data)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i, r in enumerate(grid.rows):
        for j, c in enumerate(columns):
            value = data[i, j]
            best = r in grid.best(c)
            mark = (marks or {}).get((r, c))
            ax.text(
                j,
                i,
                format_value(None if np.isnan(value) else float(value))
                + (f"{mark}" if mark else ""),
                ha="center",
                va="center",
                fontsize=8,
                fontweight="bold" if best else "normal",
                color="black" if np.isnan(value) or value > mid else "white",
            )
    if marks:
        ax.set_xlabel("▲/▼: significant difference to base (paired bootstrap, Holm)",
                      fontsize=8)
    fig.colorbar(image, ax=ax, label=grid.metric or "")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _write_grid(
    out: Path, sub: str, grid: Grid, files: list[Path], *, signed: bool = False
) -> list[str]:
    mark = not signed
    md, csv_ = out / sub / f"{grid.name}.md", out / sub / f"{grid.name}.csv"
    write_text(md, f"# {grid.title}\n\n" + to_markdown(grid, signed=signed, mark_best=mark))
    write_text(csv_, to_csv(grid, signed=signed, mark_best=mark))
    files += [md, csv_]
    links = [f"{sub}/{grid.name}.md", f"{sub}/{grid.name}.csv"]
    if grid.estimates:
        long = out / sub / f"{grid.name}.intervals.csv"
        write_text(long, to_intervals_csv(grid, mark_best=mark))
        files.append(long)
        links.append(f"{sub}/{grid.name}.intervals.csv")
    return links


def _check_replaceable(out_dir: Path) -> None:
    """Only an empty directory or an earlier report may be replaced as a whole."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise OutputExistsError(f"report output {out_dir} exists and is not a directory")
    if not any(out_dir.iterdir()):
        return
    try:
        marker = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
        if marker.get("generator") == GENERATOR:
            return
    except (OSError, ValueError, AttributeError):
        pass
    raise OutputExistsError(
        f"report output {out_dir} is a non-empty directory that is not a langtransfer "
        "report; choose another output directory"
    )


def _model_name(tables: _Tables) -> str:
    return str(tables.records[0]["model"].get("name"))


def _values_sentence(metrics: Mapping[str, str] | None, tested: bool = False) -> str:
    best = ("**bold** = significantly best in column, *italic* = tied best (see below)"
            if tested else "**bold** = best in column (none where all are equal)")
    return (
        "Values are each task's "
        + ("primary metric (the paper's reference computation)" if not metrics else
           "metric named in its table's title (the primary one unless chosen)")
        + f" (higher is better); {best}; "
        f"{MISSING} = not evaluated; `avg` is over all target languages of the table and "
        "is shown only when the row is complete."
    )


#: How many cells without per-example scores the report lists before "and N more".
LIST_PROBLEMS = 30


def _data_notes(prepared: _Prepared) -> list[str]:
    """The lines under "How to read this": what the intervals cover, and every cell
    that has none (capped)."""
    if prepared.tested:
        md = [HOW_TO_READ, ""]
    elif prepared.scored == 0 and prepared.problems:
        md = [UNTESTED, ""]
    else:
        md = []
    if prepared.recomputed:
        md += [f"Per-example scores of {prepared.recomputed} cells evaluated before they were "
               "kept were recomputed from their predictions (and kept beside the records).", ""]
    if prepared.problems:
        shown = prepared.problems[:LIST_PROBLEMS]
        more = len(prepared.problems) - len(shown)
        md += ["Cells whose values have no interval (or were left out):", ""]
        md += [f"- {line}" for line in shown]
        md += [f"- ... and {more} more" if more > 0 else "", ""]
    return md


def _sample_size_section(tables: _Tables, h: str) -> list[str]:
    """Per task and target: test examples, seeds, and the smallest difference between
    two configurations a paired test detects (80% power, alpha 0.05)."""
    rows = detectable(tables.tasks)
    if not any(r["detectable"] is not None for r in rows):
        return []
    spread: dict[tuple[str, str], float] = {}
    for g in tables.tasks:
        task = g.name.split(".", 1)[0]
        for c in g.columns:
            values = [v for r in g.rows if (v := g.get(r, c)) is not None]
            if len(values) > 1:
                spread[(task, c)] = max(spread.get((task, c), 0.0), max(values) - min(values))
    lines = ["| task | target | test examples | seeds | smallest detectable difference | "
             "largest difference seen |", "|---|---|---:|---:|---:|---:|"]
    small = []
    for r in rows:
        seen = spread.get((r["task"], r["target"]))
        lines.append(f"| {r['task']} | {r['target']} | {r['n'] or MISSING} | "
                     f"{r['seeds'] or MISSING} | {format_value(r['detectable'])} | "
                     f"{format_value(seen)} |")
        if r["detectable"] is not None and seen is not None and seen < r["detectable"]:
            small.append(f"{r['task']} {r['target']}")
    text = (
        "The smallest difference between two configurations a paired test finds 4 times "
        "in 5 (80% power, two-sided alpha 0.05) is 2.8 bootstrap standard errors of their "
        "difference (1.96 + 0.84), taken here as the median over the column's differences "
        "to `base`; before a Holm correction, which raises it. Differences smaller than that "
        "are likely to go undetected at this test-set size: more test examples (or seeds) "
        "shrink it as one over their square root."
    )
    verdict = (f"In {len(small)} of {len(rows)} task x target cells no two configurations "
               f"differ by that much: {', '.join(small)}." if small else
               "Every task x target cell has configurations that differ by more than that.")
    return [f"{h} Sample size", "", text, "", *lines, "", verdict, ""]


def _model_sections(
    tables: _Tables, out: Path, prefix: str, written: list[Path], h: str = "##"
) -> list[str]:
    """The Markdown of one model's tables, summaries and deltas, writing their files
    under ``out/prefix`` (``h``: the heading level of the sections)."""
    sub = (lambda name: f"{prefix}/{name}") if prefix else (lambda name: name)
    md = [f"{h} Per task", ""]
    deltas = {d.name: d for d in tables.deltas}
    for g in tables.tasks:
        links = _links(_write_grid(out, sub("tables"), g, written))
        png = out / sub("heatmaps") / f"{g.name}.png"
        _heatmap(g, png, deltas[g.name].marks if g.name in deltas else None)
        written.append(png)
        heatmap = f"{sub('heatmaps')}/{g.name}.png"
        md += [
            f"{h}# {g.title}",
            "",
            to_markdown(g),
            f"{links} · [heatmap]({heatmap})",
            "",
            f"![{g.title}]({heatmap})",
            "",
        ]
    md += [f"{h} Summaries", ""]
    for g in (tables.by_configuration, tables.by_script, tables.by_family):
        links = _links(_write_grid(out, sub("summary"), g, written))
        md += [f"{h}# {g.title}", "", to_markdown(g)]
        md += [links, ""]
    tested = any(d.estimates for d in tables.deltas)
    md += [
        f"{h} Difference to base (negative = negative transfer)",
        "",
        "Each value is the configuration's score minus `base` (the untouched model) in "
        "the same cell; negative values mean the configuration hurts."
        + (" `[low, high]` is the difference's 95% interval (paired: both on the same "
           "resampled examples); ▲ and ▼ mark the differences the paired test finds after "
           "Holm's correction over the table, so ▼ is negative transfer shown by the data, "
           "and a negative value without it may be noise." if tested else ""),
        "",
    ]
    if tables.delta_summary is not None:
        links = _links(_write_grid(out, sub("summary"), tables.delta_summary, written,
                                   signed=True))
        md += [f"{h}# {tables.delta_summary.title}", ""]
        md += [to_markdown(tables.delta_summary, signed=True, mark_best=False)]
        md += [links, ""]
    for g in tables.deltas:
        links = _links(_write_grid(out, sub("deltas"), g, written, signed=True))
        md += [f"{h}# {g.title}", "", to_markdown(g, signed=True, mark_best=False)]
        md += [links, ""]
    no_base = [g.name for g in tables.tasks if "base" not in g.rows]
    if no_base:
        md.append(f"No `base` results, so no differences, for: {', '.join(no_base)}.")
    md += [""] + _sample_size_section(tables, h)
    composed = _combined_section(tables, out, written, prefix, h)
    return md + ([""] + composed if composed else [])


def _links(paths: list[str]) -> str:
    """``[Markdown](..) · [CSV](..)`` and, with intervals, ``· [intervals CSV](..)``."""
    names = ["Markdown", "CSV", "intervals CSV"]
    return " · ".join(f"[{name}]({path})" for name, path in zip(names, paths, strict=False))


def _tables_data(tables: _Tables, prefix: str = "") -> dict[str, Any]:
    data = {
        "model": tables.records[0]["model"],
        "tables": [g.to_dict() for g in tables.tasks],
        "deltas": [g.to_dict() for g in tables.deltas],
        "summary": {
            g.name: g.to_dict()
            for g in (
                tables.by_configuration,
                tables.delta_summary,
                tables.by_script,
                tables.by_family,
            )
            if g is not None
        },
    }
    composed = _combined_data(tables, prefix)
    if composed is not None:
        data["trained_vs_composed"] = composed
    sizes = detectable(tables.tasks)
    if any(r["detectable"] is not None for r in sizes):
        data["sample_size"] = sizes
    return data


def build_report(
    records: Iterable[Mapping[str, Any]],
    out_dir: str | os.PathLike,
    failures: Sequence[Failure] = (),
    *,
    metrics: Mapping[str, str] | None = None,
    study_dirs: Sequence[str | os.PathLike] | None = None,
    resampler: Resampler | None = None,
) -> ReportSummary:
    """Write the full report for ``records`` into ``out_dir`` and return what was written.

    ``metrics``: task -> the metric its tables show instead of the primary one (the
    reference's), e.g. ``{"qa": "mlqa_f1", "nli": "strict_accuracy"}``; every record of
    that task must have it.

    ``study_dirs``: the study directories the records come from. Their per-example scores
    (beside each record, or recomputed from its predictions) give every value and
    average its 95% interval, and the best marks and differences to base paired tests
    (:mod:`langtransfer.report.intervals`); ``resampler`` sets the number of resamples
    and their seed. Without them, or for cells without scores, values are shown alone.
    Cells whose training seeds differ are refused, unless ``failures`` explain them.

    ``failures``: the study's failed and blocked artefacts, listed in their own section
    (their cells show as not evaluated in the tables).

    Records of several base models (a study with ``models:``; their ``model_label``
    differs) get one set of tables per model, under ``<label>/``, and a cross-model
    summary first (:func:`_cross_model`: the best configuration on each base and where
    the bases disagree).

    The directory is built beside ``out_dir`` and swapped in at the end, so a report never
    mixes files of two runs (a task that disappeared leaves no stale table) and a failed
    run leaves the previous report intact. An existing ``out_dir`` is replaced only if it
    is empty or an earlier report.
    """
    final = Path(out_dir)
    _check_replaceable(final)
    prepared = _prepare(records, metrics, study_dirs, bool(failures), resampler)
    per_model, cross = prepared.per_model, prepared.cross
    n_records = sum(len(t.records) for t in per_model.values())
    with atomic_dir(final) as out:
        written: list[Path] = []
        data: dict[str, Any] = {"generator": GENERATOR, "n_records": n_records,
                                "profiles": sorted({_profile(r) for t in per_model.values()
                                                    for r in t.records})}
        if cross is None:
            (tables,) = per_model.values()
            md = [
                "# langtransfer report",
                "",
                _profile_line(tables.records),
                "",
                f"{n_records} result records; base model `{_model_name(tables)}`. "
                + _values_sentence(metrics, prepared.tested),
                "",
                *_data_notes(prepared),
            ]
            md += _model_sections(tables, out, "", written)
            data.update(_tables_data(tables))
        else:
            names = ", ".join(f"`{label}` ({_model_name(t)})" for label, t in per_model.items())
            md = [
                "# langtransfer report",
                "",
                _profile_line(r for t in per_model.values() for r in t.records),
                "",
                f"{n_records} result records of {len(per_model)} base models: {names}. "
                + _values_sentence(metrics, prepared.tested),
                "",
                *_data_notes(prepared),
            ]
            md += _cross_model_sections(cross, out, written)
            for label, tables in per_model.items():
                md += [f"## Model `{label}`", "", f"Base model `{_model_name(tables)}`.", ""]
                md += _model_sections(tables, out, label, written, h="###")
            data["models"] = {label: _tables_data(t, label) for label, t in per_model.items()}
            data["cross_model"] = cross.to_dict()
        md += axis_section([r for t in per_model.values() for r in t.records], out, written,
                           metrics)
        if failures:
            md += ["", "## Failures", "", "Artefacts that were not built, so their cells are "
                   f"{MISSING} above; rerunning the study retries them.", ""]
            md += [f"- {f.status}: {f.line()}" for f in failures]
        write_text(out / "report.md", "\n".join(md).rstrip() + "\n")
        data["failures"] = [
            {"artefact": f.artefact, "status": f.status, "error": f.error,
             "blocked_by": list(f.blocked_by)}
            for f in failures
        ]
        data["data_notes"] = prepared.problems
        write_json(out / "report.json", data)
        relative = [p.relative_to(out) for p in written] + [Path("report.md"), Path("report.json")]
    if cross is None:
        (tables,) = per_model.values()
        return ReportSummary(
            out_dir=final,
            index=final / "report.md",
            files=tuple(final / f for f in relative),
            n_records=n_records,
            tables=tuple(g.name for g in tables.tasks),
            average_by_configuration=dict(tables.by_configuration.averages),
            text=_format(prepared),
            problems=tuple(prepared.problems),
            best_average=_best_average({"": tables.by_configuration}),
        )
    return ReportSummary(
        out_dir=final,
        index=final / "report.md",
        files=tuple(final / f for f in relative),
        n_records=n_records,
        tables=tuple(f"{label}/{g.name}" for label, t in per_model.items() for g in t.tasks),
        average_by_configuration={},
        average_by_model={label: dict(cross.by_model.column(label)) for label in cross.labels},
        text=_format(prepared),
        problems=tuple(prepared.problems),
        best_average={label: best for label, best in _best_average(
            {label: t.by_configuration for label, t in per_model.items()}).items()},
    )


# --- across base models --------------------------------------------------------------------

#: How many disagreements the findings list before "and N more".
LIST_DISAGREEMENTS = 12


@dataclass
class _CrossModel:
    """How the base models of one report compare: which configuration wins on each.

    ``by_model``: configurations x model labels, each value the configuration's average
    over the tables (task x source) every model has; ``deltas`` the same minus ``base``.
    ``agreement``: per common table and column (target language, ``avg``), the best
    configuration(s) on each model, among the configurations every model has there.
    """

    labels: list[str]
    common: list[str]
    by_model: Grid
    deltas: Grid | None
    agreement: list[tuple[str, str, dict[str, set[str]]]]

    @staticmethod
    def same(best: Mapping[str, set[str]]) -> bool:
        """The models agree when one configuration is best (or tied best) on all."""
        return bool(set.intersection(*best.values()))

    def overall(self) -> dict[str, set[str]]:
        """Per base, its best configuration on average (tested: or the tied best)."""
        return {label: self.by_model.best(label) or self.by_model.tied(label)
                for label in self.labels}

    def findings(self) -> list[str]:
        """What the cross-model summary says, one sentence per line."""
        lines = []
        overall = self.overall()
        if not all(overall.values()):
            lines.append("No configuration has a complete average on every base, so no overall "
                         "winner is named.")
        elif self.same(overall):
            (best,) = sorted(set.intersection(*overall.values()))[:1]
            tied = any(len(b) > 1 for b in overall.values())
            lines.append(f"{'Best or tied best' if tied else 'Best'} configuration on average: "
                         f"{best} on every base.")
        else:
            per = "; ".join(
                f"{label}: {_joined(b)} ({format_value(self.by_model.get(sorted(b)[0], label))})"
                for label, b in overall.items()
            )
            lines.append(f"The best configuration on average differs between bases: {per}.")
        n = len(self.agreement)
        differ = [(t, c, b) for t, c, b in self.agreement if not self.same(b)]
        if not n:
            lines.append("The bases have no table cell in common to compare.")
            return lines
        lines.append(f"The bases agree on the best configuration in {n - len(differ)} of {n} "
                     "cells (task x target language, and each table's average).")
        if differ:
            shown = [
                f"{t} -> {c} ("
                + "; ".join(f"{label}: {_joined(b[label])}" for label in self.labels) + ")"
                for t, c, b in differ[:LIST_DISAGREEMENTS]
            ]
            more = len(differ) - LIST_DISAGREEMENTS
            lines.append("They disagree on: " + ", ".join(shown)
                         + (f", and {more} more (see the agreement table)." if more > 0 else "."))
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": self.labels,
            "common_tables": self.common,
            "by_model": self.by_model.to_dict(),
            "deltas": None if self.deltas is None else self.deltas.to_dict(),
            "best_by_model": {label: sorted(b) for label, b in self.overall().items()},
            "agreement": [
                {"table": t, "column": c, "same": self.same(b),
                 "best": {label: sorted(v) for label, v in b.items()}}
                for t, c, b in self.agreement
            ],
            "findings": self.findings(),
        }


def _joined(configurations: set[str], sep: str = " = ") -> str:
    return sep.join(sorted(configurations, key=_row_order)) or MISSING


def _best_among(grid: Grid, rows: Sequence[str], column: str) -> set[str]:
    """The best of ``rows`` in ``column``: tested, the top one with those the paired test
    cannot separate from it; untested, those with the top displayed value."""
    if grid.tested:
        return best_sets(grid, rows).get(column, set(rows))
    shown = {r: round(v, 1) for r in rows if (v := grid.get(r, column)) is not None}
    top = max(shown.values(), default=None)
    return {r for r, v in shown.items() if v == top}


def _cross_model(per_model: Mapping[str, _Tables]) -> _CrossModel:
    """Compare the models on the tables (task x source) they all have."""
    labels = list(per_model)
    grids = {label: {g.name: g for g in t.tasks} for label, t in per_model.items()}
    common = [name for name in grids[labels[0]] if all(name in grids[lb] for lb in labels)]
    summaries = {
        label: _summary_grid([grids[label][n] for n in common], "x", "x") for label in labels
    }
    delta_summaries = {}
    for label in labels:
        per_table = [d for n in common if (d := _delta_grid(grids[label][n])) is not None]
        if len(per_table) == len(common) and common:
            delta_summaries[label] = _summary_grid(per_table, "x", "x")
    rows = _ordered_configurations(r for s in summaries.values() for r in s.rows)

    def across(parts: Mapping[str, Grid], name: str, title: str) -> Grid:
        values = {
            (r, label): v
            for label, g in parts.items()
            for r in rows
            if (v := g.averages.get(r)) is not None
        }
        present = [r for r in rows if any((r, label) in values for label in parts)]
        grid = Grid(name, title, present, list(parts), values, with_avg=False)
        grid.estimates = {(r, label): e for label, g in parts.items() for r in rows
                          if (r, label) in values and (e := g.estimates.get((r, AVG)))}
        mark_best(grid)
        return grid

    what = ", ".join(common) if common else "none"
    by_model = across(
        summaries, "models",
        f"Average per configuration on each base model (over the tables all have: {what})",
    )
    deltas = None
    if len(delta_summaries) == len(labels):
        deltas = across(delta_summaries, "models.deltas",
                        "Average difference to base on each base model (negative = negative "
                        "transfer)")
    agreement = []
    for name in common:
        per = [grids[label][name] for label in labels]
        shared_rows = [r for r in per[0].rows if all(r in g.rows for g in per)]
        columns = [c for c in per[0].all_columns if all(c in g.all_columns for g in per)]
        table = _label(per[0], [grids[labels[0]][n] for n in common])
        for c in columns:
            best = {label: _best_among(g, shared_rows, c) for label, g in zip(labels, per,
                                                                            strict=True)}
            if all(best.values()):
                agreement.append((table, c, best))
    return _CrossModel(labels, common, by_model, deltas, agreement)


def _agreement_table(cross: _CrossModel) -> tuple[str, str]:
    """The agreement list as (Markdown, CSV): one row per table and column."""
    header = ["table", "target", *cross.labels, "same best"]
    rows = [
        [t, c, *(_joined(b[label]) for label in cross.labels), "yes" if cross.same(b) else "no"]
        for t, c, b in cross.agreement
    ]
    md = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    md += ["| " + " | ".join(r[:-1] + ["yes" if r[-1] == "yes" else "**no**"]) + " |"
           for r in rows]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows([header, *rows])
    return "\n".join(md) + "\n", buf.getvalue()


def _bars(grid: Grid, path: Path) -> None:
    """Grouped bars: each configuration's average, one bar per base model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(grid.columns)
    fig = Figure(figsize=(1.5 + 0.9 * len(grid.rows), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(n, 1)
    for j, label in enumerate(grid.columns):
        xs = [i + (j - (n - 1) / 2) * width for i in range(len(grid.rows))]
        ys = [grid.get(r, label) or 0.0 for r in grid.rows]
        ax.bar(xs, ys, width=width, label=label)
    ax.set_xticks(range(len(grid.rows)), labels=grid.rows)
    ax.set_ylabel("average")
    ax.set_title(grid.title, fontsize=9, wrap=True)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


READING_MODELS = (
    "**How to read this.** Every base model ran the same grid; each one's own tables are "
    "in its section below. The first table gives each configuration's average on each "
    "base over the tables (task x source) all bases have; **bold** marks the best "
    "configuration on that base. Read it down a column, not across: scores of different "
    "bases are on different scales, so the question is whether the same configuration wins "
    "on each, not which base scores higher. The agreement table then names, for each task "
    "and target language (and each table's average), the best configuration on every "
    "base, among the configurations all of them have there; *same best* is yes when one "
    "configuration is best or tied best on all of them (with per-example scores: one the "
    "paired test cannot separate from the top, `a = b` naming the tied set; without: equal "
    "to one decimal). The lines between the tables say where they disagree."
)


def _cross_model_sections(cross: _CrossModel, out: Path, written: list[Path]) -> list[str]:
    findings = [f"- {line}" for line in cross.findings()]
    md = ["## Across base models", "", READING_MODELS, "", *findings, ""]
    links = _write_grid(out, "summary", cross.by_model, written)
    png = out / "summary" / "models.png"
    _bars(cross.by_model, png)
    written.append(png)
    md += [f"### {cross.by_model.title}", "", to_markdown(cross.by_model),
           f"[Markdown]({links[0]}) · [CSV]({links[1]}) · [plot](summary/models.png)", "",
           f"![{cross.by_model.title}](summary/models.png)", ""]
    if cross.deltas is not None:
        links = _write_grid(out, "summary", cross.deltas, written, signed=True)
        md += [f"### {cross.deltas.title}", "",
               to_markdown(cross.deltas, signed=True, mark_best=False),
               f"[Markdown]({links[0]}) · [CSV]({links[1]})", ""]
    agreement_md, agreement_csv = _agreement_table(cross)
    for suffix, text in (("md", "# Best configuration per base model\n\n" + agreement_md),
                         ("csv", agreement_csv)):
        path = out / "summary" / f"models.agreement.{suffix}"
        write_text(path, text)
        written.append(path)
    md += ["### Best configuration per task, target language and base model", "",
           agreement_md,
           "[Markdown](summary/models.agreement.md) · [CSV](summary/models.agreement.csv)", ""]
    return md


# --- trained vs composed language representations -----------------------------------------

#: The variant prefix of composed/proxy language representations (docs/study.md).
COMPOSED = "composed="
COMBINED_PLOT = "plots/trained_vs_composed.png"
COMBINED_TABLE = "summary/trained_vs_composed"
COMPOSED_PARAGRAPH = (
    "A composed row (`<configuration> [composed=...]`) uses the same task representation "
    "as the trained row of its configuration; only the target language's representation "
    "differs. Instead of one trained on the language's text it is a weighted combination, "
    "built without training, of the representations trained for other languages "
    "(prompts: the weighted sum of their embeddings; adapters: `adapters`' weighted "
    "average of their weights). `composed=proxy` weighs the target's relatives among the "
    "study's languages by the registry: one point for the same family, one for the same "
    "script, normalised. Each point of the plot is one cell (task, source, "
    "configuration, target): x is its score with the trained representation, y with the "
    "composed one. On the diagonal the composed one is as good as training; above it, "
    "better; below, worse. `composed - trained` is that vertical distance; `base` is "
    "the untouched model, so a composed value between `base` and `trained` recovers part "
    "of what training the language's own representation gained."
)


@dataclass(frozen=True)
class CombinedPair:
    """One composed cell and its trained counterpart (same task representation)."""

    table: str  # the task table, ``nli.en``
    metric: str | None
    configuration: str
    variant: str
    target: str
    weights: str
    composed: float
    trained: float | None
    base: float | None

    @property
    def delta(self) -> float | None:
        return None if self.trained is None else self.composed - self.trained


def _split_row(row: str) -> tuple[str, str]:
    """``slp+ta [composed=proxy]`` -> (``slp+ta``, ``composed=proxy``)."""
    configuration, _, variant = row.partition(" [")
    return configuration, variant.removesuffix("]")


def _weights_text(records: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], str]:
    """(table, configuration, variant, target) -> ``0.5 cs + 0.5 sl`` from the records'
    ``composition`` (written by the study)."""
    out = {}
    for r in records:
        weights = (r.get("composition") or {}).get("weights")
        if isinstance(weights, dict) and r.get("variant"):
            key = (f"{r['task']}.{r['source_language']}", r["configuration"], r["variant"],
                   r["target_language"])
            out[key] = " + ".join(f"{w:.2g} {lang}" for lang, w in weights.items())
    return out


def combined_pairs(tables: _Tables) -> list[CombinedPair]:
    """Every composed cell of the task tables with the trained and base values beside it."""
    weights = _weights_text(tables.records)
    pairs = []
    for g in tables.tasks:
        for row in g.rows:
            configuration, variant = _split_row(row)
            if not variant.startswith(COMPOSED):
                continue
            for c in g.columns:
                value = g.values.get((row, c))
                if value is not None:
                    pairs.append(CombinedPair(
                        g.name, g.metric, configuration, variant, c,
                        weights.get((g.name, configuration, variant, c), ""), value,
                        g.values.get((configuration, c)), g.values.get(("base", c)),
                    ))
    return pairs


def _combined_markdown(pairs: list[CombinedPair]) -> str:
    lines = ["| table | configuration | variant | target | parts | trained | composed | "
             "composed - trained | base |", "|---|---|---|---|---|---:|---:|---:|---:|"]
    for p in pairs:
        lines.append(
            f"| {p.table} | {p.configuration} | {p.variant} | {p.target} | {p.weights or '–'} "
            f"| {format_value(p.trained)} | {format_value(p.composed)} "
            f"| {format_value(p.delta, signed=True)} | {format_value(p.base)} |"
        )
    return "\n".join(lines) + "\n"


def _combined_csv(pairs: list[CombinedPair]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["table", "metric", "configuration", "variant", "target", "parts",
                     "trained", "composed", "composed_minus_trained", "base"])
    for p in pairs:
        writer.writerow([p.table, p.metric or "", p.configuration, p.variant, p.target,
                         p.weights, *("" if v is None else f"{v:.4g}"
                                      for v in (p.trained, p.composed, p.delta, p.base))])
    return buf.getvalue()


def _combined_plot(pairs: list[CombinedPair], path: Path) -> None:
    """One panel per task table: trained (x) against composed (y), the diagonal drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(p.table for p in pairs))
    fig = Figure(figsize=(4.2 * len(names), 4.4), dpi=100)
    FigureCanvasAgg(fig)
    rows = list(dict.fromkeys(f"{p.configuration} [{p.variant}]" for p in pairs))
    markers = "osD^v<>pX*"
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        panel = [p for p in pairs if p.table == name]
        shown = [v for p in panel for v in (p.trained, p.composed) if v is not None]
        low, high = min(shown), max(shown)
        pad = max((high - low) * 0.1, 1.0)
        ax.plot([low - pad, high + pad], [low - pad, high + pad], color="0.6", lw=1,
                ls="--", label="composed = trained")
        for j, row in enumerate(rows):
            mine = [p for p in panel if f"{p.configuration} [{p.variant}]" == row
                    and p.trained is not None]
            if not mine:
                continue
            ax.scatter([p.trained or 0.0 for p in mine], [p.composed for p in mine],
                       marker=markers[j % len(markers)], label=row, zorder=3)
            for p in mine:
                ax.annotate(p.target, (p.trained or 0.0, p.composed), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_xlim(low - pad, high + pad)
        ax.set_ylim(low - pad, high + pad)
        ax.set_xlabel(f"trained language representation ({panel[0].metric or 'metric'})")
        ax.set_ylabel("composed language representation")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Trained vs composed language representations", fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _combined_paths(prefix: str) -> tuple[str, str]:
    """(plot, table stem) of the trained-vs-composed section, under a model's prefix."""
    def join(path: str) -> str:
        return f"{prefix}/{path}" if prefix else path

    return join(COMBINED_PLOT), join(COMBINED_TABLE)


def _combined_data(tables: _Tables, prefix: str) -> dict[str, Any] | None:
    """``report.json``'s ``trained_vs_composed``: the plot's path and every pair."""
    pairs = combined_pairs(tables)
    if not pairs:
        return None
    plot = _combined_paths(prefix)[0] if any(p.trained is not None for p in pairs) else None
    return {"plot": plot, "cells": [{**asdict(p), "delta": p.delta} for p in pairs]}


def _combined_section(
    tables: _Tables, out: Path, written: list[Path], prefix: str = "", h: str = "##"
) -> list[str]:
    """The report's trained-vs-composed section (empty without composed records)."""
    pairs = combined_pairs(tables)
    if not pairs:
        return []
    plot, stem = _combined_paths(prefix)
    md_path, csv_path = out / f"{stem}.md", out / f"{stem}.csv"
    table = _combined_markdown(pairs)
    write_text(md_path, "# Trained vs composed language representations\n\n" + table)
    write_text(csv_path, _combined_csv(pairs))
    written += [md_path, csv_path]
    lines = [f"{h} Trained vs composed language representations", "", COMPOSED_PARAGRAPH, ""]
    if any(p.trained is not None for p in pairs):
        _combined_plot(pairs, out / plot)
        written.append(out / plot)
        lines += [f"Plot: [{plot}]({plot})", "",
                  f"![Trained vs composed language representations]({plot})", ""]
    else:
        lines += ["No composed cell has a trained counterpart here, so there is no plot.", ""]
    lines += [table, f"[Markdown]({stem}.md) · [CSV]({stem}.csv)", ""]
    return lines
