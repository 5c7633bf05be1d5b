"""The results store: one JSON record per evaluation cell, merged across shards.

A *cell* is (task, configuration, source language, target language), and in a study with
several base models or language-representation variants also the model's label and the
variant (:class:`Key`). Its record lives at::

    <study_dir>/results/[<model_label>/][<replicate>/][<variant>/]<task>/<configuration>/<source>__<target>.json

where the bracketed segments appear only when non-empty, so a single-model study without
variants (and every record written before these fields existed) keeps its paths.
``replicate`` (``seed=43``) marks the cells of a study's second and later training seeds
(``seeds: [42, 43]``): the first seed's cells keep the paths a one-seed study has.
(``__`` because ``->`` is awkward in shells and ``>`` is not allowed in Windows names;
language codes never contain ``_``, so the split is unambiguous.) One file per cell means
shards of a study never write the same file unless they evaluate the same cell, and a
kill mid-study loses at most the cell being written (files go through
:mod:`langtransfer.io`).

A record is a JSON object with the fields in :data:`RECORD_FIELDS` and optionally those in
:data:`KEY_FIELDS_OPTIONAL` (``model_label``: the base's short label in a multi-model
study; ``variant``: the language-representation variant, ``axis=value`` such as
``init=vocab``; ``replicate``: ``seed=<n>`` for a later training seed; absent or "" =
the single model / the paper's default / the first seed, and written as absent); extra
fields are kept. The optional ``run`` field (host, time, duration...) is
free-form provenance and is ignored when two copies of a cell are compared, so
re-running a cell deterministically on another shard is not a conflict. Every other
difference is: the same cell with different content in two places raises instead of
silently picking one.

Every ``*.json`` file under ``results/`` is read as a record (names starting with ``.``
are temporary files and are skipped), so other per-cell outputs such as predictions must
use another extension (``.jsonl``) or live elsewhere. A cell's per-example scores (what
its metrics are sums of, for confidence intervals) sit beside its record
(:func:`scores_path`, ``<source>__<target>.scores.safetensors``) and carry its settings
hash, so a stale copy is never read for a newer record.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from langtransfer.configurations import STUDY_CONFIGURATIONS, get_configuration
from langtransfer.errors import CorruptFileError, LangTransferError, OutputExistsError
from langtransfer.io import write_json

#: The seven configurations in the paper's order (the order of report rows).
CONFIGURATIONS: tuple[str, ...] = STUDY_CONFIGURATIONS

#: Fields every record must have.
RECORD_FIELDS: tuple[str, ...] = (
    "task",
    "configuration",
    "source_language",
    "target_language",
    "metrics",
    "primary_metric",
    "n_examples",
    "n_unparseable",
    "n_truncated",
    "model",
    "representations",
    "settings_hash",
    "seed",
)
#: Fields ignored when comparing two copies of the same cell.
VOLATILE_FIELDS: frozenset[str] = frozenset({"run"})

RESULTS_DIR = "results"
_SEP = "__"
_TASK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_CODE_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

#: Optional record fields that are part of a cell's key ("" when absent).
KEY_FIELDS_OPTIONAL: tuple[str, ...] = ("model_label", "variant", "replicate")
#: A model label: a path segment, never hidden (no leading ".") and without "=" so it can
#: never be mistaken for a variant segment.
MODEL_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: A variant label: ``axis=value`` (``init=vocab``, ``corpus=10k``, ``composed=proxy``).
VARIANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*=[A-Za-z0-9=._-]+$")
#: A replicate label: ``seed=<n>``, the training seed of a study's second and later seeds.
REPLICATE_RE = re.compile(r"^seed=(-?[0-9]+)$")


def replicate_label(seed: int) -> str:
    """How a study of several seeds labels (and places) the artefacts of its later seeds."""
    return f"seed={seed}"


class Key(NamedTuple):
    """The cell a record belongs to; ``model_label``/``variant`` are "" when unused."""

    task: str
    configuration: str
    source: str
    target: str
    model_label: str = ""
    variant: str = ""
    replicate: str = ""

    def cell(self) -> Key:
        """The cell without its replicate: what the seeds of one cell share."""
        return self._replace(replicate="")


def record_key(record: Mapping[str, Any]) -> Key:
    """The cell a (valid) record belongs to; missing optional fields read as ""."""
    return Key(
        record["task"],
        record["configuration"],
        record["source_language"],
        record["target_language"],
        record.get("model_label") or "",
        record.get("variant") or "",
        record.get("replicate") or "",
    )


def row_label(configuration: str, variant: str = "") -> str:
    """How a report row names a configuration: ``slp+ta``, or ``slp+ta [init=vocab]``."""
    return f"{configuration} [{variant}]" if variant else configuration


def cell_name(key: Key | tuple[str, ...]) -> str:
    """``qa/slp+ta/en->sk`` -- or ``tiny:qa/slp+ta [init=vocab]/en->sk`` with a model
    label and a variant: how errors and logs name a cell."""
    key = Key(*key)
    prefix = f"{key.model_label}:" if key.model_label else ""
    configuration = row_label(key.configuration, key.variant)
    suffix = f" ({key.replicate})" if key.replicate else ""
    return f"{prefix}{key.task}/{configuration}/{key.source}->{key.target}{suffix}"


def cell_dir(key: Key) -> Path:
    """The cell's path relative to ``results/`` (and ``predictions/``), without a suffix."""
    segments = [s for s in (key.model_label, key.replicate, key.variant) if s]
    return Path(*segments, key.task, key.configuration, f"{key.source}{_SEP}{key.target}")


