"""Merged (language, task) LoRA pairs for an existing serving engine (``langtransfer
export-merged``).

vLLM and SGLang serve many LoRAs on one base, one LoRA per request; a language LoRA and a
task LoRA applied together are one LoRA of rank ``r_l + r_t``
(:func:`langtransfer.representations.lora.merge`, exact). This writes one merged LoRA per
chosen pair, in PEFT's format with only the config keys vLLM's loader reads
(:mod:`langtransfer.serving.engines`), and the command lines that serve them all from one
base, with a request naming a pair as the model.

Pairs come from a study directory (its ``ll+tl`` cells: the target's language LoRA with the
task LoRA trained on the source; or its ``tl`` cells, the task LoRA alone) or from
representation directories (every task LoRA with every language LoRA given).

The one module outside the kinds that names a kind (``lora``): its output is a LoRA-only
format, for engines that serve nothing else (``tests/test_kinds.py`` lists it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langtransfer.base.loading import FINGERPRINT_KEYS
from langtransfer.errors import (
    IncompatibleModelError,
    LangTransferError,
    OutputExistsError,
    UnknownNameError,
)
from langtransfer.io import atomic_dir, write_json, write_text
from langtransfer.languages import get_language
from langtransfer.representations.base import Representation
from langtransfer.representations.store import load_representation
from langtransfer.serving import engines
from langtransfer.serving.predictor import STUDY_FILE, record_representations

#: What export-merged writes beside the pairs.
INDEX = "pairs.json"
README = "README.md"
#: Beside each merged LoRA (PEFT and the engines ignore it): the pair it merges.
ORIGIN = "langtransfer.json"
#: The configurations whose cells export: LoRA in every role they use.
EXPORTED = ("ll+tl", "tl")
DEFAULT_CONFIGURATION = "ll+tl"
#: A request example's prompt and budget (any text: the engine formats nothing).
EXAMPLE_PROMPT = "..."
EXAMPLE_TOKENS = 19
VLLM_URL = "http://localhost:8000/v1/completions"
SGLANG_URL = "http://localhost:30000/generate"


@dataclass(frozen=True)
class Pair:
    """One (language, task) pair to merge: its name (the model name requests give), the
    task, source and target languages and the two representations (no language one for
    ``tl``)."""

    name: str
    task: str
    source: str | None
    target: str
    language: Representation | None
    task_rep: Representation


def study_pairs(study: Path, *, model_label: str | None = None, only: Sequence[str] = (),
                configuration: str = DEFAULT_CONFIGURATION) -> list[Pair]:
    """The exportable pairs of a study: each ``configuration`` cell's (target's language
    LoRA, task LoRA) (``tl``: the task LoRA alone); ``only``: ``TASK:TARGET`` or
    ``TASK:SOURCE:TARGET`` choices; ``model_label``: the base of a study of several."""
    from langtransfer.results.records import read_records

    if configuration not in EXPORTED:
        raise UnknownNameError("configuration to export", configuration, EXPORTED)
    config = json.loads((study / STUDY_FILE).read_text(encoding="utf-8")).get("config") or {}
    records = [r for r in read_records(study) if r["configuration"] == configuration
               and not r.get("variant")]
    labels = sorted({r.get("model_label") or "" for r in records})
    if model_label is not None:
        if model_label not in labels:
            raise LangTransferError(
                f"{study}: no {configuration} results for base {model_label!r}; the "
                f"study's: {', '.join(repr(label) for label in labels) or 'none'}")
        records = [r for r in records if (r.get("model_label") or "") == model_label]
    elif len(labels) > 1:
        raise LangTransferError(
            f"{study} holds LoRA results of several bases ({', '.join(labels)}): choose one "
            "(--model-label LABEL)")
    if not records:
        raise LangTransferError(
            f"{study}: no cell of configuration {configuration} to export (a merged pair "
            "is a language LoRA and a task LoRA)")
    pairs = []
    for r in records:
        paths = record_representations(study, r, config)
        language = load_representation(paths["language"]) if paths["language"] else None
        task_rep = load_representation(paths["task"]) if paths["task"] else None
        assert task_rep is not None
        pairs.append(Pair("", r["task"], r["source_language"], r["target_language"],
                          language, task_rep))
    return _named(_chosen(pairs, only))


def representation_pairs(locations: Sequence[str | Path],
                         only: Sequence[str] = ()) -> list[Pair]:
    """Every task LoRA among ``locations`` with every language LoRA among them (none
    given: the task LoRA alone, for its source language)."""
    languages: list[Representation] = []
    tasks: list[Representation] = []
    for location in locations:
        rep = load_representation(location)
        if rep.kind != "lora":
            raise LangTransferError(
                f"{location} is a {rep.role} {rep.kind}; export-merged merges LoRAs "
                "(valid: lora): serve prompts and adapters with `langtransfer serve`")
        (languages if rep.role == "language" else tasks).append(rep)
    if not tasks:
        raise LangTransferError("export-merged needs at least one task LoRA among the "
                                "representation directories")
    pairs = []
    for task_rep in tasks:
        source = task_rep.training.get("source_language")
        source = source if isinstance(source, str) else None
        if languages:
            pairs += [Pair("", task_rep.task or "", source, lang.language or "", lang, task_rep)
                      for lang in languages]
        elif source is not None:
            pairs.append(Pair("", task_rep.task or "", source, source, None, task_rep))
        else:
            raise LangTransferError(
                f"{task_rep.where}: a task LoRA alone needs its source language recorded "
                "(train it with train-task), or give language LoRAs to pair it with")
    return _named(_chosen(pairs, only))


def _chosen(pairs: list[Pair], only: Sequence[str]) -> list[Pair]:
    """The pairs ``only`` names (``TASK:TARGET`` or ``TASK:SOURCE:TARGET``; none: all)."""
    if not only:
        return pairs
    chosen: list[Pair] = []
    for choice in only:
        parts = choice.split(":")
        if len(parts) not in (2, 3):
            raise LangTransferError(
                f"pair {choice!r} must be TASK:TARGET or TASK:SOURCE:TARGET (e.g. nli:de)")
        task, target = parts[0], get_language(parts[-1]).code
        source = get_language(parts[1]).code if len(parts) == 3 else None
        found = [p for p in pairs if p.task == task and p.target == target
                 and (source is None or p.source == source)]
        if not found:
            have = ", ".join(sorted({f"{p.task}:{p.source}:{p.target}" for p in pairs}))
            raise LangTransferError(f"no LoRA pair {choice!r} to export; valid: {have}")
        chosen += [p for p in found if p not in chosen]
    return chosen


def _named(pairs: list[Pair]) -> list[Pair]:
    """Each pair named ``task-target`` (``task-target-from-source`` where a task and
    target have several sources)."""
    unique = {(p.task, p.source, p.target, p.language.id if p.language else None,
               p.task_rep.id): p for p in pairs}
    pairs = list(unique.values())
    count: dict[tuple[str, str], int] = {}
    for p in pairs:
        count[(p.task, p.target)] = count.get((p.task, p.target), 0) + 1
    out = []
    for p in pairs:
        name = f"{p.task}-{p.target}"
        if count[(p.task, p.target)] > 1:
            name += f"-from-{p.source}"
        out.append(Pair(name, p.task, p.source, p.target, p.language, p.task_rep))
    return out


def _check_pair(pair: Pair, base: dict[str, Any]) -> None:
    """Both representations are LoRAs made for ``base``, a causal one (the engines serve
    no encoder-decoder model)."""
    for rep in (pair.language, pair.task_rep):
        if rep is None:
            continue
        if rep.kind != "lora":
            raise LangTransferError(
                f"pair {pair.name}: {rep.where} is a {rep.role} {rep.kind}; vLLM and SGLang "
                "serve LoRAs only (serve it with `langtransfer serve`)")
        recorded = rep.base_model or {}
        diffs = [f"{k} {recorded[k]} vs {base[k]}" for k in FINGERPRINT_KEYS
                 if k in recorded and k in base and recorded[k] != base[k]]
        if diffs:
            raise IncompatibleModelError(
                f"pair {pair.name}: {rep.where} was trained on base model "
                f"{recorded.get('name')!r}, not {base.get('name')!r} ({', '.join(diffs)})")
    engines.check_family(str(base.get("family")), f"pair {pair.name}")


def export_merged(
    pairs: Sequence[Pair], output: str | Path, *, base: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write each pair merged into ``output/<name>`` and the serving commands
    (``output/README.md``, ``output/pairs.json``); return the index. ``base``: the name
    or path the engines load the base from (default: the name the LoRAs record)."""
    from langtransfer.representations import lora

    output = Path(output).absolute()  # the command lines work from any directory
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"{output} already holds files; pass --overwrite to replace them")
    if not pairs:
        raise LangTransferError("no LoRA pair to export")
    recorded = pairs[0].task_rep.base_model or {}
    for pair in pairs:
        _check_pair(pair, recorded)
    base_name = base or recorded.get("name") or ""
    if not base_name:
        raise LangTransferError("the LoRAs record no base model name: give it (--base NAME)")
    entries: list[dict[str, Any]] = []
    ranks: list[int] = []
    with atomic_dir(output, overwrite=True) as tmp:
        for pair in pairs:
            parts = [(1.0, _weights(pair.task_rep))]
            if pair.language is not None:
                parts.insert(0, (1.0, _weights(pair.language)))
            merged = lora.weighted_sum(parts)  # scaling folded in: alpha = rank
            config = lora.peft_config(rank=merged.rank, alpha=merged.rank,
                                      targets=merged.targets, family="causal",
                                      base_model_name_or_path=base_name)
            engines.check_for_vllm(config, f"pair {pair.name}")
            (tmp / pair.name).mkdir()
            lora.write_peft_lora(tmp / pair.name, config, merged)
            origin = {
                "task": pair.task, "source_language": pair.source,
                "target_language": pair.target, "rank": merged.rank,
                "language_representation": _describe(pair.language),
                "task_representation": _describe(pair.task_rep),
            }
            write_json(tmp / pair.name / ORIGIN, origin)
            entries.append({"name": pair.name, "path": str(output / pair.name), **origin})
            ranks.append(merged.rank)
        rank = max(ranks)
        adapters = {pair.name: str(output / pair.name) for pair in pairs}
        targets = sorted({t for p in pairs for rep in (p.language, p.task_rep)
                          if rep is not None for t in _weights(rep).targets})
        index = {
            "base_model": base_name, "pairs": entries, "max_rank": rank,
            "vllm": engines.vllm_command(base_name, adapters, rank),
            "sglang": engines.sglang_command(base_name, adapters, rank, targets),
        }
        write_json(tmp / INDEX, index)
        write_text(tmp / README, serving_readme(index))
    return index


