"""train-task and evaluate end to end on the tiny model and the shipped fixtures."""

from __future__ import annotations

import json

import pytest

from langtransfer.cli import main
from langtransfer.representations import read_manifest

FAST = ["--model", "tiny", "--data", "fixtures", "--steps", "6", "--batch-size", "4",
        "--eval-steps", "3", "--save-steps", "3", "--max-length", "96"]


@pytest.fixture(scope="module")
def slp_sk_en(tmp_path_factory):
    """Soft language prompts for the source (en) and a target (sk)."""
    root = tmp_path_factory.mktemp("lang")
    for code in ("en", "sk"):
        args = ["train-language", "--language", code, "--kind", "prompt", "--corpus", "fixture",
                "--model", "tiny", "--output", str(root / code), "--steps", "3",
                "--batch-size", "4", "--sequence-length", "64", "--prompt-tokens", "4"]
        assert main(args) == 0
    return root


def test_train_task_then_evaluate_writes_documented_files(tmp_path, slp_sk_en, capsys):
    task_rep = tmp_path / "nli-slp+ta"
    assert main(["train-task", "--task", "nli", "--language", "en", "--kind", "adapter",
                 "--language-rep", str(slp_sk_en / "en"), "--output", str(task_rep), *FAST]) == 0
    manifest = read_manifest(task_rep)
    training = manifest["training"]
    assert (manifest["kind"], manifest["role"], manifest["task"]) == ("adapter", "task", "nli")
    assert training["configuration"] == "slp+ta" and training["source_language"] == "en"
    assert training["language_representation"]["language"] == "en"
    assert training["steps"] == 6 and training["best_checkpoint"].startswith("checkpoint-")
    assert training["train_examples"] + training["validation_examples"] == 42

    out = tmp_path / "eval-sk"
    assert main(["evaluate", "--task", "nli", "--language", "sk", "--language-rep",
                 str(slp_sk_en / "sk"), "--task-rep", str(task_rep), "--model", "tiny",
                 "--data", "fixtures", "--output", str(out), "--batch-size", "5"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for field in ("task", "language", "configuration", "metrics", "primary_metric", "n_examples",
                  "n_unparseable", "n_truncated", "model", "representations"):
        assert field in metrics, field
    assert (metrics["task"], metrics["language"], metrics["configuration"]) == (
        "nli",
        "sk",
        "slp+ta",
    )
    # The reference reading unprefixed (primary), the strict reading beside it.
    assert set(metrics["metrics"]) == {"accuracy", "macro_f1", "strict_accuracy", "strict_macro_f1"}
    assert metrics["primary_metric"] == "accuracy"
    assert metrics["model"]["name"] == "tiny"
    assert metrics["representations"]["language"]["language"] == "sk"
    assert metrics["representations"]["task"]["task"] == "nli"
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["n_examples"] == 21
    assert all({"id", "input", "prediction", "parsed", "gold"} <= set(r) for r in rows)
    assert all(r["gold"] in ("entailment", "neutral", "contradiction") for r in rows)
    unparseable = sum(r["parsed"] is None for r in rows)
    assert metrics["n_unparseable"] == unparseable
    # The predictions file scores the same with no model at all.
    assert (
        main(
            [
                "score",
                "--task",
                "nli",
                "--language",
                "sk",
                "--source",
                "fixtures",
                "--predictions",
                str(out / "predictions.jsonl"),
                "--output",
                str(tmp_path / "s"),
            ]
        )
        == 0
    )
    rescored = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert rescored["metrics"] == metrics["metrics"]


def test_evaluate_base_and_truncation_count(tmp_path):
    out = tmp_path / "qa-base"
    assert main(["evaluate", "--task", "qa", "--language", "ru", "--model", "tiny",
                 "--data", "fixtures", "--output", str(out), "--max-length", "40",
                 "--max-new-tokens", "4", "--max-examples", "5"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["configuration"] == "base" and metrics["n_examples"] == 5
    assert metrics["n_truncated"] == 5  # every QA context is longer than 40 bytes
    assert metrics["representations"] == {"language": None, "task": None}


def test_task_prompt_is_initialised_from_the_task_instruction(tmp_path):
    out = tmp_path / "stp"
    assert main(["train-task", "--task", "qa", "--language", "en", "--kind", "prompt",
                 "--prompt-tokens", "6", "--output", str(out), *FAST]) == 0
    manifest = read_manifest(out)
    assert manifest["prompt"]["init_text"] == "Answer the question in English language:"
    assert manifest["training"]["configuration"] == "stp"


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--task", "pos"], "unknown task 'pos'.*checkworthiness.*ner.*nli.*qa"),
        (["--task", "nli", "--split", "dev"], "unknown split.*'dev'.*test.*train.*validation"),
        (["--task", "nli", "--language", "te", "--data", "fixtures"],
         "unknown language for nli fixtures 'te'; valid: de, en, ru, sk"),
        (["--task", "qa", "--language", "bg", "--data", None],
         "task qa has no source for 'bg'.*; languages with a qa source: ar, "),
    ],
)
def test_evaluate_bad_input_names_the_valid_values(tmp_path, capsys, args, pattern):
    import re

    base = {"--task": "nli", "--language": "sk", "--data": "fixtures", "--split": "test"}
    it = iter(args)
    for key in it:
        base[key] = next(it)
    argv = ["evaluate", "--model", "tiny", "--output", str(tmp_path / "o")]
    for key, value in base.items():
        if value is not None:
            argv += [key, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(pattern, err), err
    assert not (tmp_path / "o").exists()


def test_wrong_language_representation_for_the_source_is_refused(tmp_path, slp_sk_en, capsys):
    assert (
        main(
            [
                "train-task",
                "--task",
                "nli",
                "--language",
                "en",
                "--kind",
                "adapter",
                "--language-rep",
                str(slp_sk_en / "sk"),
                "--output",
                str(tmp_path / "x"),
                *FAST,
            ]
        )
        == 2
    )
    assert "'sk'" in capsys.readouterr().err


def test_a_task_representation_as_language_rep_is_named_as_such(tmp_path, capsys):
    from langtransfer.base.loading import load_base
    from langtransfer.representations import PromptConfig, new_prompt, save_representation

    model, tok = load_base("tiny")
    stp = tmp_path / "stp-nli"
    save_representation(new_prompt("task", model, tok, PromptConfig(num_tokens=4, init="vocab"),
                                   task="nli"),
                        stp, model=model)
    assert main(["train-task", "--task", "nli", "--language", "en", "--kind", "adapter",
                 "--language-rep", str(stp), "--output", str(tmp_path / "x"), *FAST]) == 2
    err = capsys.readouterr().err
    assert err == (f"langtransfer train-task: error: {stp} is a task representation, not a "
                   "language one: pass the source language's representation\n")
    assert not (tmp_path / "x").exists()


def test_evaluate_refuses_another_languages_representation(tmp_path, slp_sk_en, capsys):
    """Zero-shot transfer swaps in the target's representation: evaluating sk with en's
    would score the source's representation under the target's name."""
    from langtransfer.errors import LangTransferError
    from langtransfer.inference.evaluate import evaluate

    expected = (f"{slp_sk_en / 'en'} is a language representation for 'en', but the evaluation "
                "language is 'sk': pass the 'sk' representation")
    out = tmp_path / "o"
    assert main(["evaluate", "--task", "nli", "--language", "sk", "--language-rep",
                 str(slp_sk_en / "en"), "--model", "tiny", "--data", "fixtures",
                 "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"langtransfer evaluate: error: {expected}\n"
    assert not out.exists()
    with pytest.raises(LangTransferError) as caught:
        evaluate(model="tiny", task="nli", language="Slovak", language_rep=slp_sk_en / "en",
                 data="fixtures", output=out, show_progress=False)
    assert str(caught.value) == expected
    assert not out.exists()
