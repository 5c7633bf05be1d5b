"""Task-shaped workloads: per-example input and target lengths in model tokens.

No mT5/mT0 SentencePiece model is available offline here, so lengths are measured in
UTF-8 bytes with the ByT5 byte tokenizer (the tokenizer of the embedded tiny model) on
real text: the shipped English fixtures (``src/langtransfer/data/tasks``) for NER, NLI
and check-worthiness, and the English XQuAD file (``../shared/data/xquad``) for QA. The
*shape* of each distribution (every example's length relative to the mean) comes from
that text; its *scale* is set so the mean input is the nominal mT5-token mean of the
task (QA 180, NLI 60, check-worthiness 40, NER 20). Targets are scaled by the same
factor. Inputs are capped at 256 tokens (the paper's sequence length), targets at 30
(the reference code's ``max_answer_length``). The implied bytes per token is reported
as a sanity check (about 4-5 for English SentencePiece text).
"""

from __future__ import annotations

import random
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

MAX_INPUT = 256
MAX_TARGET = 30
NOMINAL_MEAN = {"qa": 180, "nli": 60, "checkworthiness": 40, "ner": 20}
ORDER = ("ner", "checkworthiness", "nli", "qa")
SHORT = {"qa": "QA", "nli": "NLI", "checkworthiness": "CW", "ner": "NER"}
XQUAD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "xquad" / "xquad.en.json"


@dataclass
class Workload:
    task: str
    source: str
    n_source_examples: int
    source_mean_bytes: float
    bytes_per_token: float
    inputs: list[int] = field(repr=False)
    targets: list[int] = field(repr=False)

    @property
    def name(self) -> str:
        return SHORT[self.task]

    def stats(self) -> dict:
        d = asdict(self)
        del d["inputs"], d["targets"]
        q = statistics.quantiles(self.inputs, n=10)
        d.update(
            input_mean=round(statistics.mean(self.inputs), 1),
            input_p10=q[0], input_median=statistics.median(self.inputs), input_p90=q[-1],
            input_max=max(self.inputs), target_mean=round(statistics.mean(self.targets), 1),
            share_capped=round(sum(n >= MAX_INPUT for n in self.inputs) / len(self.inputs), 3),
        )
        return d


def _source_examples(task: str):
    from langtransfer.tasks import get_task

    t = get_task(task)
    if task == "qa" and XQUAD.is_file():
        return f"XQuAD en ({XQUAD.name})", t.load("en", "test", path=XQUAD)
    examples = []
    for split in ("train", "test"):
        try:
            examples += t.load("en", split, source="fixtures")
        except Exception:  # a split the fixtures lack
            continue
    return "langtransfer fixtures en (train+test)", examples


def measure(task: str, n: int, seed: int = 0) -> Workload:
    """``n`` (input, target) token lengths drawn from ``task``'s scaled distribution."""
    source, examples = _source_examples(task)
    if not examples:
        raise RuntimeError(f"no {task} examples to measure lengths on")
    in_bytes = [len(ex.input.encode()) + 1 for ex in examples]  # + end token, as ByT5
    out_bytes = [len(ex.target.encode()) + 1 for ex in examples]
    mean = statistics.mean(in_bytes)
    factor = NOMINAL_MEAN[task] / mean
    rng = random.Random(seed)
    picks = [rng.randrange(len(examples)) for _ in range(n)]
    inputs = [min(MAX_INPUT, max(4, round(in_bytes[i] * factor))) for i in picks]
    targets = [min(MAX_TARGET, max(2, round(out_bytes[i] * factor))) for i in picks]
    return Workload(
        task, source, len(examples), round(mean, 1), round(1 / factor, 2), inputs, targets
    )
