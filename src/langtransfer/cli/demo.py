"""``langtransfer demo``: the small study on the embedded tiny models and shipped data."""

from __future__ import annotations

import argparse
from pathlib import Path

DISCLAIMER = (
    "NOTE: this demo runs two embedded tiny *random* models (seq2seq and decoder-only, about "
    "250k and 120k parameters)\ntrained for seconds on the demo's own small files, "
    "written with cues such models can learn. Its\nnumbers show the pipeline end to end, NOT "
    "the paper's results."
)
PAPER = (
    "The real study on bigscience/mt0-base (GPU and model hub needed):\n"
    "  langtransfer study --example paper > paper.yaml   # edit data paths, then\n"
    "  langtransfer study paper.yaml"
)


def _real_differences(report: Path) -> list[str]:
    """What report.json says is real at the demo's test-set sizes: the smallest difference
    its tests detect, and the differences to base they find, per base model."""
    import json

    try:
        data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    models = data.get("models") or {"": data}
    sizes = [r for m in models.values() for r in m.get("sample_size", [])]
    if not sizes:
        return []
    def span(values: list[float]) -> str:
        low, high = f"{min(values):.0f}", f"{max(values):.0f}"
        return low if low == high else f"{low}-{high}"

    ns = [r["n"] for r in sizes if r.get("n")]
    detect = [r["detectable"] for r in sizes if r.get("detectable") is not None]
    lines = [
        f"What is real at these sizes: the demo's test sets have {span(ns)} examples per "
        f"language, so a paired test detects differences of about {span(detect)} points "
        "(report.md's 'Sample size'); smaller ones may be chance.",
        "Differences to base the test finds (Holm-corrected; ▲ better, ▼ worse):",
    ]
    for label, model in models.items():
        found = []
        for table in model.get("deltas", []):
            rows: dict[str, list[str]] = {}
            for row, marks in (table.get("significant") or {}).items():
                for column, mark in marks.items():
                    rows.setdefault(f"{row} {mark}", []).append(column)
            if rows:
                found.append(f"{table['name']}: " + "; ".join(
                    f"{row} on {', '.join(cols)}" for row, cols in rows.items()))
        where = f"  {label}: " if label else "  "
        lines.append(where + ("; ".join(found) if found else "none"))
    lines.append("Every other difference in the tables is within what chance leaves at these "
                 "sizes; a bigger test set narrows it.")
    return lines


def guidance(output: Path) -> str:
    """What the demo prints last: where to look, how to read it, which differences are
    real at its test-set sizes, what it is not."""
    report = output / "report"
    # One heatmaps folder, or one per base model in a study of several.
    folders = sorted(report.glob("*/heatmaps")) if not (report / "heatmaps").is_dir() else []
    heatmaps = ", ".join(f"{f}/" for f in folders) or f"{report / 'heatmaps'}/"
    return "\n".join([
        "",
        f"Report:   {report / 'report.md'}  (every table, the summaries and notes)",
        f"Heatmaps: {heatmaps}  (one per task: configurations x target languages)",
        "How to read them: each cell is a configuration's score on one target language's test "
        "set, its task\nrepresentation trained on English only; compare each row with `base` "
        "(the untouched model) --\nreport.md's 'Difference to base' section has those "
        "differences, negative where transfer hurts,\nand the 95% interval of each value "
        "and difference (bootstrap of the test examples).",
        *_real_differences(report),
        DISCLAIMER,
        PAPER,
    ])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the demo study on the embedded tiny models (minutes on a CPU)",
        description=(
            "Run the small transfer study on both embedded tiny models (tiny: seq2seq; "
            "tiny-causal: decoder-only) with the demo's own small files: 4 target languages "
            "(en, de, sk, ru; Latin and Cyrillic), 2 tasks (NLI, check-worthiness), all seven "
            "configurations on each model. Prints the tables and writes the report, which "
            "compares the two models. "
            "Rerunning continues or reuses the finished work. " + DISCLAIMER.replace("\n", " ")
            + " " + PAPER.replace("\n", " ")
        ),
    )
    p.add_argument("--output", default="runs/demo", help="study directory (default runs/demo)")
    p.add_argument(
        "--overwrite", action="store_true",
        help="reuse --output holding a study with other settings: results the demo's settings "
        "reproduce are kept, the rest discarded (as study --overwrite)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from langtransfer.cli.study import example_path, run_and_report
    from langtransfer.study.load import load_study_config
    from langtransfer.study.locks import STALE_AFTER

    print(DISCLAIMER, flush=True)
    config = load_study_config(example_path("demo"), output=args.output)
    args.shard, args.dry_run, args.no_report = "1/1", False, False
    args.lock_stale_minutes = STALE_AFTER / 60
    code = run_and_report(config, args)
    print(guidance(Path(config.output)))
    return code