def record_path(study_dir: str | os.PathLike, record_or_key: Mapping[str, Any] | Key) -> Path:
    """Where the record of a cell lives inside ``study_dir``."""
    key = Key(*record_or_key) if isinstance(record_or_key, tuple) else record_key(record_or_key)
    return Path(study_dir) / RESULTS_DIR / cell_dir(key).with_suffix(".json")


#: The suffix of a cell's per-example scores beside its record (``en__sk.json``,
#: ``en__sk.scores.safetensors``): not ``.json``, so never read as a record.
SCORES_SUFFIX = ".scores.safetensors"


def scores_path(study_dir: str | os.PathLike, record_or_key: Mapping[str, Any] | Key) -> Path:
    """Where the per-example scores of a cell live: beside its record."""
    path = record_path(study_dir, record_or_key)
    return path.with_name(path.stem + SCORES_SUFFIX)


def sort_key(record: Mapping[str, Any]) -> tuple:
    """Model label, task, source, configuration in the paper's order, variant, target,
    seed."""
    key = record_key(record)
    configuration = key.configuration
    order = CONFIGURATIONS.index(configuration) if configuration in CONFIGURATIONS else 99
    seed = record.get("seed")
    return (key.model_label, key.task, key.source, order, configuration, key.variant, key.target,
            seed if isinstance(seed, int) else 0, key.replicate)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def record_problems(record: object) -> list[str]:
    """Everything wrong with a record, as short phrases (empty when it is valid)."""
    if not isinstance(record, dict):
        return [f"expected a JSON object, got {type(record).__name__}"]
    missing = [f for f in RECORD_FIELDS if f not in record]
    if missing:
        return [f"missing field(s) {', '.join(missing)}"]
    problems = []
    task, configuration = record["task"], record["configuration"]
    if not isinstance(task, str) or not _TASK_RE.match(task):
        problems.append(f"task must be a name of letters, digits, '_' or '-', got {task!r}")
    if configuration not in CONFIGURATIONS:
        problems.append(
            f"unknown configuration {configuration!r}; valid: {', '.join(CONFIGURATIONS)}"
        )
    for field in ("source_language", "target_language"):
        if not isinstance(record[field], str) or not _CODE_RE.match(record[field]):
            problems.append(f"{field} must be a lower-case language code, got {record[field]!r}")
    metrics = record["metrics"]
    if not isinstance(metrics, dict) or not metrics:
        problems.append("metrics must be a non-empty object of metric name -> number")
    else:
        bad = [k for k, v in metrics.items() if not _is_number(v)]
        if bad:
            problems.append(f"metrics must be finite numbers; not so: {', '.join(bad)}")
        if not isinstance(record["primary_metric"], str) or record["primary_metric"] not in metrics:
            problems.append(
                f"primary_metric {record['primary_metric']!r} is not among the metrics "
                f"({', '.join(map(str, metrics))})"
            )
    counts = {f: record[f] for f in ("n_examples", "n_unparseable", "n_truncated")}
    for field, value in counts.items():
        if not _is_int(value) or value < 0:
            problems.append(f"{field} must be a non-negative integer, got {value!r}")
    if all(_is_int(v) for v in counts.values()):
        for field in ("n_unparseable", "n_truncated"):
            if counts[field] > counts["n_examples"]:
                problems.append(f"{field} ({counts[field]}) exceeds n_examples")
    model = record["model"]
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        problems.append("model must be an object with a 'name' (the base model fingerprint)")
    for field, pattern, form in (
        ("model_label", MODEL_LABEL_RE, "letters, digits, '.', '_' or '-'"),
        ("variant", VARIANT_RE, "axis=value of letters, digits, '=', '.', '_' or '-'"),
    ):
        value = record.get(field, "")
        if value != "" and not (isinstance(value, str) and pattern.match(value)):
            problems.append(f"{field} must be empty or {form}, got {value!r:.60}")
    replicate = record.get("replicate", "")
    if replicate != "":
        match = REPLICATE_RE.match(replicate) if isinstance(replicate, str) else None
        if match is None or int(match.group(1)) != record["seed"]:
            problems.append(f"replicate must be empty or 'seed=<the record's seed>', got "
                            f"{replicate!r:.60} (seed {record['seed']!r})")
    problems += _representation_problems(record["representations"], configuration)
    if not isinstance(record["settings_hash"], str) or not record["settings_hash"]:
        problems.append("settings_hash must be a non-empty string")
    if record["seed"] is not None and not _is_int(record["seed"]):
        problems.append(f"seed must be an integer or null, got {record['seed']!r}")
    return problems


