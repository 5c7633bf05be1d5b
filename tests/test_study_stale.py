"""Stale results: what decides an evaluation's or a task training's outcome is in its
settings hash, so changing it rebuilds exactly what depends on it. The effective
generation budget, the task's target length and its metric definitions were not (issue:
``base`` records scored with older metric definitions were kept)."""

from __future__ import annotations

import pytest
from test_study_jobs import builder_calls, config_with

import langtransfer.options as options_module
from langtransfer.study.jobs import plan
from langtransfer.tasks import get_task


def hashes(tmp_path, name: str, path=("seed",), value=42) -> dict[str, str]:
    return {a.id: a.hash for a in plan(config_with(tmp_path, path, value, name))}


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert set(before) == set(after)
    return {i for i in before if before[i] != after[i]}


EVALUATIONS = "evaluation:"


@pytest.mark.parametrize("change", ["version", "notes", "primary"])
def test_metric_definitions_reach_every_evaluation_of_the_task(tmp_path, monkeypatch, change):
    before = hashes(tmp_path, "before")
    nli = type(get_task("nli"))
    if change == "version":
        monkeypatch.setattr(nli, "metrics_version", nli.metrics_version + 1)
    elif change == "notes":
        monkeypatch.setattr(nli, "metric_notes", {**nli.metric_notes, "accuracy": "other"})
    else:
        monkeypatch.setattr(nli, "primary_metric", "macro_f1")
    moved = changed(before, hashes(tmp_path, "after"))
    evaluations = {i for i in before if i.startswith(EVALUATIONS)}
    assert moved == evaluations  # every nli cell, base included; no training job
    assert "evaluation:nli/base/en/sk" in moved


def test_the_metric_fingerprint_is_written_into_the_record(tmp_path, monkeypatch):
    config = config_with(tmp_path, ("seed",), 42, "rec")
    calls = builder_calls(config, monkeypatch)
    record = calls["evaluation:nli/base/en/sk"]["record"]
    assert record["metrics_fingerprint"] == get_task("nli").metrics_fingerprint()


def test_target_length_reaches_task_jobs_and_their_evaluations(tmp_path, monkeypatch):
    before = hashes(tmp_path, "before")
    nli = type(get_task("nli"))
    monkeypatch.setattr(nli, "target_length", (nli.target_length or 3) + 5)
    moved = changed(before, hashes(tmp_path, "after"))
    tasks = {i for i in before if i.startswith("task:")}
    assert tasks and tasks <= moved
    assert not any(i.startswith("language:") for i in moved)
    # base evaluates without a task representation: target length plays no part there.
    assert "evaluation:nli/base/en/sk" not in moved
    assert "evaluation:nli/slp+stp/en/sk" in moved
    calls = builder_calls(config_with(tmp_path, ("seed",), 42, "c"), monkeypatch)
    assert calls["task:nli/en/ta"]["max_target_length"] == nli.target_length


def test_default_generation_budget_reaches_every_evaluation(tmp_path, monkeypatch):
    before = hashes(tmp_path, "before")
    explicit = hashes(tmp_path, "explicit", ("evaluation", "max_new_tokens"),
                      options_module.REFERENCE_MAX_NEW_TOKENS)
    assert explicit == before  # the default made explicit is the same job
    monkeypatch.setattr(options_module, "REFERENCE_MAX_NEW_TOKENS", 40)
    moved = changed(before, hashes(tmp_path, "after"))
    assert moved == {i for i in before if i.startswith(EVALUATIONS)}
    calls = builder_calls(config_with(tmp_path, ("seed",), 42, "c"), monkeypatch)
    assert calls["evaluation:nli/base/en/sk"]["max_new_tokens"] == 40
    # A budget the config sets is not the default's: the default no longer matters.
    fixed = hashes(tmp_path, "fixed", ("evaluation", "max_new_tokens"), 7)
    monkeypatch.setattr(options_module, "REFERENCE_MAX_NEW_TOKENS", 19)
    assert hashes(tmp_path, "fixed2", ("evaluation", "max_new_tokens"), 7) == fixed


def test_a_change_to_label_ranking_rebuilds_ranked_results_only(tmp_path, monkeypatch):
    """Ranked results carry label ranking's revision in their hash (its fix for targets
    cut to the task's length made earlier ranked records stale); generated results do not,
    so their hashes are those of studies run before the revision existed."""
    from langtransfer.study.jobs import job_settings

    generated = {a.id: a for a in plan(config_with(tmp_path, ("seed",), 42, "gen"))}
    assert all("scoring_revision" not in job_settings(a.job) for a in generated.values())
    ranked = hashes(tmp_path, "rank", ("evaluation", "scoring"), "rank")
    monkeypatch.setattr(options_module, "RANK_SCORING_REVISION",
                        options_module.RANK_SCORING_REVISION + 1)
    moved = changed(ranked, hashes(tmp_path, "rank2", ("evaluation", "scoring"), "rank"))
    assert moved == {i for i in ranked if i.startswith(EVALUATIONS)}
    # A generating study does not move with it.
    assert changed({i: a.hash for i, a in generated.items()}, hashes(tmp_path, "gen2")) == set()


@pytest.mark.parametrize(("key", "value"), [("num_beams", 4), ("max_new_tokens", 32)])
def test_generation_options_with_ranked_scoring_are_refused(tmp_path, key, value):
    """Ranking generates nothing: a generation option would be hashed and ignored, for
    the whole study or in a models entry alike. The neutral values stay accepted."""
    import yaml
    from test_study_jobs import BASE

    from langtransfer.errors import LangTransferError
    from langtransfer.study.load import load_study_config

    def load(name: str, **values):
        raw = {**BASE, "output": str(tmp_path / name), "tasks": ["nli"], **values}
        if "models" in values:
            raw.pop("model")  # one or the other
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        return load_study_config(path)

    with pytest.raises(LangTransferError, match=rf"evaluation\.{key} has no effect with "
                       r"scoring 'rank' .*use scoring 'generate'"):
        load("study", evaluation={"scoring": "rank", key: value})
    ranked = {"name": "tiny", "evaluation": {"scoring": "rank", key: value}}
    with pytest.raises(LangTransferError, match=rf"models entry 'tiny'.*evaluation\.{key}"):
        load("entry", models=[ranked])
    neutral = {"num_beams": 1, "max_new_tokens": None}[key]
    assert load("neutral", evaluation={"scoring": "rank", key: neutral}).evaluation["scoring"]
