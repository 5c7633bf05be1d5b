"""Per-model settings on the model axis: a ``models`` entry overriding the study's
``sequence_length`` / ``language_training`` / ``task_training`` / ``evaluation`` for its
base only (deep-merged), and nothing else.

The options are walked by introspection (the walk of tests/test_study_jobs.py), so a
per-model option that reaches a study-wide job but not a per-base one fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from langtransfer.cli import main
from langtransfer.errors import LangTransferError
from langtransfer.study.config import PER_MODEL_KEYS, Base, StudyConfig
from langtransfer.study.jobs import Artefact, job_settings, plan
from langtransfer.study.load import load_study_config
from tests.test_study import FAST
from tests.test_study_jobs import BASE, alternatives, builder_calls, options

OTHER = "some/other-base"  # planned, never loaded: plans and recorded builder calls only


def write(tmp_path: Path, raw: dict[str, Any], name: str) -> StudyConfig:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_study_config(path)


def two_bases(tmp_path: Path, name: str, study: dict | None = None,
              tiny: dict | None = None) -> StudyConfig:
    """BASE's grid on ``tiny`` and OTHER; ``study`` merged into the study's keys,
    ``tiny`` the tiny entry's own settings."""
    raw = {k: v for k, v in yaml.safe_load(yaml.safe_dump(BASE)).items() if k != "model"}
    raw.update(output=str(tmp_path / "out"), **(study or {}))
    raw["models"] = [{"name": "tiny", **(tiny or {})}, OTHER]
    return write(tmp_path, raw, name)


def nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """``("a", "b")``, 1 -> ``{"a": {"b": 1}}``."""
    for key in reversed(path):
        value = {key: value}
    return value


