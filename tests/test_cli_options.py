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


@pytest.mark.parametrize("verb, kind, option, owner", [
    ("train-language", "adapter", ["--prompt-tokens", "10"], "prompt"),
    ("train-language", "prompt", ["--reduction-factor", "2"], "adapter"),
    ("train-task", "adapter", ["--init", "vocab", "--init-text", "x"], "prompt"),
    ("train-task", "prompt", ["--adapter-config", "double_seq_bn"], "adapter"),
])
def test_an_option_of_the_other_kind_is_refused(tmp_path, capsys, verb, kind, option, owner):
    where = (["--language", "sk", "--corpus", "fixture"] if verb == "train-language"
             else ["--task", "nli", "--language", "en", "--data", "fixtures"])
    out = tmp_path / "x"
    argv = [verb, *where, "--kind", kind, "--model", "tiny", "--output", str(out),
            "--steps", "1", *option]
    assert main(argv) == 2
    flags = ", ".join(o for o in option if o.startswith("--"))
    verb_is = "are" if "," in flags else "is"
    assert capsys.readouterr().err == (
        f"langtransfer {verb}: error: {flags} {verb_is} for --kind {owner}, not --kind {kind}\n")
    assert not out.exists()


def test_generation_options_with_label_ranking_are_refused(tmp_path, capsys):
    out = tmp_path / "e"
    argv = ["evaluate", "--task", "nli", "--language", "en", "--model", "tiny", "--data",
            "fixtures", "--max-examples", "2", "--scoring", "rank", "--output", str(out)]
    assert main([*argv, "--num-beams", "4", "--max-new-tokens", "3"]) == 2
    assert capsys.readouterr().err == (
        "langtransfer evaluate: error: --num-beams, --max-new-tokens are for --scoring "
        "generate; --scoring rank scores each label word and generates nothing\n")
    assert not out.exists()
    assert main(argv) == 0 and (out / "metrics.json").exists()  # rank alone is fine


def test_serve_trust_remote_code_needs_model(tmp_path, capsys):
    pytest.importorskip("fastapi")
    assert main(["serve", str(tmp_path), "--port", "0", "--trust-remote-code"]) == 2
    assert capsys.readouterr().err == ("langtransfer serve: error: --trust-remote-code applies "
                                       "to the base --model names; pass --model too\n")
