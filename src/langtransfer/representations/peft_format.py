"""Soft prompts in PEFT's prompt-tuning format: loading the authors' published prompts, export.

A PEFT prompt-tuning directory holds ``adapter_config.json`` (``peft_type: PROMPT_TUNING``,
``num_virtual_tokens``, ``token_dim``, ``num_transformer_submodules``...) and one tensor,
``prompt_embeddings``, in ``adapter_model.safetensors`` — or, from older code such as the
paper's reference implementation, in a pickled ``adapter_model.bin``. A pickle is never
loaded here: :func:`convert_peft_bin` reads it once with ``torch.load(weights_only=True)``
and writes safetensors.

The tensor has ``num_virtual_tokens × num_transformer_submodules`` rows; for seq2seq models
PEFT (and the reference) default to 2 submodules, yet both prepend only the first
``num_virtual_tokens`` rows to the encoder input and never use the rest. Those first rows
are the prompt here. Export writes ``num_transformer_submodules: 1`` and just those rows,
so every PEFT version reads it as an encoder prompt (PEFT before 0.4 fed a second half to
the decoder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from transformers import PreTrainedModel

from langtransfer.base.loading import fingerprint, hidden_size
from langtransfer.configurations import ROLES
from langtransfer.errors import (
    CorruptFileError,
    IncompatibleModelError,
    LangTransferError,
    OutputExistsError,
    UnknownNameError,
)
from langtransfer.io import atomic_dir, os_error_from, write_json
from langtransfer.languages import all_languages, get_language
from langtransfer.representations.base import Representation
from langtransfer.representations.kinds.prompt import PromptConfig
from langtransfer.representations.location import MANIFEST, resolve_location
from langtransfer.representations.prompt import SoftPrompt

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_PICKLE = "adapter_model.bin"
PEFT_KEY = "prompt_embeddings"
PEFT_TYPE = "PROMPT_TUNING"
#: PEFT's task type of a prompt -> the base family it was made for (both prepend the
#: prompt to the input embeddings, as langtransfer does).
TASK_TYPES = {"SEQ_2_SEQ_LM": "seq2seq", "CAUSAL_LM": "causal"}
#: Beside an exported prompt: its role, language/task and base fingerprint (PEFT ignores it).
ORIGIN = "langtransfer.json"
#: What a hub download fetches to load a PEFT prompt, and to convert one (never other pickles).
LOAD_FILES = (PEFT_CONFIG, PEFT_WEIGHTS, ORIGIN)
CONVERT_FILES = (PEFT_CONFIG, PEFT_PICKLE)

# PEFT's (and the reference's) init names -> langtransfer's PromptConfig.init
_INIT_FROM_PEFT = {"TEXT": "text", "SAMPLE_VOCAB": "vocab", "SAMPLED": "vocab",
                   "RANDOM": "random", "CLASS": "labels"}
_INIT_TO_PEFT = {"text": "TEXT", "vocab": "SAMPLE_VOCAB", "random": "RANDOM", "labels": "RANDOM"}


@dataclass(frozen=True)
class PeftPromptConfig:
    """The fields of a PEFT prompt-tuning ``adapter_config.json`` that loading uses."""

    path: Path
    num_virtual_tokens: int
    token_dim: int | None
    num_transformer_submodules: int | None
    base_model: str | None
    init: str | None
    init_text: str | None
    raw: dict[str, Any]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"{path}: not valid JSON ({e})") from e


def is_peft_dir(directory: str | Path) -> bool:
    """A directory with a PEFT ``adapter_config.json`` (``peft_type``) and no langtransfer
    manifest; the `adapters` library's config of the same name has no ``peft_type``."""
    directory = Path(directory)
    path = directory / PEFT_CONFIG
    if (directory / MANIFEST).is_file() or not path.is_file():
        return False
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "peft_type" in config


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def read_peft_config(directory: str | Path) -> PeftPromptConfig:
    """The PEFT config of ``directory``, checked to be a seq2seq or causal prompt-tuning one."""
    path = Path(directory) / PEFT_CONFIG
    if not path.is_file():
        raise CorruptFileError(f"{directory}: missing {PEFT_CONFIG} (not a PEFT directory)")
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise CorruptFileError(f"{path}: not a PEFT config (a JSON object)")
    peft_type = raw.get("peft_type")
    if peft_type != PEFT_TYPE:
        raise LangTransferError(
            f"{path}: peft_type {peft_type!r} is not a soft prompt langtransfer can load; "
            f"valid: {PEFT_TYPE}"
        )
    task_type = raw.get("task_type")
    if task_type is not None and task_type not in TASK_TYPES:
        raise LangTransferError(
            f"{path}: task_type {task_type!r} is not for a seq2seq or causal base model; "
            f"valid: {', '.join(TASK_TYPES)}"
        )
    n = raw.get("num_virtual_tokens")
    if not isinstance(n, int) or not _positive(n):
        raise CorruptFileError(f"{path}: num_virtual_tokens must be a positive integer, got {n!r}")
    submodules = raw.get("num_transformer_submodules")
    if submodules is not None and submodules not in (1, 2):
        raise CorruptFileError(
            f"{path}: num_transformer_submodules {submodules!r} is not one of 1, 2 (or null)"
        )
    dim = raw.get("token_dim")
    if dim is not None and not _positive(dim):
        raise CorruptFileError(f"{path}: token_dim must be a positive integer, got {dim!r}")
    text = raw.get("prompt_tuning_init_text")
    return PeftPromptConfig(
        path=path,
        num_virtual_tokens=n,
        token_dim=dim,
        num_transformer_submodules=submodules,
        base_model=raw.get("base_model_name_or_path"),
        init=raw.get("prompt_tuning_init"),
        init_text=text if isinstance(text, str) else None,
        raw=raw,
    )


