"""Saving and loading representation directories.

A representation directory holds ``manifest.json`` (what it is, which base model it fits,
how it was initialised and trained) and its weights in safetensors: ``prompt.safetensors``
for a prompt, or the `adapters` library's AdapterHub files (``adapter_config.json`` +
``adapter.safetensors``) for an adapter, so AdapterHub tooling can read it directly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel

from langtransfer import __version__
from langtransfer.base.loading import fingerprint
from langtransfer.errors import CorruptFileError, LangTransferError, OutputExistsError
from langtransfer.io import atomic_dir, os_error_from, recover, write_json
from langtransfer.representations import peft_format
from langtransfer.representations.adapter import AdapterSpec
from langtransfer.representations.base import KINDS, ROLES, Representation
from langtransfer.representations.location import (  # noqa: F401  (old import path)
    HUB_PATTERNS,
    MANIFEST,
    resolve_location,
)
from langtransfer.representations.prompt import PromptConfig, SoftPrompt

PROMPT_WEIGHTS = "prompt.safetensors"
ADAPTER_WEIGHTS = "adapter.safetensors"  # the `adapters` library's safetensors file name
ADAPTER_CONFIG = "adapter_config.json"
FORMAT = "langtransfer.representation"
FORMAT_VERSION = 1



def manifest_of(
    rep: Representation,
    training: dict[str, Any] | None = None,
    base_model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": rep.kind,
        "role": rep.role,
        "language": rep.language,
        "task": rep.task,
        "name": rep.label,
        "base_model": base_model if base_model is not None else rep.base_model,
        "prompt": rep.prompt_config.to_dict() if rep.prompt_config else None,
        "adapter": rep.adapter.to_dict() if rep.adapter else None,
        "training": training if training is not None else rep.training,
        "settings_hash": rep.settings_hash,
        "langtransfer_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a representation directory, checked for the fields loading needs.

    A directory whose replacement a kill interrupted is first put back (see
    :func:`langtransfer.io.recover`).
    """
    recover(directory)
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise CorruptFileError(f"{directory} is not a langtransfer representation: no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"{path}: not valid JSON ({e})") from e
    except OSError as e:
        raise CorruptFileError(f"{path}: cannot read ({e.strerror or e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CorruptFileError(f"{path}: not a {FORMAT} manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise CorruptFileError(
            f"{path}: format_version {version!r} is not one this langtransfer reads "
            f"(up to {FORMAT_VERSION}); a newer langtransfer wrote it?"
        )
    if manifest.get("kind") not in KINDS or manifest.get("role") not in ROLES:
        raise CorruptFileError(
            f"{path}: kind {manifest.get('kind')!r} / role {manifest.get('role')!r} must be "
            f"one of {KINDS} / {ROLES}"
        )
    base = manifest.get("base_model")
    if not isinstance(base, dict):
        raise CorruptFileError(f"{path}: no base_model fingerprint")
    if not _positive_int(base.get("d_model")):
        raise CorruptFileError(f"{path}: base_model.d_model must be a positive integer, got "
                               f"{base.get('d_model')!r:.40}")
    for key in ("language", "task"):
        if manifest.get(key) is not None and not isinstance(manifest[key], str):
            raise CorruptFileError(f"{path}: {key} must be a string, got {manifest[key]!r:.40}")
    return manifest


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def save_representation(
    rep: Representation,
    directory: str | Path,
    *,
    model: PreTrainedModel | None = None,
    training: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``rep`` to ``directory`` atomically (the old content stays until it is complete).

    An adapter's weights are read from ``model``, where it is attached. A directory that
    already holds something is replaced only with ``overwrite``.
    """
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"{directory} already holds files; pass overwrite=True (--overwrite) to replace them"
        )
    base_model = rep.base_model
    if base_model is None and model is not None:
        base_model = fingerprint(model)  # a fresh adapter learns its base when attached
    with atomic_dir(directory, overwrite=True) as tmp:
        FORMATS[rep.kind].save(rep, tmp, model)
        write_json(tmp / MANIFEST, manifest_of(rep, training, base_model))
    return directory


def _save_prompt(rep: Representation, directory: Path, model: PreTrainedModel | None) -> None:
    weights = rep.soft_prompt.embedding.detach().to("cpu", torch.float32).contiguous()
    try:
        save_file({"embedding": weights}, str(directory / PROMPT_WEIGHTS))
    except SafetensorError as e:  # an I/O error (no space...) as safetensors reports it
        raise os_error_from(e) from e


def _save_adapter(rep: Representation, directory: Path, model: PreTrainedModel | None) -> None:
    if model is None or rep.name not in getattr(model, "adapters_config", {}):
        raise LangTransferError(f"adapter {rep.name} is not attached to the given model")
    adapter_model: Any = model  # save_adapter is added by the `adapters` library
    adapter_model.save_adapter(str(directory), rep.name, with_head=False, use_safetensors=True)
    _name_adapter_files(directory, rep.id, rep.label)


def _name_adapter_files(directory: Path, slot: str, name: str) -> None:
    """AdapterHub files carry the adapter's name in the config and in every weight's key:
    the readable label (``task_qa``), not the id, which is only unique within one base."""
    path = directory / ADAPTER_CONFIG
    config = json.loads(path.read_text(encoding="utf-8"))
    config["name"] = name
    write_json(path, config)
    weights = directory / ADAPTER_WEIGHTS
    tensors = load_file(str(weights))
    part = f".{slot}."
    renamed = {k.replace(part, f".{name}.", 1) if part in k else k: v for k, v in tensors.items()}
    try:
        save_file(renamed, str(weights))
    except SafetensorError as e:
        raise os_error_from(e) from e


def content_hash(directory: Path, kind: str) -> str:
    """A hash of what a representation directory's weights are: the weight file and the
    config that shapes it (the manifest's provenance is left out)."""
    files = FORMATS[kind].files
    digest = hashlib.sha256()
    for name in files:
        with open(directory / name, "rb") as f:
            digest.update(name.encode() + b"\0")
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _check_safetensors(path: Path, expected: dict[str, tuple[int, ...]] | None = None) -> None:
    """The file is safetensors, holds ``expected`` shapes, and only finite numbers."""
    if not path.is_file():
        raise CorruptFileError(
            f"{path.parent}: missing {path.name} (weights are loaded from safetensors only)"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
            broken = [k for k in shapes if not torch.isfinite(f.get_tensor(k)).all()]
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise CorruptFileError(f"{path}: not a readable safetensors file ({e})") from e
    if not shapes:
        raise CorruptFileError(f"{path}: holds no tensors")
    if broken:
        raise CorruptFileError(f"{path}: tensor {broken[0]!r} holds NaN or infinite values")
    for key, shape in (expected or {}).items():
        if key not in shapes:
            raise CorruptFileError(f"{path}: no tensor {key!r} (has {sorted(shapes)})")
        if shapes[key] != shape:
            raise CorruptFileError(
                f"{path}: tensor {key!r} has shape {list(shapes[key])} but the manifest "
                f"says {list(shape)}"
            )


def load_representation(location: str | Path) -> Representation:
    """Load a representation from a directory or a hub id; weights are checked, not trusted.

    A PEFT prompt-tuning directory (no manifest) loads through
    :func:`~langtransfer.representations.peft_format.load_peft_prompt`.
    """
    directory = resolve_location(location)
    if peft_format.is_peft_dir(directory):
        return peft_format.load_peft_prompt(location)  # errors and provenance name a hub id
    m = read_manifest(directory)
    try:
        training = m.get("training") or {}
        if not isinstance(training, dict):
            raise CorruptFileError(f"{directory / MANIFEST}: training must be a mapping")
        common = dict(
            kind=m["kind"],
            role=m["role"],
            language=m.get("language"),
            task=m.get("task"),
            base_model=m["base_model"],
            training=training,
            settings_hash=m.get("settings_hash"),
        )
        return FORMATS[m["kind"]].load(directory, m, common)
    except CorruptFileError:
        raise
    except LangTransferError as e:  # a bad value in the manifest (unknown init, no language...)
        raise CorruptFileError(f"{directory / MANIFEST}: {e}") from e
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise CorruptFileError(f"{directory / MANIFEST}: malformed manifest ({e})") from e


def _load_prompt(directory: Path, m: dict[str, Any], common: dict[str, Any]) -> Representation:
    config = PromptConfig(**(m.get("prompt") or {}))
    shape = (config.rows, int(m["base_model"]["d_model"]))  # parameter_rows: all stored
    weights = directory / PROMPT_WEIGHTS
    _check_safetensors(weights, {"embedding": shape})
    prompt = SoftPrompt(config.num_tokens, shape[1], config.parameter_rows)
    with safe_open(str(weights), framework="pt") as f, torch.no_grad():
        prompt.embedding.copy_(f.get_tensor("embedding"))
    return Representation(prompt=prompt, prompt_config=config, path=directory,
                          content_hash=content_hash(directory, "prompt"), **common)


def _load_adapter(directory: Path, m: dict[str, Any], common: dict[str, Any]) -> Representation:
    _check_safetensors(directory / ADAPTER_WEIGHTS)
    _check_adapter_config(directory, m)
    spec = AdapterSpec(**(m.get("adapter") or {}))
    return Representation(adapter=spec, path=directory,
                          content_hash=content_hash(directory, "adapter"), **common)


@dataclass(frozen=True)
class StoredFormat:
    """How one representation kind's weights are written and read (the manifest beside
    them is common to all kinds)."""

    files: tuple[str, ...]  # the weight files, also what the content hash covers
    save: Callable[[Representation, Path, PreTrainedModel | None], None]
    load: Callable[[Path, dict[str, Any], dict[str, Any]], Representation]


#: kind -> its stored format; a new kind adds its entry here.
FORMATS: dict[str, StoredFormat] = {
    "prompt": StoredFormat((PROMPT_WEIGHTS,), _save_prompt, _load_prompt),
    "adapter": StoredFormat((ADAPTER_WEIGHTS, ADAPTER_CONFIG), _save_adapter, _load_adapter),
}


def _check_adapter_config(directory: Path, manifest: dict[str, Any]) -> None:
    """The `adapters` config must be readable and made for the manifest's base model width."""
    path = directory / ADAPTER_CONFIG
    if not path.is_file():
        raise CorruptFileError(f"{directory}: missing {ADAPTER_CONFIG}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise CorruptFileError(f"{path}: not an `adapters` adapter config (no 'config' mapping)")
    hidden, d_model = config.get("hidden_size"), manifest["base_model"]["d_model"]
    if hidden is not None and hidden != d_model:
        raise CorruptFileError(
            f"{path}: the adapter is for hidden size {hidden!r} but the manifest says its base "
            f"model has d_model {d_model}; the manifest does not describe these weights"
        )
