"""Failed and blocked study artefacts, recorded so a study can go on and report them.

When an artefact raises, the study records it under
``<study_dir>/failures/<stage>/<key>.json`` (what: the artefact; why: the one-line error
and its traceback) and carries on with everything that does not depend on it; its
dependents are recorded as *blocked* (naming the failed artefact). A rerun retries
exactly what is failed, blocked or missing, and removes the record of each artefact it
then builds (or finds built). ``langtransfer report`` lists the records it finds.
Torch-free, so the report can read them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from langtransfer.io import write_json

FAILURES_DIR = "failures"
FAILED, BLOCKED = "failed", "blocked"
#: How many failures a summary lists before it says "and N more".
LIST_LIMIT = 20


@dataclass(frozen=True)
class Failure:
    """One artefact that was not built: ``failed`` (its own error) or ``blocked`` (an
    artefact it needs failed, named in ``blocked_by``)."""

    artefact: str  # its id, e.g. "evaluation:qa/slp+ta/en/sk"
    status: str
    error: str  # one line
    blocked_by: tuple[str, ...] = ()
    settings_hash: str = ""
    time: str = ""
    traceback: str = ""

    def line(self) -> str:
        if self.status == BLOCKED:
            return f"{self.artefact}: blocked by {', '.join(self.blocked_by)}"
        return f"{self.artefact}: {self.error}"


def one_line(error: BaseException, limit: int = 400) -> str:
    """``Type: first line of the message``, cut at ``limit`` characters."""
    text = str(error).strip().splitlines()
    message = f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
    return message if len(message) <= limit else message[: limit - 1] + "…"


def failure_path(study_dir: str | os.PathLike, artefact_id: str) -> Path:
    stage, _, key = artefact_id.partition(":")
    return Path(study_dir) / FAILURES_DIR / stage / f"{key}.json"


def write_failure(study_dir: str | os.PathLike, failure: Failure) -> Path:
    path = failure_path(study_dir, failure.artefact)
    record = asdict(failure)
    record["time"] = record["time"] or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_json(path, record)
    return path


def clear_failure(study_dir: str | os.PathLike, artefact_id: str) -> None:
    """Forget an artefact's failure (it has been built); empty folders go too."""
    path = failure_path(study_dir, artefact_id)
    try:
        path.unlink()
    except FileNotFoundError:
        return
    root = Path(study_dir) / FAILURES_DIR
    for parent in path.parents:
        if parent == root.parent:
            break
        try:
            parent.rmdir()
        except OSError:
            break


def read_failures(study_dirs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Failure]:
    """The failure records of one or more study directories, failed before blocked; an
    unreadable record is listed as such rather than hidden."""
    if isinstance(study_dirs, (str, os.PathLike)):
        study_dirs = [study_dirs]
    found: dict[str, Failure] = {}
    for study in map(Path, study_dirs):
        root = study / FAILURES_DIR
        for path in sorted(root.rglob("*.json")) if root.is_dir() else []:
            if path.name.startswith("."):
                continue
            stage = path.relative_to(root).parts[0]
            key = path.relative_to(root / stage).with_suffix("").as_posix()
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                data["blocked_by"] = tuple(data.get("blocked_by", ()))
                failure = Failure(**data)
            except (OSError, ValueError, TypeError) as e:
                failure = Failure(f"{stage}:{key}", FAILED, f"unreadable record {path}: {e}")
            found.setdefault(failure.artefact, failure)
    return sorted(found.values(), key=lambda f: (f.status != FAILED, f.artefact))


def format_failures(failures: Iterable[Failure], limit: int = LIST_LIMIT) -> str:
    """Counts, then the failed artefacts with their errors, then the blocked ones, each
    list cut at ``limit`` lines."""
    failures = list(failures)
    failed = [f for f in failures if f.status == FAILED]
    blocked = [f for f in failures if f.status == BLOCKED]
    lines = [f"{len(failed)} failed, {len(blocked)} blocked (their dependencies failed)"]
    for title, group in (("failed", failed), ("blocked", blocked)):
        if group:
            lines.append(f"{title}:")
            lines += [f"  {f.line()}" for f in group[:limit]]
            if len(group) > limit:
                lines.append(f"  ... and {len(group) - limit} more (see failures/)")
    return "\n".join(lines)
