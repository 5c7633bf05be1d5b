"""``langtransfer score``: score a predictions file against gold data, no model needed."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from langtransfer.cli.common import add_extension_options, add_profile_option
from langtransfer.errors import LangTransferError


def register(subparsers: argparse._SubParsersAction) -> None:
    from langtransfer.tasks import SOURCE_NAMES, SPLITS, task_names

    p = subparsers.add_parser(
        "score",
        help="score a predictions file against gold data (no model)",
        description=(
            "Score predictions against gold data with the task's metrics, as the paper's "
            "reference code computed them (the primary metric) and stricter or "
            "language-aware variants beside them: SQuAD exact match/F1 and MLQA's "
            "language-aware EM/F1 (qa), span micro P/R/F1 (ner), accuracy and macro F1 "
            "(nli), binary F1 of Checkworthy, macro F1 and accuracy (checkworthiness); "
            "strict_* metrics count unreadable outputs as wrong; all as percentages. "
            "The predictions file is JSONL, one "
            '{"id": ..., "prediction": ...} per line, where prediction is the generated '
            "text (parsed by the task's parser). Gold examples without a prediction "
            "count as wrong (n_missing); unreadable generations count as wrong "
            "(n_unparseable)."
        ),
        epilog=(
            "Example: langtransfer score --task qa --data ../shared/data/xquad/xquad.de.json "
            "--predictions preds.jsonl --output results/qa-de"
        ),
    )
    p.add_argument("--task", required=True,
                   help=f"task name: {', '.join(task_names())}, or one --task-module registers")
    p.add_argument(
        "--data", metavar="PATH",
        help="gold data: a file in the task's format or a directory of "
        "<language>.<split>.<ext> files; without it the data comes from --source",
    )
    p.add_argument(
        "--source", choices=SOURCE_NAMES, default="paper",
        help="without --data: 'paper' loads the paper's dataset from the Hugging Face hub, "
        "'fixtures' the small files shipped with langtransfer (default: paper)",
    )
    p.add_argument(
        "--language", metavar="CODE",
        help="language of the gold data; guessed from a file name such as xquad.de.json "
        "or sk.test.csv when --data is a file",
    )
    p.add_argument("--split", choices=SPLITS, default="test",
                   help="split to score (default: test); a --data file serves the split its "
                   "name names (sk.train.jsonl: train; none named: test), so say that one")
    p.add_argument("--predictions", metavar="PATH", required=True,
                   help='JSONL file of {"id", "prediction"} objects')
    p.add_argument("--output", metavar="DIR",
                   help="also write the metrics to DIR/metrics.json (atomically)")
    p.add_argument(
        "--tokenizer", metavar="NAME_OR_PATH",
        help="the base model's tokenizer (hub id, local directory, 'tiny' or 'tiny-causal'): "
        "ner's reference golds are then the targets cut to 30 tokens, as the reference scored "
        "them; without it the full targets",
    )
    add_profile_option(p, "how the gold data is read (label order, empty QA answers)")
    add_extension_options(p)
    p.set_defaults(func=run)


def guess_language(path: Path) -> str | None:
    """A registered language code among the dot/underscore/dash parts of a file name."""
    from langtransfer.languages import all_languages

    codes = {lang.code for lang in all_languages()}
    return next((p for p in re.split(r"[._\-]", path.name.lower()) if p in codes), None)


def run(args: argparse.Namespace) -> int:
    from langtransfer.inference.scoring import metrics_record, read_predictions, score_predictions
    from langtransfer.io import write_json
    from langtransfer.profiles import get_profile
    from langtransfer.tasks import get_task

    task = get_task(args.task)
    language = args.language
    data = Path(args.data) if args.data else None
    if language is None and data is not None and data.is_file():
        language = guess_language(data)
    if language is None:
        raise LangTransferError("cannot tell the data's language; pass --language CODE")
    profile = get_profile(args.profile)
    loaded = task.load_data(language, args.split, data, source=args.source,
                            label_order=profile.label_order,
                            empty_answers=profile.empty_answers)
    examples = loaded.examples
    tokenizer = _tokenizer(args.tokenizer) if args.tokenizer else None
    metrics = score_predictions(task, examples, read_predictions(args.predictions, task),
                                language=language, source=args.predictions, tokenizer=tokenizer)
    width = max(map(len, metrics))
    for key, value in metrics.items():
        shown = f"{value:.2f}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {shown}")
    if args.output:
        record = {**metrics_record(metrics, task), "profile": profile.name,
                  "reading": {"label_order": profile.label_order,
                              "empty_answers": profile.empty_answers}}
        if loaded.label_mapping is not None:  # the data's class names disagree with positions
            record["label_mapping"] = loaded.label_mapping
        write_json(Path(args.output) / "metrics.json", record)
        print(f"wrote {Path(args.output) / 'metrics.json'}")
    return 0


def _tokenizer(name: str):
    from transformers import AutoTokenizer, ByT5Tokenizer

    from langtransfer.base.loading import EMBEDDED

    if name in EMBEDDED:  # both embedded models use the byte tokenizer
        return ByT5Tokenizer()
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise LangTransferError(f"cannot load tokenizer {name!r}: {e}") from e
