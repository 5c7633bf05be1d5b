"""Tasks: data sources, text-to-text formats, parsers and metrics, and their registry.

The built-in tasks are ``qa``, ``ner``, ``nli`` and ``checkworthiness``; see
:mod:`langtransfer.tasks.base` for the interface and how data is found.
"""

from langtransfer.tasks.base import (
    EMPTY_ANSWERS,
    FIXTURES_DIR,
    LABEL_ORDERS,
    SOURCE_NAMES,
    SPLITS,
    ClassificationTask,
    DataSource,
    Example,
    Task,
    TaskData,
)
from langtransfer.tasks.checkworthiness import CheckworthinessTask
from langtransfer.tasks.ner import NERTask
from langtransfer.tasks.nli import NLITask
from langtransfer.tasks.qa import QATask
from langtransfer.tasks.registry import all_tasks, get_task, register_task, task_names

for _task in (QATask(), NERTask(), NLITask(), CheckworthinessTask()):
    register_task(_task)
del _task

__all__ = [
    "FIXTURES_DIR",
    "EMPTY_ANSWERS",
    "LABEL_ORDERS",
    "SOURCE_NAMES",
    "SPLITS",
    "CheckworthinessTask",
    "ClassificationTask",
    "DataSource",
    "Example",
    "NERTask",
    "NLITask",
    "QATask",
    "Task",
    "TaskData",
    "all_tasks",
    "get_task",
    "register_task",
    "task_names",
]
