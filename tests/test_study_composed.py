"""Composed / proxy language representations in the study: the plan, a real tiny run (the
study's composed representations equal the weighted sum of its trained ones), the report's
trained-vs-composed section, and bad `composed` entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from langtransfer.cli import main
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.representations import load_representation
from langtransfer.study.dry_run import check_plan, describe_dry_run
from langtransfer.study.load import load_study_config
from langtransfer.study.run import plan, run_study
from tests.test_study import FAST

GRID = {
    "tasks": ["nli"],
    "targets": ["en", "de", "sk", "ru"],
    "configurations": ["base", "slp+ta", "la+ta"],
}


def config(tmp_path: Path, name: str = "s.yaml", **values):
    raw = {**FAST, **GRID, "output": str(tmp_path / "out"), **values}
    (tmp_path / name).write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_study_config(tmp_path / name)


def test_composed_entries_add_a_build_step_and_cells_as_documented(tmp_path):
    plain = plan(config(tmp_path, "a.yaml"))
    composed = config(tmp_path, "b.yaml", composed=[
        {"language": "sk"}, {"language": "ru", "weights": {"sk": 0.75, "de": 0.25}}])
    arts = plan(composed)
    by_stage = {s: [a for a in arts if a.stage == s]
                for s in ("language", "composed", "task", "evaluation")}
    old = {s: [a for a in plain if a.stage == s] for s in by_stage}
    # one composed representation per entry and language kind, built from trained parts
    assert sorted(a.id for a in by_stage["composed"]) == [
        "composed:adapter/ru/composed=sk0.75_de0.25", "composed:adapter/sk/composed=proxy",
        "composed:prompt/ru/composed=sk0.75_de0.25", "composed:prompt/sk/composed=proxy"]
    proxy = next(a for a in by_stage["composed"] if a.id == "composed:prompt/sk/composed=proxy")
    # sk over en, de, ru: each shares one of family (ru: Slavic) or script (en, de: Latin)
    assert proxy.job.weights == (("en", 1 / 3), ("de", 1 / 3), ("ru", 1 / 3))
    assert proxy.job.weights_from == "registry"
    assert set(proxy.deps) == {"language:prompt/en", "language:prompt/de", "language:prompt/ru"}
    # nothing is trained for them: same language and task representations, same hashes
    for stage in ("language", "task"):
        assert {a.id: a.hash for a in by_stage[stage]} == {a.id: a.hash for a in old[stage]}
    # 2 entries x 2 configurations with a language representation more cells; the trained
    # cells are the same jobs with the same hashes (and paths)
    extra = [a for a in by_stage["evaluation"] if len(a.key) == 5]
    assert len(by_stage["evaluation"]) == len(old["evaluation"]) + 4 == 16
    assert {a.id: (a.hash, a.path) for a in by_stage["evaluation"] if len(a.key) == 4} == {
        a.id: (a.hash, a.path) for a in old["evaluation"]}
    cell = next(a for a in extra if a.key == ("nli", "slp+ta", "en", "sk", "composed=proxy"))
    assert cell.deps == ("task:nli/en/slp+ta", "composed:prompt/sk/composed=proxy")
    assert cell.path == Path(composed.output, "results", "composed=proxy", "nli", "slp+ta",
                             "en__sk.json")
    text = describe_dry_run(arts, check_plan(arts))
    assert "composed representations: 4 (0 done, 4 to build, no training)" in text
    assert "evaluations: 16 (0 done, 16 to build)" in text
    assert "composed prompt sk [composed=proxy] (no training) = 0.333 en + 0.333 de + 0.333 ru" \
        in text
    assert "evaluation nli [composed=proxy]: 2 cells" in text
    assert "variant composed=proxy: 2 composed representations (no training), 2 evaluations" \
        in text
    assert "composed representations" not in describe_dry_run(plain, check_plan(plain))


def test_a_study_builds_evaluates_and_reports_composed_representations(tmp_path):
    from langtransfer.report.build import COMBINED_PLOT, build_report
    from langtransfer.results.records import read_records

    study = config(tmp_path, composed=[{"language": "sk"}])
    run = run_study(study, progress=False)
    assert run.ok, run.failures
    out = Path(study.output)
    reps = out / "representations"
    # the prompt proxy is exactly the weighted sum of the study's trained prompts
    proxy = load_representation(reps / "composed" / "prompt" / "composed=proxy" / "sk")
    expected = torch.zeros_like(proxy.weights.embedding)
    for lang in ("en", "de", "ru"):
        trained = load_representation(reps / "language" / "prompt" / lang)
        expected = expected + (1 / 3) * trained.weights.embedding
    assert torch.equal(proxy.weights.embedding, expected)
    assert proxy.training["steps"] == 0
    # the adapter proxy's weights are the weighted average of the trained adapters'
    parts = [load_file(str(reps / "language" / "adapter" / c / "adapter.safetensors"))
             for c in ("en", "de", "ru")]
    averaged = load_file(str(reps / "composed" / "adapter" / "composed=proxy" / "sk" /
                             "adapter.safetensors"))
    for key, value in averaged.items():
        part_keys = [key.replace(".lang_sk.", f".lang_{c}.") for c in ("en", "de", "ru")]
        torch.testing.assert_close(value, sum(p[k] for p, k in zip(parts, part_keys,
                                                                    strict=True)) / 3)
    # evaluated like a trained one, recorded under its variant
    record = json.loads((out / "results" / "composed=proxy" / "nli" / "slp+ta" /
                         "en__sk.json").read_text())
    assert record["variant"] == "composed=proxy" and record["target_language"] == "sk"
    assert record["representations"]["language"]["steps"] == 0
    assert record["composition"]["weights"] == {"en": 1 / 3, "de": 1 / 3, "ru": 1 / 3}
    assert record["composition"]["weights_from"] == "registry"
    trained = json.loads((out / "results" / "nli" / "slp+ta" / "en__sk.json").read_text())
    assert "variant" not in trained and trained["representations"]["language"]["steps"] == 4
    # a rerun builds nothing
    assert run_study(study, progress=False).built == 0

    summary = build_report(read_records(out), tmp_path / "report")
    md = summary.index.read_text()
    assert "## Trained vs composed language representations" in md
    assert f"]({COMBINED_PLOT})" in md and "composed one is as good as training" in md
    assert "| slp+ta [composed=proxy] |" in md  # a row of the task table like any other
    png = tmp_path / "report" / COMBINED_PLOT
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png in summary.files
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    cells = data["trained_vs_composed"]["cells"]
    assert data["trained_vs_composed"]["plot"] == COMBINED_PLOT
    assert {(c["configuration"], c["target"]) for c in cells} == {("slp+ta", "sk"),
                                                                 ("la+ta", "sk")}
    table = data["tables"][0]["rows"]
    for c in cells:
        assert c["trained"] == table[c["configuration"]]["sk"]
        assert c["composed"] == table[f"{c['configuration']} [composed=proxy]"]["sk"]
        assert c["delta"] == pytest.approx(c["composed"] - c["trained"])
        assert c["weights"] == "0.33 en + 0.33 de + 0.33 ru"

    # served like a trained one, also from a study directory that moved
    import shutil

    from langtransfer.serving.predictor import Predictor
    from tests.test_predictor import request_inputs

    moved = tmp_path / "moved"
    shutil.move(str(out), str(moved))
    cell = moved / "predictions" / "composed=proxy" / "nli" / "slp+ta" / "en__sk"
    expected = [json.loads(line)["prediction"]
                for line in (cell / "predictions.jsonl").read_text().splitlines()]
    with Predictor.load(moved, batch_size=4) as predictor:
        listed = {(a["language"], a["configuration"]) for a in predictor.available()}
        assert {("sk", "slp+ta [composed=proxy]"), ("sk", "la+ta [composed=proxy]")} <= listed
        inputs = request_inputs("nli", "sk")[: len(expected)]
        got = predictor.predict("nli", "sk", inputs, configuration="slp+ta [composed=proxy]")
    assert [p.raw for p in got] == expected


@pytest.mark.parametrize("composed, error, pattern", [
    ([{"language": "sk", "weights": {"de": 0.5, "ru": 0.4}}], LangTransferError,
     r"composed entry 1 \(sk\): weights \{de: 0.5, ru: 0.4\} sum to 0.9, not 1"),
    ([{"language": "sk", "weights": {"de": 1.5, "ru": -0.5}}], LangTransferError,
     r"weight of ru must be positive, got -0.5"),
    ([{"language": "zh"}], LangTransferError,
     r"composed entry 1: no relative of language 'zh' \(Sinitic, Han script\) among en, de, "
     r"ru"),
    ([{"language": "sk", "from": ["de", "de"]}], LangTransferError,
     r"composed entry 1 from: language 'de' repeats"),
    ([{"language": "sk", "weights": {"de": 0.5, "German": 0.5}}], LangTransferError,
     r"composed entry 1 weights: language 'de' repeats"),
    ([{"language": "sk"}, {"language": "sk"}], LangTransferError,
     r"composed entry 2: composed=proxy for sk repeats an earlier entry"),
    ([{"language": "cs"}], LangTransferError,
     r"composed entry 1: language 'cs' is not a target.*targets: en, de, ru, zh"),
    ([{"language": "sk", "weight": {"de": 1}}], UnknownNameError,
     r"unknown key in .*composed entry 1 'weight'; valid: from, language, name, trained, weights"),
    ([{"language": "sk", "name": "a/b"}], LangTransferError, r"name must be .* got 'a/b'"),
    ([{"language": "sk", "weights": {"xx": 1.0}}], UnknownNameError, r"unknown language 'xx'"),
])
def test_bad_composed_entries_fail_in_one_line_naming_the_value(tmp_path, composed, error,
                                                                 pattern):
    targets = ["en", "de", "ru", "zh"] if composed[0]["language"] in ("zh", "cs") else None
    values = {"composed": composed, **({"targets": targets} if targets else {})}
    with pytest.raises(error, match=pattern):
        config(tmp_path, **values)


def test_composed_needs_a_configuration_with_a_language_representation(tmp_path, capsys):
    raw = {**FAST, **GRID, "output": str(tmp_path / "out"), "configurations": ["base", "ta"],
           "composed": [{"language": "sk"}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["study", str(tmp_path / "s.yaml"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'composed' needs a configuration with a language representation" in err
    assert not (tmp_path / "out").exists()


def test_a_language_without_a_corpus_gets_cells_with_its_proxy_only(tmp_path):
    from langtransfer.training.corpora import fixture_path

    corpus = {c: str(fixture_path(c)) for c in ("en", "de", "ru")}  # no Slovak text
    with pytest.raises(LangTransferError, match="corpus lists no file for language 'sk'"):
        config(tmp_path, corpus=corpus)
    study = config(tmp_path, corpus=corpus, composed=[{"language": "sk", "trained": False}])
    ids = {a.id for a in plan(study)}
    assert not {"language:prompt/sk", "language:adapter/sk", "evaluation:nli/slp+ta/en/sk"} & ids
    assert {"evaluation:nli/base/en/sk", "evaluation:nli/slp+ta/en/sk/composed=proxy",
            "composed:prompt/sk/composed=proxy"} <= ids
    for bad, pattern in (
        ([{"language": "en", "trained": False}], "en is a source"),
        ([{"language": "sk", "trained": False},
          {"language": "ru", "weights": {"sk": 1.0}}], "sk has no trained representation"),
        ([{"language": "sk", "trained": "no"}], "trained must be true or false, got 'no'"),
    ):
        with pytest.raises(LangTransferError, match=pattern):
            config(tmp_path, composed=bad)


def test_report_of_several_models_has_a_composed_section_per_model(tmp_path):
    from langtransfer.report.build import build_report
    from tests.test_report import make_record

    records = []
    for label, shift in (("a", 0.0), ("b", 5.0)):
        for target in ("de", "sk"):
            for configuration, v in (("base", 30.0), ("slp+ta", 40.0)):
                records.append(make_record("nli", configuration, target, v + shift,
                                           model_label=label))
        records.append(make_record("nli", "slp+ta", "sk", 37.0 + shift, model_label=label,
                                   variant="composed=proxy",
                                   composition={"weights": {"de": 1.0}}))
    summary = build_report(records, tmp_path / "report")
    md = summary.index.read_text()
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    for label, shift in (("a", 0.0), ("b", 5.0)):
        plot = f"{label}/plots/trained_vs_composed.png"
        assert (tmp_path / "report" / plot).is_file() and f"]({plot})" in md
        (cell,) = data["models"][label]["trained_vs_composed"]["cells"]
        assert (cell["trained"], cell["composed"], cell["base"]) == (40 + shift, 37 + shift,
                                                                      30 + shift)
        assert cell["delta"] == -3.0 and cell["weights"] == "1 de"
    assert md.count("### Trained vs composed language representations") == 2


def test_axes_within_limits_the_composed_cells(tmp_path):
    study = config(tmp_path, composed=[{"language": "sk"}],
                   axes={"within": {"configurations": ["slp+ta"]}})
    ids = {a.id for a in plan(study)}
    assert "evaluation:nli/slp+ta/en/sk/composed=proxy" in ids
    assert "evaluation:nli/la+ta/en/sk/composed=proxy" not in ids
    # only what a cell needs is built: no adapter proxy
    assert {i for i in ids if i.startswith("composed:")} == {"composed:prompt/sk/composed=proxy"}
    assert "evaluation:nli/la+ta/en/sk" in ids  # the trained cells are all there
