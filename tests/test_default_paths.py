"""The default paths run: a language representation trained on streamed Wikipedia (through
``datasets``' streaming over a local mirror laid out as the hub serves it), killed and
resumed; the shipped example configs load and plan; per-language ``corpus`` and ``data``
mappings of a study config reach training and evaluation."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from wikipedia_mirror import mirrored_load_dataset, write_mirror

from langtransfer.cli import main
from langtransfer.representations import read_manifest
from langtransfer.results.records import read_records
from langtransfer.study.load import load_study_config
from langtransfer.study.run import plan
from langtransfer.tasks import FIXTURES_DIR
from langtransfer.training.corpora import fixture_path

HERE = Path(__file__).parent
STEPS, SAVE_EVERY = 30, 5
ARTICLES = 400  # the paper's slice trains on the first 5%: 20 articles
TRAIN = ["train-language", "--model", "tiny", "--language", "sk", "--kind", "prompt",
         "--corpus", "wikipedia", "--validation-size", "4", "--sequence-length", "64",
         "--batch-size", "4", "--steps", str(STEPS), "--save-steps", str(SAVE_EVERY),
         "--logging-steps", "1000", "--prompt-tokens", "16"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def quiet_main(args: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return main(args)


# -- streamed Wikipedia ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    """ARTICLES sk articles, each two of the shipped sample sentences."""
    lines = [s for s in fixture_path("sk").read_text(encoding="utf-8").splitlines() if s.strip()]
    n = len(lines)
    articles = [f"{lines[i % n]} {lines[(7 * i + 3) % n]}" for i in range(ARTICLES)]
    return write_mirror(tmp_path_factory.mktemp("hub") / "wikipedia", {"20231101.sk": articles})


@pytest.fixture(scope="module")
def streamed(mirror, tmp_path_factory) -> Path:
    """The uninterrupted run on the stream."""
    out = tmp_path_factory.mktemp("streamed") / "slp-sk"
    calls: list = []
    with pytest.MonkeyPatch.context() as mp:
        import datasets

        mp.setattr(datasets, "load_dataset", mirrored_load_dataset(mirror, calls))
        assert quiet_main([*TRAIN, "--output", str(out)]) == 0
    # Streamed (never downloaded whole), from the language's dump, as the hub serves it.
    assert calls and all(args == ("20231101.sk",) and kwargs["split"] == "train"
                         and kwargs["streaming"] is True for args, kwargs in calls), calls
    return out


def test_training_on_the_stream_learns(streamed):
    training = read_manifest(streamed)["training"]
    assert training["corpus"] == "wikimedia/wikipedia 20231101.sk"
    assert training["train_documents"] == ARTICLES // 20  # the dump's first 5%
    assert training["validation_documents"] == 4
    assert training["steps"] == STEPS
    assert training["validation_loss"] < 0.9 * training["validation_loss_initial"]


def complete_checkpoints(folder: Path) -> list[int]:
    steps = []
    for path in folder.glob("checkpoint-*"):
        with contextlib.suppress(OSError, ValueError):
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            steps.append(int(path.name.split("-")[1]))
    return sorted(steps)


def test_killed_stream_run_resumes_to_the_uninterrupted_weights(tmp_path, mirror, streamed):
    out, ckpt = tmp_path / "slp-sk", tmp_path / "ckpt"
    args = [*TRAIN, "--output", str(out), "--checkpoint-dir", str(ckpt)]
    with open(tmp_path / "log.txt", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(HERE / "wikipedia_mirror.py"), str(mirror),
                                 *args], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while not complete_checkpoints(ckpt):
                assert proc.poll() is None, (tmp_path / "log.txt").read_text()
                assert time.monotonic() < deadline, "no checkpoint within 300 s"
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = complete_checkpoints(ckpt)
    assert done and done[-1] < STEPS and not (out / "manifest.json").exists()

    with pytest.MonkeyPatch.context() as mp:
        import datasets

        mp.setattr(datasets, "load_dataset", mirrored_load_dataset(mirror))
        assert quiet_main([*args, "--resume"]) == 0
    training = read_manifest(out)["training"]
    assert training["resumed_from"] == f"checkpoint-{done[-1]}" and training["steps"] == STEPS
    # The stream is skipped to where the checkpoint stopped: the same weights as one run.
    assert torch.equal(load_file(out / "prompt.safetensors")["embedding"],
                       load_file(streamed / "prompt.safetensors")["embedding"])
    assert training["validation_loss"] == read_manifest(streamed)["training"]["validation_loss"]


# -- the shipped example configs ---------------------------------------------------------------


def example(name: str, tmp_path: Path) -> Path:
    """The config as a user gets it: ``langtransfer study --example NAME`` saved to a file."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["study", "--example", name]) == 0
    path = tmp_path / f"{name}.yaml"
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def stage_counts(config) -> dict[str, int]:
    counts: dict[str, int] = {}
    for art in plan(config):
        counts[art.stage] = counts.get(art.stage, 0) + 1
    return counts


