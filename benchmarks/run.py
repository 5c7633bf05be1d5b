"""``python -m benchmarks.run [--quick] [--output PATH]``: speed of the library's fast paths.

Prints tables and writes JSON (default ``benchmarks/results/<date>-<quick|full>.json``):

- training examples/s per configuration × task-shaped workload, ours (length-grouped,
  dynamically padded batches) and the reference's (every batch padded to 256 inputs /
  30 targets), and the ratio ours ÷ reference;
- evaluation (generation) examples/s, ours vs inputs padded to 256;
- peak resident memory of each measurement;
- prompt overhead: ``slp+ta`` ÷ ``ta`` step time on the QA shape vs (L+P)/L (L: the
  mean padded input width for seq2seq, where the prompt lengthens only the encoder's
  input; input + target width for causal, where one stack runs over prompt, input and
  target);
- mixed-language batches: 4 languages in one call vs one language vs 4 calls in turn.

Four model shapes, two per family: the embedded tiny models (``tiny``, seq2seq;
``tiny-causal``, Llama), and an mT0-base-shaped MT5 (``mt0``) and a Qwen2.5-0.5B-shaped
Qwen2 (``causal``) with random weights (CPU time allows only a few steps of those; see
docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CONFIGS = ("ta", "stp", "la+ta", "la+stp", "slp+ta", "slp+stp")
NEW_TOKENS = {"qa": 8, "nli": 3, "checkworthiness": 4, "ner": 12}
RESULTS = Path(__file__).resolve().parent / "results"

# What each mode runs. Tiny: every configuration and workload. mT0 shape: slp+ta (the
# targets) and ta (no prompt; the prompt overhead) on NER and QA, the reference once per
# configuration (a batch padded to 256/30 costs the same whatever the workload).
PLANS = {
    "quick": {
        "tiny": {
            "configs": ("ta", "slp+ta"),
            "batch": 32,
            "steps": 6,
            "repeats": 3,
            "eval_n": 128,
            "eval_batch": 64,
            "eval_repeats": 2,
            "mixed_batch": 32,
        },
        "mt0": {"train": [("slp+ta", "ner")], "batch": 8, "steps": 1, "repeats": 1, "eval": []},
        "causal": {"train": [("slp+ta", "ner")], "batch": 8, "steps": 1, "repeats": 1,
                   "eval": []},
    },
    "full": {
        "tiny": {
            "configs": CONFIGS,
            "batch": 32,
            "steps": 8,
            "repeats": 3,
            "eval_n": 128,
            "eval_batch": 64,
            "eval_repeats": 2,
            "mixed_batch": 32,
        },
        "mt0": {
            "train": [("slp+ta", "ner"), ("slp+ta", "qa"), ("ta", "ner"), ("ta", "qa")],
            "batch": 8,
            "steps": 2,
            "repeats": 2,
            "eval": [("slp+ta", "ner"), ("slp+ta", "qa")],
            "eval_n": 8,
            "mixed_batch": 8,
        },
    },
}
# The causal family on the same workloads: tiny-causal as tiny, the Qwen2.5-0.5B shape as
# the mT0 shape.
for _plan in PLANS.values():
    _plan["tiny-causal"] = _plan["tiny"]
    _plan.setdefault("causal", _plan["mt0"])
SHAPES = ("mt0", "causal", "tiny", "tiny-causal")  # the large shapes first: the headline


def log(msg: str) -> None:
    print(
        f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {msg}",
        file=sys.stderr,
        flush=True,
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_tiny(plan: dict, workloads: dict, out: dict, shape: str = "tiny") -> None:
    """Every configuration of ``plan`` on every workload on an embedded tiny model."""
    from benchmarks.measure import (
        build_model,
        composed_for,
        eval_throughput,
        family,
        mixed_language,
        release,
        train_throughput,
    )

    model, vocab = build_model(shape)
    tag = {"shape": shape, "family": family(model)}
    for cfg in plan["configs"]:
        composed = composed_for(model, cfg)
        for task, wl in workloads.items():
            for baseline in (False, True):
                log(f"{shape} {cfg} {wl.name} train {'reference' if baseline else 'ours'}")
                r = train_throughput(
                    composed,
                    wl,
                    vocab,
                    batch_size=plan["batch"],
                    steps=plan["steps"],
                    repeats=plan["repeats"],
                    baseline=baseline,
                )
                out["train"].append({**tag, "configuration": cfg, "workload": wl.name,
                                     "padding": "pad-to-256" if baseline else "dynamic", **r})
                log(f"{shape} {cfg} {wl.name} eval {'reference' if baseline else 'ours'}")
                e = eval_throughput(
                    composed,
                    wl,
                    vocab,
                    batch_size=plan["eval_batch"],
                    n=plan["eval_n"],
                    new_tokens=NEW_TOKENS[task],
                    repeats=plan["eval_repeats"],
                    baseline=baseline,
                )
                out["eval"].append({**tag, "configuration": cfg, "workload": wl.name,
                                    "padding": "pad-to-256" if baseline else "dynamic", **e})
        release(composed)
    for kind in ("prompt", "adapter"):
        log(f"{shape} mixed-language {kind}")
        r = mixed_language(model, vocab, kind, workloads["nli"], batch_size=plan["mixed_batch"],
                           new_tokens=NEW_TOKENS["nli"], repeats=plan["eval_repeats"])
        out["mixed"].append({**tag, "workload": "NLI", **r})


def run_mt0(plan: dict, workloads: dict, out: dict, shape: str = "mt0") -> None:
    """The plan's few points on a base-sized shape (``mt0``, or ``causal``: Qwen2.5-0.5B)."""
    from benchmarks.measure import (
        SHAPE_NAMES,
        build_model,
        composed_for,
        eval_throughput,
        family,
        mixed_language,
        release,
        train_throughput,
    )

    name = SHAPE_NAMES[shape]
    log(f"building the {name}-shaped model (random weights)")
    model, vocab = build_model(shape)
    tag = {"shape": name, "family": family(model)}
    by_cfg: dict[str, list[str]] = {}
    for cfg, task in plan["train"]:
        by_cfg.setdefault(cfg, []).append(task)
    for cfg, tasks in by_cfg.items():
        composed = composed_for(model, cfg)
        for task in tasks:
            log(f"{name} {cfg} {workloads[task].name} train ours")
            r = train_throughput(
                composed,
                workloads[task],
                vocab,
                batch_size=plan["batch"],
                steps=plan["steps"],
                repeats=plan["repeats"],
                baseline=False,
            )
            out["train"].append(
                {
                    **tag,
                    "configuration": cfg,
                    "workload": workloads[task].name,
                    "padding": "dynamic",
                    **r,
                }
            )
        # The reference's cost does not depend on the workload: once per configuration.
        log(f"{name} {cfg} train reference (pad to 256)")
        r = train_throughput(composed, workloads[tasks[0]], vocab, batch_size=plan["batch"],
                             steps=plan["steps"], repeats=plan["repeats"], baseline=True)
        out["train"].append({**tag, "configuration": cfg, "workload": "any",
                             "padding": "pad-to-256", **r})
        for ecfg, task in plan["eval"]:
            if ecfg != cfg:
                continue
            for baseline in (False, True):
                log(f"{name} {cfg} {workloads[task].name} eval "
                    f"{'reference' if baseline else 'ours'}")
                e = eval_throughput(
                    composed,
                    workloads[task],
                    vocab,
                    batch_size=plan["batch"],
                    n=plan["eval_n"],
                    new_tokens=NEW_TOKENS[task],
                    repeats=1,
                    baseline=baseline,
                    warmup=0,
                )
                out["eval"].append(
                    {
                        **tag,
                        "configuration": cfg,
                        "workload": workloads[task].name,
                        "padding": "pad-to-256" if baseline else "dynamic",
                        **e,
                    }
                )
        release(composed)
    if plan.get("mixed_batch"):
        log(f"{name} mixed-language prompt")
        r = mixed_language(model, vocab, "prompt", workloads["nli"], batch_size=plan["mixed_batch"],
                           new_tokens=NEW_TOKENS["nli"], repeats=3)
        out["mixed"].append({**tag, "workload": "NLI", **r})


