"""Training one representation on top of transformers' ``Trainer``.

``Trainer`` brings checkpoints, ``--resume``, progress bars, logging integrations,
mixed precision and multi-process / multi-GPU training through Accelerate
(``accelerate launch -m langtransfer ...``). What this module adds: checkpoints that hold
only the trained representation (not the frozen base), the paper's defaults per
representation kind, and a training summary for the representation's manifest.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from safetensors import SafetensorError
from transformers import (
    DataCollatorForSeq2Seq,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from langtransfer.composition.composed import ComposedModel
from langtransfer.errors import CorruptFileError, LangTransferError
from langtransfer.io import fsync_tree, os_error_from, replace_dir, write_error, write_json
from langtransfer.training.settings import (  # noqa: F401  (TrainSettings' old home)
    LR_SCHEDULERS,
    OPTIMIZERS,
    TrainSettings,
    default_settings,
)

#: Our own per-checkpoint state (skipped batches, the RNG state of the epoch's order),
#: beside Trainer's trainer_state.json.
RUN_STATE = "langtransfer_state.json"

logger = logging.getLogger(__name__)


class NonFiniteLossError(LangTransferError):
    """Training produced a NaN or infinite loss (or weights)."""


class ResumableLengthGroupedSampler(LengthGroupedSampler):
    """Trainer's length-grouped order (``group_by_length``), which a resumed run replays.

    Trainer's ``LengthGroupedSampler`` draws each epoch's order from the global torch RNG.
    A run resumed in the middle of epoch e > 0 draws it from the RNG as seeded at start,
    not as the interrupted run had it after e epochs of dropout and earlier orders, and
    then skips the first batches of *another* order: other batches, other weights (a
    task prompt resumed from checkpoint-100 of 150 differed by 0.65). This sampler keeps
    the RNG state each epoch's order was drawn from; checkpoints store it, and a resumed
    run draws the interrupted epoch's order from it. An uninterrupted run's order is
    Trainer's own, unchanged. (Random order without grouping needs nothing: Accelerate
    seeds it by epoch.)
    """

    def __init__(self, batch_size: int, lengths: list[int]) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.epoch = 0
        #: (epoch, RNG state its order was drawn from), for the next checkpoint
        self.drawn: tuple[int, torch.Tensor] | None = None
        #: the same, read from the checkpoint a run resumes from
        self.replay: tuple[int, torch.Tensor] | None = None

    def set_epoch(self, epoch: int) -> None:  # called by Trainer (through Accelerate)
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = None
        if self.replay is not None and self.replay[0] == self.epoch:
            state = self.replay[1]
            generator = torch.Generator().set_state(state)
        else:
            state = torch.get_rng_state()  # what randperm below draws from
        self.replay, self.drawn = None, (self.epoch, state)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size,
                                               generator=generator))

    def state_dict(self) -> dict[str, Any] | None:
        if self.drawn is None:
            return None
        epoch, state = self.drawn
        return {"epoch": epoch, "rng_state": base64.b64encode(state.numpy().tobytes()).decode()}

    @staticmethod
    def read_state(state: dict[str, Any]) -> tuple[int, torch.Tensor]:
        data = bytearray(base64.b64decode(state["rng_state"], validate=True))
        return int(state["epoch"]), torch.frombuffer(data, dtype=torch.uint8).clone()


class RepresentationTrainer(Trainer):
    """A ``Trainer`` whose checkpoints hold only the trainable representation's weights.

    ``Trainer`` saves a non-``PreTrainedModel``'s state dict as ``model.safetensors`` and
    loads it back with ``strict=False``, so saving just the trainable tensors keeps
    resume and keep-best working while a checkpoint of mT0-base shrinks from ~2.3 GB
    to the representation's size.

    Checkpoints are written to ``.checkpoint-N.partial`` and renamed to ``checkpoint-N``
    when complete, so a kill never leaves a half-written ``checkpoint-N``. Every training
    step's loss is checked: a NaN or infinite loss stops training before the optimiser
    applies it (no checkpoint with broken weights is ever written), or with
    ``skip_nonfinite`` its batch's gradients are dropped and the step is counted.
    """

    def __init__(self, *args: Any, skip_nonfinite: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.skip_nonfinite = skip_nonfinite
        self.skipped_nonfinite: list[int] = []  # optimiser steps whose batch was skipped
        self.order: ResumableLengthGroupedSampler | None = None
        #: the interrupted epoch's order, from the checkpoint this run resumes from
        self.resume_order: tuple[int, torch.Tensor] | None = None

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            self.order = ResumableLengthGroupedSampler(sampler.batch_size, sampler.lengths)
            self.order.replay = self.resume_order
            return self.order
        return sampler

    # -- non-finite losses -------------------------------------------------------------

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        bad = ~torch.isfinite(loss.detach()).all()
        if self.args.world_size > 1:  # every process must take the same decision
            bad = self.accelerator.reduce(bad.float().reshape(1), reduction="sum")[0] > 0
        if not bool(bad):
            return loss
        step = self.state.global_step + 1  # the optimiser step in progress
        if not self.skip_nonfinite:
            last = last_complete_checkpoint(self.args.output_dir)
            kept = f"the last good checkpoint is {last}" if last else "no checkpoint was saved yet"
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.detach().float().mean().item()}) at step "
                f"{step}; training stopped before applying it and no representation was "
                f"written; {kept} (lower the learning rate, use fp32 instead of fp16, or pass "
                "--skip-nonfinite-batches to skip such batches)"
            )
        # The NaN has reached this accumulation window's gradients: drop them all, so the
        # optimiser step leaves the weights unchanged. Trainer's logging_nan_inf_filter
        # keeps the NaN out of the logged loss.
        model.zero_grad(set_to_none=True)
        if not self.skipped_nonfinite or self.skipped_nonfinite[-1] != step:
            self.skipped_nonfinite.append(step)
            logger.warning("skipped a batch with a non-finite loss at step %d (%d so far)",
                           step, len(self.skipped_nonfinite))
        return loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if self.skipped_nonfinite:
            logs = {**logs, "skipped_nonfinite_batches": len(self.skipped_nonfinite)}
        super().log(logs, *args, **kwargs)

    def check_finite_weights(self, when: str) -> None:
        """Raise if a trainable weight is NaN or infinite (a finite loss can still blow them up)."""
        model = self.accelerator.unwrap_model(self.model)
        bad = [n for n, p in model.trainable_parameters().items() if not torch.isfinite(p).all()]
        if bad:
            last = last_complete_checkpoint(str(self.args.output_dir))
            kept = f"the last good checkpoint is {last}" if last else "no checkpoint was saved yet"
            raise NonFiniteLossError(
                f"non-finite weights ({bad[0]}) after step {self.state.global_step}, {when}; "
                f"training stopped and nothing was written; {kept} (lower the learning rate)"
            )

    # -- checkpoints -----------------------------------------------------------------------

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        model = self.accelerator.unwrap_model(self.model)
        state_dict = {
            n: p.detach().cpu().contiguous() for n, p in model.trainable_parameters().items()
        }
        super()._save(output_dir, state_dict=state_dict)

    def _save_checkpoint(self, model, trial) -> None:
        self.check_finite_weights("before saving a checkpoint")
        run_dir = Path(self._get_output_dir(trial=trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        final, staging = run_dir / name, run_dir / f".{name}.partial"
        if self.args.should_save:
            remove_staging(run_dir)  # left by a killed run
        self.accelerator.wait_for_everyone()
        # Trainer writes `<run dir>/checkpoint-N` in place and then rotates old ones: point
        # it at the staging directory, and rotate here once the checkpoint is in place.
        self._get_output_dir = lambda trial=None: str(staging)  # type: ignore[method-assign,misc]
        self._rotate_checkpoints = lambda *a, **k: None  # type: ignore[method-assign]
        try:
            super()._save_checkpoint(model, trial)
            self.accelerator.wait_for_everyone()  # every process's rng state is written
            if self.args.should_save:
                staged = staging / name
                best = self.state.best_model_checkpoint
                if best is not None and Path(best).parent == staging:
                    self.state.best_model_checkpoint = str(run_dir / Path(best).name)
                self.state.save_to_json(str(staged / "trainer_state.json"))
                run_state: dict[str, Any] = {"skipped_nonfinite_steps": self.skipped_nonfinite}
                order = self.order.state_dict() if self.order is not None else None
                if order is not None:
                    run_state["epoch_order"] = order
                write_json(staged / RUN_STATE, run_state)
                fsync_tree(staged)
                replace_dir(staged, final)
                shutil.rmtree(staging, ignore_errors=True)
        except (OSError, SafetensorError) as e:  # no space, read-only...
            shutil.rmtree(staging, ignore_errors=True)
            raise write_error(final, os_error_from(e), "write checkpoint") from e
        finally:
            del self._get_output_dir, self._rotate_checkpoints  # back to the class's methods
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            # Numbered order: checkpoints are named by step, and transformers' mtime order
            # warns (and falls back to it) whenever they were written within a second.
            self._rotate_checkpoints(use_mtime=False, output_dir=str(run_dir))

    def _issue_warnings_after_load(self, load_result) -> None:
        # Called when a checkpoint is loaded (resume, keep-best). Checkpoints hold only the
        # trainable tensors (see _save), so the frozen base's keys are missing by design;
        # Trainer's own check would read PreTrainedModel attributes ComposedModel lacks.
        model = self.accelerator.unwrap_model(self.model)
        missing = sorted(set(model.trainable_parameters()) & set(load_result.missing_keys))
        if missing or load_result.unexpected_keys:
            raise CorruptFileError(
                "the checkpoint does not hold the weights of the representation being trained "
                f"(missing {missing[:3]}, unexpected {sorted(load_result.unexpected_keys)[:3]}); "
                "it belongs to another run: use another --checkpoint-dir or drop --resume"
            )


def seq2seq_collator(tokenizer: PreTrainedTokenizerBase) -> DataCollatorForSeq2Seq:
    """Pads each batch to its own longest row (dynamic padding); labels padded with -100."""
    return DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)


def has_accelerator() -> bool:
    """Whether torch sees a GPU (CUDA, MPS, XPU...) to train on."""
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    if accelerator is not None:
        return accelerator.is_available()
    return torch.cuda.is_available() or torch.backends.mps.is_available()


def training_arguments(
    settings: TrainSettings, checkpoint_dir: str | Path, has_eval: bool
) -> TrainingArguments:
    evaluate = has_eval and settings.eval_steps is not None
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.eval_batch_size or settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        optim=OPTIMIZERS[settings.optimizer],
        warmup_steps=settings.warmup_steps,
        lr_scheduler_type=settings.lr_scheduler,
        save_strategy="steps",
        save_steps=settings.eval_steps
        if evaluate and settings.keep_best and settings.eval_steps
        else settings.save_steps,
        save_total_limit=settings.save_total_limit,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=settings.eval_steps if evaluate else None,
        load_best_model_at_end=evaluate and settings.keep_best,
        metric_for_best_model="eval_loss" if evaluate and settings.keep_best else None,
        greater_is_better=False if evaluate and settings.keep_best else None,
        logging_steps=settings.logging_steps,
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=settings.bf16,
        fp16=settings.fp16,
        group_by_length=settings.group_by_length,
        length_column_name="length",
        report_to=settings.report_to,
        dataloader_num_workers=settings.dataloader_num_workers,
        save_safetensors=True,
        remove_unused_columns=True,
        disable_tqdm=False,
        ddp_find_unused_parameters=False,
        # Without a GPU, say so: several processes (`accelerate launch --multi_gpu`,
        # torchrun) then form one gloo process group (Accelerate's MULTI_CPU) instead of
        # each training alone on all the data and writing the same output.
        use_cpu=not has_accelerator(),
    )


_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
_STAGING = re.compile(r"\.checkpoint-(\d+)\.partial")


def remove_staging(checkpoint_dir: str | Path) -> int:
    """Remove the ``.checkpoint-N.partial`` directories of killed saves; return how many.

    A kill can land at any step of a save: while staging (the step is saved again after
    resuming from an earlier checkpoint) but also after the rename into ``checkpoint-N``
    and before the emptied staging directory is removed (then no save of step N follows
    to remove it). One run writes a checkpoint directory at a time, so a staging
    directory found when a run starts or saves belongs to none in progress.
    """
    folder = Path(checkpoint_dir)
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    stale = [folder / n for n in names if _STAGING.fullmatch(n)]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)


def last_complete_checkpoint(checkpoint_dir: str | Path) -> str | None:
    """The newest complete checkpoint in ``checkpoint_dir``.

    :class:`RepresentationTrainer` renames a checkpoint into place only when it is
    complete, but a directory written by plain ``Trainer`` (which writes in place, with
    ``trainer_state.json`` last), or one a kill cut short while an old checkpoint was being
    deleted, can lack files; resuming from it would fail. Such directories are skipped
    (the next save at that step replaces them).
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return None
    complete = []
    for path in folder.iterdir():
        match = _CHECKPOINT.fullmatch(path.name)
        if not match or not path.is_dir() or not (path / "model.safetensors").is_file():
            continue
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        complete.append((int(match.group(1)), path))
    return str(max(complete)[1]) if complete else None


