"""Training one representation on top of transformers' ``Trainer``.

``Trainer`` brings checkpoints, ``--resume``, progress bars, logging integrations,
mixed precision and multi-process / multi-GPU training through Accelerate
(``accelerate launch -m langtransfer ...``). What this module adds: checkpoints that hold
only the trained representation (not the frozen base), the paper's defaults per
representation kind, and a training summary for the representation's manifest.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import (
    DataCollatorForSeq2Seq,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback

from langtransfer.compose import ComposedModel
from langtransfer.errors import CorruptFileError, LangTransferError, UnknownNameError

OPTIMIZERS = {"adafactor": "adafactor", "adamw": "adamw_torch"}


@dataclass
class TrainSettings:
    """Training hyper-parameters; :func:`default_settings` gives the paper's per kind."""

    max_steps: int = 100_000
    batch_size: int = 32
    eval_batch_size: int | None = None
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    warmup_steps: int = 0
    gradient_accumulation_steps: int = 1
    save_steps: int = 1000
    save_total_limit: int | None = 2
    eval_steps: int | None = None
    keep_best: bool = False
    logging_steps: int = 50
    seed: int = 42
    bf16: bool = False
    fp16: bool = False
    group_by_length: bool = True
    report_to: list[str] = field(default_factory=lambda: ["none"])
    dataloader_num_workers: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UnknownNameError("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("max_steps", "batch_size", "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise LangTransferError(f"{name} must be >= 1, got {getattr(self, name)}")
        if isinstance(self.report_to, str):
            self.report_to = [self.report_to]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_settings(kind: str, role: str, **overrides: Any) -> TrainSettings:
    """The paper's settings: prompts Adafactor lr 0.5 wd 1e-5, adapters AdamW lr 5e-5;
    100k steps for language representations, 50k (evaluated every 1000, best kept) for task."""
    if kind == "prompt":
        base = TrainSettings(optimizer="adafactor", learning_rate=0.5, weight_decay=1e-5)
    elif kind == "adapter":
        base = TrainSettings(optimizer="adamw", learning_rate=5e-5, weight_decay=0.0)
    else:
        raise UnknownNameError("representation kind", kind, ["adapter", "prompt"])
    if role == "task":
        base = replace(base, max_steps=50_000, eval_steps=1000, keep_best=True)
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


class RepresentationTrainer(Trainer):
    """A ``Trainer`` whose checkpoints hold only the trainable representation's weights.

    ``Trainer`` saves a non-``PreTrainedModel``'s state dict as ``model.safetensors`` and
    loads it back with ``strict=False``, so saving just the trainable tensors keeps
    resume and keep-best working while a checkpoint of mT0-base shrinks from ~2.3 GB
    to the representation's size.
    """

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        model = self.accelerator.unwrap_model(self.model)
        state_dict = {n: p.detach().cpu().contiguous() for n, p in model.trainable_parameters().items()}
        super()._save(output_dir, state_dict=state_dict)

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


class NonFiniteLossError(LangTransferError):
    """Training produced a NaN or infinite loss."""


class _StopOnNonFinite(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss {loss} at step {state.global_step}; the last good "
                f"checkpoint is kept in {args.output_dir} (lower the learning rate, or use "
                "fp32 instead of fp16)"
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


def training_arguments(settings: TrainSettings, checkpoint_dir: str | Path, has_eval: bool) -> TrainingArguments:
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
        lr_scheduler_type="linear" if settings.optimizer == "adamw" else "constant",
        save_strategy="steps",
        save_steps=settings.eval_steps if evaluate and settings.keep_best else settings.save_steps,
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


def last_complete_checkpoint(checkpoint_dir: str | Path) -> str | None:
    """The newest checkpoint in ``checkpoint_dir`` that a kill did not cut short.

    Trainer writes a checkpoint's files in place and ``trainer_state.json`` last, so a run
    killed while saving leaves a newer directory without a readable state; resuming from
    it would fail. Such directories are skipped (the next save overwrites them).
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return None
    complete = []
    for path in folder.iterdir():
        match = _CHECKPOINT.fullmatch(path.name)
        if not match or not path.is_dir():
            continue
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        complete.append((int(match.group(1)), path))
    return str(max(complete)[1]) if complete else None


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
        loss = torch.nn.functional.cross_entropy(logits[mask].float(), batch["labels"][mask], reduction="sum")
        total, tokens = total + loss.item(), tokens + int(mask.sum())
    composed.train(was_training)
    if tokens == 0:
        raise LangTransferError("evaluation set has no target tokens")
    return total / tokens


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
        raise LangTransferError("nothing to train: the composed model has no trainable representation")
    if isinstance(train_dataset, Dataset):
        if len(train_dataset) == 0:
            raise LangTransferError("the training set is empty")
        if settings.group_by_length and "length" not in train_dataset.column_names:
            train_dataset = train_dataset.map(lambda r: {"length": len(r["input_ids"])})
    else:  # a stream has no length to group by
        settings = replace(settings, group_by_length=False)
    args = training_arguments(settings, checkpoint_dir, eval_dataset is not None)
    args.disable_tqdm = not show_progress
    trainer = RepresentationTrainer(
        model=composed,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=seq2seq_collator(tokenizer),
        callbacks=[_StopOnNonFinite(), *(callbacks or [])],
    )
    if not show_progress:  # inside a study: one overall progress bar, no per-run log lines
        trainer.remove_callback(PrinterCallback)
    last = last_complete_checkpoint(checkpoint_dir) if resume else None
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    summary = {
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "runtime_seconds": round(time.perf_counter() - started, 2),
        "resumed_from": Path(last).name if last else None,
        "world_size": trainer.args.world_size,  # processes (the global batch is batch × this)
        "best_checkpoint": Path(trainer.state.best_model_checkpoint).name
        if trainer.state.best_model_checkpoint
        else None,
        "settings": settings.to_dict(),
    }
    return trainer, summary