def merged(base: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """BASE's value of ``path[0]`` with ``path`` set to ``value`` (a study-wide change)."""
    raw = yaml.safe_load(yaml.safe_dump({path[0]: base[path[0]]}))
    target = raw
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return raw


def by_id(config: StudyConfig) -> dict[str, Artefact]:
    return {a.id: a for a in plan(config)}


# -- no overrides: today's hashes --------------------------------------------------------


def test_a_base_without_overrides_keeps_its_hashes(tmp_path):
    """``models: [tiny]`` == ``model: tiny``, and another base's overrides (or an
    override equal to the study's value) change none of tiny's hashes."""
    single = {a.key + (a.stage,): a.hash for a in plan(write(
        tmp_path, {**BASE, "output": str(tmp_path / "s")}, "single"))}
    plain = two_bases(tmp_path, "plain")
    other_overridden = {k: v for k, v in plain.to_dict().items() if k != "model"}
    other_overridden["models"] = [
        "tiny", {"name": OTHER, "sequence_length": 128, "evaluation": {"batch_size": 2},
                 "task_training": {"prompt": {"learning_rate": 0.1}}}]
    same_value = two_bases(tmp_path, "same", tiny={
        "sequence_length": BASE["sequence_length"], "evaluation": {}, "task_training": None,
        "language_training": {"prompt": None, "adapter": {}}})
    configs = [plain, write(tmp_path, other_overridden, "other"), same_value]
    for config in configs:
        tiny = {a.key + (a.stage,): a.hash for a in plan(config) if a.model_label == "tiny"}
        assert tiny == single
    assert same_value.bases()[0].overrides  # given, though they change nothing
    # the overridden base's artefacts did change, all of them here
    theirs = [{a.id: a.hash for a in plan(c) if a.model_label != "tiny"} for c in configs[:2]]
    assert set(theirs[0]) == set(theirs[1])
    assert all(theirs[0][i] != theirs[1][i] for i in theirs[0])


# -- every per-model option: its base only, as if set for the whole study -----------------


def test_every_per_model_option_changes_only_its_base(tmp_path, monkeypatch):
    """For each option under the per-model keys: overriding it on tiny gives tiny's
    artefacts exactly the hashes and builder calls that setting it for the whole study
    gives, and leaves the other base's hashes and builder calls as they were."""
    grid = {"configurations": ["la+stp", "slp+ta", "slp+stp"], "targets": ["sk"]}  # all kinds
    reference = two_bases(tmp_path, "reference", study=grid)
    ref_arts, ref_calls = by_id(reference), builder_calls(reference, monkeypatch)
    assert set(ref_calls) == set(ref_arts)
    walked = [(p, c) for p, c in options(BASE) if p[0] in PER_MODEL_KEYS]
    assert {p[0] for p, _ in walked} == set(PER_MODEL_KEYS)
    checked = 0
    for path, current in walked:
        for value in alternatives(path[-1], current):
            what = f"{'.'.join(path)} = {value!r}"
            name = f"o{checked}"
            study_wide = two_bases(tmp_path, f"{name}w", study={**grid,
                                                                **merged(BASE, path, value)})
            own = two_bases(tmp_path, f"{name}m", study=grid, tiny=nested(path, value))
            assert own.bases()[1] == Base("other-base", OTHER), what
            wide_arts, own_arts = by_id(study_wide), by_id(own)
            assert set(own_arts) == set(ref_arts), what  # not a grid option
            wide_calls, own_calls = (builder_calls(c, monkeypatch) for c in (study_wide, own))
            changed = []
            for aid, art in own_arts.items():
                expected = (wide_arts if art.model_label == "tiny" else ref_arts)[aid]
                expected_call = (wide_calls if art.model_label == "tiny" else ref_calls)[aid]
                assert art.hash == expected.hash, f"{what}: {aid}"
                assert job_settings(art.job) == job_settings(expected.job), f"{what}: {aid}"
                assert own_calls[aid] == expected_call, f"{what}: {aid} builder call"
                if job_settings(art.job) != job_settings(ref_arts[aid].job):
                    changed.append(aid)  # (a cell whose dependency changed: its hash only)
                    assert own_calls[aid] != ref_calls[aid], f"{what}: {aid} builder call"
                    assert art.hash != ref_arts[aid].hash, f"{what}: {aid}"
            assert changed, f"{what} reaches no job of its base"
            assert all(aid.split(":")[1].startswith("tiny/") for aid in changed), what
            checked += 1
    assert checked > 90


def test_an_evaluation_override_leaves_the_trained_representations(tmp_path):
    reference = by_id(two_bases(tmp_path, "r"))
    own = by_id(two_bases(tmp_path, "e", tiny={"evaluation": {"batch_size": 2}}))
    changed = {aid for aid in own if own[aid].hash != reference[aid].hash}
    tiny_cells = {aid for aid, a in own.items()
                  if a.model_label == "tiny" and a.stage == "evaluation"}
    assert changed == tiny_cells and tiny_cells
    # a language-training override: its language representations, the task
    # representations trained with them and the cells that use either -- and no others
    own = by_id(two_bases(tmp_path, "l", tiny={
        "language_training": {"adapter": {"learning_rate": 0.01}}}))
    changed = {aid for aid in own if own[aid].hash != reference[aid].hash}
    assert {own[aid].job.stage for aid in changed} == {"language", "task", "evaluation"}
    for aid in changed:
        job = own[aid].job
        assert own[aid].model_label == "tiny"
        assert getattr(job, "language_kind", getattr(job, "kind", None)) == "adapter", aid
    assert own["evaluation:tiny/nli/slp+ta/en/sk"].hash == reference[
        "evaluation:tiny/nli/slp+ta/en/sk"].hash


def test_overrides_are_merged_key_by_key(tmp_path):
    """A mapping merges into the study's (its other keys stay); a value replaces."""
    study = {"task_training": {"prompt": {"num_tokens": 5, "max_steps": 2}},
             "evaluation": {"batch_size": 8, "max_new_tokens": 5}}
    config = two_bases(tmp_path, "m", study=study, tiny={
        "task_training": {"prompt": {"max_steps": 3}, "adapter": {"reduction_factor": 4}},
        "evaluation": {"max_new_tokens": None}, "sequence_length": 96})
    tiny, other = config.bases()
    effective = config.for_base(tiny)
    assert effective.task_training == {"prompt": {"num_tokens": 5, "max_steps": 3},
                                       "adapter": {"reduction_factor": 4}}
    assert effective.evaluation == {"batch_size": 8, "max_new_tokens": None}
    assert config.for_base(other) is config  # no overrides: the study itself
    assert config.task_training == study["task_training"]  # the study's own, unchanged
    arts = by_id(config)
    mine, theirs = arts["task:tiny/nli/en/stp"].job, arts["task:other-base/nli/en/stp"].job
    assert (mine.train.max_steps, mine.spec.num_tokens, mine.sequence_length) == (3, 5, 96)
    assert (theirs.train.max_steps, theirs.spec.num_tokens, theirs.sequence_length) == (
        2, 5, 64)
    assert arts["task:tiny/nli/en/ta"].job.spec.reduction_factor == 4
    assert arts["task:other-base/nli/en/ta"].job.spec.reduction_factor == 16
    from langtransfer.options import REFERENCE_MAX_NEW_TOKENS

    cell = "nli/ta/en/sk"
    assert arts[f"evaluation:tiny/{cell}"].job.evaluation.max_new_tokens == (
        REFERENCE_MAX_NEW_TOKENS)  # null: the task's own budget, as in the study
    assert arts[f"evaluation:other-base/{cell}"].job.evaluation.max_new_tokens == 5
    assert tiny.overridden() == ["task_training.prompt.max_steps=3",
                                 "task_training.adapter.reduction_factor=4",
                                 "evaluation.max_new_tokens=null", "sequence_length=96"]


def test_an_axis_compares_with_each_bases_own_setting(tmp_path):
    """``axes.init`` varies a language prompt from the base's own ``init``: a base whose
    prompts start from ``vocab`` has no ``init=vocab`` variant but an ``init=text`` one."""
    config = two_bases(tmp_path, "a", study={"axes": {"init": ["vocab", "text"]}},
                       tiny={"language_training": {"prompt": {"init": "vocab"}}})
    variants = {(a.model_label, a.job.variant) for a in plan(config) if a.stage == "language"}
    assert ("tiny", "init=text") in variants and ("tiny", "init=vocab") not in variants
    assert ("other-base", "init=vocab") in variants and ("other-base", "init=text") not in variants


# -- bad overrides -----------------------------------------------------------------------

ENTRY_KEYS = "name, label, sequence_length, language_training, task_training, evaluation"


@pytest.mark.parametrize(
    ("own", "pattern"),
    [
        ({"seed": 1}, rf"models entry 'tiny': 'seed' is one setting for the whole study, "
                      rf"not per model; an entry may set {ENTRY_KEYS}$"),
        ({"tasks": ["nli"]}, r"'tasks' is one setting for the whole study.*an entry may set"),
        ({"data": "hub"}, r"'data' is one setting for the whole study"),
        ({"evaluaton": {}}, r"unknown key in a models entry 'evaluaton'; valid: evaluation, "
                            r"label, language_training, name, sequence_length, task_training$"),
        ({"task_training": {"prompt": {"lr": 0.1}}},
         r"models entry 'tiny': unknown key in task_training.prompt 'lr'; valid: batch_size, "),
        ({"task_training": {"lora": {}}},
         r"models entry 'tiny': unknown representation kind in task_training 'lora'; "
         r"valid: adapter, prompt$"),
        ({"language_training": {"prompt": {"eval_steps": 5}}},
         r"models entry 'tiny': unknown key in language_training.prompt 'eval_steps'"),
        ({"language_training": 3}, r"models entry 'tiny': language_training must be a mapping"),
        ({"task_training": {"prompt": {"init": "frequent"}}},
         r"models entry 'tiny': task_training.prompt.init 'frequent' is a language-prompt"),
        ({"task_training": {"adapter": {"learning_rate": -1}}},
         r"models entry 'tiny': learning_rate must be >= 0, got -1"),
        ({"evaluation": {"beams": 2}},
         r"models entry 'tiny': unknown key in evaluation 'beams'; valid: batch_size, "),
        ({"evaluation": {"batch_size": 0}},
         r"models entry 'tiny': evaluation.batch_size must be a positive integer, got 0"),
        ({"evaluation": {"scoring": "beam"}},
         r"models entry 'tiny': unknown evaluation.scoring 'beam'; valid: generate, rank"),
        ({"evaluation": [1]}, r"models entry 'tiny': 'evaluation' must be a mapping"),
        ({"sequence_length": 8}, r"models entry 'tiny': sequence_length 8 is below 16"),
        ({"sequence_length": "long"}, r"models entry 'tiny': 'sequence_length' must be an int"),
    ],
)
def test_bad_overrides_are_refused_in_one_line(tmp_path, own, pattern):
    with pytest.raises(LangTransferError, match=pattern) as info:
        two_bases(tmp_path, "bad", tiny=own)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "bad.yaml")) and "\n" not in message


