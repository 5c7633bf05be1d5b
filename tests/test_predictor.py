"""The Python predictor: loading a study or representation directories, defaults,
parsed outputs equal to the study's own predictions, bad input, truncation."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from test_study import FAST

from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.inference.evaluate import evaluate
from langtransfer.options import REFERENCE_MAX_NEW_TOKENS
from langtransfer.serving.predictor import Entry, Prediction, Predictor, PredictRequest
from langtransfer.study.load import load_study_config
from langtransfer.study.run import run_study
from langtransfer.tasks import FIXTURES_DIR, get_task

TASKS = ("nli", "ner")
TARGETS = ("en", "sk")
CONFIGURATIONS = ("base", "ta", "slp+ta", "la+stp")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A tiny study: two tasks, two targets, four configurations (prompts and adapters in
    both roles)."""
    root = tmp_path_factory.mktemp("predictor")
    config = {**FAST, "output": str(root / "study"), "tasks": list(TASKS),
              "targets": list(TARGETS), "configurations": list(CONFIGURATIONS)}
    (root / "study.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    run = run_study(load_study_config(root / "study.yaml"), progress=False)
    assert not run.failures
    return root / "study"


@pytest.fixture(scope="module")
def predictor(study):
    with Predictor.load(study, batch_size=4) as p:
        yield p


def request_inputs(task: str, language: str) -> list[dict]:
    """The fixture test inputs as a client sends them: the input fields, no gold."""
    path = next((FIXTURES_DIR / task).glob(f"{language}.test.*"))
    task_obj = get_task(task)
    rows = [r.data for r in task_obj.read_records(path)]
    return [{f: row[f] for f in task_obj.input_fields} for row in rows]


def study_predictions(study: Path, task: str, configuration: str, target: str) -> list[str]:
    path = study / "predictions" / task / configuration / f"en__{target}" / "predictions.jsonl"
    return [json.loads(line)["prediction"] for line in path.read_text().splitlines()]


def test_a_study_predicts_what_it_evaluated_in_every_cell(study, predictor):
    listed = {(a["task"], a["language"], a["configuration"]) for a in predictor.available()}
    assert listed == {(t, g, c) for t in TASKS for g in TARGETS for c in CONFIGURATIONS}
    for task in TASKS:
        for target in TARGETS:
            inputs = request_inputs(task, target)[: len(study_predictions(study, task, "base",
                                                                          target))]
            for configuration in CONFIGURATIONS:
                out = predictor.predict(task, target, inputs, configuration=configuration)
                expected = study_predictions(study, task, configuration, target)
                assert [p.raw for p in out] == expected, (task, target, configuration)
                parsed = [get_task(task).parse(raw) for raw in expected]
                if task == "ner":  # spans as JSON objects
                    parsed = [[{"type": k, "text": t} for k, t in spans] for spans in parsed]
                assert [p.output for p in out] == parsed
                assert {(p.configuration, p.source) for p in out} == {(configuration, "en")}
                json.dumps([p.output for p in out])  # JSON-able


def test_available_lists_representation_ids_and_one_default_per_task_and_language(predictor):
    rows = predictor.available()
    defaults = [(a["task"], a["language"]) for a in rows if a["default"]]
    assert sorted(defaults) == sorted({(a["task"], a["language"]) for a in rows})
    slp = next(a for a in rows if a["configuration"] == "slp+ta" and a["language"] == "sk")
    assert slp["representations"]["language"].startswith("slp-sk-")
    assert slp["representations"]["task"].startswith("ta-nli-en-") or slp["task"] == "ner"
    base = next(a for a in rows if a["configuration"] == "base")
    assert base["representations"] == {"language": None, "task": None}


def test_the_default_is_the_best_by_primary_metric_or_the_one_named(predictor, study):
    loaded = predictor.loaded
    entries = list(predictor.entries.values())
    # Scores: ta best on sk, a tie (paper order: base first) on en.
    scored = [replace(e, score=(90.0 if (e.configuration, e.language) == ("ta", "sk") else 10.0),
                      default=False) for e in entries if e.task == "nli"]
    from langtransfer.serving.predictor import _mark_defaults

    p = Predictor(loaded, _mark_defaults(scored, {}))
    assert p.entry(PredictRequest("nli", "sk", "x")).configuration == "ta"
    assert p.entry(PredictRequest("nli", "en", "x")).configuration == "base"
    named = Predictor.load(study, model=loaded, defaults={"nli": "la+stp"})
    assert named.entry(PredictRequest("nli", "sk", "x")).configuration == "la+stp"
    assert named.entry(PredictRequest("ner", "sk", "x")).configuration == "base"
    with pytest.raises(UnknownNameError, match="default configuration for task nli 'slp'.*"
                                               "valid: base, la\\+stp, slp\\+ta, ta"):
        Predictor.load(study, model=loaded, defaults={"nli": "slp"})


def test_representation_directories_serve_what_the_study_evaluated(study, predictor):
    reps = study / "representations"
    sources = [reps / "language" / "prompt" / "sk", reps / "language" / "prompt" / "en",
               reps / "task" / "nli" / "en" / "slp+ta", reps / "task" / "nli" / "en" / "ta"]
    p = Predictor.load([str(s) for s in sources], model=predictor.loaded)
    assert {e.max_new_tokens for e in p.entries.values()} == {REFERENCE_MAX_NEW_TOKENS}
    # The study's generation budget (FAST's), to compare with its predictions.
    p = Predictor(p.loaded, [replace(e, max_new_tokens=6) for e in p.entries.values()])
    assert {(a["language"], a["configuration"], a["default"]) for a in p.available()} == {
        ("sk", "slp+ta", True), ("en", "slp+ta", True), ("sk", "ta", False), ("en", "ta", False)
    }
    inputs = request_inputs("nli", "sk")[:6]
    assert [x.raw for x in p.predict("nli", "sk", inputs)] == study_predictions(
        study, "nli", "slp+ta", "sk")
    assert [x.raw for x in p.predict("nli", "sk", inputs, configuration="ta")] == (
        study_predictions(study, "nli", "ta", "sk"))
    with pytest.raises(LangTransferError, match="no task representation"):
        Predictor.load([str(sources[0])], model=predictor.loaded)


def test_mixed_rows_come_back_in_order_and_a_bad_row_gets_its_own_error(predictor, study):
    nli, ner = request_inputs("nli", "sk")[:3], request_inputs("ner", "en")[:3]
    requests = [
        PredictRequest("nli", "sk", nli[0], "slp+ta"),
        PredictRequest("ner", "en", ner[0], "la+stp"),
        PredictRequest("nli", "xx", nli[1]),
        PredictRequest("nli", "Slovak", nli[1], "slp+ta", source="en"),
        PredictRequest("nli", "sk", {"premise": "only a premise"}),
        PredictRequest("pos", "sk", "text"),
        PredictRequest("ner", "en", " ".join(ner[1]["tokens"]), "la+stp"),  # a plain string
    ]
    out = predictor.predict_requests(requests)
    assert len(out) == len(requests)
    nli_expected = study_predictions(study, "nli", "slp+ta", "sk")
    ner_expected = study_predictions(study, "ner", "la+stp", "en")
    assert isinstance(out[0], Prediction) and out[0].raw == nli_expected[0]
    assert isinstance(out[1], Prediction) and out[1].raw == ner_expected[0]
    assert isinstance(out[3], Prediction) and out[3].raw == nli_expected[1]
    assert isinstance(out[6], Prediction) and out[6].raw == ner_expected[1]
    assert isinstance(out[2], UnknownNameError) and "valid: en, sk" in str(out[2])
    assert isinstance(out[4], LangTransferError) and "hypothesis" in str(out[4])
    assert isinstance(out[5], UnknownNameError) and "valid: ner, nli" in str(out[5])


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (PredictRequest("qa", "sk", "x"), "unknown task 'qa'; valid: ner, nli"),
        (PredictRequest("nli", "sw", "x"), "unknown language for task nli 'sw'; valid: en, sk"),
        (PredictRequest("nli", "sk", "x", configuration="slp+stp"),
         "unknown configuration for nli in sk 'slp\\+stp'; valid: base, la\\+stp, slp\\+ta, ta"),
        (PredictRequest("nli", "sk", "x", source="de"),
         "unknown source language for nli in sk 'de'; valid: en"),
        (PredictRequest("nli", "sk", "one string"), "nli takes an object with fields premise, "
                                                    "hypothesis"),
        (PredictRequest("nli", "sk", {"premise": 3, "hypothesis": "h"}), "premise must be text"),
        (PredictRequest("nli", "sk", ["a", "b"]), "must be an object"),  # type: ignore[arg-type]
    ],
)
def test_validate_names_the_bad_value_and_the_valid_ones(predictor, request_, message):
    with pytest.raises(LangTransferError, match=message):
        predictor.validate(request_)
    with pytest.raises(LangTransferError, match=message):
        predictor.predict(request_.task, request_.language, [request_.input],
                          configuration=request_.configuration, source=request_.source)


