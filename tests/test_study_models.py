"""The model axis of a study (``models: [...]``): labels, one grid per base, artefacts of
different bases apart (directories and hashes), each base loaded once, shards, dry run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from langtransfer.cli import main
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.results.records import read_records, record_key
from langtransfer.study.config import Base, StudyConfig, default_label
from langtransfer.study.load import load_study_config
from langtransfer.study.run import plan, run_study, shard_plan
from tests.test_study import FAST


def second_base(directory: Path) -> Path:
    """Another small seq2seq base written with ``save_pretrained`` (the hub-id code path):
    one layer each side and a narrower width than ``tiny``, so representations of one do
    not fit the other."""
    from transformers import ByT5Tokenizer, MT5ForConditionalGeneration

    from langtransfer.base.tiny import tiny_config

    if (directory / "config.json").is_file():
        return directory
    config = tiny_config()
    config.update({"d_model": 48, "d_kv": 12, "num_layers": 1, "num_decoder_layers": 1})
    MT5ForConditionalGeneration(config).save_pretrained(directory)
    ByT5Tokenizer().save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def other(tmp_path_factory) -> Path:
    return second_base(tmp_path_factory.mktemp("bases") / "tiny-narrow")


def write(tmp_path: Path, name: str = "study.yaml", **values) -> Path:
    raw = {k: v for k, v in FAST.items() if k != "model"}
    raw.update(output=str(tmp_path / "out"), tasks=["nli"], targets=["sk"],
               configurations=["base", "slp+ta"])
    raw.update(values)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


# -- the config --------------------------------------------------------------------------


def test_labels_come_from_names_or_are_given(tmp_path, other):
    assert default_label("bigscience/mt0-base") == "mt0-base"
    assert default_label("/data/models/my model/") == "my-model"
    assert default_label("tiny") == "tiny"
    config = load_study_config(write(tmp_path, models=[
        "tiny", str(other), {"name": "bigscience/mt0-base", "label": "mt0"}]))
    assert config.bases() == [Base("tiny", "tiny"), Base("tiny-narrow", str(other)),
                              Base("mt0", "bigscience/mt0-base")]
    single = load_study_config(write(tmp_path, "single.yaml", model="tiny"))
    assert single.bases() == [Base("", "tiny")]  # paths as before
    assert load_study_config(write(tmp_path, "one.yaml", models="tiny")).bases() == [
        Base("tiny", "tiny")]


@pytest.mark.parametrize(
    ("models", "extra", "pattern"),
    [
        (["tiny", "tiny"], {}, r"models lists 'tiny' twice"),
        (["a/tiny", "b/tiny"], {}, r"label 'tiny' names both 'a/tiny' and 'b/tiny'"),
        ([{"name": "tiny", "label": "t/1"}], {}, r"label 't/1' of 'tiny' must be letters"),
        ([{"name": "tiny", "label": "x=y"}], {}, r"label 'x=y'"),
        (["..."], {}, r"label '' of '...'"),
        ([{"name": "tiny", "lable": "t"}], {}, r"unknown key in a models entry 'lable'"),
        ([{"label": "t"}], {}, r"each entry is a model name or a mapping with 'name'"),
        ([3], {}, r"each entry is a model name .*got 3"),
        ([], {}, r"models must be a non-empty list"),
        (None, {}, r"models must be a non-empty list"),
        (["tiny"], {"model": "tiny"}, r"either 'model' or 'models', not both"),
    ],
)
def test_bad_models_are_refused_naming_the_value(tmp_path, models, extra, pattern):
    path = write(tmp_path, models=models, **extra)
    with pytest.raises(LangTransferError, match=pattern) as info:
        load_study_config(path)
    assert str(path) in str(info.value)


def test_a_config_object_with_both_model_and_models_is_refused(tmp_path):
    from langtransfer.study.load import validate

    config = StudyConfig(output=str(tmp_path), model="tiny", models=["tiny"], targets=["sk"],
                         tasks=["nli"], corpus="fixtures", data="fixtures")
    with pytest.raises(LangTransferError, match="either 'model' .tiny. or 'models'"):
        validate(config)
    with pytest.raises(UnknownNameError):  # the usual checks still run on a models study
        load_study_config(write(tmp_path, models=["tiny"], targets=["xx"]))


# -- the plan ----------------------------------------------------------------------------


def test_each_base_gets_the_whole_grid_in_its_own_directories(tmp_path, other):
    single = plan(load_study_config(write(tmp_path, "s.yaml", model="tiny")))
    config = load_study_config(write(tmp_path, models=["tiny", str(other)]))
    arts = plan(config)
    assert len(arts) == 2 * len(single)
    assert len({a.id for a in arts}) == len(arts)
    for label, name in (("tiny", "tiny"), ("tiny-narrow", str(other))):
        mine = [a for a in arts if a.model_label == label]
        assert sorted(a.key for a in mine) == sorted(a.key for a in single)
        assert {a.job.model for a in mine} == {name}
        assert all(a.id.startswith(f"{a.stage}:{label}/") for a in mine)
        out = Path(config.output)
        for a in mine:
            top = {"evaluation": "results"}.get(a.stage, "representations")
            assert a.path.relative_to(out).parts[:2] == (top, label), a.path
            if a.work is not None:
                assert label in a.work.relative_to(out).parts[:2]
            assert all(d.startswith(f"{d.partition(':')[0]}:{label}/") for d in a.deps)
    # the same job on another base is another artefact: another hash and another path
    by_id = {a.id: a for a in arts}
    for a in single:
        mine, theirs = by_id[a.id.replace(":", ":tiny/", 1)], by_id[
            a.id.replace(":", ":tiny-narrow/", 1)]
        assert mine.hash == a.hash  # `models: [tiny]` builds what `model: tiny` builds
        assert theirs.hash != mine.hash and theirs.path != mine.path
    # one base's artefacts all come before the next base's, each in dependency order
    labels = [a.model_label for a in arts]
    assert labels == sorted(labels, key=["tiny", "tiny-narrow"].index)
    position = {a.id: i for i, a in enumerate(arts)}
    assert all(position[d] < position[a.id] for a in arts for d in a.deps)


def test_shards_split_the_cells_of_every_base(tmp_path, other):
    arts = plan(load_study_config(write(tmp_path, models=["tiny", str(other)],
                                        configurations=["base", "ta", "slp+ta"])))
    cells = {a.id for a in arts if a.stage == "evaluation"}
    parts = [shard_plan(arts, k, 2) for k in (1, 2)]
    mine = [{a.id for a in part if a.stage == "evaluation"} for part in parts]
    assert mine[0] | mine[1] == cells and not mine[0] & mine[1]
    tasks = [{a.id for a in part if a.stage == "task"} for part in parts]
    assert not tasks[0] & tasks[1]  # a task representation is trained by one shard
    for part in parts:
        ids = {a.id for a in part}
        assert all(d in ids for a in part for d in a.deps)


def test_dry_run_counts_per_model(tmp_path, other, capsys):
    path = write(tmp_path, models=["tiny", {"name": str(other), "label": "narrow"}])
    assert main(["study", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "evaluations: 4 (0 done, 4 to build)" in out
    assert "models: 2" in out
    assert ("  tiny (tiny): 5 artefacts (0 done, 5 to build) = 2 language, 1 task, "
            "2 evaluation") in out
    assert f"  narrow ({other}): 5 artefacts" in out
    assert "narrow: evaluation nli: 2 cells" in out and "tiny: language prompt" in out


# -- a real run --------------------------------------------------------------------------


def test_a_study_on_both_families_loads_each_once_and_keeps_them_apart(tmp_path, capsys):
    """models: [tiny, tiny-causal]: the seq2seq and the causal family in one study (a soft
    language prompt and a task adapter on each), through the CLI; one report compares them."""
    from langtransfer.composition.loaded_base import LoadedBase
    from langtransfer.representations import read_manifest

    path = write(tmp_path, models=["tiny", "tiny-causal"])
    config = load_study_config(path)
    loads = LoadedBase.loads
    assert main(["study", str(path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "10 artefacts built" in printed and "base loads: 2" in printed
    assert LoadedBase.loads - loads == 2
    assert "== model tiny (tiny) ==" in printed and "== across models ==" in printed
    records = read_records(config.output)
    assert len(records) == 4
    families = {record_key(r).model_label: r["model"]["family"] for r in records}
    assert families == {"tiny": "seq2seq", "tiny-causal": "causal"}
    out = Path(config.output)
    for label, family in families.items():
        for rep in ("language/prompt/sk", "language/prompt/en", "task/nli/en/slp+ta"):
            manifest = read_manifest(out / "representations" / label / rep)
            assert manifest["base_model"]["family"] == family, (label, rep)
            assert manifest["base_model"]["name"] == label
        record = json.loads((out / "results" / label / "nli" / "slp+ta" / "en__sk.json")
                            .read_text())
        assert record["model_label"] == label
        assert (out / "predictions" / label / "nli" / "slp+ta" / "en__sk").is_dir()
    report = json.loads((out / "report" / "report.json").read_text())
    assert sorted(report["models"]) == ["tiny", "tiny-causal"]
    assert {a["column"] for a in report["cross_model"]["agreement"]} == {"sk", "avg"}
    assert (out / "report" / "tiny-causal" / "tables" / "nli.en.md").is_file()
    again = run_study(config, progress=False)
    assert again.skipped == 10 and again.built == 0 and again.base_loads == 0