def _weights(rep: Representation) -> Any:
    return rep.weights.weights  # a loaded LoRA holds its PEFT file (config and factors)


def _describe(rep: Representation | None) -> dict[str, Any] | None:
    if rep is None:
        return None
    return {"path": str(rep.path), "id": rep.id, "language": rep.language, "task": rep.task,
            "rank": _weights(rep).rank}


def serving_readme(index: dict[str, Any]) -> str:
    """How to serve the exported pairs: the two command lines and a request per engine."""
    first = index["pairs"][0]["name"]
    lines = [
        f"# {len(index['pairs'])} merged LoRA pair(s) on {index['base_model']}",
        "",
        "Each directory is one PEFT LoRA: a language LoRA and a task LoRA merged exactly "
        f"(rank up to {index['max_rank']}). Serve them all from one base:",
        "",
        "vLLM:",
        "",
        "    " + engines.shell(index["vllm"]),
        "",
        "    " + engines.curl(VLLM_URL, engines.vllm_request(first, EXAMPLE_PROMPT,
                                                            EXAMPLE_TOKENS)),
        "",
        "SGLang:",
        "",
        "    " + engines.shell(index["sglang"]),
        "",
        "    " + engines.curl(SGLANG_URL, engines.sglang_request(first, EXAMPLE_PROMPT,
                                                                EXAMPLE_TOKENS)),
        "",
        "The prompt is the task's input as langtransfer formats it (the task's formatter: "
        "`langtransfer.tasks.get_task(TASK).request_input(...)`); no chat template.",
        "",
        "| pair | task | source | target | rank |",
        "|---|---|---|---|---|",
        *[f"| {p['name']} | {p['task']} | {p['source_language']} | {p['target_language']} | "
          f"{p['rank']} |" for p in index["pairs"]],
        "",
    ]
    return "\n".join(lines)


def pairs_from(sources: Sequence[str | Path], *, model_label: str | None = None,
               only: Sequence[str] = (), configuration: str | None = None) -> list[Pair]:
    """A study directory (one) or representation directories -> the pairs to export."""
    studies = [Path(s) for s in sources if (Path(s) / STUDY_FILE).is_file()]
    if studies and len(sources) > 1:
        raise LangTransferError(
            "give one study directory, or representation directories, not both")
    if studies:
        return study_pairs(studies[0], model_label=model_label, only=only,
                           configuration=configuration or DEFAULT_CONFIGURATION)
    for option, value in (("--model-label", model_label), ("--configuration", configuration)):
        if value is not None:
            raise LangTransferError(f"{option} chooses within a study directory; the "
                                    "sources are representation directories")
    return representation_pairs(sources, only=only)


__all__ = ["EXPORTED", "Pair", "export_merged", "pairs_from",
           "representation_pairs", "serving_readme", "study_pairs"]
