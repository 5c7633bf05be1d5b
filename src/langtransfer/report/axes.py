"""The report's section on study axes (``axes:`` in the study config): one plot per axis.

- ``corpus_size``: per task and source, transfer gain over ``base`` against the amount of
  text the target language's representation was trained on, a curve per target language,
  a panel per configuration (``axes/corpus_size.<task>.<source>.png``, points in ``.csv``);
- ``init`` and ``instruction``: per task and source, each soft-language-prompt variant's
  average over the target languages beside the paper's initialisation, a group of bars
  per configuration, ``base`` as a dashed line (``axes/init.<task>.<source>.png``, values
  per language in ``.csv``).

Points are read from the result records only: the variant label (``record["variant"]``),
the metric, and the training size the language representation's manifest recorded
(``representations.language.train_documents`` / ``train_tokens``). Plots use the Agg
canvas directly, as the heatmaps do, so a user's interactive backend is never touched.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from langtransfer.io import atomic_path, write_text
from langtransfer.results.records import record_key, row_label

#: Axis -> the prefix of its variant labels. ``init`` and ``instruction`` share a plot.
PREFIXES = {"corpus_size": ("corpus=",), "init": ("init=", "instruction=")}
#: What the paper's rows are called in an axis plot.
PAPER_NAMES = {"corpus_size": "paper slice", "init": "text (paper)"}

CORPUS_TEXT = (
    "**Corpus size.** Each `corpus=` variant trains the language representations on "
    "another amount of text: the paper's slice (the reference's first 5% of a Wikipedia "
    "dump, English its first 1M articles), the whole dump (`full`), or a fixed cap (the "
    "first N documents, or tokens, after the validation articles, which are the same for "
    "every cap). Each panel is one configuration; each curve one target language: the "
    "transfer gain over `base` (the configuration's score minus `base`'s in the same cell, "
    "in the table's metric) against the {unit} its language representation was trained on "
    "(log scale; the paper's point is marked). A curve that still rises at its right end "
    "says that language is short of text; where the paper's point sits low but `full` "
    "does not, the paper's 5% slice, not the language's Wikipedia, is what was small. A "
    "variant's task representation is trained with the source's variant representation, "
    "so each point changes both."
)
INIT_TEXT = (
    "**Prompt initialisation.** The `init=` and `instruction=` variants change only how "
    "the soft language prompts start: `init=vocab` (embeddings of randomly sampled "
    "vocabulary tokens), `init=random` (Gaussian noise at the embeddings' scale), "
    "`init=frequent` (the language's own most frequent tokens), or `instruction=...` "
    "(the text initialisation from another template; `native` is the paper's "
    "instruction written in the target language). Each group of bars is one "
    "configuration; each bar a variant's average {metric} over the target languages, "
    "the first bar the paper's choice (`Generate the output in {{Language}}:`); the "
    "dashed line is `base`. A bar is drawn only when every target language was "
    "evaluated. The per-language values are in the CSV beside the plot and in the "
    "`<configuration> [<variant>]` rows of the task tables."
)


@dataclass(frozen=True)
class _Point:
    model_label: str
    task: str
    source: str
    configuration: str
    target: str
    variant: str
    score: float
    base: float | None
    documents: int | None
    tokens: int | None

    @property
    def gain(self) -> float | None:
        return None if self.base is None else self.score - self.base


def _metric(record: Mapping[str, Any], metrics: Mapping[str, str]) -> str:
    return metrics.get(record["task"], record["primary_metric"])


def _points(records: Sequence[Mapping[str, Any]], metrics: Mapping[str, str]) -> list[_Point]:
    """Every record with a language representation, with its cell's ``base`` score."""
    base = {}
    for r in records:
        key = record_key(r)
        if key.configuration == "base" and not key.variant:
            base[(key.model_label, key.task, key.source, key.target)] = float(
                r["metrics"][_metric(r, metrics)]
            )
    points = []
    for r in records:
        language = r["representations"].get("language")
        if language is None:
            continue
        key = record_key(r)
        points.append(_Point(
            key.model_label, key.task, key.source, key.configuration, key.target, key.variant,
            float(r["metrics"][_metric(r, metrics)]),
            base.get((key.model_label, key.task, key.source, key.target)),
            language.get("train_documents"), language.get("train_tokens"),
        ))
    return points


def _of_axis(points: list[_Point], axis: str) -> list[_Point]:
    """The axis's variant points and the paper's points of the same configurations."""
    prefixes = PREFIXES[axis]
    # The study makes variant cells only where the axis applies (init and instruction: the
    # configurations whose language representation has an initialisation, soft prompts).
    varied = [p for p in points if p.variant.startswith(prefixes)]
    configurations = {p.configuration for p in varied}
    return [p for p in points if not p.variant and p.configuration in configurations] + varied


def _groups(points: list[_Point]) -> dict[tuple[str, str, str], list[_Point]]:
    out: dict[tuple[str, str, str], list[_Point]] = {}
    for p in points:
        out.setdefault((p.model_label, p.task, p.source), []).append(p)
    return dict(sorted(out.items()))


def _stem(axis: str, group: tuple[str, str, str]) -> str:
    model_label, task, source = group
    return ".".join([axis, *([model_label] if model_label else []), task, source])


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _corpus_unit(points: list[_Point]) -> str:
    """Tokens when the axis has token caps and every point knows its tokens, else
    documents (a streamed dump's token count is known only under a token cap)."""
    token_caps = any(p.variant.endswith("-tokens") for p in points)
    if token_caps and all(p.tokens for p in points):
        return "tokens"
    return "documents"


