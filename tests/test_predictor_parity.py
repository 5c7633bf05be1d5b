"""The Predictor serving a study predicts exactly what the study evaluated: QA and
check-worthiness cells on both model families, generated and ranked.

One small study on both tiny bases (seq2seq and causal) trains the representations of
the configurations that ``tests/test_predictor.py`` (seq2seq: base, ta, slp+ta, la+stp on
NLI and NER) leaves out, so that with it every configuration is served on the seq2seq
base (``tests/test_causal_training.py`` serves all seven on the causal one); a second
study ranks labels for check-worthiness with the first's representations (copied: their
hashes do not depend on how cells are scored, so only its evaluations run). Each cell's
predictions file is what the Predictor must return for the same inputs, row by row.
Source and target are both English, so each base trains only two language
representations.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from langtransfer.serving.predictor import Predictor
from langtransfer.study.load import load_study_config
from langtransfer.study.run import run_study
from langtransfer.tasks import FIXTURES_DIR, get_task

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

MODELS = ("tiny", "tiny-causal")
TARGET = "en"
#: With tests/test_predictor.py's four: all seven (base in both).
CONFIGURATIONS = ("base", "stp", "la+ta", "slp+stp")
TRAIN = {"max_steps": 2, "batch_size": 4, "save_steps": 2}
STUDY = {
    "models": list(MODELS),
    "sources": ["en"],
    "targets": [TARGET],
    "tasks": ["qa", "checkworthiness"],
    "configurations": list(CONFIGURATIONS),
    "corpus": "fixtures",
    "data": "fixtures",
    "sequence_length": 32,
    "validation_documents": 2,
    "max_train_examples": 8,
    "max_eval_examples": 4,
    "language_training": {"prompt": {**TRAIN, "num_tokens": 4},
                          "adapter": {**TRAIN, "learning_rate": 1e-2}},
    "task_training": {"prompt": {**TRAIN, "num_tokens": 4, "eval_steps": 2},
                      "adapter": {**TRAIN, "learning_rate": 1e-2, "eval_steps": 2}},
    "evaluation": {"batch_size": 4, "max_new_tokens": 8},
}


def run(root: Path, name: str, **values) -> Path:
    config = {**STUDY, "output": str(root / name), **values}
    (root / f"{name}.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    # overwrite: the ranked study's directory holds the copied representations
    result = run_study(load_study_config(root / f"{name}.yaml"), progress=False,
                       overwrite=True)
    assert not result.failures, [f.message for f in result.failures]
    return root / name


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parity")
    generated = run(root, "generated")
    shutil.copytree(generated / "representations", root / "ranked" / "representations")
    ranked = run(root, "ranked", tasks=["checkworthiness"],
                 evaluation={"batch_size": 4, "scoring": "rank"})
    return {"generate": generated, "rank": ranked}


def inputs(task: str) -> list[dict]:
    task_obj = get_task(task)
    path = next((FIXTURES_DIR / task).glob(f"{TARGET}.test.*"))
    rows = [r.data for r in task_obj.select(task_obj.read_records(path), TARGET, str(path))]
    return [task_obj.fields(r, only=task_obj.input_fields) for r in rows
            if task_obj.usable(r)][: STUDY["max_eval_examples"]]


def evaluated(study: Path, model: str, task: str, configuration: str) -> list[dict]:
    path = (study / "predictions" / model / task / configuration / f"en__{TARGET}"
            / "predictions.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("scoring", ["generate", "rank"])
@pytest.mark.parametrize("model", MODELS)
def test_every_cell_predicts_what_the_study_evaluated(studies, model, scoring):
    study = studies[scoring]
    tasks = ["qa", "checkworthiness"] if scoring == "generate" else ["checkworthiness"]
    with Predictor.load(study, model=model, batch_size=3) as predictor:
        assert {(a["task"], a["configuration"], a["scoring"]) for a in predictor.available()
                } == {(t, c, scoring) for t in tasks for c in CONFIGURATIONS}
        for task in tasks:
            raws = {}
            for configuration in CONFIGURATIONS:
                rows = evaluated(study, model, task, configuration)
                out = predictor.predict(task, TARGET, inputs(task), configuration=configuration)
                assert [p.raw for p in out] == [r["prediction"] for r in rows], (
                    model, task, configuration)
                assert [p.output for p in out] == [r["parsed"] for r in rows]
                raws[configuration] = tuple(p.raw for p in out)
            if scoring == "generate":  # (two labels: ranking may pick one for all rows)
                # The representations matter: not one output for every configuration.
                assert len(set(raws.values())) > 1, (model, task, raws)
