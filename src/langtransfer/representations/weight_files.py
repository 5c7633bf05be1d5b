"""Weight files of representation directories: checked before anything is loaded from
them, and hashed (a loaded representation's id ends in the hash of its files)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from langtransfer.errors import CorruptFileError


def content_hash(directory: Path, files: tuple[str, ...]) -> str:
    """A hash of what a representation directory's weights are: its kind's weight
    ``files`` (a weight file and the config that shapes it; the manifest's provenance is
    left out)."""
    digest = hashlib.sha256()
    for name in files:
        with open(directory / name, "rb") as f:
            digest.update(name.encode() + b"\0")
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def check_safetensors(path: Path, expected: dict[str, tuple[int, ...]] | None = None) -> None:
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