def test_long_inputs_are_cut_and_flagged_and_batching_does_not_change_outputs(predictor):
    inputs = request_inputs("nli", "sk")[:6]
    long = {"premise": "slovo " * 80, "hypothesis": "dlhé"}  # > 256 bytes (byte tokens)
    longer = {**long, "hypothesis": long["hypothesis"] + " a ešte dlhšie"}
    out = predictor.predict("nli", "sk", [*inputs, long, longer], configuration="slp+ta")
    assert [p.truncated for p in out] == [False] * 6 + [True, True]
    # Both are cut to the same first tokens (plus the end token), as evaluation cuts them.
    assert out[6].raw == out[7].raw
    one_by_one = [predictor.predict("nli", "sk", x, configuration="slp+ta")[0] for x in inputs]
    assert one_by_one == out[:6]


def test_label_ranking_entries_equal_evaluate_with_rank_scoring(study, predictor, tmp_path):
    loaded = predictor.loaded
    entry = predictor.entry(PredictRequest("nli", "sk", "x", "slp+ta"))
    ranked = Predictor(loaded, [replace(entry, scoring="rank", default=True)])
    inputs = request_inputs("nli", "sk")
    out = ranked.predict("nli", "sk", inputs)
    evaluate(model=loaded, task="nli", language="sk", language_rep=entry.language_rep,
             task_rep=entry.task_rep, data="fixtures", scoring="rank", output=tmp_path,
             show_progress=False)
    rows = [json.loads(x) for x in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [p.raw for p in out] == [r["prediction"] for r in rows]
    assert [p.output for p in out] == [r["parsed"] for r in rows]
    assert {p.output for p in out} <= set(get_task("nli").classes)
    ranked.close()


def test_closing_gives_the_base_back_and_entries_need_something_to_serve(study):
    p = Predictor.load(study)
    p.predict("nli", "sk", request_inputs("nli", "sk")[:2], configuration="la+stp")
    assert p.loaded.loaded()
    p.close()
    assert p.loaded.loaded() == {}
    with pytest.raises(LangTransferError, match="nothing to serve"):
        Predictor(p.loaded, [])
    with pytest.raises(LangTransferError, match="batch_size must be >= 1"):
        Predictor(p.loaded, [Entry("nli", "sk", "base", None)], batch_size=0)


@pytest.mark.parametrize("task", ["qa", "ner", "nli", "checkworthiness"])
def test_a_request_is_formatted_as_the_data_is_without_its_gold(task):
    task_obj = get_task(task)
    examples = task_obj.load("sk", "test", source="fixtures")
    path = next((FIXTURES_DIR / task).glob("sk.test.*"))
    rows = [r.data for r in task_obj.select(task_obj.read_records(path), "sk", str(path))]
    rows = [r for r in rows if task_obj.usable(r)]
    assert len(rows) == len(examples)
    for row, example in zip(rows, examples, strict=True):
        fields = task_obj.fields(row, only=task_obj.input_fields)
        assert not set(fields) & set(task_obj.target_fields)
        assert task_obj.request_input(fields) == example.input
        if len(task_obj.input_fields) == 1 and isinstance(fields[task_obj.input_fields[0]], str):
            assert task_obj.request_input(fields[task_obj.input_fields[0]]) == example.input


def test_rows_of_several_tasks_and_languages_share_one_generate_call(
    predictor, study, monkeypatch
):
    from langtransfer.composition.composed import ComposedModel

    calls = []
    generate = ComposedModel.generate

    def counting(self, input_ids, *args, **kwargs):
        calls.append((input_ids.shape[0], kwargs.get("language_ids"), kwargs.get("task_ids")))
        return generate(self, input_ids, *args, **kwargs)

    monkeypatch.setattr(ComposedModel, "generate", counting)
    rows = [(t, g, i) for i in range(2) for t in TASKS for g in TARGETS]
    requests = [PredictRequest(t, g, request_inputs(t, g)[i], c) for t, g, i in rows
                for c in ("slp+ta", "la+stp")]
    with Predictor(predictor.loaded, predictor.entries.values(), batch_size=8) as wide:
        out = wide.predict_requests(requests)
    assert len(calls) == 2  # one per configuration: 8 rows of 2 tasks x 2 languages each
    assert sorted(n for n, _, _ in calls) == [8, 8]
    for _, language_ids, task_ids in calls:
        assert len(set(language_ids.tolist())) == 2 and len(set(task_ids.tolist())) == 2
    for request, prediction in zip(requests, out, strict=True):
        expected = study_predictions(study, request.task, request.configuration,
                                     request.language)
        index = request_inputs(request.task, request.language).index(request.input)
        assert prediction.raw == expected[index]


def test_hub_ids_on_a_causal_base_predict_what_evaluate_does(tmp_path, monkeypatch):
    """Representations given as hub ids (an offline cache laid out as the hub's, the same
    snapshot_download path), trained on a decoder-only base: the default model is theirs."""
    import shutil

    import huggingface_hub.constants as hf_constants
    from helpers import make_rep, perturb

    from langtransfer.base.loading import load_base
    from langtransfer.composition.composed import compose

    model, tok = load_base("tiny-causal")
    language = make_rep("language", "prompt", model, tok, "sk")
    task = make_rep("task", "adapter", model, tok, "nli")
    with compose(model, "slp+ta", language=language, task=task) as composed:
        perturb(composed)
        composed.save("language", tmp_path / "saved" / "slp")
        composed.save("task", tmp_path / "saved" / "ta",
                      training={"configuration": "slp+ta", "source_language": "en"})
    for name in ("slp", "ta"):
        repo = tmp_path / "hub" / f"models--someone--{name}"
        shutil.copytree(tmp_path / "saved" / name, repo / "snapshots" / ("a" * 40))
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with Predictor.load(["someone/slp", "someone/ta"]) as p:
        assert p.loaded.name == "tiny-causal"
        assert [(a["task"], a["language"], a["configuration"], a["source"], a["default"])
                for a in p.available()] == [("nli", "sk", "slp+ta", "en", True)]
        out = p.predict("nli", "sk", request_inputs("nli", "sk"))
        evaluate(model=p.loaded, task="nli", language="sk", language_rep="someone/slp",
                 task_rep="someone/ta", data="fixtures", output=tmp_path / "evaluated",
                 show_progress=False)
    rows = (tmp_path / "evaluated" / "predictions.jsonl").read_text().splitlines()
    assert [x.raw for x in out] == [json.loads(r)["prediction"] for r in rows]
    assert len({x.raw for x in out}) > 1  # perturbed: not one answer for all


def test_a_multi_model_study_serves_the_records_of_the_base_asked_for(tmp_path):
    from test_study_models import second_base, write

    other = second_base(tmp_path / "tiny-narrow")
    config = load_study_config(write(tmp_path, models=["tiny", str(other)],
                                     configurations=["base", "ta"]))
    assert not run_study(config, progress=False).failures
    study = Path(config.output)
    with pytest.raises(LangTransferError,
                       match="the sources name 2 base models .*choose one with model="):
        Predictor.load(study)
    inputs = request_inputs("nli", "sk")[:6]
    for name, label in (("tiny", "tiny"), (str(other), "tiny-narrow")):
        with Predictor.load(study, model=name) as p:
            assert {a["configuration"] for a in p.available()} == {"base", "ta"}
            ta = p.entry(PredictRequest("nli", "sk", "x", "ta"))
            assert f"representations/{label}/task" in str(ta.task_rep)
            cell = study / "predictions" / label / "nli" / "ta" / "en__sk" / "predictions.jsonl"
            expected = [json.loads(x)["prediction"] for x in cell.read_text().splitlines()]
            assert [x.raw for x in p.predict("nli", "sk", inputs, configuration="ta")] == (
                expected[: len(inputs)])


def test_a_study_variant_is_an_entry_of_its_own(tmp_path):
    config = {**FAST, "output": str(tmp_path / "study"), "tasks": ["nli"], "targets": ["sk"],
              "configurations": ["base", "slp+ta"], "axes": {"init": ["text", "vocab"]}}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    assert not run_study(load_study_config(tmp_path / "study.yaml"), progress=False).failures
    study = tmp_path / "study"
    inputs = request_inputs("nli", "sk")[:6]
    with Predictor.load(study) as p:
        names = {a["configuration"] for a in p.available()}
        assert names == {"base", "slp+ta", "slp+ta [init=vocab]"}
        variant = p.entry(PredictRequest("nli", "sk", "x", "slp+ta [init=vocab]"))
        assert "init=vocab" in str(variant.language_rep) and "init=vocab" in str(
            variant.task_rep)
        for name, cell in (("slp+ta", study / "predictions"),
                           ("slp+ta [init=vocab]", study / "predictions" / "init=vocab")):
            path = cell / "nli" / "slp+ta" / "en__sk" / "predictions.jsonl"
            expected = [json.loads(x)["prediction"] for x in path.read_text().splitlines()]
            assert [x.raw for x in p.predict("nli", "sk", inputs, configuration=name)] == (
                expected[: len(inputs)])


def test_a_representation_that_will_not_load_fails_at_load_and_leaves_the_base(
    study, predictor, tmp_path
):
    import shutil

    from langtransfer.errors import CorruptFileError

    reps = study / "representations"
    bad = tmp_path / "ta"
    shutil.copytree(reps / "task" / "nli" / "en" / "slp+ta", bad)
    weights = next(bad.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    loaded = predictor.loaded
    held = set(loaded.loaded())
    with pytest.raises(CorruptFileError, match=str(bad)):
        Predictor.load([reps / "language" / "prompt" / "sk", bad], model=loaded)
    assert set(loaded.loaded()) == held  # nothing of the failed load stays in the base


def test_a_failing_call_group_fails_only_its_own_rows(predictor, monkeypatch):
    run = Predictor._run

    def failing(self, call, rows):
        if call.configuration == "la+stp":
            raise LangTransferError("la+stp broke")
        return run(self, call, rows)

    monkeypatch.setattr(Predictor, "_run", failing)
    inputs = request_inputs("nli", "sk")[:2]
    out = predictor.predict_requests([PredictRequest("nli", "sk", inputs[0], "la+stp"),
                                      PredictRequest("nli", "sk", inputs[1], "slp+ta"),
                                      PredictRequest("nli", "sk", inputs[1], "la+stp")])
    assert [str(x) if isinstance(x, LangTransferError) else type(x).__name__ for x in out] == [
        "la+stp broke", "Prediction", "la+stp broke"]


def test_a_mixed_batch_is_ranked_row_by_row_as_evaluate_ranks_it(predictor, tmp_path,
                                                                 monkeypatch):
    """Rows of both target languages ranked in one call per configuration: a language
    prompt bank (slp+ta: one forward per batch) and a language adapter bank (la+stp: the
    rows regrouped per adapter, one forward per label). Each row's label equals the row
    ranked alone and evaluate's ranking of its cell."""
    import langtransfer.serving.predictor as predictor_module

    calls: list[list[int]] = []
    rank = predictor_module.rank_labels

    def counting(*args, **kwargs):
        calls.append(list(kwargs["language_ids"]))
        return rank(*args, **kwargs)

    monkeypatch.setattr(predictor_module, "rank_labels", counting)
    entries = [replace(e, scoring="rank") for e in predictor.entries.values() if e.task == "nli"]
    configurations = ("slp+ta", "la+stp")
    inputs = {g: request_inputs("nli", g)[:4] for g in TARGETS}
    requests = [PredictRequest("nli", g, inputs[g][i], c) for c in configurations
                for i in range(4) for g in TARGETS]
    with Predictor(predictor.loaded, entries, batch_size=8) as ranked:
        out = ranked.predict_requests(requests)
        assert len(calls) == 2 and all(len(set(ids)) == 2 for ids in calls)
        alone = [ranked.predict(r.task, r.language, r.input, configuration=r.configuration)[0]
                 for r in requests]
    assert out == alone
    for configuration in configurations:
        for target in TARGETS:
            entry = ranked.entry(PredictRequest("nli", target, "x", configuration))
            folder = tmp_path / configuration / target
            evaluate(model=predictor.loaded, task="nli", language=target,
                     language_rep=entry.language_rep, task_rep=entry.task_rep,
                     data="fixtures", scoring="rank", output=folder, max_examples=4,
                     show_progress=False)
            rows = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
            got = [p.raw for p, r in zip(out, requests, strict=True)
                   if (r.configuration, r.language) == (configuration, target)]
            assert got == [r["prediction"] for r in rows], (configuration, target)


def test_beam_search_entries_run_alone_and_equal_evaluate(predictor, tmp_path):
    """An adapter entry with beam search runs in a call of its own (a per-row adapter split
    cannot follow beams); its predictions are evaluate's with the same beams."""
    entries = [replace(e, num_beams=3) for e in predictor.entries.values()
               if e.task == "nli" and e.language == "sk"]
    with Predictor(predictor.loaded, entries, batch_size=4) as beams:
        calls = {beams.calls[e.key] for e in beams.entries.values()}
        assert {c.configuration for c in calls if c.alone} == {"ta", "slp+ta", "la+stp"}
        inputs = request_inputs("nli", "sk")[:6]
        for configuration in ("la+stp", "slp+ta"):
            entry = beams.entry(PredictRequest("nli", "sk", "x", configuration))
            out = beams.predict("nli", "sk", inputs, configuration=configuration)
            folder = tmp_path / configuration
            evaluate(model=predictor.loaded, task="nli", language="sk",
                     language_rep=entry.language_rep, task_rep=entry.task_rep,
                     data="fixtures", num_beams=3, max_new_tokens=entry.max_new_tokens,
                     output=folder, max_examples=6, show_progress=False)
            rows = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
            assert [p.raw for p in out] == [r["prediction"] for r in rows], configuration