def _representation_problems(reps: object, configuration: object) -> list[str]:
    """Checks that the recorded representations are the ones the configuration uses."""
    if not isinstance(reps, dict) or set(reps) != {"language", "task"}:
        return ["representations must be an object with exactly 'language' and 'task'"]
    problems = []
    for role in ("language", "task"):
        if reps[role] is not None and not isinstance(reps[role], dict):
            problems.append(f"representations.{role} must be an object or null")
    if isinstance(configuration, str) and configuration in CONFIGURATIONS:
        used_kinds = get_configuration(configuration)
        for role in ("language", "task"):
            used = used_kinds.kind(role) is not None
            if used and reps[role] is None:
                problems.append(f"{configuration} uses a {role} representation but it is null")
            if not used and reps[role] is not None:
                problems.append(f"{configuration} uses no {role} representation but one is given")
    return problems


def _cell_or_unknown(record: object) -> str:
    try:
        return cell_name(record_key(record))  # type: ignore[arg-type]
    except (KeyError, TypeError):
        return "an unknown cell"


def validate_record(record: object, where: str = "result record") -> None:
    """Raise :class:`CorruptFileError` naming ``where`` and every problem of the record."""
    problems = record_problems(record)
    if problems:
        raise CorruptFileError(f"{where}: invalid result record: {'; '.join(problems)}")


def _comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in record.items()
        if k not in VOLATILE_FIELDS and not (k in KEY_FIELDS_OPTIONAL and v == "")
    }


def _differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    a, b = _comparable(a), _comparable(b)
    parts = []
    for field in sorted(set(a) | set(b)):
        if field == "metrics" and isinstance(a.get(field), dict) and isinstance(b.get(field), dict):
            parts += [
                f"metrics.{m}: {a[field].get(m)!r} vs {b[field].get(m)!r}"
                for m in sorted(set(a[field]) | set(b[field]))
                if a[field].get(m) != b[field].get(m)
            ]
        elif a.get(field) != b.get(field):
            parts.append(field)
    return ", ".join(parts)


