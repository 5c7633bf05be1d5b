"""The study's graph of units (what executors run) and ``run_unit``/``--unit``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_study import FAST, small
from test_study_failures import FakeBuilder

from langtransfer.cli import main
from langtransfer.errors import LangTransferError
from langtransfer.results.failures import read_failures
from langtransfer.study.graph import (
    UNIT_ID,
    CostModel,
    critical_path,
    find_unit,
    lower_bound,
    pending_units,
    unit_id_of,
    units,
)
from langtransfer.study.load import load_study_config
from langtransfer.study.run import plan, run_study, run_unit

ALL7 = ["base", "ta", "stp", "la+ta", "la+stp", "slp+ta", "slp+stp"]


def test_units_group_cells_by_task_representation(tmp_path):
    config = load_study_config(small(tmp_path, tasks=["qa", "nli"], targets=["en", "sk", "ru"],
                                     configurations=ALL7))
    arts = plan(config)
    us = units(arts)
    by_id = {u.id: u for u in us}
    # every artefact in exactly one unit
    listed = [a for u in us for a in u.artefact_ids]
    assert sorted(listed) == sorted(a.id for a in arts)
    train = [u for u in us if u.kind == "train"]
    assert all(len(u.artefacts) == 1 and u.artefacts[0].stage != "evaluation" for u in train)
    assert len(train) == 6 + 2 * 6  # language reps (2 kinds x 3 languages), task reps
    # one evaluate unit per task x source x configuration: its targets together
    evaluate = [u for u in us if u.kind == "evaluate"]
    assert len(evaluate) == 2 * 7
    cells = by_id["evaluate.nli.en.slp+ta"]
    assert sorted(a.key[3] for a in cells.artefacts) == ["en", "ru", "sk"]
    assert set(cells.deps) == {"task.nli.en.slp+ta", "language.prompt.en", "language.prompt.sk",
                               "language.prompt.ru"}
    assert by_id["task.nli.en.slp+ta"].deps == ("language.prompt.en",)
    assert by_id["evaluate.qa.en.base"].deps == ()
    assert all(UNIT_ID.fullmatch(u.id) for u in us)
    assert all(unit_id_of(a) == u.id for u in us for a in u.artefacts)
    # topological, and among the ready ones the longest remaining path first
    seen: set[str] = set()
    for u in us:
        assert set(u.deps) <= seen
        seen.add(u.id)
    assert us[0].kind == "train" and us[0].id.startswith("language.")
    assert critical_path(us) == max(u.path for u in us)
    chain = by_id["language.prompt.en"].path
    assert chain == pytest.approx(by_id["language.prompt.en"].cost
                                  + max(by_id[d].path for d in ("task.nli.en.slp+ta",
                                                                 "task.qa.en.slp+ta",
                                                                 "task.nli.en.slp+stp",
                                                                 "task.qa.en.slp+stp",
                                                                 "evaluate.nli.en.slp+ta",
                                                                 "evaluate.qa.en.slp+ta",
                                                                 "evaluate.nli.en.slp+stp",
                                                                 "evaluate.qa.en.slp+stp")))
    work = sum(u.cost for u in us)
    assert lower_bound(us, 1) == pytest.approx(work)
    assert lower_bound(us, 10_000) == pytest.approx(critical_path(us))


def test_cost_model_figures_are_parameters(tmp_path):
    config = load_study_config(small(tmp_path))  # 4 steps everywhere, 6 eval examples
    arts = {a.id: a for a in plan(config)}
    cost = CostModel(language_step=1.0, task_step=2.0, eval_examples_per_second=3.0, fixed=5.0)
    assert cost.artefact(arts["language:prompt/sk"]) == 5.0 + 4 * 1.0
    assert cost.artefact(arts["task:nli/en/ta"]) == 5.0 + 4 * 2.0
    assert cost.artefact(arts["evaluation:nli/ta/en/sk"]) == 5.0 + 6 / 3.0  # capped at 6
    assert CostModel(test_examples={"nli": 10, "nli/sk": 4}).examples("nli", "sk") == 4
    us = units(list(arts.values()), cost)
    assert {u.id: u.cost for u in us}["evaluate.nli.en.ta"] == 2 * (5.0 + 2.0)


def test_unit_ids_carry_labels_and_variants(tmp_path):
    raw = {**{k: v for k, v in FAST.items() if k != "model"}, "output": str(tmp_path / "out"),
           "models": ["tiny", "tiny-causal"], "tasks": ["nli"], "targets": ["en", "sk"],
           "configurations": ["base", "ta", "slp+ta"],
           "axes": {"init": ["vocab"], "within": {"targets": ["sk"]}},
           "composed": [{"language": "sk", "weights": {"en": 1.0}, "name": "en"}]}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    config = load_study_config(tmp_path / "study.yaml")
    us = units(plan(config))
    ids = {u.id for u in us}
    assert "language.tiny-causal.prompt.sk.init=vocab" in ids
    assert "evaluate.tiny.nli.en.slp+ta.init=vocab" in ids
    # a composed cell shares the unit of its trained cell's task representation
    shared = next(u for u in us if u.id == "evaluate.tiny.nli.en.slp+ta")
    assert {a.key[-1] for a in shared.artefacts} >= {"composed=en"}
    assert {u.model for u in us} == {"tiny", "tiny-causal"}
    assert len(ids) == len(us)


def test_run_unit_builds_its_artefacts_and_blocks_on_missing_dependencies(tmp_path):
    config = load_study_config(small(tmp_path))
    out = Path(config.output)
    arts = plan(config)
    us = units(arts)
    # a unit run before its dependency: its cells needing it are blocked, the others built
    builder = FakeBuilder(out)
    run = run_unit(config, "evaluate.nli.en.slp+ta", builder=builder)
    assert builder.built == [] and not run.ok
    assert [(f.artefact, f.blocked_by) for f in run.blocked] == [
        ("evaluation:nli/slp+ta/en/en", ("task:nli/en/slp+ta", "language:prompt/en")),
        ("evaluation:nli/slp+ta/en/sk", ("task:nli/en/slp+ta", "language:prompt/sk"))]
    # a failed dependency: only its dependants are blocked
    failing = FakeBuilder(out, {"language:prompt/sk"})
    for u in us:
        if u.kind == "train":
            run_unit(config, u.id, builder=failing, artefacts=arts)
    builder = FakeBuilder(out)
    run = run_unit(config, "evaluate.nli.en.slp+ta", builder=builder, artefacts=arts)
    assert builder.built == ["evaluation:nli/slp+ta/en/en"]
    assert [(f.artefact, f.blocked_by) for f in run.blocked] == [
        ("evaluation:nli/slp+ta/en/sk", ("language:prompt/sk",))]
    assert {f.artefact for f in read_failures(out)} == {"language:prompt/sk",
                                                        "evaluation:nli/slp+ta/en/sk"}
    assert [u.id for u in pending_units(us, out)] == [
        "language.prompt.sk", "evaluate.nli.en.base", "evaluate.nli.en.ta",
        "evaluate.nli.en.slp+ta"]
    # what is done is skipped; an unknown id names valid ones
    again = run_unit(config, "task.nli.en.ta", builder=FakeBuilder(out))
    assert again.counts == {"built": 0, "skipped": 1, "failed": 0, "blocked": 0}
    with pytest.raises(LangTransferError, match="unknown unit 'task.nli.xx'.*task.nli.en"):
        find_unit(us, "task.nli.xx")
    # a rerun of the whole study builds exactly what is left
    left = {a for u in pending_units(us) for a in u.artefact_ids if not is_done_id(arts, a)}
    final = FakeBuilder(out)
    assert run_study(config, builder=final, progress=False).ok
    assert set(final.built) == left == {
        "language:prompt/sk", "evaluation:nli/base/en/en", "evaluation:nli/base/en/sk",
        "evaluation:nli/ta/en/en", "evaluation:nli/ta/en/sk", "evaluation:nli/slp+ta/en/sk"}


def is_done_id(arts, aid: str) -> bool:
    from langtransfer.study.jobs import is_done

    return is_done(next(a for a in arts if a.id == aid))


def test_unit_on_the_command_line_and_the_dry_run_counts(tmp_path, capsys):
    path = small(tmp_path)
    assert main(["study", str(path), "--dry-run"]) == 0
    assert "units: 7 (4 train, 3 evaluate)" in capsys.readouterr().out
    assert main(["study", str(path), "--unit", "evaluate.nli.en.base", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "unit evaluate.nli.en.base: study" in out and "2 artefacts built" in out
    records = sorted(p.name for p in (tmp_path / "out" / "results").rglob("*.json"))
    assert records == ["en__en.json", "en__sk.json"]
    assert json.loads((tmp_path / "out" / "results" / "nli" / "base" / "en__sk.json")
                      .read_text())["configuration"] == "base"
    # a unit whose dependencies are not built: its cells are blocked, exit code 1
    assert main(["study", str(path), "--unit", "evaluate.nli.en.ta", "--quiet"]) == 1
    assert "blocked by task:nli/en/ta" in capsys.readouterr().err
    assert main(["study", str(path), "--unit", "evaluate.nli.xx"]) == 2
    assert "unknown unit 'evaluate.nli.xx'" in capsys.readouterr().err
