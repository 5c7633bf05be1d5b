"""The report's table: rows x columns of values, each with its bootstrap estimate when the
cells have per-example scores, and which rows are best per column."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from langtransfer.results.statistics import Estimate

MISSING = "–"
AVG = "avg"
#: Marks of a difference to base the paired test finds (Holm-corrected within its table).
UP, DOWN = "▲", "▼"


def mean_if_complete(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return fmean(present) if values and len(present) == len(values) else None


def format_value(value: float | None, signed: bool = False) -> str:
    if value is None:
        return MISSING
    if signed:
        text = f"{value:+.1f}"
        return "0.0" if text in ("+0.0", "-0.0") else text
    return f"{value:.1f}"


def format_interval(interval: tuple[float, float] | None, signed: bool = False) -> str:
    """``[58.1, 64.0]`` (empty without an interval)."""
    if interval is None:
        return ""
    low, high = (format_value(v, signed) for v in interval)
    return f"[{low}, {high}]"


@dataclass
class Grid:
    """Rows × columns of numbers with an optional ``avg`` column; the unit every table uses.

    ``estimates`` holds each value's bootstrap estimate (row, column or ``avg``), where the
    cells behind it have per-example scores. ``best_sets`` (column -> rows), set when the
    table was tested: the one row significantly better than every other, or the rows the
    test cannot separate from the top value. ``marks`` (deltas): ``▲``/``▼`` where a
    difference to base is significant. ``cells``: the records behind each cell (one per
    training seed).
    """

    name: str  # file stem, e.g. "qa.en"
    title: str
    rows: list[str]
    columns: list[str]
    values: dict[tuple[str, str], float]
    with_avg: bool = True
    metric: str | None = None
    averages: dict[str, float | None] = field(default_factory=dict)
    #: What a reader must know to trust the numbers (unparseable outputs, cut inputs, a
    #: language no configuration scores on), printed under the table.
    notes: list[str] = field(default_factory=list)
    estimates: dict[tuple[str, str], Estimate] = field(default_factory=dict)
    best_sets: dict[str, set[str]] | None = None
    marks: dict[tuple[str, str], str] = field(default_factory=dict)
    cells: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.with_avg and not self.averages:
            self.averages = {r: mean_if_complete(self.row(r)) for r in self.rows}

    def row(self, r: str) -> list[float | None]:
        return [self.values.get((r, c)) for c in self.columns]

    def column(self, c: str) -> dict[str, float | None]:
        return {r: self.get(r, c) for r in self.rows}

    @property
    def all_columns(self) -> list[str]:
        return self.columns + ([AVG] if self.with_avg else [])

    def get(self, r: str, c: str) -> float | None:
        return self.averages.get(r) if c == AVG and self.with_avg else self.values.get((r, c))

    def interval(self, r: str, c: str) -> tuple[float, float] | None:
        estimate = self.estimates.get((r, c))
        return None if estimate is None else estimate.interval

    @property
    def tested(self) -> bool:
        """Whether best marks come from paired tests (some cell has replicates)."""
        return self.best_sets is not None

    def best(self, c: str) -> set[str]:
        """Rows marked best in column ``c``. Tested: the one row significantly better
        than every other (none when the top cannot be separated). Untested: the rows
        holding the highest displayed value; none when the column shows fewer than two
        different values (nothing is better than anything)."""
        if self.best_sets is not None:
            rows = self.best_sets.get(c, set())
            return rows if len(rows) == 1 else set()
        shown = {r: round(v, 1) for r in self.rows if (v := self.get(r, c)) is not None}
        if len(set(shown.values())) < 2:
            return set()
        top = max(shown.values())
        return {r for r, v in shown.items() if v == top}

    def tied(self, c: str) -> set[str]:
        """Tested: the rows the test cannot separate from the top of column ``c`` (two or
        more; empty when one is significantly best)."""
        rows = (self.best_sets or {}).get(c, set())
        return rows if len(rows) > 1 else set()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "title": self.title,
            "metric": self.metric,
            "columns": self.all_columns,
            "rows": {r: {c: self.get(r, c) for c in self.all_columns} for r in self.rows},
        }
        if self.estimates:
            out["intervals"] = {
                r: {c: (list(i) if (i := self.interval(r, c)) else None)
                    for c in self.all_columns} for r in self.rows
            }
        if self.best_sets is not None:
            out["best"] = {c: sorted(self.best(c)) for c in self.all_columns}
            out["tied_best"] = {c: sorted(self.tied(c)) for c in self.all_columns}
        if self.marks:
            out["significant"] = {r: {c: m for (r2, c), m in self.marks.items() if r2 == r}
                                  for r in self.rows}
        return out
