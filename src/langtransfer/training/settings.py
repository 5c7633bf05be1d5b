"""Training settings: what a training run may set, checked, and the paper's defaults per
representation kind. Torch-free: a study config checks and hashes them without loading
a model (the Trainer that reads them is :mod:`langtransfer.training.trainer`'s)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.representations.kinds import get_kind

OPTIMIZERS = {"adafactor": "adafactor", "adamw": "adamw_torch"}
#: Learning-rate schedules (transformers' names). The reference sets none, so both kinds
#: get transformers' default: linear decay to 0 over ``max_steps`` after the warm-up.
LR_SCHEDULERS = ("linear", "constant")


#: The type of each TrainSettings field, by its annotation (None: may be null).
_FIELD_TYPES: dict[str, tuple] = {
    "int": (int,),
    "int | None": (int, None),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list[str]": (list, str),
}


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
    lr_scheduler: str = "linear"
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
    #: Skip a batch whose loss is NaN or infinite (counted) instead of stopping.
    skip_nonfinite: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):  # values from YAML or JSON: check their types first
            value, wanted = getattr(self, f.name), _FIELD_TYPES[str(f.type)]
            if value is None and None in wanted:
                continue
            ok = any(isinstance(value, t) for t in wanted if t is not None)
            if not ok or (isinstance(value, bool) and bool not in wanted):
                names = " or ".join("null" if t is None else t.__name__ for t in wanted)
                raise LangTransferError(f"{f.name} must be {names}, got {value!r:.40}")
            if isinstance(value, float) and not math.isfinite(value):
                raise LangTransferError(f"{f.name} must be a finite number, got {value}")
        if isinstance(self.report_to, list) and not all(isinstance(r, str) for r in self.report_to):
            raise LangTransferError(
                f"report_to must list integration names, got {self.report_to!r:.40}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise UnknownNameError("optimizer", self.optimizer, OPTIMIZERS)
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise UnknownNameError("lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)
        for name in (
            "max_steps",
            "batch_size",
            "save_steps",
            "logging_steps",
            "gradient_accumulation_steps",
            "eval_batch_size",
            "eval_steps",
            "save_total_limit",
        ):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise LangTransferError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "dataloader_num_workers", "learning_rate", "weight_decay"):
            if getattr(self, name) < 0:
                raise LangTransferError(f"{name} must be >= 0, got {getattr(self, name)}")
        if isinstance(self.report_to, str):
            self.report_to = [self.report_to]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["skip_nonfinite"]:
            # Omitted at its default, so the settings hashes of studies run before the
            # option existed stay valid (their artefacts are not rebuilt).
            del d["skip_nonfinite"]
        return d


def default_settings(kind: str, role: str, **overrides: Any) -> TrainSettings:
    """The paper's settings: the kind's optimiser settings (its ``training_defaults``:
    prompts Adafactor lr 0.5 wd 1e-5, adapters AdamW lr 5e-5), with linear decay to 0 and
    no warm-up for every kind (the reference's transformers defaults); 100k steps for
    language representations, 50k (evaluated every 1000, best kept) for task."""
    base = TrainSettings(**get_kind(kind).training_defaults)
    if role == "task":
        base = replace(base, max_steps=50_000, eval_steps=1000, keep_best=True)
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
