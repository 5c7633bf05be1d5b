"""Where a representation directory is: a local path, or a Hugging Face Hub id fetched
into the local cache. Shared by the store and the PEFT format reader."""

from __future__ import annotations

import re
from pathlib import Path

from langtransfer.errors import LangTransferError
from langtransfer.io import recover

#: The file that makes a directory a langtransfer representation.
MANIFEST = "manifest.json"
HUB_PATTERNS = ("*.json", "*.safetensors")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_location(location: str | Path, *, patterns: tuple[str, ...] = HUB_PATTERNS) -> Path:
    """A local directory as is; ``org/name`` that is not a local path from the Hugging Face Hub.

    From the hub only files matching ``patterns`` are fetched (never pickles by default).
    """
    path = Path(location)
    recover(path)  # a directory whose replacement a kill interrupted
    if path.exists():
        if not path.is_dir():
            raise LangTransferError(f"{location} is a file; a representation is a directory")
        return path
    if isinstance(location, str) and _HUB_ID.match(location):
        from huggingface_hub import snapshot_download

        try:
            return Path(
                snapshot_download(location, allow_patterns=list(patterns))
            )
        except Exception as e:  # network, auth, missing repo: all reported the same way
            raise LangTransferError(
                f"{location} is not a local directory and could not be fetched from the "
                f"Hugging Face Hub: {e}"
            ) from e
    raise LangTransferError(f"representation directory {location} does not exist")
