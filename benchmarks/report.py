"""``python -m benchmarks.report RESULTS.json``: the run's figures as Markdown tables
(the form docs/performance.md quotes them in)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def _mem(r: dict) -> str:
    """Peak RSS, and its rise during the measurement where recorded."""
    rise = r["peak_rss_mib"] - r.get("start_rss_mib", r["peak_rss_mib"])
    return f"{r['peak_rss_mib']} (+{rise})" if rise > 0 else str(r["peak_rss_mib"])


def overhead_row(o: dict) -> list:
    """One prompt-overhead measurement as a table row (run.py's text table and here)."""
    return [
        o["shape"],
        o.get("family", "seq2seq"),
        o.get("L_counts", "input"),
        o["L_mean_padded_width"],
        o["P"],
        o["measured_step_ratio"],
        o["theoretical"],
        o["measured_over_theoretical"],
    ]


def markdown(out: dict) -> str:
    meta = out["meta"]
    parts = [
        f"Run: {meta['date']} ({meta['mode']}, {meta['seconds']} s), CPU {meta['cpu']}, "
        f"{meta['cores']} cores, torch {meta['torch']} ({meta['torch_threads']} threads), "
        f"load average {meta['load_average_start'][0]:.1f} at start, "
        f"{meta['load_average_end'][0]:.1f} at end.",
        "",
        "Workloads (input/target lengths in tokens; see *Workloads* above):",
        "",
        _table(
            [
                "workload",
                "source",
                "bytes/token",
                "mean",
                "p10",
                "median",
                "p90",
                "capped at 256",
                "target mean",
            ],
            [
                [
                    k,
                    w["source"],
                    w["bytes_per_token"],
                    w["input_mean"],
                    w["input_p10"],
                    w["input_median"],
                    w["input_p90"],
                    f"{100 * w['share_capped']:.0f}%",
                    w["target_mean"],
                ]
                for k, w in meta["workloads"].items()
            ],
        ),
    ]
    for kind, title in (("train", "Training"), ("eval", "Evaluation (greedy generation)")):
        rows = {}
        for r in out[kind]:
            rows.setdefault((r["shape"], r["configuration"]), {})[r["workload"], r["padding"]] = r
        table = []
        for s in out["speedups"]:
            if s["kind"] != kind:
                continue
            group = rows[s["shape"], s["configuration"]]
            ours = group[s["workload"], "dynamic"]
            ref = group.get((s["workload"], "pad-to-256")) or group[("any", "pad-to-256")]
            best = max(ours["runs"]) / max(ref["runs"])
            table.append(
                [
                    s["shape"],
                    s["configuration"],
                    s["workload"],
                    f"{ours['examples_per_s']:.2f}",
                    f"{ref['examples_per_s']:.2f}",
                    f"**{s['speedup']}×**",
                    f"{best:.2f}×",
                    ours.get("padding_efficiency", ""),
                    ref.get("padding_efficiency", ""),
                    f"{_mem(ours)} / {_mem(ref)}",
                ]
            )
        header = [
            "shape",
            "config",
            "workload",
            "ours ex/s",
            "pad-256 ex/s",
            "speed-up (medians)",
            "speed-up (best runs)",
            "pad. eff. ours",
            "pad. eff. pad-256",
            "peak RSS MiB ours / pad-256",
        ]
        if kind == "eval":
            header = header[:7] + [header[-1]]
            table = [row[:7] + [row[-1]] for row in table]
        parts += [
            "",
            f"**{title}**, examples/s (median of the repeats):",
            "",
            _table(header, table),
        ]
    if out.get("prompt_overhead"):
        parts += [
            "",
            "**Prompt overhead** on the QA shape (`slp+ta` step time ÷ `ta` step time; L is "
            "the mean padded input width for seq2seq, input + target for causal):",
            "",
            _table(
                ["shape", "family", "L counts", "L (mean padded width)", "P", "measured",
                 "(L+P)/L", "measured ÷ theory"],
                [
                    overhead_row(o) for o in out["prompt_overhead"]
                ],
            ),
        ]
    if out.get("mixed"):
        rows = []
        for m in out["mixed"]:
            for what in ("forward", "generate"):
                x = m[what]
                rows.append(
                    [
                        m["shape"],
                        m["configuration"],
                        what,
                        m["batch_size"],
                        x["mixed_examples_per_s"],
                        x["single_language_examples_per_s"],
                        x["groups_in_turn_examples_per_s"],
                        f"**{x['mixed_cost_vs_single']}**",
                        x["groups_in_turn_cost_vs_mixed"],
                    ]
                )
        parts += [
            "",
            "**Mixed-language batches** (B rows over 4 languages, NLI shape), examples/s:",
            "",
            _table(
                [
                    "shape",
                    "config",
                    "call",
                    "B",
                    "mixed, 1 call",
                    "1 language, 1 call",
                    "4 groups in turn",
                    "mixed ÷ single cost",
                    "in turn ÷ mixed cost",
                ],
                rows,
            ),
        ]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m benchmarks.report RESULTS.json", file=sys.stderr)
        return 2
    print(markdown(json.loads(Path(argv[0]).read_text(encoding="utf-8"))), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