def test_the_study_values_are_still_checked_with_overrides(tmp_path):
    """An override does not excuse a bad study-wide value it does not replace."""
    with pytest.raises(LangTransferError, match=r"sequence_length 8 is below 16") as info:
        two_bases(tmp_path, "s", study={"sequence_length": 8}, tiny={"sequence_length": 64})
    assert "models entry" not in str(info.value)


# -- the dry run -------------------------------------------------------------------------


def test_dry_run_counts_per_base_and_lists_its_own_settings(tmp_path, capsys):
    raw = {k: v for k, v in FAST.items() if k != "model"}
    raw.update(output=str(tmp_path / "out"), tasks=["nli"], targets=["sk"],
               configurations=["base", "slp+ta"],
               models=["tiny", {"name": "tiny-causal", "label": "causal",
                                "task_training": {"adapter": {"learning_rate": 0.001}},
                                "evaluation": {"batch_size": 2}}])
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    assert main(["study", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "models: 2" in out
    at = out.index("  tiny (tiny): 5 artefacts (0 done, 5 to build) = 2 language, 1 task, "
                   "2 evaluation")
    assert out[at + 1] == ("  causal (tiny-causal): 5 artefacts (0 done, 5 to build) = "
                           "2 language, 1 task, 2 evaluation")
    assert out[at + 2] == ("    own settings: task_training.adapter.learning_rate=0.001, "
                           "evaluation.batch_size=2")
    assert "evaluations: 4 (0 done, 4 to build)" in out


# -- a real run --------------------------------------------------------------------------


def test_a_real_evaluation_uses_its_bases_settings(tmp_path):
    """Through the real builder and ``evaluate`` (the base configuration: nothing to
    train): each base's records hold its own evaluation settings, and changing one
    base's override rebuilds that base's cells only."""
    from langtransfer.results.records import read_records, record_key
    from langtransfer.study.run import run_study

    raw = {k: v for k, v in FAST.items() if k != "model"}
    raw.update(output=str(tmp_path / "out"), tasks=["nli"], targets=["sk"],
               configurations=["base"], max_eval_examples=3,
               models=["tiny", {"name": "tiny-causal", "evaluation": {"max_new_tokens": 2,
                                                                      "batch_size": 2}}])
    config = write(tmp_path, raw, "run")
    run = run_study(config, progress=False)
    assert run.ok and run.built == 2
    records = {record_key(r).model_label: r for r in read_records(config.output)}
    assert records["tiny-causal"]["generation"] == {"max_new_tokens": 2, "num_beams": 1,
                                                   "batch_size": 2}
    assert records["tiny"]["generation"] == {"max_new_tokens": 6, "num_beams": 1,
                                            "batch_size": 8}
    assert records["tiny-causal"]["model"]["family"] == "causal"
    # another override of tiny-causal's: with --overwrite only its cell is evaluated again
    raw["models"][1]["evaluation"]["max_new_tokens"] = 3
    again = run_study(write(tmp_path, raw, "changed"), overwrite=True, progress=False)
    assert again.ok and (again.built, again.skipped) == (1, 1)
    records = {record_key(r).model_label: r for r in read_records(config.output)}
    assert records["tiny-causal"]["generation"]["max_new_tokens"] == 3
    assert records["tiny"]["generation"]["max_new_tokens"] == 6
