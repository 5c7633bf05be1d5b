"""``langtransfer export-merged``: every exported pair loads in PEFT with the logits of
langtransfer's composition of the two LoRAs, its config holds only what vLLM's loader
reads, the command lines name every pair, and the bad input is one line."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
from helpers import assert_logits_close, batch, build, perturb

from langtransfer.base.loading import load_base
from langtransfer.cli import main
from langtransfer.composition.composed import compose
from langtransfer.composition.loaded_base import LoadedBase
from langtransfer.serving import engines

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:Could not find a config file")


def _loras(root, name, languages=("de", "sk"), seed=0):
    """Perturbed language LoRAs for ``languages`` and a task LoRA for nli (trained on en),
    saved under ``root``."""
    model, tok = load_base(name)
    paths = []
    for i, code in enumerate(languages):
        with build(model, tok, "ll", lang=code) as composed:
            perturb(composed, seed + i)
            paths.append(composed.save("language", root / f"ll-{code}"))
    with build(model, tok, "tl", task="nli") as composed:
        perturb(composed, seed + 9)
        paths.append(composed.save("task", root / "tl-nli",
                                   training={"source_language": "en"}))
    return paths


def _export(args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["export-merged", *args])
    return code, out.getvalue()


def test_every_exported_pair_equals_langtransfer_s_composition(tmp_path):
    paths = _loras(tmp_path, "tiny-causal")
    out = tmp_path / "merged"
    code, printed = _export([*map(str, paths), "--output", str(out)])
    assert code == 0
    index = json.loads((out / "pairs.json").read_text())
    assert [p["name"] for p in index["pairs"]] == ["nli-de", "nli-sk"]
    assert index["max_rank"] == 8  # 4 + 4
    loaded = LoadedBase.load("tiny-causal")
    b = batch(loaded.tokenizer)
    b = {k: b[k] for k in ("input_ids", "attention_mask", "labels")}
    task = loaded.representation(tmp_path / "tl-nli")
    for code_ in ("de", "sk"):
        pair = out / f"nli-{code_}"
        config = json.loads((pair / "adapter_config.json").read_text())
        assert set(config) <= set(engines.VLLM_CONFIG_KEYS) | set(engines.PEFT_IDENTITY_KEYS)
        engines.check_for_vllm(config, str(pair))
        assert (config["r"], config["lora_alpha"]) == (8, 8)
        with loaded.compose("ll+tl", language=loaded.representation(tmp_path / f"ll-{code_}"),
                            task=task) as ours, torch.no_grad():
            expected = ours(**b).logits
        theirs = peft.PeftModel.from_pretrained(load_base("tiny-causal")[0], str(pair)).eval()
        with compose(theirs.get_base_model(), "base") as composed, torch.no_grad():
            assert_logits_close(composed(**b).logits, expected)
    vllm = index["vllm"]
    assert vllm[:3] == ["vllm", "serve", "tiny-causal"] and "--enable-lora" in vllm
    assert vllm[vllm.index("--lora-modules") + 1:] == [
        f"nli-de={out / 'nli-de'}", f"nli-sk={out / 'nli-sk'}"]
    assert f"nli-de={out / 'nli-de'}" in index["sglang"]
    readme = (out / "README.md").read_text()
    assert readme == printed.rstrip("\n") + "\n" or printed.startswith(readme[:200])
    assert '"model": "nli-de"' in readme and "vllm serve tiny-causal" in readme


def test_a_study_s_lora_cells_export_and_the_bad_input_is_one_line(tmp_path, capsys):
    """From representation directories: one pair chosen; the bad input, one line each."""
    paths = _loras(tmp_path, "tiny-causal", languages=("de",))
    code, _ = _export([*map(str, paths), "--output", str(tmp_path / "one"),
                       "--pair", "nli:en:de"])
    assert code == 0 and [p.name for p in (tmp_path / "one").iterdir() if p.is_dir()] == [
        "nli-de"]

    def error(args):
        capsys.readouterr()
        assert main(["export-merged", *args]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    assert "no LoRA pair 'nli:cs' to export; valid: nli:en:de" in error(
        [*map(str, paths), "--output", str(tmp_path / "x"), "--pair", "nli:cs"])
    assert "already holds files" in error([*map(str, paths), "--output", str(tmp_path / "one")])
    seq2seq = _loras(tmp_path / "s2s", "tiny", languages=("de",))
    message = error([*map(str, seq2seq), "--output", str(tmp_path / "y")])
    assert "pair nli-de is on a seq2seq base: vLLM and SGLang serve no encoder-decoder " \
           "model with LoRA; serve it with langtransfer's own server" in message
    message = error([str(seq2seq[0]), str(paths[1]), "--output", str(tmp_path / "z")])
    assert "was trained on base model 'tiny', not 'tiny-causal'" in message
    model, tok = load_base("tiny-causal")
    with build(model, tok, "la", lang="de") as composed:
        adapter = composed.save("language", tmp_path / "la-de")
    message = error([str(adapter), str(paths[1]), "--output", str(tmp_path / "w")])
    assert "is a language adapter; export-merged merges LoRAs (valid: lora)" in message
