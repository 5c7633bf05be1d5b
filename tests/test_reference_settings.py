"""Settings as the paper's reference code ran them: LR schedule, target lengths, the
generation budget and the task-prompt texts."""

from __future__ import annotations

import json

import pytest
from transformers import ByT5Tokenizer

from langtransfer.cli import main
from langtransfer.errors import UnknownNameError
from langtransfer.options import REFERENCE_MAX_NEW_TOKENS
from langtransfer.tasks import Example, get_task
from langtransfer.tasks.encoding import tokenise
from langtransfer.training.task import train_task
from langtransfer.training.trainer import TrainSettings, default_settings, training_arguments

FAST = ["--model", "tiny", "--data", "fixtures", "--batch-size", "4", "--max-length", "96"]


@pytest.mark.parametrize(("kind", "role"), [("prompt", "language"), ("prompt", "task"),
                                            ("adapter", "language"), ("adapter", "task")])
def test_both_kinds_decay_linearly_by_default(tmp_path, kind, role):
    settings = default_settings(kind, role)
    assert settings.lr_scheduler == "linear" and settings.warmup_steps == 0
    args = training_arguments(settings, tmp_path, has_eval=True)
    assert args.lr_scheduler_type.value == "linear"
    constant = training_arguments(TrainSettings(lr_scheduler="constant"), tmp_path, False)
    assert constant.lr_scheduler_type.value == "constant"


def test_unknown_schedule_names_the_valid_ones():
    with pytest.raises(UnknownNameError, match="lr_scheduler 'cosine'.*constant, linear"):
        TrainSettings(lr_scheduler="cosine")


def test_prompt_learning_rate_decays_to_zero_in_a_real_run(tmp_path):
    settings = default_settings("prompt", "task", max_steps=4, batch_size=4, eval_steps=2,
                                save_steps=2, logging_steps=1)
    train_task(model="tiny", task="nli", language="en", kind="prompt", output=tmp_path / "stp",
               data="fixtures", settings=settings, spec={"num_tokens": 4},
               max_length=96, show_progress=False)
    state = sorted((tmp_path / "stp.checkpoints").glob("checkpoint-*"))[-1]
    history = json.loads((state / "trainer_state.json").read_text())["log_history"]
    # Adafactor at 0.5, linear to 0 over 4 steps: step k (1-based) runs at 0.5 * (5 - k) / 4,
    # as Trainer logs it (the constant schedule would log 0.5 throughout).
    rates = [e["learning_rate"] for e in history if "learning_rate" in e]
    assert rates == pytest.approx([0.5, 0.375, 0.25, 0.125])


@pytest.mark.parametrize(("task", "length"), [("qa", 30), ("ner", 30), ("nli", 3),
                                              ("checkworthiness", 4)])
def test_target_lengths_are_the_references(task, length):
    assert get_task(task).target_length == length


def test_labels_are_cut_to_the_target_length_keeping_the_end_token():
    tok = ByT5Tokenizer()
    examples = [Example("0", "en", "in", "a" * 40, ()), Example("1", "en", "in", "short", ())]
    out = tokenise(examples, tok, 256, max_target_length=30)
    labels = out.dataset["labels"]
    assert len(labels[0]) == 30 and labels[0][-1] == tok.eos_token_id
    assert labels[0] == tok(["a" * 29])["input_ids"][0]
    assert labels[1] == tok(["short"])["input_ids"][0]
    assert out.n_truncated_targets == 1
    assert tokenise(examples, tok, 256).dataset["labels"][0] == tok(["a" * 40])["input_ids"][0]


def test_train_task_cuts_labels_to_the_tasks_target_length(tmp_path):
    out = tmp_path / "ner-ta"
    assert main(["train-task", "--task", "ner", "--language", "en", "--kind", "adapter",
                 "--steps", "2", "--eval-steps", "2", "--save-steps", "2", "--output", str(out),
                 *FAST]) == 0
    training = json.loads((out / "manifest.json").read_text())["training"]
    assert training["max_target_length"] == 30
    # Byte-level targets: every fixture NER target over 29 bytes is cut.
    examples = get_task("ner").load("en", "train", source="fixtures")
    longer = sum(len(e.target.encode()) + 1 > 30 for e in examples)
    assert 0 < training["truncated_targets"] <= longer


def test_generation_budget_is_the_references_by_default(tmp_path):
    assert REFERENCE_MAX_NEW_TOKENS == 19
    out = tmp_path / "ner-base"
    assert main(["evaluate", "--task", "ner", "--language", "en", "--model", "tiny",
                 "--data", "fixtures", "--output", str(out), "--max-examples", "3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["generation"]["max_new_tokens"] == 19
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    # A random tiny model never stops early: 19 byte tokens at most per prediction.
    assert all(len(r["prediction"].encode()) <= 19 for r in rows)
    assert all("parsed_reference" in r for r in rows)


@pytest.mark.parametrize(("task", "text"), [
    ("qa", "Answer the question in German language:"),
    ("ner", "Identify ner tags (ORG, PER, LOC) in the text in German:"),
    ("nli", "Select Yes, No or Maybe based on the implication of the premise on the hypothesis "
            "in German:"),
    ("checkworthiness", "Determine whether a given claim in German is checkworthy:"),
])
def test_task_prompt_texts_are_what_the_reference_passed(task, text):
    assert get_task(task).prompt_init("German") == text
