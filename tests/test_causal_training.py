"""Training and the whole pipeline on the causal family (``tiny-causal``): the next-token
language objective, learning tests (the held-out loss falls) for soft prompts and
adapters, language and task, and all seven configurations end to end through the CLI
(train-language, train-task, evaluate, study). Seconds each."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml

from langtransfer.base.loading import TINY_CAUSAL_NAME, load_base
from langtransfer.cli import main
from langtransfer.configurations import STUDY_CONFIGURATIONS
from langtransfer.errors import LangTransferError
from langtransfer.representations import read_manifest
from langtransfer.serving.predictor import Predictor
from langtransfer.tasks import FIXTURES_DIR, get_task
from langtransfer.training.language import train_language
from langtransfer.training.next_token import block_rows, next_token_dataset
from langtransfer.training.task import train_task
from langtransfer.training.trainer import default_settings

SEQ = 64
CLI_CONFIGURATIONS = ("slp+ta", "la+stp")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def quiet_main(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(argv)


# -- the next-token objective --------------------------------------------------------------


def test_blocks_are_packed_documents_cut_at_the_sequence_length():
    _, tok = load_base(TINY_CAUSAL_NAME)
    texts = ["ahoj svet", "", "dobré ráno, Bratislava", "x" * 40]
    rows = list(block_rows(texts, tok, 16))
    stream = [t for text in texts if text for t in tok(text, add_special_tokens=False).input_ids
              + [tok.eos_token_id]]
    assert len(rows) == len(stream) // 16  # the last partial block is dropped
    for i, row in enumerate(rows):
        # No BOS in the byte tokenizer: the block's first token is the input.
        assert row["input_ids"] + row["labels"] == stream[i * 16 : (i + 1) * 16]
        assert len(row["input_ids"]) == 1
    dataset = next_token_dataset(texts, tok, input_length=16)
    assert dataset["labels"] == [r["labels"] for r in rows]
    with pytest.raises(LangTransferError, match="too short for one training block.*needs 500"):
        next_token_dataset(texts, tok, input_length=500)


def test_with_a_bos_the_whole_block_is_the_target():
    class WithBos:
        eos_token_id, bos_token_id = 1, 2

        def __call__(self, text, **kwargs):
            return {"input_ids": [ord(c) for c in text]}

    rows = list(block_rows(["abcdefgh"], WithBos(), 4))
    assert rows == [{"input_ids": [2], "labels": [97, 98, 99, 100]},
                    {"input_ids": [2], "labels": [101, 102, 103, 104]}]


# -- learning ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "lr"), [("prompt", 0.5), ("adapter", 3e-3)])
def test_language_training_lowers_the_held_out_loss(tmp_path, kind, lr):
    settings = default_settings(kind, "language", max_steps=60, batch_size=4, learning_rate=lr,
                                save_steps=100, logging_steps=1000, seed=3)
    out = train_language(model=TINY_CAUSAL_NAME, language="sk", kind=kind, corpus="fixture",
                         output=tmp_path / "rep", settings=settings, sequence_length=SEQ,
                         validation_size=3, show_progress=False,
                         )
    manifest = read_manifest(out)
    training = manifest["training"]
    assert training["objective"] == "next_token" and training["steps"] == 60
    assert manifest["base_model"]["family"] == "causal"
    assert training["validation_loss"] < 0.95 * training["validation_loss_initial"]


@pytest.mark.parametrize(("kind", "lr", "tokens"), [("prompt", 0.5, 8), ("adapter", 3e-3, None)])
def test_task_training_lowers_the_held_out_loss(tmp_path, kind, lr, tokens):
    settings = default_settings(kind, "task", max_steps=30, batch_size=8, learning_rate=lr,
                                eval_steps=15, save_steps=15, logging_steps=1000, seed=3)
    out = train_task(model=TINY_CAUSAL_NAME, task="nli", language="en", kind=kind,
                     output=tmp_path / "rep", data="fixtures", settings=settings,
                     spec={"num_tokens": tokens} if tokens else None, max_length=128,
                     show_progress=False)
    training = read_manifest(out)["training"]
    assert training["validation_loss"] < 0.9 * training["validation_loss_initial"]


# -- all seven configurations end to end ---------------------------------------------------


def test_the_cli_verbs_run_on_tiny_causal(tmp_path):
    """train-language (prompt, adapter), train-task on top of each, evaluate on another
    language (generation and label ranking). Each kind in each role; the study below
    runs all seven configurations."""
    common = ["--model", TINY_CAUSAL_NAME]
    lang_args = ["--corpus", "fixture", "--sequence-length", str(SEQ), "--steps", "3",
                 "--batch-size", "4", "--validation-size", "3"]
    for lang in ("en", "de"):
        for kind, short in (("prompt", "slp"), ("adapter", "la")):
            assert quiet_main(["train-language", *common, "--language", lang, "--kind", kind,
                               *lang_args, "--output", str(tmp_path / f"{short}-{lang}")]) == 0
    task_args = ["--task", "nli", "--language", "en", "--data", "fixtures", "--steps", "3",
                 "--batch-size", "4", "--max-examples", "16"]
    records = {}
    for configuration in CLI_CONFIGURATIONS:
        lang_short, _, task_short = configuration.rpartition("+")
        kind = "prompt" if task_short == "stp" else "adapter"
        language = ["--language-rep", str(tmp_path / f"{lang_short}-en")] if lang_short else []
        rep = tmp_path / configuration
        assert quiet_main(["train-task", *common, *task_args, "--kind", kind, *language,
                           "--output", str(rep)]) == 0
        target = ["--language-rep", str(tmp_path / f"{lang_short}-de")] if lang_short else []
        for scoring in ("generate", "rank"):
            out = tmp_path / "eval" / configuration / scoring
            assert quiet_main(["evaluate", *common, "--task", "nli", "--language", "de",
                               "--data", "fixtures", "--task-rep", str(rep), *target,
                               "--max-examples", "6", "--scoring", scoring,
                               "--output", str(out)]) == 0
            records[configuration, scoring] = json.loads((out / "metrics.json").read_text())
    assert {c for c, _ in records} == set(CLI_CONFIGURATIONS)
    for (configuration, scoring), record in records.items():
        assert record["configuration"] == configuration and record["scoring"] == scoring
        assert record["model"]["family"] == "causal" and record["n_examples"] == 6
        if scoring == "rank":
            assert record["n_unparseable"] == 0


def test_a_study_of_all_seven_configurations_on_tiny_causal(tmp_path):
    study = {
        "model": TINY_CAUSAL_NAME, "sources": ["en"], "targets": ["de"], "tasks": ["nli"],
        "configurations": list(STUDY_CONFIGURATIONS), "seed": 7, "corpus": "fixtures",
        "data": "fixtures", "sequence_length": SEQ, "validation_documents": 3,
        "max_train_examples": 16, "max_eval_examples": 6,
        "language_training": {
            "prompt": {"max_steps": 2, "batch_size": 4, "num_tokens": 4, "save_steps": 2},
            "adapter": {"max_steps": 2, "batch_size": 4, "save_steps": 2},
        },
        "task_training": {
            "prompt": {"max_steps": 2, "batch_size": 4, "num_tokens": 4, "eval_steps": 2,
                       "save_steps": 2},
            "adapter": {"max_steps": 2, "batch_size": 4, "eval_steps": 2, "save_steps": 2},
        },
        "evaluation": {"batch_size": 4},
        "output": str(tmp_path / "out"),
    }
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(study), encoding="utf-8")
    assert quiet_main(["study", str(config), "--quiet"]) == 0
    records = [json.loads(p.read_text()) for p in Path(tmp_path / "out" / "results").rglob("*.json")
               if not p.name.startswith(".")]
    assert sorted(r["configuration"] for r in records) == sorted(STUDY_CONFIGURATIONS)
    assert {r["model"]["family"] for r in records} == {"causal"}
    assert all(r["target_language"] == "de" for r in records)

    # The Predictor serves the causal study: each configuration's predictions as evaluated.
    task = get_task("nli")
    path = next((FIXTURES_DIR / "nli").glob("de.test.*"))
    inputs = [{f: r.data[f] for f in task.input_fields} for r in task.read_records(path)][:6]
    with Predictor.load(tmp_path / "out", batch_size=4) as predictor:
        for configuration in STUDY_CONFIGURATIONS:
            folder = tmp_path / "out" / "predictions" / "nli" / configuration / "en__de"
            expected = [json.loads(line)["prediction"] for line in
                        (folder / "predictions.jsonl").read_text().splitlines()]
            out = predictor.predict("nli", "de", inputs, configuration=configuration)
            assert [p.raw for p in out] == expected, configuration
