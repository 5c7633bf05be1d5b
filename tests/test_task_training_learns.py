"""Task training learns, and keep-best restores the checkpoint with the lowest validation
loss: ``train_task`` on the tiny model, for a task adapter (``ta``) and a soft task prompt
(``stp``), a few dozen seeded steps each (seconds).

Keep-best is checked on what is written: the saved representation's weights are those of
the checkpoint whose evaluation loss (Trainer's log) is the lowest, and its recorded
validation loss is that checkpoint's. A second run validates on labels the training never
shows (train: every pair entailment, validate: every pair neutral), so the validation loss
rises after a while and the best checkpoint is not the last one: restoring is observable.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from langtransfer.representations import read_manifest
from langtransfer.tasks import FIXTURES_DIR
from langtransfer.training.task import train_task
from langtransfer.training.trainer import default_settings

#: kind -> (steps, learning rate, prompt tokens): the paper's optimiser per kind.
RUNS = {"adapter": (30, 3e-3, None), "prompt": (40, 0.5, 8)}
#: For the run validated on labels it never trains on: a faster-moving adapter.
AGAINST = {"adapter": (40, 1e-2, None), "prompt": (40, 0.5, 16)}
EVAL_EVERY = 5


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def nli_rows(split: str) -> list[dict]:
    path = FIXTURES_DIR / "nli" / f"en.{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_rows(path: Path, rows: list[dict], label: int | None = None) -> Path:
    rows = rows if label is None else [{**r, "label": label} for r in rows]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def run(tmp_path: Path, kind: str, data, validation: Path, runs=RUNS) -> tuple[dict, Path, Path]:
    steps, lr, tokens = runs[kind]
    settings = default_settings(
        kind, "task", max_steps=steps, learning_rate=lr, batch_size=8, eval_batch_size=32,
        eval_steps=EVAL_EVERY, save_steps=EVAL_EVERY, save_total_limit=None,
        logging_steps=1000, seed=3,
    )
    out, ckpt = tmp_path / "rep", tmp_path / "ckpt"
    train_task(model="tiny", task="nli", language="en", kind=kind, output=out, data=data,
               validation_data=validation, settings=settings,
               spec={"num_tokens": tokens} if tokens else None, max_length=128,
               checkpoint_dir=ckpt, show_progress=False)
    return read_manifest(out)["training"], out, ckpt


def eval_losses(ckpt: Path) -> dict[int, float]:
    """Step -> evaluation loss, from the last checkpoint's Trainer log."""
    last = max(ckpt.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    log = json.loads((last / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    return {h["step"]: h["eval_loss"] for h in log if "eval_loss" in h}


def tensors(files: list[Path]) -> list[tuple]:
    """The weights as a multiset of (shape, bytes digest): names differ between a
    checkpoint (the composed model's) and a saved representation (its own)."""
    out = []
    for f in files:
        for t in load_file(f).values():
            out.append(
                (tuple(t.shape), hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest())
            )
    return sorted(out)


def saved(rep: Path) -> list[tuple]:
    return tensors(sorted(rep.glob("*.safetensors")))


def checkpoint(ckpt: Path, step: int) -> list[tuple]:
    return tensors([ckpt / f"checkpoint-{step}" / "model.safetensors"])


def check_keep_best(training: dict, out: Path, ckpt: Path) -> tuple[int, int]:
    losses = eval_losses(ckpt)
    steps = training["settings"]["max_steps"]
    assert sorted(losses) == list(range(EVAL_EVERY, steps + 1, EVAL_EVERY))
    best = min(losses, key=losses.__getitem__)
    assert training["best_checkpoint"] == f"checkpoint-{best}"
    assert saved(out) == checkpoint(ckpt, best)
    # One evaluation batch: Trainer's loss is the per-token mean the manifest records.
    assert training["validation_loss"] == pytest.approx(losses[best], rel=1e-4)
    return best, steps


@pytest.mark.parametrize("kind", ["adapter", "prompt"])
def test_validation_loss_falls(tmp_path, kind):
    validation = write_rows(tmp_path / "validation.jsonl", nli_rows("test"))
    training, out, ckpt = run(tmp_path, kind, "fixtures", validation)
    assert training["configuration"] == {"adapter": "ta", "prompt": "stp"}[kind]
    assert training["validation_examples"] == 21
    initial, final = training["validation_loss_initial"], training["validation_loss"]
    assert final < 0.7 * initial, (initial, final)  # a real margin, not noise
    losses = eval_losses(ckpt)
    assert losses[max(losses)] < losses[min(losses)]  # falling over the run
    check_keep_best(training, out, ckpt)


@pytest.mark.parametrize("kind", ["adapter", "prompt"])
def test_keep_best_restores_the_lowest_validation_loss(tmp_path, kind):
    train = write_rows(tmp_path / "train.jsonl", nli_rows("train"), label=0)  # entailment
    validation = write_rows(tmp_path / "validation.jsonl", nli_rows("test"), label=1)  # neutral
    training, out, ckpt = run(tmp_path, kind, train, validation, AGAINST)
    best, last = check_keep_best(training, out, ckpt)
    assert best < last, eval_losses(ckpt)  # the validation loss rose: restoring shows
    assert saved(out) != checkpoint(ckpt, last)
    assert training["steps"] == last
