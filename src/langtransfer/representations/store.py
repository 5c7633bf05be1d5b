"""Saving and loading representation directories.

A representation directory holds ``manifest.json`` (what it is, which base model it fits,
how it was initialised and trained) and its weights in safetensors, in its kind's files
(:attr:`~langtransfer.representations.kinds.base.RepresentationKind.files`):
``prompt.safetensors`` for a prompt, the `adapters` library's AdapterHub files
(``adapter_config.json`` + ``adapter.safetensors``) for an adapter, so AdapterHub tooling
can read it directly. The kind writes and reads its files; the manifest is common.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

from langtransfer import __version__
from langtransfer.base.loading import fingerprint
from langtransfer.configurations import ROLES
from langtransfer.errors import CorruptFileError, LangTransferError, OutputExistsError
from langtransfer.io import atomic_dir, recover, write_json
from langtransfer.representations import peft_format
from langtransfer.representations.base import Representation
from langtransfer.representations.kinds import KINDS, SPEC_KEYS, get_kind, kind_of
from langtransfer.representations.location import (  # noqa: F401  (old import path)
    HUB_PATTERNS,
    MANIFEST,
    resolve_location,
)

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
        **{key: None for key in SPEC_KEYS},
        rep.kind: rep.spec.to_dict() if rep.spec is not None else None,
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
    if manifest.get("kind") not in tuple(KINDS) or manifest.get("role") not in ROLES:
        raise CorruptFileError(
            f"{path}: kind {manifest.get('kind')!r} / role {manifest.get('role')!r} must be "
            f"one of {tuple(KINDS)} / {ROLES}"
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
        kind_of(rep).save(rep, tmp, model)
        write_json(tmp / MANIFEST, manifest_of(rep, training, base_model))
    return directory


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
        return get_kind(m["kind"]).load(directory, m, common)
    except CorruptFileError:
        raise
    except LangTransferError as e:  # a bad value in the manifest (unknown init, no language...)
        raise CorruptFileError(f"{directory / MANIFEST}: {e}") from e
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise CorruptFileError(f"{directory / MANIFEST}: malformed manifest ({e})") from e