def summarise(out: dict) -> None:
    """Ratios: ours ÷ reference (training, evaluation) and the prompt overhead."""
    ratios, overhead = [], []
    for kind in ("train", "eval"):
        rows = out[kind]
        for r in rows:
            if r["padding"] != "dynamic":
                continue
            ref = next(
                (
                    b
                    for b in rows
                    if b["padding"] != "dynamic"
                    and b["shape"] == r["shape"]
                    and b["configuration"] == r["configuration"]
                    and b["workload"] in (r["workload"], "any")
                ),
                None,
            )
            if ref:
                ratios.append(
                    {
                        "kind": kind,
                        "shape": r["shape"],
                        "configuration": r["configuration"],
                        "workload": r["workload"],
                        "speedup": round(r["examples_per_s"] / ref["examples_per_s"], 2),
                    }
                )
    for shape in sorted({r["shape"] for r in out["train"]}):
        get = {(r["configuration"]): r for r in out["train"]
               if r["shape"] == shape and r["workload"] == "QA" and r["padding"] == "dynamic"}
        if "slp+ta" in get and "ta" in get:
            from benchmarks.measure import PROMPT_TOKENS

            ta = get["ta"]
            causal = ta.get("family") == "causal"
            # seq2seq: the prompt lengthens the encoder's input only; causal: one stack
            # runs over [prompt][input][target], so L counts the target too.
            width = ta["mean_width"] + (ta["mean_target_width"] if causal else 0)
            measured = ta["examples_per_s"] / get["slp+ta"]["examples_per_s"]
            theory = (width + PROMPT_TOKENS) / width
            overhead.append(
                {
                    "shape": shape,
                    "family": ta.get("family", "seq2seq"),
                    "L_counts": "input + target" if causal else "input",
                    "L_mean_padded_width": round(width, 1),
                    "P": PROMPT_TOKENS,
                    "measured_step_ratio": round(measured, 3),
                    "theoretical": round(theory, 3),
                    "measured_over_theoretical": round(measured / theory, 3),
                }
            )
    out["speedups"], out["prompt_overhead"] = ratios, overhead


