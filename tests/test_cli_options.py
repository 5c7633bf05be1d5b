"""A training option a verb offers is one it uses: none is accepted and ignored."""

from __future__ import annotations

import pytest

from langtransfer.cli import build_parser, main


def test_train_language_has_no_validation_batch_size(tmp_path, capsys):
    """Language training validates before and after training with a fixed batch, so
    --eval-batch-size would be ignored (the study refuses eval_batch_size there too)."""
    with pytest.raises(SystemExit) as stop:
        main(["train-language", "--language", "sk", "--kind", "prompt", "--corpus", "fixture",
              "--model", "tiny", "--output", str(tmp_path / "x"), "--steps", "1",
              "--sequence-length", "32", "--eval-batch-size", "4"])
    assert stop.value.code == 2
    assert "unrecognized arguments: --eval-batch-size 4" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    args = build_parser().parse_args(["train-task", "--task", "nli", "--language", "en",
                                      "--kind", "prompt", "--output", "o",
                                      "--eval-batch-size", "4"])
    assert args.eval_batch_size == 4  # task training validates every --eval-steps with it
