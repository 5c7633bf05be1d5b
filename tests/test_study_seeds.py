"""Seeds as an axis: ``seeds: [a, b]`` trains and evaluates the grid once per seed; one
seed is today's study (same ids, paths, hashes); the later seeds go under ``seed=<n>/``;
bad lists are refused in one line; the dry run counts what they add; the report
averages and resamples the seeds."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml

from langtransfer.cli import main
from langtransfer.errors import LangTransferError
from langtransfer.study.dry_run import check_plan, describe_dry_run
from langtransfer.study.jobs import EvaluationJob, LanguageJob, TaskJob, plan
from langtransfer.study.load import load_study_config
from langtransfer.study.run import shard_plan

BASE = {
    "model": "tiny", "sources": ["en"], "targets": ["en", "sk"], "tasks": ["nli"],
    "configurations": ["base", "ta", "slp+ta"], "corpus": "fixtures", "data": "fixtures",
    "sequence_length": 64, "validation_documents": 3, "max_train_examples": 16,
    "max_eval_examples": 6,
    "language_training": {"prompt": {"max_steps": 2, "batch_size": 4, "num_tokens": 4,
                                     "save_steps": 2}},
    "task_training": {"adapter": {"max_steps": 4, "batch_size": 8, "eval_steps": 2,
                                  "save_steps": 2, "learning_rate": 1e-2}},
    "evaluation": {"batch_size": 8, "scoring": "rank"},
}


def config(tmp_path: Path, name: str = "s", **changes):
    raw = {**BASE, "output": str(tmp_path / name), **changes}
    if "models" in changes:
        raw.pop("model")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_study_config(path)


@pytest.mark.parametrize(("seeds", "message"), [
    ([], "'seeds' must be a non-empty list of integers"),
    ([42, 43, 42], "seeds: 42 is listed twice"),
    ([42, "43"], "seeds: '43' is not an integer"),
    ([42, True], "seeds: True is not an integer"),
    (42, "'seeds' must be a non-empty list of integers"),
])
def test_bad_seed_lists_are_refused_in_one_line(tmp_path, seeds, message):
    with pytest.raises(LangTransferError, match=message) as info:
        config(tmp_path, seeds=seeds)
    assert "\n" not in str(info.value)


def test_seed_and_seeds_together_and_a_per_kind_seed_are_refused(tmp_path):
    with pytest.raises(LangTransferError, match=r"either 'seed' \(3\) or 'seeds' \(\[1, 2\]\)"):
        config(tmp_path, seed=3, seeds=[1, 2])
    assert config(tmp_path, seed=1, seeds=[1, 2]).seed_list() == [1, 2]  # as to_dict writes
    training = {"adapter": {**BASE["task_training"]["adapter"], "seed": 5}}
    with pytest.raises(LangTransferError, match=r"task_training.adapter.seed would train"):
        config(tmp_path, seeds=[1, 2], task_training=training)


def _plan(cfg) -> dict[str, tuple[str, str]]:
    return {a.id: (str(a.path), a.hash) for a in plan(cfg)}


def test_one_seed_is_todays_study(tmp_path):
    today = config(tmp_path, "a", seed=7)
    listed = config(tmp_path, "a", seeds=[7])
    assert _plan(listed) == _plan(today)
    assert listed.fingerprint() == today.fingerprint()


def test_later_seeds_train_and_evaluate_the_grid_again_apart(tmp_path):
    one = config(tmp_path, "a", seed=7)
    two = config(tmp_path, "a", seeds=[7, 8])
    first, both = _plan(one), _plan(two)
    assert {k: v for k, v in both.items() if k in first} == first  # reused as they are
    later = {k: v for k, v in both.items() if k not in first}
    assert len(later) == len(first)
    for aid, (path, _) in later.items():
        stage, _, rest = aid.partition(":")
        assert rest.startswith("seed=8/") and "/seed=8/" in path, aid
        assert both[f"{stage}:{rest.removeprefix('seed=8/')}"][1] != later[aid][1]
    arts = {a.id: a for a in plan(two)}
    lang = arts["language:seed=8/prompt/sk"].job
    assert isinstance(lang, LanguageJob) and lang.train.seed == 8 and lang.spec.seed == 8
    task = arts["task:seed=8/nli/en/ta"].job
    assert isinstance(task, TaskJob) and task.train.seed == 8
    cell = arts["evaluation:seed=8/nli/slp+ta/en/sk"]
    assert isinstance(cell.job, EvaluationJob) and cell.job.seed == 8
    assert cell.path == Path(two.output, "results", "seed=8", "nli", "slp+ta", "en__sk.json")
    assert cell.deps == ("task:seed=8/nli/en/slp+ta", "language:seed=8/prompt/sk")


def test_seeds_combine_with_models_and_shards(tmp_path):
    cfg = config(tmp_path, models=["tiny", "tiny-causal"], seeds=[1, 2])
    arts = plan(cfg)
    assert "language:tiny-causal/seed=2/prompt/sk" in {a.id for a in arts}
    shards = [shard_plan(arts, k, 3) for k in (1, 2, 3)]
    cells = [{a.id for a in s if a.stage == "evaluation"} for s in shards]
    assert set().union(*cells) == {a.id for a in arts if a.stage == "evaluation"}
    assert sum(map(len, cells)) == len(set().union(*cells))  # each cell in one shard


def test_the_dry_run_counts_what_each_later_seed_adds(tmp_path):
    cfg = config(tmp_path, seeds=[7, 8, 9])
    arts = plan(cfg)
    text = describe_dry_run(arts, check_plan(arts))
    assert "seeds: 3 (7, 8, 9): every representation is trained and every cell evaluated " \
           "once per seed" in text
    # 2 language prompts x 2 steps + 2 task adapters x 4 steps
    assert "  seed=8: 2 language representations, 2 task representations (12 training steps " \
           "in all), 6 evaluations" in text
    assert "evaluations: 18 (0 done, 18 to build)" in text
    assert "evaluation nli (seed=9): 6 cells" in text
    assert "nli: en <= 6 examples (the max_eval_examples cap) -> >= 80.9" in text  # 198 / sqrt(6)


def test_a_study_of_two_seeds_reports_their_mean_and_interval(tmp_path):
    cfg_path = tmp_path / "two.yaml"
    raw = {**BASE, "output": str(tmp_path / "two"), "seeds": [7, 8], "targets": ["en"],
           "configurations": ["base", "ta"]}
    cfg_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(["study", str(cfg_path), "--quiet"]) == 0
    study = tmp_path / "two"
    first = json.loads((study / "results" / "nli" / "ta" / "en__en.json").read_text())
    second = json.loads((study / "results" / "seed=8" / "nli" / "ta" / "en__en.json").read_text())
    assert (first["seed"], second["seed"], second["replicate"]) == (7, 8, "seed=8")
    assert "replicate" not in first
    assert (study / "results" / "seed=8" / "nli" / "ta" / "en__en.scores.safetensors").is_file()
    report = study / "report" / "tables" / "nli.en.intervals.csv"
    rows = {r.split(",")[0]: r.split(",") for r in report.read_text().splitlines()[1:]
            if r.split(",")[1] == "en"}
    mean = (first["metrics"]["accuracy"] + second["metrics"]["accuracy"]) / 2
    assert float(rows["ta"][2]) == pytest.approx(mean, abs=1e-3) and rows["ta"][6] == "2"