def _read_weights(path: Path) -> torch.Tensor:
    """``prompt_embeddings`` from a safetensors file, checked to be a finite matrix."""
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())  # noqa: SIM118 (safe_open has no __iter__)
            if PEFT_KEY not in keys:
                raise CorruptFileError(f"{path}: no tensor {PEFT_KEY!r} (has {sorted(keys)})")
            weights = f.get_tensor(PEFT_KEY)
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise CorruptFileError(f"{path}: not a readable safetensors file ({e})") from e
    return _checked_matrix(weights, path)


def _checked_matrix(weights: torch.Tensor, path: Path) -> torch.Tensor:
    if weights.dim() != 2 or not weights.is_floating_point():
        raise CorruptFileError(
            f"{path}: {PEFT_KEY!r} must be a float matrix, got {weights.dtype} "
            f"of shape {list(weights.shape)}"
        )
    if not torch.isfinite(weights).all():
        raise CorruptFileError(f"{path}: {PEFT_KEY!r} holds NaN or infinite values")
    return weights


def _encoder_rows(weights: torch.Tensor, config: PeftPromptConfig, path: Path) -> torch.Tensor:
    """The rows the encoder reads: the first ``num_virtual_tokens`` of n × submodules."""
    n, (rows, width) = config.num_virtual_tokens, weights.shape
    submodules = config.num_transformer_submodules or (rows // n if rows in (n, 2 * n) else 0)
    if rows != n * submodules:
        raise CorruptFileError(
            f"{path}: {PEFT_KEY!r} has {rows} rows but the config says num_virtual_tokens {n} "
            f"x num_transformer_submodules {config.num_transformer_submodules} "
            f"(valid: {n} or {2 * n} rows)"
        )
    if config.token_dim is not None and width != config.token_dim:
        raise CorruptFileError(
            f"{path}: {PEFT_KEY!r} is {width} wide but the config says token_dim "
            f"{config.token_dim}"
        )
    return weights[:n]


def _prompt_config(config: PeftPromptConfig) -> PromptConfig:
    """How the prompt was initialised, in langtransfer's terms (a record; weights are given)."""
    init = _INIT_FROM_PEFT.get(str(config.init).upper(), "random")
    text = config.init_text
    if init == "text" and not text:
        init = "random"
    labels = None
    if init == "labels" and text:
        labels = [w.strip() for w in text.split(",") if w.strip()]
    if init == "labels" and not labels:
        init = "random"
    return PromptConfig(
        num_tokens=config.num_virtual_tokens,
        init=init,
        init_text=text if init == "text" else None,
        label_words=labels,
    )


def _language_of_instruction(text: str | None) -> str | None:
    """The language whose instruction (``Generate the output in Slovak:``) is ``text``."""
    return next((lang.code for lang in all_languages() if lang.instruction == text), None)


def _subject(
    config: PeftPromptConfig,
    role: str | None,
    language: str | None,
    task: str | None,
) -> tuple[str, str | None, str | None]:
    """(role, language, task): what the caller said, else what the init text tells."""
    where = config.path.parent
    if role is not None and role not in ROLES:
        raise UnknownNameError("representation role", role, ROLES)
    if language is not None and task is not None:
        raise LangTransferError(f"{where}: give a language or a task for the prompt, not both")
    if role is None:
        role = "language" if language else "task" if task else None
    elif (role == "language" and task) or (role == "task" and language):
        # the other role's subject would be dropped without a word
        given, wanted = ("task", "language") if role == "language" else ("language", "task")
        raise LangTransferError(
            f"{where}: a {role} prompt is for a {wanted}, not a {given} ({given} "
            f"{task or language!r} given); pass --{wanted}, or --role {given}"
        )
    if role is None and _language_of_instruction(config.init_text):
        role = "language"
    if role not in ROLES:
        raise LangTransferError(
            f"{where}: cannot tell whether this PEFT prompt is a language or a task prompt "
            f"(init text {config.init_text!r} is no language's instruction); pass the role "
            f"({', '.join(ROLES)}) and its language or task, e.g. `langtransfer import-peft "
            f"{where} OUT --role language --language sk`"
        )
    if role == "language":
        code = language or _language_of_instruction(config.init_text)
        if code is None:
            raise LangTransferError(
                f"{where}: which language is this prompt for? Its init text "
                f"{config.init_text!r} is no language's instruction; pass the language "
                f"(--language CODE)"
            )
        return role, get_language(code).code, None
    if not task:
        raise LangTransferError(f"{where}: a task prompt needs its task name (--task NAME)")
    return role, None, task


def _read_origin(directory: Path) -> dict[str, Any]:
    """What langtransfer's export recorded beside the PEFT files ({} if not exported by it)."""
    path = directory / ORIGIN
    if not path.is_file():
        return {}
    origin = _read_json(path)
    fields = ("role", "language", "task")
    if not isinstance(origin, dict) or any(
        origin.get(k) is not None and not isinstance(origin[k], str) for k in fields
    ):
        raise CorruptFileError(f"{path}: must map role, language, task to strings")
    return origin


def check_width(width: int, declared_base: str | None, model: PreTrainedModel, what: str) -> None:
    """A prompt ``width`` wide (made for ``declared_base``) must match ``model``'s d_model."""
    d_model = hidden_size(model)
    if width != d_model:
        raise IncompatibleModelError(
            f"{what} is {width} wide (made for base model {declared_base!r}) but base model "
            f"{fingerprint(model)['name']!r} has d_model {d_model}"
        )


def load_peft_prompt(
    location: str | Path,
    *,
    role: str | None = None,
    language: str | None = None,
    task: str | None = None,
    model: PreTrainedModel | None = None,
) -> Representation:
    """A PEFT prompt-tuning directory (or hub id) as a langtransfer language or task prompt.

    ``role`` and ``language``/``task`` say what it is; left out, a prompt whose init text is
    a language's instruction (the authors' ``Generate the output in {Language}:``) is that
    language's prompt. With ``model`` the width is checked now and the representation
    records that base's fingerprint; without, it records the width and the config's
    ``base_model_name_or_path``, which composition checks.
    """
    directory = resolve_location(location, patterns=LOAD_FILES)
    config = read_peft_config(directory)
    origin = _read_origin(directory)
    if role is None and language is None and task is None:
        role, language, task = origin.get("role"), origin.get("language"), origin.get("task")
    role, language, task = _subject(config, role, language, task)
    weights_path = directory / PEFT_WEIGHTS
    if not weights_path.is_file():
        pickled = (directory / PEFT_PICKLE).is_file()
        raise CorruptFileError(
            f"{directory}: "
            + (f"the weights are in {PEFT_PICKLE}, a pickle, which langtransfer never loads"
               if pickled else f"missing {PEFT_WEIGHTS} (weights load from safetensors only)")
            + f"; a prompt shipped as {PEFT_PICKLE} needs converting once: `langtransfer "
            f"convert-peft {location} DIR`, then load DIR"
        )
    stored = _read_weights(weights_path)
    weights = _encoder_rows(stored, config, weights_path)
    family = TASK_TYPES.get(config.raw.get("task_type") or "")
    if model is not None:
        check_width(weights.shape[1], config.base_model, model, f"PEFT prompt {location}")
        base = fingerprint(model)
        if family is not None and family != base["family"]:
            raise IncompatibleModelError(
                f"PEFT prompt {location} is for a {family} base (task_type "
                f"{config.raw['task_type']}) but base model {base['name']!r} is {base['family']}"
            )
    elif isinstance(origin.get("base_model"), dict) and \
            origin["base_model"].get("d_model") == weights.shape[1]:
        base = origin["base_model"]
    else:
        base = {"name": config.base_model or "", "d_model": int(weights.shape[1])}
        if family is not None:  # composition then refuses a base of the other family
            base["family"] = family
    prompt = SoftPrompt(*weights.shape)
    with torch.no_grad():
        prompt.embedding.copy_(weights.float())
    imported = {
        "format": f"peft {PEFT_TYPE}",
        "location": str(location),
        "base_model_name_or_path": config.base_model,
        "num_transformer_submodules": config.num_transformer_submodules,
        "rows_in_file": int(stored.shape[0]),
    }
    return Representation(
        kind="prompt",
        role=role,
        language=language,
        task=task,
        spec=_prompt_config(config),
        weights=prompt,
        base_model=base,
        training={"imported_from": imported},
    )


def _check_output(directory: Path, overwrite: bool) -> None:
    taken = directory.exists() and (not directory.is_dir() or any(directory.iterdir()))
    if taken and not overwrite:
        raise OutputExistsError(
            f"{directory} already holds files; pass overwrite=True (--overwrite) to replace them"
        )


def _write_peft_dir(
    directory: Path,
    config: dict[str, Any],
    weights: torch.Tensor,
    origin: dict[str, Any] | None = None,
) -> Path:
    with atomic_dir(directory, overwrite=True) as tmp:
        if origin is not None:
            write_json(tmp / ORIGIN, origin)
        try:
            save_file({PEFT_KEY: weights.detach().to("cpu").contiguous()},
                      str(tmp / PEFT_WEIGHTS), metadata={"format": "pt"})
        except SafetensorError as e:  # an I/O error (no space...) as safetensors reports it
            raise os_error_from(e) from e
        write_json(tmp / PEFT_CONFIG, config)
    return directory


def convert_peft_bin(
    source: str | Path, destination: str | Path, *, overwrite: bool = False
) -> Path:
    """Rewrite a PEFT prompt whose weights are a pickled ``adapter_model.bin`` as safetensors.

    The pickle is read with ``torch.load(weights_only=True)``, which builds only tensors and
    plain containers and refuses any other object, so no code in the file can run. The
    result is a PEFT directory (config unchanged, all stored rows kept) that PEFT and
    :func:`load_peft_prompt` read.
    """
    destination = Path(destination)
    _check_output(destination, overwrite)
    directory = resolve_location(source, patterns=CONVERT_FILES)
    config = read_peft_config(directory)
    pickled = directory / PEFT_PICKLE
    if not pickled.is_file():
        has_safetensors = (directory / PEFT_WEIGHTS).is_file()
        has = f"has {PEFT_WEIGHTS}: load it directly" if has_safetensors else "no weights at all"
        raise CorruptFileError(f"{directory}: no {PEFT_PICKLE} to convert ({has})")
    try:
        state = torch.load(pickled, map_location="cpu", weights_only=True)
    except Exception as e:  # an untrusted file: whatever it holds, one line and no traceback
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CorruptFileError(
            f"{pickled}: refused by torch.load(weights_only=True), which loads only tensors "
            f"({detail[:200]})"
        ) from e
    if not isinstance(state, dict) or not isinstance(state.get(PEFT_KEY), torch.Tensor):
        found = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise CorruptFileError(f"{pickled}: no tensor {PEFT_KEY!r} (holds {found})")
    weights = _checked_matrix(state[PEFT_KEY], pickled)
    _encoder_rows(weights, config, pickled)  # rows and width agree with the config
    return _write_peft_dir(destination, config.raw, weights)


def _soft_prompt(rep: Representation) -> SoftPrompt:
    """A prompt's weights; another kind is refused (this is PEFT's prompt-tuning format,
    a prompt kind's interchange format: the one place outside the kind that knows it)."""
    if not isinstance(rep.weights, SoftPrompt):
        raise LangTransferError(
            f"{rep.name} is of kind {rep.kind}; PEFT export is for soft prompts (valid: prompt). "
            "An adapter directory is already in the `adapters` library's format"
        )
    return rep.weights


def peft_config_of(rep: Representation, base_model_name_or_path: str | None = None) -> dict:
    """The PEFT ``adapter_config.json`` of a langtransfer prompt (encoder rows only)."""
    prompt = _soft_prompt(rep)
    config = rep.spec if isinstance(rep.spec, PromptConfig) else None
    base = rep.base_model or {}
    name = base_model_name_or_path or base.get("name") or None
    init = config.init if config else "random"
    text = config.init_text if config and init == "text" else None
    return {
        "peft_type": PEFT_TYPE,
        "task_type": next(t for t, f in TASK_TYPES.items()
                          if f == base.get("family", "seq2seq")),
        "base_model_name_or_path": name,
        "revision": None,
        "inference_mode": True,
        "num_virtual_tokens": prompt.num_tokens,
        "token_dim": prompt.dim,
        # 1, not PEFT's seq2seq default 2: only encoder rows exist, and every PEFT version
        # then prepends them to the encoder alone, as langtransfer does.
        "num_transformer_submodules": 1,
        "num_attention_heads": None,
        "num_layers": base.get("num_layers"),
        "prompt_tuning_init": _INIT_TO_PEFT[init],
        "prompt_tuning_init_text": text,
        # PEFT requires a tokenizer for TEXT init (used only if trained further).
        "tokenizer_name_or_path": name if init == "text" else None,
        "tokenizer_kwargs": None,
        "modules_to_save": None,
        "auto_mapping": None,
    }


def export_peft_prompt(
    rep: Representation,
    directory: str | Path,
    *,
    base_model_name_or_path: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a langtransfer prompt as a PEFT prompt-tuning directory.

    ``peft.PeftModel.from_pretrained(base, directory)`` on the same base then prepends the
    same embeddings to the encoder input. ``base_model_name_or_path`` (default: the name the
    representation records) is what PEFT users load the base from.
    """
    directory = Path(directory)
    weights = _soft_prompt(rep)().detach().to(torch.float32)  # the rows the encoder uses
    _check_output(directory, overwrite)
    origin = {"role": rep.role, "language": rep.language, "task": rep.task,
              "base_model": rep.base_model}
    return _write_peft_dir(
        directory, peft_config_of(rep, base_model_name_or_path), weights, origin
    )
