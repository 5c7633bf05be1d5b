"""Reading JSON Lines: one place for decoding, parsing and line-numbered errors.

Task data, corpora and predictions files are all JSONL; each reader adds its own checks
on the objects, but the lines are read here, streamed (a corpus may be large).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langtransfer.errors import DataFormatError


def json_error(
    path: Path, e: ValueError | RecursionError, line: int | None = None
) -> DataFormatError:
    """A JSON parse failure as a DataFormatError naming the file and line."""
    if isinstance(e, json.JSONDecodeError):
        return DataFormatError(
            path, f"invalid JSON: {e.msg}", line if line is not None else e.lineno
        )
    if isinstance(e, RecursionError):  # nesting deeper than Python's recursion limit
        return DataFormatError(path, "invalid JSON: nested too deeply", line)
    return DataFormatError(path, f"invalid JSON: {e}", line)  # e.g. an integer of 5000 digits


def iter_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` per non-blank line; a BOM on line 1 is allowed.

    Invalid UTF-8 or JSON raises :class:`DataFormatError` with the line; opening the file
    raises ``OSError`` as usual, so callers word missing files their own way.
    """
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataFormatError(path, f"not UTF-8 text ({e.reason})", n) from e
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except (ValueError, RecursionError) as e:
                raise json_error(path, e, n) from e