def _run_state(checkpoint: Path) -> dict[str, Any]:
    try:
        state = json.loads((checkpoint / RUN_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a checkpoint written before the file existed
    return state if isinstance(state, dict) else {}


def _skipped_steps(checkpoint: Path) -> list[int]:
    """The steps whose batch a resumed run had skipped (non-finite loss), from its checkpoint."""
    try:
        return [int(s) for s in _run_state(checkpoint).get("skipped_nonfinite_steps", [])]
    except (ValueError, TypeError):
        return []


def _epoch_order(checkpoint: Path) -> tuple[int, torch.Tensor] | None:
    """The RNG state the interrupted epoch's order was drawn from, from its checkpoint."""
    state = _run_state(checkpoint).get("epoch_order")
    if state is None:
        return None  # no grouped order, or written before it was kept
    try:
        return ResumableLengthGroupedSampler.read_state(state)
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptFileError(
            f"{checkpoint / RUN_STATE}: unreadable epoch_order ({e}); resume from an earlier "
            "checkpoint or drop --resume") from None


@torch.no_grad()
def evaluation_loss(
    composed: ComposedModel,
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 32,
) -> float:
    """Mean per-token loss of ``composed`` on ``dataset`` (rows with input_ids and labels)."""
    collate = seq2seq_collator(tokenizer)
    was_training = composed.training
    composed.eval()
    device = composed.base.device
    total, tokens = 0.0, 0
    columns = [c for c in ("input_ids", "attention_mask", "labels") if c in dataset.column_names]
    rows = dataset.select_columns(columns)
    for start in range(0, len(rows), batch_size):
        batch = collate([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = composed(**batch).logits
        mask = batch["labels"] != -100
        loss = torch.nn.functional.cross_entropy(
            logits[mask].float(), batch["labels"][mask], reduction="sum"
        )
        total, tokens = total + loss.item(), tokens + int(mask.sum())
    composed.train(was_training)
    if tokens == 0:
        raise LangTransferError("evaluation set has no target tokens")
    return total / tokens


class PassCallback(TrainerCallback):
    """Tells a training set whose examples differ from pass to pass (span corruption's
    fresh masks: :class:`~langtransfer.training.span_corruption.FreshMaskBlocks`) which
    pass begins. accelerate's ``set_epoch`` reaches a map-style dataset only in a single
    process (with several, only the sampler), so the epoch the Trainer gave the data
    loader is passed on here, before the epoch's first batch (and in the epoch a resumed
    run re-enters)."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        epoch = getattr(train_dataloader, "iteration", None)
        if isinstance(epoch, int):
            self.dataset.set_epoch(epoch)


def train_representation(
    composed: ComposedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Dataset,
    settings: TrainSettings,
    checkpoint_dir: str | Path,
    *,
    eval_dataset: Dataset | None = None,
    resume: bool = False,
    callbacks: list[TrainerCallback] | None = None,
    show_progress: bool = True,
) -> tuple[RepresentationTrainer, dict[str, Any]]:
    """Train the composed model's trainable representation; return the trainer and a summary.

    With ``resume`` the run continues from the last checkpoint in ``checkpoint_dir`` (and
    starts afresh if there is none). The summary goes into the representation's manifest.
    """
    if composed.trained_role is None:
        raise LangTransferError(
            "nothing to train: the composed model has no trainable representation"
        )
    if isinstance(train_dataset, Dataset):
        if len(train_dataset) == 0:
            raise LangTransferError("the training set is empty")
        if settings.group_by_length and "length" not in train_dataset.column_names:
            train_dataset = train_dataset.map(lambda r: {"length": len(r["input_ids"])})
    else:  # a stream, or blocks corrupted as they are read: no length column to group by
        settings = replace(settings, group_by_length=False)
    args = training_arguments(settings, checkpoint_dir, eval_dataset is not None)
    args.disable_tqdm = not show_progress
    if hasattr(train_dataset, "set_epoch") and not isinstance(
        train_dataset, torch.utils.data.IterableDataset
    ):  # a stream gets set_epoch from the data loader in every set-up
        callbacks = [*(callbacks or []), PassCallback(train_dataset)]
    trainer = RepresentationTrainer(
        model=composed,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=seq2seq_collator(tokenizer),
        callbacks=callbacks,
        skip_nonfinite=settings.skip_nonfinite,
    )
    if not show_progress:  # inside a study: one overall progress bar, no per-run log lines
        trainer.remove_callback(PrinterCallback)
    if trainer.args.should_save:
        remove_staging(checkpoint_dir)  # a resumed run may save no checkpoint at all
    last = last_complete_checkpoint(checkpoint_dir) if resume else None
    if last is not None:
        trainer.skipped_nonfinite = _skipped_steps(Path(last))
        trainer.resume_order = _epoch_order(Path(last))
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    trainer.check_finite_weights("at the end of training")  # keep-best may have reloaded
    summary = {
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "skipped_nonfinite_batches": len(trainer.skipped_nonfinite),
        "skipped_nonfinite_steps": trainer.skipped_nonfinite[:100],
        "runtime_seconds": round(time.perf_counter() - started, 2),
        "resumed_from": Path(last).name if last else None,
        "world_size": trainer.args.world_size,  # processes (the global batch is batch × this)
        "best_checkpoint": Path(trainer.state.best_model_checkpoint).name
        if trainer.state.best_model_checkpoint
        else None,
        "settings": settings.to_dict(),
    }
    return trainer, summary
