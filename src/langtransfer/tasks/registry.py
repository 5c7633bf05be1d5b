"""The task registry: built-in tasks by name, plus any the user registers.

A user's task is a :class:`~langtransfer.tasks.base.Task` subclass instance (a format,
a parser and a metric) passed to :func:`register_task`; everything that takes a task
name (training, evaluation, ``langtransfer score``) then accepts it.
"""

from __future__ import annotations

import re

from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.tasks.base import Task

_NAME_RE = re.compile(r"^[a-z][a-z0-9_\-]*$")
_REGISTRY: dict[str, Task] = {}


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Add a task under ``task.name`` and return it.

    Registering the same object again is a no-op; another task under a taken name needs
    ``replace=True``, so a plugin cannot silently change how a built-in task is scored.
    """
    if not isinstance(task, Task):
        raise LangTransferError(
            f"cannot register {task!r}: a task must be an instance of langtransfer.tasks.Task"
        )
    name = task.name
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise LangTransferError(
            f"cannot register task: name must be lower-case letters, digits, '_' or '-', "
            f"starting with a letter, got {name!r}"
        )
    old = _REGISTRY.get(name)
    if old is not None and old is not task and not replace:
        raise LangTransferError(
            f"task {name!r} is already registered ({old!r}); pass replace=True to redefine it"
        )
    _REGISTRY[name] = task
    return task


def get_task(name: str | Task) -> Task:
    """The registered task called ``name`` (a Task passes through)."""
    if isinstance(name, Task):
        return name
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise UnknownNameError("task", name, _REGISTRY)
    return _REGISTRY[key]


def all_tasks() -> list[Task]:
    """Every registered task: the built-ins first, then the user's in order added."""
    return list(_REGISTRY.values())


def task_names() -> list[str]:
    return list(_REGISTRY)