def write_record(
    study_dir: str | os.PathLike, record: Mapping[str, Any], *, overwrite: bool = False
) -> Path:
    """Validate ``record`` and write it atomically to its cell's file; return the path.

    An existing record of the cell is replaced when it is identical (a no-op) or has
    another ``settings_hash`` (it is stale: the study runner re-evaluates exactly those).
    One with the *same* settings hash but different content means two evaluations under
    identical settings disagree (nondeterminism, or two shards racing on one shared
    directory): that raises :class:`OutputExistsError` unless ``overwrite``, rather than
    silently keeping whichever finished last.
    """
    # An empty model label or variant is the same cell as none: stored as absent, so a
    # single-model study's records are byte-identical to those written before the fields.
    record = {
        k: v for k, v in record.items() if not (k in KEY_FIELDS_OPTIONAL and v == "")
    }
    validate_record(record, f"result record for {_cell_or_unknown(record)}")
    path = record_path(study_dir, record)
    if path.exists() and not overwrite:
        try:
            old = _load(path)
        except CorruptFileError:
            old = None  # a broken file is replaced, not protected
        if (
            old is not None
            and old.get("settings_hash") == record["settings_hash"]
            and _comparable(old) != _comparable(record)
        ):
            raise OutputExistsError(
                f"{path} already holds a different result for {cell_name(record_key(record))} "
                f"with the same settings (differs in {_differences(old, record)}); pass "
                "overwrite to replace it"
            )
    write_json(path, record)
    return path


def _load(path: Path) -> dict[str, Any]:
    """Read and validate one record file; every failure names the file."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from e
    except (ValueError, RecursionError) as e:  # 5000-digit integers, nesting too deep
        raise CorruptFileError(f"{path}: not valid JSON ({e or 'nested too deeply'})") from e
    except UnicodeDecodeError as e:
        raise CorruptFileError(f"{path}: not UTF-8 text") from e
    except OSError as e:
        raise CorruptFileError(f"{path}: cannot read ({e.strerror or e})") from e
    validate_record(record, str(path))
    return record


def _record_files(results: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(results):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [Path(root) / n for n in sorted(names) if n.endswith(".json") and n[0] != "."]
    return files


def merge_records(
    records: Iterable[Mapping[str, Any]], origins: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """Validate and merge records from several sources into one set, one record per cell.

    The same cell twice with equal content (ignoring :data:`VOLATILE_FIELDS`) is kept once;
    with different content it is an error naming the cell and both origins. The result is
    sorted by :func:`sort_key`.
    """
    records = list(records)
    names = list(origins) if origins is not None else [f"record {i}" for i in range(len(records))]
    if len(names) != len(records):
        raise ValueError("origins must name every record")
    seen: dict[Key, tuple[str, dict[str, Any]]] = {}
    for where, record in zip(names, records, strict=True):
        validate_record(record, where)
        key = record_key(record)
        if key in seen:
            first_where, first = seen[key]
            if _comparable(first) != _comparable(record):
                raise LangTransferError(
                    f"conflicting results for cell {cell_name(key)}: {first_where} and {where} "
                    f"differ in {_differences(first, record)}; remove or re-run one of them"
                )
            continue
        seen[key] = (where, dict(record))
    return sorted((r for _, r in seen.values()), key=sort_key)


def read_records(study_dirs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict]:
    """All records under ``<dir>/results/`` for one or more study directories, merged.

    Shards may write separate study directories or one shared one; either way the result
    is one record per cell (see :func:`merge_records`). A study directory without a
    ``results`` folder contributes nothing; a path that is not a directory is an error.
    Each file must sit at the path its content implies, so a copied or renamed file cannot
    silently stand for another cell.
    """
    if isinstance(study_dirs, (str, os.PathLike)):
        study_dirs = [study_dirs]
    records, origins = [], []
    for study in map(Path, study_dirs):
        if not study.is_dir():
            raise LangTransferError(f"study directory {study} does not exist")
        results = study / RESULTS_DIR
        for path in _record_files(results):
            record = _load(path)
            expected = record_path(study, record)
            if path != expected:
                raise CorruptFileError(
                    f"{path}: holds the record of cell {cell_name(record_key(record))}, which "
                    f"belongs at {expected}"
                )
            records.append(record)
            origins.append(str(path))
    return merge_records(records, origins)
