"""The demo a newcomer runs (issue 16): every trained configuration learns, no cell is
unparseable-only, best marks mean something, and its stderr carries none of the silenced
third-party warnings.

The reduced demo is the shipped demo config (same model, data, training and evaluation
settings) on one task and the source language only, run as a user runs it: a
``langtransfer study`` subprocess.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from langtransfer.cli.study import example_path
from langtransfer.report.build import Grid, format_tables
from langtransfer.results.records import read_records

SILENCED = (
    "mtime may not be reliable",
    "There are adapters available but none are activated",
    "Passing a tuple of `past_key_values` is deprecated",
    "past_key_values should not be None",
)
TRAINED = ("ta", "stp", "la+ta", "la+stp", "slp+ta", "slp+stp")


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture(scope="module")
def reduced_demo(tmp_path_factory) -> tuple[Path, str]:
    """(study directory, stderr) of the demo config on checkworthiness, target en."""
    root = tmp_path_factory.mktemp("demo")
    config = yaml.safe_load(example_path("demo").read_text(encoding="utf-8"))
    config.update(output=str(root / "study"), tasks=["checkworthiness"], targets=["en"])
    config.pop("composed", None)  # its proxy language is a target the reduction drops
    config.pop("axes", None)  # their `within` names the task the reduction drops
    path = root / "demo.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "langtransfer", "study", str(path), "--quiet"],
        capture_output=True, text=True, env=_env(), timeout=900, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return root / "study", done.stderr


def test_every_trained_configuration_beats_base_on_the_source(reduced_demo):
    records = read_records(reduced_demo[0])
    labels = sorted({r["model_label"] for r in records})
    assert labels == ["tiny", "tiny-causal"]  # the demo runs both families
    for label in labels:
        mine = [r for r in records if r["model_label"] == label]
        score = {r["configuration"]: r["metrics"][r["primary_metric"]] for r in mine}
        assert sorted(score) == sorted(("base", *TRAINED))
        for configuration in TRAINED:
            assert score[configuration] > score["base"], (label, configuration, score)
        # item 3 on the same records: marks only where values differ, on the top value
        text = format_tables(mine)
        table = [line.split() for line in text.splitlines() if line.split()[:1] in
                 [[c] for c in ("base", *TRAINED)]]
        marked = {row[0] for row in table if row[1].endswith("*")}
        top = max(score.values())
        assert marked == {c for c, v in score.items() if round(v, 1) == round(top, 1)}, label


def test_no_cell_of_the_demo_is_unparseable_only(reduced_demo):
    records = read_records(reduced_demo[0])
    assert records
    for r in records:
        assert r["scoring"] == "rank"  # the demo's classification: real label predictions
        assert r["n_unparseable"] < r["n_examples"], r["configuration"]
        assert r["n_truncated"] == 0


def test_demo_stderr_has_none_of_the_silenced_warnings(reduced_demo):
    stderr = reduced_demo[1]
    for message in SILENCED:
        assert message not in stderr


def test_no_best_mark_in_a_column_of_equal_values():
    grid = Grid("t.en", "t", ["base", "ta", "stp"], ["de", "sk"],
                {("base", "de"): 50.0, ("ta", "de"): 50.04, ("stp", "de"): 49.96,
                 ("base", "sk"): 10.0, ("ta", "sk"): 30.0, ("stp", "sk"): 30.0})
    assert grid.best("de") == set()  # all show 50.0
    assert grid.best("sk") == {"ta", "stp"}  # a tie at the top is marked on both
    assert grid.best("avg") == {"ta", "stp"}


SHARED_BASE = """
import torch
from langtransfer.composition.composed import compose
from langtransfer.base.loading import load_base
from langtransfer.representations import new_adapter
base, tok = load_base("tiny")
with_adapter = compose(base, "ta", task=new_adapter("task", task="nli"))
plain = compose(base, "base")
ids, labels = torch.tensor([tok("a premise").input_ids]), torch.tensor([tok("Yes").input_ids])
plain(ids, labels=labels)
with_adapter(ids, labels=labels)
print("ran")
"""


def test_adapter_free_model_beside_an_adapter_one_runs_without_the_warnings():
    """base beside ta on one base, a forward each (what evaluate and train-task do): the
    adapters messages of SILENCED are not printed (without the filters all three are)."""
    done = subprocess.run([sys.executable, "-c", SHARED_BASE], capture_output=True, text=True,
                          env=_env(), timeout=300, check=False)
    assert done.returncode == 0 and "ran" in done.stdout, done.stderr[-2000:]
    for message in SILENCED:
        assert message not in done.stderr


def test_adapters_none_active_message_is_dropped_and_others_still_show(caplog):
    import langtransfer.representations.adapter  # noqa: F401  (installs the filter)

    logger = logging.getLogger("adapters.model_mixin")
    with caplog.at_level(logging.WARNING, logger="adapters.model_mixin"):
        logger.warning("There are adapters available but none are activated for the forward "
                       "pass.")
        logger.warning("Some real adapters warning.")
    assert [r.getMessage() for r in caplog.records] == ["Some real adapters warning."]


def test_demo_fixtures_name_the_tasks_that_have_them(tmp_path):
    from langtransfer.errors import LangTransferError
    from langtransfer.study.load import load_study_config

    config = yaml.safe_load(example_path("demo").read_text(encoding="utf-8"))
    config.update(output=str(tmp_path / "s"), tasks=["qa"])
    config.pop("axes", None)  # its `within` names nli
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(LangTransferError, match=r"'qa'.*checkworthiness, nli"):
        load_study_config(path)


def test_the_demo_ends_saying_where_to_look_and_what_the_numbers_are(tmp_path):
    from langtransfer.cli.demo import guidance

    text = guidance(tmp_path / "runs")
    assert str(tmp_path / "runs" / "report" / "report.md") in text
    assert str(tmp_path / "runs" / "report" / "heatmaps") in text
    assert "compare each row with `base`" in text
    assert "show the pipeline end to end, NOT the paper's results" in text