def _corpus_plot(points: list[_Point], title: str, path: Path) -> str:
    unit = _corpus_unit(points)
    configurations = list(dict.fromkeys(p.configuration for p in points))
    fig = _figure(1.0 + 4.0 * len(configurations), 3.6)
    with_base = all(p.base is not None for p in points)
    for i, configuration in enumerate(configurations):
        ax = fig.add_subplot(1, len(configurations), i + 1)
        mine = [p for p in points if p.configuration == configuration]
        plotted = False
        for target in dict.fromkeys(p.target for p in mine):
            line = sorted(
                (x, y, p.variant)
                for p in mine
                if p.target == target
                and (x := p.tokens if unit == "tokens" else p.documents)
                and (y := p.gain if with_base else p.score) is not None
            )
            if not line:
                continue
            ax.plot([x for x, _, _ in line], [y for _, y, _ in line], marker="o", label=target)
            plotted = True
            for x, y, variant in line:
                if not variant:  # the paper's slice
                    ax.plot([x], [y], marker="*", markersize=12, color="black", zorder=3)
        if with_base:
            ax.axhline(0.0, color="0.5", linewidth=0.8, linestyle="--")
        if plotted:  # no point knows its size (records from before sizes were recorded)
            ax.set_xscale("log")
        ax.set_xlabel(f"training {unit} of the language representation")
        ax.set_ylabel("gain over base" if with_base else "score")
        ax.set_title(configuration, fontsize=9)
        if plotted:
            ax.legend(fontsize=7, title="target", title_fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
    return unit


def _average(points: list[_Point], targets: list[str]) -> float | None:
    by_target = {p.target: p.score for p in points}
    values = [by_target.get(t) for t in targets]
    return fmean(v for v in values if v is not None) if None not in values else None


def _init_plot(points: list[_Point], title: str, path: Path) -> None:
    configurations = list(dict.fromkeys(p.configuration for p in points))
    variants = ["", *sorted({p.variant for p in points if p.variant})]
    targets = sorted({p.target for p in points})
    fig = _figure(3.5 + 0.6 * len(configurations) * len(variants), 3.6)
    ax = fig.add_subplot()
    width = 0.8 / len(variants)
    for j, variant in enumerate(variants):
        xs, heights = [], []
        for i, configuration in enumerate(configurations):
            mine = [p for p in points if p.configuration == configuration and p.variant == variant]
            value = _average(mine, targets)
            if value is not None:
                xs.append(i - 0.4 + width * (j + 0.5))
                heights.append(value)
        ax.bar(xs, heights, width=width, label=variant or PAPER_NAMES["init"])
    bases = {p.target: p.base for p in points if p.base is not None}
    if len(bases) == len(targets):
        ax.axhline(fmean(bases.values()), color="black", linestyle="--", linewidth=1,
                   label="base")
    ax.set_xticks(range(len(configurations)), labels=configurations)
    ax.set_ylabel(f"average over {len(targets)} target language(s)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(fig, path)


def _csv(points: list[_Point]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["row", "target", "train_documents", "train_tokens", "score", "base",
                     "gain"])
    for p in sorted(points, key=lambda p: (p.configuration, p.variant, p.target)):
        writer.writerow([
            row_label(p.configuration, p.variant), p.target, p.documents or "", p.tokens or "",
            f"{p.score:.4g}", "" if p.base is None else f"{p.base:.4g}",
            "" if p.gain is None else f"{p.gain:.4g}",
        ])
    return buf.getvalue()


def axis_section(
    records: Sequence[Mapping[str, Any]],
    out: Path,
    written: list[Path],
    metrics: Mapping[str, str] | None = None,
) -> list[str]:
    """Write each axis's plots (and their points as CSV) into ``out/axes`` and return the
    report's Markdown section naming every plot (empty when the study has no axes)."""
    metrics = dict(metrics or {})
    points = _points(records, metrics)
    md: list[str] = []
    for axis, heading in (("corpus_size", "Corpus size"), ("init", "Initialisation")):
        links: list[str] = []
        units: set[str] = set()
        for group, members in _groups(_of_axis(points, axis)).items():
            if not any(p.variant for p in members):
                continue
            stem = _stem(axis, group)
            model_label, task, source = group
            title = f"{task} — source {source}" + (f", model {model_label}" if model_label else "")
            png, table = out / "axes" / f"{stem}.png", out / "axes" / f"{stem}.csv"
            if axis == "corpus_size":
                units.add(_corpus_plot(members, title, png))
            else:
                _init_plot(members, title, png)
            write_text(table, _csv(members))
            written += [png, table]
            links += [f"![{heading}: {title}](axes/{stem}.png)", "",
                      f"[plot](axes/{stem}.png) · [points (CSV)](axes/{stem}.csv)", ""]
        if not links:
            continue
        if axis == "corpus_size":
            text = CORPUS_TEXT.format(unit=" or ".join(sorted(units)))
        else:
            names = sorted({_metric(r, metrics) for r in records})
            text = INIT_TEXT.format(metric="/".join(f"`{m}`" for m in names))
        md += [f"### {heading}", "", text, "", *links]
    if not md:
        return []
    return ["## Study axes", "", "Language-representation variants compared with the paper's "
            "choice (the study config's `axes`, see docs/study.md).", "", *md]
