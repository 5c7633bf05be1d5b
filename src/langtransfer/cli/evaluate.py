"""``langtransfer evaluate``: zero-shot evaluation of one configuration on one language."""

from __future__ import annotations

import argparse
import json

from langtransfer.cli.common import add_extension_options, add_model_option, add_profile_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="generate for a test split, parse and score; write predictions and metrics",
        description=(
            "Evaluate the base model composed with a target-language representation "
            "(--language-rep) and a task representation (--task-rep) on a task's test data "
            "in --language. The configuration (base, ta, stp, la+ta, la+stp, slp+ta, "
            "slp+stp; la or slp for a language representation alone) follows from the kinds of "
            "the representations given. Writes "
            "predictions.jsonl (id, input, generated text, parsed prediction, gold and its "
            "target text; "
            "parsed_reference for tasks the paper's code read differently) and "
            "metrics.json (the reference's primary metric, variants beside it) to --output."
        ),
    )
    p.add_argument(
        "--task", required=True, help="qa, ner, nli, checkworthiness, or a registered task"
    )
    p.add_argument("--language", required=True, help="target language")
    p.add_argument("--language-rep", help="target language representation directory (or hub id); "
                   "it must be trained for --language")
    p.add_argument("--task-rep", help="task representation directory (or hub id)")
    p.add_argument(
        "--data", help="local file/directory or 'fixtures'; default: the paper's source on the hub"
    )
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument(
        "--output", required=True, help="directory for predictions.jsonl and metrics.json"
    )
    add_model_option(p)
    p.add_argument("--batch-size", type=int, default=64, help="generation batch size (default 64)")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        help="new tokens generated at most (default 19, the paper's reference "
        "budget: transformers' default max_length 20 with the start token)",
    )
    p.add_argument(
        "--max-length", type=int, default=256,
        help="input tokens kept (default 256; longer are cut and counted)",
    )
    p.add_argument("--max-examples", type=int, help="evaluate only the first N examples")
    p.add_argument("--num-beams", type=int, default=1, help="beam search width (default greedy)")
    p.add_argument(
        "--scoring", choices=("generate", "rank"), default="generate",
        help="generate: free generation, parsed (default); rank: label ranking for "
        "classification tasks (the most likely label word; never unparseable; no "
        "--num-beams or --max-new-tokens)",
    )
    add_profile_option(
        p, "how long inputs are read (the reference: the last 256-token chunk) and how the "
        "data is read (label order, empty QA answers)")
    add_extension_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from langtransfer.errors import LangTransferError
    from langtransfer.inference.evaluate import evaluate
    from langtransfer.options import unused_by_ranking

    unused = unused_by_ranking(num_beams=args.num_beams, max_new_tokens=args.max_new_tokens)
    generation = ["--" + name.replace("_", "-") for name in unused]
    if args.scoring == "rank" and generation:
        raise LangTransferError(
            f"{', '.join(generation)} {'is' if len(generation) == 1 else 'are'} for --scoring "
            "generate; --scoring rank scores each label word and generates nothing"
        )

    record = evaluate(
        model=args.model,
        task=args.task,
        language=args.language,
        language_rep=args.language_rep,
        task_rep=args.task_rep,
        data=args.data,
        output=args.output,
        split=args.split,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        max_length=args.max_length,
        max_examples=args.max_examples,
        num_beams=args.num_beams,
        scoring=args.scoring,
        trust_remote_code=args.trust_remote_code,
        profile=args.profile,
    )
    keys = (
        "task",
        "language",
        "configuration",
        "scoring",
        "metrics",
        "n_examples",
        "n_unparseable",
        "n_truncated",
        "profile",
    )
    print(json.dumps({k: record.get(k) for k in keys}, indent=2, ensure_ascii=False))
    return 0
