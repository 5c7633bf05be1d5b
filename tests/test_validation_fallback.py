"""Task training holds out part of train only when the source has no validation split;
any other error while loading validation data (a hub failure, a malformed file, given
validation data that is missing) stops training with that error."""

from __future__ import annotations

import json
import shutil

import pytest

import langtransfer.training.task as task_training
from langtransfer.errors import DataFormatError, LangTransferError, MissingSplitError
from langtransfer.representations import read_manifest
from langtransfer.tasks import FIXTURES_DIR, get_task
from langtransfer.tasks.encoding import load_examples
from langtransfer.training.task import VALIDATION_FRACTION, train_task
from langtransfer.training.trainer import default_settings

SETTINGS = default_settings("adapter", "task", max_steps=1, batch_size=4, eval_steps=1,
                            save_steps=1, logging_steps=1000, seed=1)


def run(tmp_path, data, **kw):
    return train_task(model="tiny", task="nli", language="en", kind="adapter",
                      output=tmp_path / "rep", data=data, settings=SETTINGS, max_length=64,
                      show_progress=False, **kw)


def nli_dir(tmp_path, validation: str | None = None):
    d = tmp_path / "nli"
    d.mkdir()
    shutil.copy(FIXTURES_DIR / "nli" / "en.train.jsonl", d / "en.train.jsonl")
    if validation is not None:
        (d / "en.validation.jsonl").write_text(validation, encoding="utf-8")
    return d


def test_no_validation_split_is_its_own_error_everywhere(tmp_path):
    with pytest.raises(MissingSplitError, match="no validation split"):
        load_examples("nli", "en", "validation", "fixtures")
    with pytest.raises(MissingSplitError, match="no validation data for 'el'"):
        get_task("qa").data_source("el", "validation")  # the hub source: test only
    train_file = nli_dir(tmp_path) / "en.train.jsonl"
    with pytest.raises(MissingSplitError, match="refusing"):
        load_examples("nli", "en", "validation", train_file)


def test_a_source_without_validation_holds_out_part_of_train(tmp_path):
    data = nli_dir(tmp_path)
    n = len(load_examples("nli", "en", "train", data))
    training = read_manifest(run(tmp_path, data))["training"]
    held = max(1, int(n * VALIDATION_FRACTION))
    assert training["validation_examples"] == held
    assert training["train_examples"] == n - held


def test_a_malformed_validation_file_is_not_replaced_by_held_out_train(tmp_path):
    data = nli_dir(tmp_path, validation='{"premise": "a", "hypothesis": "b", "label": 0}\n{oops\n')
    with pytest.raises(DataFormatError, match=r"en\.validation\.jsonl:2"):
        run(tmp_path, data)
    assert not (tmp_path / "rep").exists()


def test_a_hub_failure_on_validation_stops_training(tmp_path, monkeypatch):
    real = task_training.load_examples

    def load(task, language, split, data=None, max_examples=None, **reading):
        if split == "validation":
            raise LangTransferError("facebook/xnli: connection reset while fetching validation")
        return real(task, language, split, "fixtures", max_examples, **reading)

    monkeypatch.setattr(task_training, "load_examples", load)
    with pytest.raises(LangTransferError, match="connection reset"):
        run(tmp_path, None)
    assert not (tmp_path / "rep").exists()


def test_given_validation_data_without_the_split_is_an_error(tmp_path):
    data = nli_dir(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "en.test.jsonl").write_text(
        json.dumps({"premise": "a", "hypothesis": "b", "label": 0}) + "\n", encoding="utf-8")
    with pytest.raises(MissingSplitError, match="no validation split"):
        run(tmp_path, data, validation_data=other)
