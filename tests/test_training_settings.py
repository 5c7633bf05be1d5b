"""Each training setting reaches the part of training it is meant for: the optimiser, the
schedule, the data loaders, the checkpoints, the evaluations, the logs.

The study-option walk (tests/test_study_jobs.py) follows every study key to the
``TrainSettings`` object the builder passes on; this follows every ``TrainSettings`` field
from there into a real (tiny) training run, so a setting the trainer ignores fails here.
The table below names, per field, what a run shows of it; it must cover every field.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset
from helpers import make_rep
from transformers import TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from langtransfer.base.loading import load_base
from langtransfer.composition.composed import compose
from langtransfer.training.trainer import TrainSettings, train_representation, training_arguments

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


class Spy(TrainerCallback):
    """What the run did, step by step."""

    def __init__(self) -> None:
        self.rows: dict[bool, list[int]] = {True: [], False: []}  # batch rows, by training
        self.evaluated: list[int] = []
        self.saved: list[int] = []
        self.logged: list[int] = []
        self.train_loader: Any = None

    def forward(self, module, args, kwargs) -> None:
        """A forward pre-hook on the composed model: each batch's rows."""
        self.rows[module.training].append(kwargs["input_ids"].shape[0])

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        self.train_loader = train_dataloader

    def on_evaluate(self, args, state, control, **kwargs):
        self.evaluated.append(state.global_step)

    def on_save(self, args, state, control, **kwargs):
        self.saved.append(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.logged.append(state.global_step)


def _group(trainer) -> dict[str, Any]:
    """The optimiser's parameter group holding the trained prompt."""
    (group,) = [g for g in trainer.optimizer.param_groups if g["params"]]
    return group


def _schedule(trainer, steps: int) -> list[float]:
    """The learning-rate factor at each of the first ``steps`` steps."""
    scheduler = getattr(trainer.lr_scheduler, "scheduler", trainer.lr_scheduler)
    return [round(scheduler.lr_lambdas[0](s), 6) for s in range(steps)]


#: The runs: the reference, one with (nearly) every setting changed, and one for the two
#: settings that would hide others (keep-best saves at every evaluation instead of every
#: ``save_steps``; the constant schedule has no warm-up in transformers).
REFERENCE = TrainSettings(
    max_steps=4, batch_size=2, eval_batch_size=None, learning_rate=0.3, weight_decay=0.0,
    optimizer="adafactor", warmup_steps=0, lr_scheduler="linear",
    gradient_accumulation_steps=1, save_steps=2, save_total_limit=None, eval_steps=None,
    keep_best=False, logging_steps=1, seed=1, group_by_length=False,
)
RUNS = {
    "reference": REFERENCE,
    "changed": replace(
        REFERENCE, max_steps=6, batch_size=3, eval_batch_size=5, learning_rate=0.01,
        weight_decay=0.25, optimizer="adamw", warmup_steps=1, gradient_accumulation_steps=2,
        save_steps=3, save_total_limit=1, eval_steps=2, logging_steps=2, seed=2, bf16=True,
        group_by_length=True, dataloader_num_workers=1,
        skip_nonfinite=True,
    ),
    "best": replace(REFERENCE, keep_best=True, eval_steps=2, lr_scheduler="constant"),
}

#: Per TrainSettings field: the run that changes it, what a run shows of it (trainer,
#: spy, checkpoint directory), and what that is in the reference run and in that run.
SHOWN: dict[str, tuple[str, Any, Any, Any]] = {
    "max_steps": ("changed", lambda t, spy, d: t.state.global_step, 4, 6),
    "batch_size": ("changed", lambda t, spy, d: max(spy.rows[True]), 2, 3),
    "eval_batch_size": ("changed", lambda t, spy, d: max(spy.rows[False], default=None),
                        None, 5),
    "learning_rate": ("changed", lambda t, spy, d: _group(t)["initial_lr"], 0.3, 0.01),
    "weight_decay": ("changed", lambda t, spy, d: _group(t)["weight_decay"], 0.0, 0.25),
    "optimizer": ("changed", lambda t, spy, d: type(t.optimizer.optimizer).__name__,
                  "Adafactor", "AdamW"),
    "warmup_steps": ("changed", lambda t, spy, d: _schedule(t, 2), [1.0, 0.75], [0.0, 1.0]),
    "lr_scheduler": ("best", lambda t, spy, d: _schedule(t, 4), [1.0, 0.75, 0.5, 0.25],
                     [1.0] * 4),
    "gradient_accumulation_steps": (
        "changed", lambda t, spy, d: len(spy.rows[True]) // t.state.global_step, 1, 2),
    "save_steps": ("changed", lambda t, spy, d: spy.saved, [2, 4], [3, 6]),
    "save_total_limit": ("changed", lambda t, spy, d: len(list(d.glob("checkpoint-*"))),
                         2, 1),
    "eval_steps": ("changed", lambda t, spy, d: spy.evaluated, [], [2, 4, 6]),
    "keep_best": ("best", lambda t, spy, d: (t.state.best_model_checkpoint is not None,
                                              spy.saved), (False, [2, 4]), (True, [2, 4])),
    "logging_steps": ("changed", lambda t, spy, d: spy.logged, [1, 2, 3, 4], [2, 4, 6]),
    "seed": ("changed", lambda t, spy, d: (t.args.seed, t.args.data_seed), (1, 1), (2, 2)),
    "bf16": ("changed", lambda t, spy, d: t.accelerator.mixed_precision, "no", "bf16"),
    # fp16 needs a GPU, a report_to integration its package: both shown on the arguments
    "fp16": ("", None, None, None),
    "group_by_length": ("changed", lambda t, spy, d: isinstance(t._get_train_sampler(),
                                                                LengthGroupedSampler),
                        False, True),
    "report_to": ("", None, None, None),
    "dataloader_num_workers": ("changed", lambda t, spy, d: spy.train_loader.num_workers,
                               0, 1),
    "skip_nonfinite": ("changed", lambda t, spy, d: t.skip_nonfinite, False, True),
}


def run(settings: TrainSettings, directory: Path) -> dict[str, Any]:
    """Train a tiny task prompt with ``settings``; what the run shows of each setting."""
    model, tok = load_base("tiny")
    rows = [tok(f"row {i}: " + "x" * (i % 7)).input_ids for i in range(24)]
    data = Dataset.from_dict({"input_ids": rows, "labels": [tok("yes").input_ids] * 24})
    spy = Spy()
    with compose(model, "stp", task=make_rep("task", "prompt", model, tok, "nli"),
                 train="task") as composed:
        composed.register_forward_pre_hook(spy.forward, with_kwargs=True)
        trainer, _ = train_representation(
            composed, tok, data, settings, directory, eval_dataset=data.select(range(10)),
            callbacks=[spy], show_progress=False,
        )
        return {name: show(trainer, spy, directory)
                for name, (_, show, _, _) in SHOWN.items() if show is not None}


def test_the_table_covers_every_setting_and_each_run_changes_its_own():
    assert set(SHOWN) == {f.name for f in fields(TrainSettings)}
    for name, (which, *_) in SHOWN.items():
        if which:
            assert getattr(RUNS[which], name) != getattr(REFERENCE, name), name


def test_each_setting_reaches_what_it_is_meant_for(tmp_path):
    shown = {name: run(settings, tmp_path / name) for name, settings in RUNS.items()}
    for name, (which, show, in_reference, in_run) in SHOWN.items():
        if show is None:
            continue
        assert shown["reference"][name] == in_reference, name
        assert shown[which][name] == in_run, name


def test_fp16_and_report_to_reach_the_training_arguments(tmp_path):
    default = training_arguments(REFERENCE, tmp_path, False)
    assert default.fp16 is False and default.report_to == []
    changed = training_arguments(replace(REFERENCE, fp16=True, report_to=["wandb"]),
                                 tmp_path, False)
    assert changed.fp16 is True and changed.report_to == ["wandb"]
