"""``train-language --validation-size``: an integer is a document count, a number with a
decimal point a fraction in (0, 1); nothing is rounded into a count."""

from __future__ import annotations

import contextlib
import io

import pytest

import langtransfer.training.language as language_training
from langtransfer.cli import main
from langtransfer.representations import read_manifest
from langtransfer.training.corpora import load_corpus

COMMON = ["train-language", "--model", "tiny", "--corpus", "fixture", "--language", "sk",
          "--kind", "prompt", "--sequence-length", "64", "--batch-size", "4", "--steps", "1",
          "--logging-steps", "1000"]


def received(monkeypatch, tmp_path, value: str):
    """What train_language gets as validation_size for ``--validation-size value``."""
    seen = {}

    def record(**kwargs):
        seen.update(kwargs)
        raise SystemExit(0)  # stop before anything is trained

    monkeypatch.setattr(language_training, "train_language", record)
    with pytest.raises(SystemExit):
        main([*COMMON, "--output", str(tmp_path / "o"), "--validation-size", value])
    return seen["validation_size"]


@pytest.mark.parametrize(("value", "expected"), [("5", 5), ("1", 1), ("0.05", 0.05),
                                                 ("0.5", 0.5)])
def test_counts_stay_counts_and_fractions_fractions(monkeypatch, tmp_path, value, expected):
    got = received(monkeypatch, tmp_path, value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("value", ["2.5", "1.0", "5.0", "-3", "0", "0.0", "ten"])
def test_ambiguous_or_invalid_values_are_refused(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main([*COMMON, "--output", str(tmp_path / "o"), "--validation-size", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--validation-size" in err and repr(value) in err
    assert not (tmp_path / "o").exists()


def test_a_count_holds_out_that_many_documents(tmp_path):
    out = tmp_path / "slp"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*COMMON, "--output", str(out), "--validation-size", "3"]) == 0
    assert read_manifest(out)["training"]["validation_documents"] == 3
    assert len(load_corpus("fixture", "sk", validation_size=3).validation) == 3
