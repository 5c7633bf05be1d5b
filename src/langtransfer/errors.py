"""The project's own error types.

Every error caused by user input (an unknown name, a missing or malformed file, weights
for another model) is a :class:`LangTransferError` whose message names the bad value and,
where there is a closed set, the valid ones. The CLI prints these without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class LangTransferError(Exception):
    """Base class of errors caused by bad input or state the user can fix."""


class UnknownNameError(LangTransferError, KeyError):
    """A name (language, task, configuration, kind...) that is not in a closed set."""

    def __init__(self, what: str, value: object, valid: Iterable[object]):
        self.what, self.value, self.valid = what, value, sorted(str(v) for v in valid)
        super().__init__(f"unknown {what} {value!r}; valid: {', '.join(self.valid)}")

    def __str__(self) -> str:  # KeyError would quote the whole message otherwise
        return self.args[0]


class DataFormatError(LangTransferError, ValueError):
    """A data file that cannot be read: names the file and, where known, the line."""

    def __init__(self, path: object, message: str, line: int | None = None):
        self.path, self.line = str(path), line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class MissingSplitError(LangTransferError):
    """A data source (hub source, directory, single file) that has no such split. Task
    training catches it for ``validation`` (and holds out part of train instead); every
    other error while loading validation data stops training."""


class IncompatibleModelError(LangTransferError, ValueError):
    """Weights trained for one base model loaded onto another."""


class CorruptFileError(LangTransferError, ValueError):
    """A file the tool wrote (or should have) that is truncated, lies, or is not safetensors."""


class OutputExistsError(LangTransferError, FileExistsError):
    """An output location already holds something different; needs ``--overwrite``."""
