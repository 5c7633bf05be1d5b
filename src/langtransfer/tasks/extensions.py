"""The user's extensions: task modules and language files, loaded the same way everywhere.

Every CLI verb (``--task-module``, ``--languages-file``) and the study config
(``task_modules:``, ``languages_file:``) goes through :func:`load_extensions`, so a task
or language a user adds works wherever a built-in one does.

A *task module* is a Python file (``my_task.py``) or an importable module name
(``mypkg.tasks``) that calls :func:`langtransfer.tasks.register_task` when imported.
Importing it runs its code, exactly as ``python my_task.py`` would: name only files you
wrote or have read. Each module is imported once per process, so a study config and a
command-line flag naming the same file do not register its tasks twice.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path

from langtransfer.errors import LangTransferError

#: Modules already imported by this module: resolved file path or module name -> tasks added.
_LOADED: dict[str, list[str]] = {}


def _is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def load_task_module(spec: str) -> list[str]:
    """Import a task module (a ``.py`` file or a module name); return the task names it
    registered. A module that registers no task is an error (it is probably not one)."""
    from langtransfer.tasks import task_names

    if _is_file_spec(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise LangTransferError(
                f"task module {spec} does not exist (give a .py file or a module name)"
            )
        key = str(path.resolve())
    else:
        key = spec
    if key in _LOADED:
        return _LOADED[key]
    before = set(task_names())
    try:
        if _is_file_spec(spec):
            name = f"langtransfer_user_tasks_{len(_LOADED)}_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or module_spec.loader is None:
                raise LangTransferError(f"task module {spec} is not a Python file")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module  # dataclasses and pickling look modules up by name
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except LangTransferError:
        raise
    except ModuleNotFoundError as e:
        if e.name and spec.startswith(e.name):
            raise LangTransferError(
                f"task module {spec!r} not found: give a .py file or an importable module name"
            ) from e
        raise LangTransferError(f"task module {spec}: {type(e).__name__}: {e}") from e
    except Exception as e:  # the user's code: name the module and the error in one line
        raise LangTransferError(
            f"task module {spec} failed to import: {type(e).__name__}: {e}"
        ) from e
    added = [n for n in task_names() if n not in before]
    if not added:
        raise LangTransferError(
            f"task module {spec} registered no task: it must call "
            "langtransfer.tasks.register_task(...) when imported"
        )
    _LOADED[key] = added
    return added


def load_extensions(
    task_modules: Iterable[str] = (), languages_files: Iterable[str] = ()
) -> None:
    """Register the languages files first (a task module may name their languages), then
    import the task modules. Loading the same file twice is a no-op (identical languages
    register again silently)."""
    from langtransfer.languages import load_language_file

    for path in languages_files:
        load_language_file(path)
    for spec in task_modules:
        load_task_module(spec)