def test_demo_config_loads_and_plans(tmp_path):
    config = load_study_config(example("demo", tmp_path))
    assert (config.models, config.tasks, config.targets) == (
        ["tiny", "tiny-causal"], ["nli", "checkworthiness"], ["en", "de", "sk", "ru"])
    # per base: 4 languages x 2 kinds; 2 tasks x 1 source x 6 trained configurations;
    # x 7 x 4 targets; the axes (within nli, en -> en/sk, slp+ta): init=vocab and corpus=10
    # each add 2 language prompts (en, sk), 1 task prompt, 2 cells; the Slovak proxy, also
    # within them: 1 composed prompt, 1 cell
    assert stage_counts(config) == {"language": 2 * (8 + 4), "composed": 2 * 1,
                                    "task": 2 * (12 + 2), "evaluation": 2 * (56 + 4 + 1)}


def test_paper_config_loads_and_plans(tmp_path):
    """The paper's grid, less the cells a task has no source for (docs/study.md): qa in
    Bulgarian, for each of the 6 sources and 7 configurations. Changing which cells have a
    source changes these counts deliberately, and says so here."""
    config = load_study_config(example("paper", tmp_path))
    assert config.model == "bigscience/mt0-base" and config.corpus == "wikipedia"
    assert len(config.targets) == 16 and len(config.sources) == 6 and len(config.tasks) == 4
    assert set(config.sources) <= set(config.targets)
    assert stage_counts(config) == {"language": 16 * 2, "task": 4 * 6 * 6,
                                    "evaluation": 4 * 6 * 7 * 16 - 6 * 7}


# -- per-language corpus and data mappings ----------------------------------------------------


def nli_file(path: Path, source: str, n: int) -> Path:
    rows = [json.loads(line) for line in source.splitlines()][:n]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_per_language_corpus_and_data_reach_the_builders(tmp_path):
    """Each language's own corpus file trains its representation; the task's per-language,
    per-split files train and evaluate (told apart by their sizes)."""
    corpora = {}
    for code, n in (("en", 9), ("sk", 13)):
        lines = fixture_path(code).read_text(encoding="utf-8").splitlines()
        corpora[code] = tmp_path / f"corpus-{code}.txt"
        corpora[code].write_text("\n".join([s for s in lines if s.strip()][:n]) + "\n",
                                 encoding="utf-8")
    nli = FIXTURES_DIR / "nli"
    train = nli_file(tmp_path / "train-en.jsonl", (nli / "en.train.jsonl").read_text(), 14)
    test = nli_file(tmp_path / "test-sk.jsonl", (nli / "sk.test.jsonl").read_text(), 5)
    config_path = tmp_path / "study.yaml"
    config_path.write_text(yaml.safe_dump({
        "output": str(tmp_path / "out"), "model": "tiny", "sources": ["en"], "targets": ["sk"],
        "tasks": ["nli"], "configurations": ["slp+ta"], "sequence_length": 64,
        "validation_documents": 2,
        "corpus": {code: str(path) for code, path in corpora.items()},
        "data": {"nli": {"en": {"train": str(train)}, "sk": {"test": str(test)}}},
        "language_training": {"prompt": {"max_steps": 2, "batch_size": 2, "num_tokens": 2}},
        "task_training": {"adapter": {"max_steps": 2, "batch_size": 4, "eval_steps": 2,
                                      "save_steps": 2}},
        "evaluation": {"batch_size": 8, "max_new_tokens": 4},
    }), encoding="utf-8")
    assert quiet_main(["study", str(config_path), "--no-report", "--quiet"]) == 0

    out = tmp_path / "out"
    for code, n in (("en", 9), ("sk", 13)):
        training = read_manifest(out / "representations" / "language" / "prompt" / code)["training"]
        assert training["corpus"] == str(corpora[code])
        assert training["train_documents"] + training["validation_documents"] == n
    task = read_manifest(out / "representations" / "task" / "nli" / "en" / "slp+ta")["training"]
    assert task["data"] == str(train)
    assert task["train_examples"] + task["validation_examples"] >= 13  # not the 42 fixtures
    assert task["train_examples"] <= 14
    [record] = read_records(out)
    assert record["data"] == str(test) and record["n_examples"] == 5
    assert record["representations"]["language"]["language"] == "sk"