def print_tables(out: dict) -> None:
    from benchmarks.report import overhead_row

    def table(title, header, rows):
        print(f"\n{title}")
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
        for row in [header, ["-" * w for w in widths], *rows]:
            print("  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=True)))

    speed = {
        (s["kind"], s["shape"], s["configuration"], s["workload"]): s["speedup"]
        for s in out["speedups"]
    }
    for kind, what in (("train", "training"), ("eval", "evaluation (generation)")):
        rows = [
            [
                r["shape"],
                r["configuration"],
                r["workload"],
                r["padding"],
                f"{r['examples_per_s']:.2f}",
                r.get("padding_efficiency", ""),
                r["peak_rss_mib"],
                speed.get((kind, r["shape"], r["configuration"], r["workload"]), ""),
            ]
            for r in out[kind]
        ]
        table(f"{what} examples/s (median)", ["shape", "config", "workload", "padding", "ex/s",
                                                "pad eff", "peak MiB", "÷ reference"], rows)
    if out["prompt_overhead"]:
        table(
            "prompt overhead (QA): slp+ta step ÷ ta step",
            ["shape", "family", "L counts", "L", "P", "measured", "(L+P)/L", "ratio"],
            [overhead_row(o) for o in out["prompt_overhead"]],
        )
    if out["mixed"]:
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
                        x["mixed_cost_vs_single"],
                        x["groups_in_turn_cost_vs_mixed"],
                    ]
                )
        table(
            "mixed-language batches (4 languages, ex/s)",
            [
                "shape",
                "config",
                "call",
                "B",
                "mixed",
                "single",
                "4 in turn",
                "mixed÷single cost",
                "in turn÷mixed cost",
            ],
            rows,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--quick", action="store_true", help="fewer steps; one mT0-shape point (a few minutes)"
    )
    p.add_argument(
        "--output", help="JSON file to write (default benchmarks/results/<date>-<mode>.json)"
    )
    p.add_argument(
        "--shapes", default=",".join(SHAPES),
        help="comma-separated: mt0, causal (Qwen2.5-0.5B shape), tiny, tiny-causal (default all)",
    )
    args = p.parse_args(argv)

    import torch

    from benchmarks.workloads import ORDER, measure

    mode = "quick" if args.quick else "full"
    plan = PLANS[mode]
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        p.error(f"unknown shape {unknown[0]!r}; valid: {', '.join(SHAPES)}")
    workloads = {t: measure(t, 64 * 64) for t in ORDER}
    started = time.time()
    out = {
        "meta": {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "mode": mode,
            "cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "load_average_start": os.getloadavg(), "plan": plan, "shapes": shapes,
            "tokenizer_note": "lengths measured in UTF-8 bytes (ByT5 byte tokenizer; no mT5 "
                              "SentencePiece model offline), rescaled to nominal mT5-token means",
            "workloads": {wl.name: wl.stats() for wl in workloads.values()},
        },
        "train": [], "eval": [], "mixed": [],
    }
    path = (
        Path(args.output)
        if args.output
        else RESULTS / f"{time.strftime('%Y%m%d-%H%M')}-{mode}.json"
    )

    def save() -> None:  # after each shape, so a long run that is stopped keeps its figures
        out["meta"]["load_average_end"] = os.getloadavg()
        out["meta"]["seconds"] = round(time.time() - started)
        summarise(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)

    # The base-sized shapes first: they hold the headline figures and take the longest.
    for shape in ("mt0", "causal"):
        if shape in shapes:
            run_mt0(plan[shape], workloads, out, shape)
            save()
    for shape in ("tiny", "tiny-causal"):
        if shape in shapes:
            run_tiny(plan[shape], workloads, out, shape)
            save()
    save()
    print_tables(out)
    print(f"\nwritten: {path} ({out['meta']['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
