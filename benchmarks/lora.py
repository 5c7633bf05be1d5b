"""``python -m benchmarks.lora [--quick] [--shapes ...] [--output PATH]``: LoRA beside the
paper's kinds.

Prints tables and writes JSON (default ``benchmarks/results/<date>-lora[-quick].json``):

- parameters trained per representation: each kind (prompt, adapter, LoRA) in each role,
  with the defaults (50-token prompts, ``seq_bn`` reduction 16, LoRA rank 8 on the
  attention's query and value projections);
- task-training examples/s and peak resident memory of ``ll+tl`` and ``ll+ta`` beside
  ``la+ta`` and ``slp+ta`` on the NER and QA shapes, dynamically padded (the library's
  path), in one process so the conditions are shared;
- mixed batches of LoRA pairs: rows over 4 language LoRAs with one task LoRA (``ll+tl``),
  each row its own pair in one call (the per-row hook), against the same batch with one
  pair (no bank) and the 4 pairs' rows in 4 calls; the target is a mixed call within 1.1x
  of a single-pair call's cost.

Shapes as ``benchmarks.run``: ``mt0`` (mT0-base-shaped MT5, random weights), ``causal``
(Qwen2.5-0.5B-shaped Qwen2), and the embedded ``tiny`` and ``tiny-causal``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.run import NEW_TOKENS, RESULTS, SHAPES, cpu_model, log  # noqa: E402

#: Task training compared: LoRA in both roles, LoRA beside an adapter, the paper's two.
CONFIGS = ("ll+tl", "ll+ta", "la+ta", "slp+ta")
PLANS = {
    "quick": {"large": {"batch": 8, "steps": 1, "repeats": 1, "tasks": ("ner",), "mixed": 8},
              "tiny": {"batch": 32, "steps": 4, "repeats": 2, "tasks": ("ner", "qa"),
                       "mixed": 32}},
    "full": {"large": {"batch": 8, "steps": 2, "repeats": 2, "tasks": ("ner", "qa"),
                       "mixed": 8},
             "tiny": {"batch": 32, "steps": 8, "repeats": 3, "tasks": ("ner", "qa"),
                      "mixed": 32}},
}
KINDS = ("prompt", "adapter", "lora")


def trained_parameters(model) -> list[dict]:
    """Each kind in each role, fresh with its defaults: the parameters that train."""
    from benchmarks.measure import make_rep
    from langtransfer.composition.composed import compose
    from langtransfer.configurations import configuration_for, short_name

    rows = []
    for role in ("language", "task"):
        for kind in KINDS:
            rep = make_rep(model, role, kind, "en" if role == "language" else "qa")
            kinds = (kind, None) if role == "language" else (None, kind)
            with compose(model, configuration_for(*kinds).name, train=role,
                         **{role: rep}) as composed:
                count = sum(p.numel() for p in composed.trainable_parameters().values())
            rows.append({"role": role, "kind": kind, "short": short_name(role, kind),
                         "trained_parameters": count})
    return rows


def run_shape(shape: str, plan: dict, workloads: dict, out: dict) -> None:
    from benchmarks.measure import (
        SHAPE_NAMES,
        build_model,
        composed_for,
        family,
        mixed_language,
        release,
        train_throughput,
    )

    name = SHAPE_NAMES.get(shape, shape)
    log(f"building the {name} model")
    model, vocab = build_model(shape)
    total = sum(p.numel() for p in model.parameters())
    tag = {"shape": name, "family": family(model), "base_parameters": total}
    for row in trained_parameters(model):
        out["parameters"].append({**tag, **row,
                                  "share_of_base": round(row["trained_parameters"] / total, 6)})
    for cfg in CONFIGS:
        composed = composed_for(model, cfg)
        for task in plan["tasks"]:
            log(f"{name} {cfg} {workloads[task].name} train")
            r = train_throughput(composed, workloads[task], vocab, batch_size=plan["batch"],
                                 steps=plan["steps"], repeats=plan["repeats"], baseline=False)
            out["train"].append({**tag, "configuration": cfg, "workload": workloads[task].name,
                                 **r})
        release(composed)
        composed.close()
    log(f"{name} mixed LoRA pairs")
    r = mixed_language(model, vocab, "lora", workloads["nli"], batch_size=plan["mixed"],
                       new_tokens=NEW_TOKENS["nli"], repeats=max(plan["repeats"], 2),
                       configuration="ll+tl")
    out["mixed"].append({**tag, "workload": "NLI", **r})


def print_tables(out: dict) -> None:
    def table(title, header, rows):
        print(f"\n{title}")
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
        for row in [header, ["-" * w for w in widths], *rows]:
            print("  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=True)))

    table("parameters trained per representation (defaults)",
          ["shape", "role", "kind", "short", "trained", "share of base"],
          [[p["shape"], p["role"], p["kind"], p["short"], f"{p['trained_parameters']:,}",
            f"{100 * p['share_of_base']:.3f}%"] for p in out["parameters"]])
    table("task training examples/s (median) and peak memory",
          ["shape", "config", "workload", "ex/s", "peak MiB"],
          [[r["shape"], r["configuration"], r["workload"], f"{r['examples_per_s']:.2f}",
            r["peak_rss_mib"]] for r in out["train"]])
    rows = []
    for m in out["mixed"]:
        for what in ("forward", "generate"):
            x = m[what]
            rows.append([m["shape"], what, m["batch_size"], x["mixed_examples_per_s"],
                         x["single_language_examples_per_s"], x["groups_in_turn_examples_per_s"],
                         x["mixed_cost_vs_single"], x["groups_in_turn_cost_vs_mixed"]])
    table("mixed LoRA pairs (ll+tl, 4 language LoRAs; ex/s)",
          ["shape", "call", "B", "mixed", "one pair", "4 in turn", "mixed÷one cost",
           "in turn÷mixed cost"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.lora",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer steps and one workload")
    p.add_argument("--output", help="JSON file (default benchmarks/results/<date>-lora.json)")
    p.add_argument("--shapes", default=",".join(SHAPES),
                   help="comma-separated: mt0, causal, tiny, tiny-causal (default all)")
    args = p.parse_args(argv)

    import platform

    import torch

    from benchmarks.workloads import ORDER, measure

    mode = "quick" if args.quick else "full"
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        p.error(f"unknown shape {unknown[0]!r}; valid: {', '.join(SHAPES)}")
    workloads = {t: measure(t, 64 * 64) for t in ORDER}
    started = time.time()
    out: dict = {
        "meta": {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "mode": mode, "cpu": cpu_model(), "cores": os.cpu_count(),
                 "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                 "python": platform.python_version(), "load_average_start": os.getloadavg(),
                 "plan": PLANS[mode], "shapes": shapes, "configurations": CONFIGS},
        "parameters": [], "train": [], "mixed": [],
    }
    suffix = "lora-quick" if args.quick else "lora"
    path = Path(args.output) if args.output else (
        RESULTS / f"{time.strftime('%Y%m%d-%H%M')}-{suffix}.json")

    def save() -> None:  # after each shape: a stopped run keeps what it measured
        out["meta"]["load_average_end"] = os.getloadavg()
        out["meta"]["seconds"] = round(time.time() - started)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)

    for shape in ("mt0", "causal", "tiny", "tiny-causal"):
        if shape in shapes:
            run_shape(shape, PLANS[mode]["large" if shape in ("mt0", "causal") else "tiny"],
                      workloads, out)
            save()
    save()
    print_tables(out)
    print(f"\nwritten: {path} ({out['meta']['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
