"""PEFT prompt-tuning directories <-> langtransfer prompts, checked with the real `peft`."""

import json
import shutil

import pytest
import torch
from helpers import batch, build, perturb
from safetensors.torch import save_file

from langtransfer.base.loading import fingerprint, load_base
from langtransfer.cli import main
from langtransfer.composition.composed import compose
from langtransfer.errors import CorruptFileError, IncompatibleModelError, LangTransferError
from langtransfer.representations import (
    convert_peft_bin,
    export_peft_prompt,
    load_peft_prompt,
    load_representation,
    read_manifest,
)

peft = pytest.importorskip("peft")
# PEFT's save_pretrained looks for the base's config by name ("tiny" is built, not stored).
pytestmark = pytest.mark.filterwarnings("ignore:Could not find a config file")

TOKENS = 6
INIT = "Generate the output in Slovak:"


def _peft_prompt(tmp_path, *, submodules=None, init_text=INIT, safe=True, seed=0):
    """A prompt made and saved by PEFT itself on the tiny model, its weights moved off init."""
    model, tok = load_base("tiny")
    tok.save_pretrained(tmp_path / "tokenizer")  # PEFT's TEXT init loads a tokenizer by path
    config = peft.PromptTuningConfig(
        task_type=peft.TaskType.SEQ_2_SEQ_LM,
        num_virtual_tokens=TOKENS,
        num_transformer_submodules=submodules,
        prompt_tuning_init=peft.PromptTuningInit.TEXT,
        prompt_tuning_init_text=init_text,
        tokenizer_name_or_path=str(tmp_path / "tokenizer"),
    )
    peft_model = peft.get_peft_model(model, config)
    with torch.no_grad():
        weight = peft_model.prompt_encoder["default"].embedding.weight
        weight.add_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(seed)))
    out = tmp_path / f"peft-{submodules}-{safe}"
    peft_model.save_pretrained(out, safe_serialization=safe)
    peft_model.eval()
    return out, peft_model, tok


def _peft_logits(peft_model, b):
    with torch.no_grad():
        return peft_model(**b).logits


def _ours_logits(rep, b, role="language"):
    model, _ = load_base("tiny")
    composed = compose(model, "slp" if role == "language" else "stp", **{role: rep})
    with torch.no_grad():
        return composed(**b).logits


@pytest.mark.parametrize("submodules", [None, 1])
def test_peft_saved_prompt_loads_with_equal_logits(tmp_path, submodules):
    """PEFT's seq2seq default stores 2 x num_virtual_tokens rows; the encoder uses the first."""
    out, peft_model, tok = _peft_prompt(tmp_path, submodules=submodules)
    stored = json.loads((out / "adapter_config.json").read_text())
    assert stored["peft_type"] == "PROMPT_TUNING"
    assert stored["num_transformer_submodules"] == (submodules or 2)
    rep = load_representation(out)  # the PEFT layout is recognised; the role is inferred
    assert (rep.kind, rep.role, rep.language) == ("prompt", "language", "sk")
    assert rep.weights.num_tokens == TOKENS
    assert rep.spec.init == "text" and rep.spec.init_text == INIT
    assert rep.training["imported_from"]["rows_in_file"] == TOKENS * (submodules or 2)
    b = batch(tok)
    ours, theirs = _ours_logits(rep, b), _peft_logits(peft_model, b)
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-6)
    # ...and generation (PEFT's generate path) agrees token for token.
    model, _ = load_base("tiny")
    composed = compose(model, "slp", language=rep)
    enc = {k: b[k] for k in ("input_ids", "attention_mask")}
    ours_ids = composed.generate(**enc, max_new_tokens=5, do_sample=False)
    with torch.no_grad():
        theirs_ids = peft_model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert torch.equal(ours_ids, theirs_ids)


def test_a_task_prompt_needs_its_task_and_composes_as_stp(tmp_path):
    out, peft_model, tok = _peft_prompt(tmp_path, init_text="Answer the question in English:")
    with pytest.raises(LangTransferError, match="cannot tell.*Answer the question.*--role"):
        load_representation(out)
    rep = load_peft_prompt(out, task="qa")
    assert (rep.role, rep.task, rep.language) == ("task", "qa", None)
    b = batch(tok)
    assert torch.allclose(_ours_logits(rep, b, "task"), _peft_logits(peft_model, b), atol=1e-6)


def test_langtransfer_prompt_exports_to_peft_with_equal_logits(tiny, tmp_path):
    model, tok = tiny
    composed = build(model, tok, "slp")
    perturb(composed)
    composed.save("language", tmp_path / "slp")
    assert main(["export-peft", str(tmp_path / "slp"), str(tmp_path / "peft")]) == 0
    config = peft.PeftConfig.from_pretrained(str(tmp_path / "peft"))
    assert config.peft_type == peft.PeftType.PROMPT_TUNING
    assert config.base_model_name_or_path == "tiny"
    plain, _ = load_base("tiny")
    peft_model = peft.PeftModel.from_pretrained(plain, str(tmp_path / "peft"))
    peft_model.eval()
    b = batch(tok)
    with torch.no_grad():
        ours = composed(**b).logits
    assert torch.allclose(ours, _peft_logits(peft_model, b), atol=1e-6)
    # The round trip back gives the same weights.
    back = load_representation(tmp_path / "peft")
    assert torch.equal(back.weights.embedding, composed.language.weights.embedding)
    # langtransfer.json beside the PEFT files keeps what PEFT has no field for.
    assert (back.role, back.language, back.base_model) == ("language", "sk", fingerprint(model))
    assert back.spec.init_text == "language sk:"


def test_export_refuses_an_adapter(tiny, tmp_path):
    model, tok = tiny
    composed = build(model, tok, "ta")
    with pytest.raises(LangTransferError, match="adapter.*valid: prompt"):
        export_peft_prompt(composed.task, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_import_verb_writes_a_langtransfer_prompt_with_the_base_fingerprint(tmp_path):
    out, peft_model, tok = _peft_prompt(tmp_path)
    code = main(["import-peft", str(out), str(tmp_path / "rep"), "--model", "tiny"])
    assert code == 0
    manifest = read_manifest(tmp_path / "rep")
    model, _ = load_base("tiny")
    assert manifest["base_model"] == fingerprint(model)
    assert (manifest["role"], manifest["language"]) == ("language", "sk")
    rep = load_representation(tmp_path / "rep")
    b = batch(tok)
    assert torch.allclose(_ours_logits(rep, b), _peft_logits(peft_model, b), atol=1e-6)


def test_bin_loads_only_after_explicit_conversion(tmp_path, capsys):
    out, peft_model, tok = _peft_prompt(tmp_path, safe=False)
    assert (out / "adapter_model.bin").is_file()
    assert not (out / "adapter_model.safetensors").exists()
    with pytest.raises(CorruptFileError, match="adapter_model.bin, a pickle.*convert-peft"):
        load_representation(out)
    assert main(["convert-peft", str(out), str(tmp_path / "converted")]) == 0
    assert sorted(p.name for p in (tmp_path / "converted").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors"]
    rep = load_representation(tmp_path / "converted")
    b = batch(tok)
    assert torch.allclose(_ours_logits(rep, b), _peft_logits(peft_model, b), atol=1e-6)
    # PEFT itself reads the converted directory too.
    plain, _ = load_base("tiny")
    again = peft.PeftModel.from_pretrained(plain, str(tmp_path / "converted")).eval()
    assert torch.allclose(_peft_logits(again, b), _peft_logits(peft_model, b), atol=1e-6)


class _Planted:
    """An object whose unpickling would run code: it writes a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_bin_with_a_non_tensor_object_is_refused(tmp_path):
    out, _, _ = _peft_prompt(tmp_path, safe=False)
    marker = tmp_path / "unpickled"
    state = torch.load(out / "adapter_model.bin", weights_only=True)
    torch.save({**state, "extra": _Planted(str(marker))}, out / "adapter_model.bin")
    with pytest.raises(CorruptFileError, match=r"refused by torch.load\(weights_only=True\)"):
        convert_peft_bin(out, tmp_path / "converted")
    assert not marker.exists()
    assert not (tmp_path / "converted").exists()


def test_a_bin_holding_no_tensor_is_refused(tmp_path):
    out, _, _ = _peft_prompt(tmp_path, safe=False)
    torch.save({"prompt_embeddings": [1.0, 2.0]}, out / "adapter_model.bin")
    with pytest.raises(CorruptFileError, match="no tensor 'prompt_embeddings'"):
        convert_peft_bin(out, tmp_path / "converted")


def test_a_lora_config_is_refused_naming_the_valid_type(tmp_path):
    model, _ = load_base("tiny")
    lora = peft.get_peft_model(model, peft.LoraConfig(
        task_type=peft.TaskType.SEQ_2_SEQ_LM, r=2, target_modules=["q", "v"]))
    lora.save_pretrained(tmp_path / "lora")
    with pytest.raises(LangTransferError, match="peft_type 'LORA'.*valid: PROMPT_TUNING"):
        load_representation(tmp_path / "lora")
    with pytest.raises(LangTransferError, match="peft_type 'LORA'.*valid: PROMPT_TUNING"):
        load_peft_prompt(tmp_path / "lora", role="language", language="sk")


def test_width_mismatch_names_both_models_and_widths(tmp_path):
    out, _, tok = _peft_prompt(tmp_path)
    config = json.loads((out / "adapter_config.json").read_text())
    config.update(token_dim=768, base_model_name_or_path="bigscience/mt0-base")
    (out / "adapter_config.json").write_text(json.dumps(config))
    save_file({"prompt_embeddings": torch.zeros(2 * TOKENS, 768)},
              str(out / "adapter_model.safetensors"))
    model, _ = load_base("tiny")
    with pytest.raises(IncompatibleModelError,
                       match="768 wide.*'bigscience/mt0-base'.*'tiny' has d_model 64"):
        load_peft_prompt(out, model=model)
    rep = load_peft_prompt(out)  # without a base here, composition checks it
    with pytest.raises(IncompatibleModelError,
                       match="'bigscience/mt0-base'.*'tiny'.*d_model 768 vs 64"):
        compose(model, "slp", language=rep)


def test_missing_weights_and_lying_shapes_are_named(tmp_path):
    out, _, _ = _peft_prompt(tmp_path)
    weights = out / "adapter_model.safetensors"
    save_file({"prompt_embeddings": torch.zeros(TOKENS + 1, 64)}, str(weights))
    with pytest.raises(CorruptFileError, match="7 rows.*num_virtual_tokens 6.*valid: 6 or 12"):
        load_representation(out)
    save_file({"embedding": torch.zeros(TOKENS, 64)}, str(weights))
    with pytest.raises(CorruptFileError, match="no tensor 'prompt_embeddings'.*embedding"):
        load_representation(out)
    weights.unlink()
    with pytest.raises(CorruptFileError, match="missing adapter_model.safetensors"):
        load_representation(out)


def test_a_hub_id_resolves_through_the_hub_cache(tmp_path, monkeypatch):
    """The same snapshot_download path the store uses, on an offline cache laid out as the hub's."""
    import huggingface_hub.constants as hf_constants

    out, peft_model, tok = _peft_prompt(tmp_path)
    repo = tmp_path / "hub" / "models--ivykopal--slovak_prompt_100k"
    shutil.copytree(out, repo / "snapshots" / ("b" * 40))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("b" * 40)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    rep = load_representation("ivykopal/slovak_prompt_100k")
    b = batch(tok)
    assert rep.language == "sk"
    assert torch.allclose(_ours_logits(rep, b), _peft_logits(peft_model, b), atol=1e-6)


def _reference_style_bin(directory, rows, dim, n=TOKENS):
    """A prompt as the paper's reference code saves it (its own PromptTuningConfig fields,
    ``torch.save`` of ``{"prompt_embeddings": ...}``, 2 x n rows for seq2seq)."""
    directory.mkdir(parents=True)
    config = {
        "auto_mapping": None, "base_model_name_or_path": "tiny", "revision": None,
        "task_type": "SEQ_2_SEQ_LM", "inference_mode": True, "num_virtual_tokens": n,
        "token_dim": dim, "num_transformer_submodules": 2, "num_layers": 2,
        "prompt_tuning_init": "TEXT", "prompt_tuning_init_text": "Generate the output in Czech:",
        "partial_prompt_tuning_init_text": None, "partial_embedding": False, "fixed_size": 0,
        "num_attention_heads": 4, "tokenizer_name_or_path": "tiny", "peft_type": "PROMPT_TUNING",
        "task_prompt": False, "fusion": "none",
    }
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    torch.save({"prompt_embeddings": rows}, directory / "adapter_model.bin")
    torch.save({"not": "weights"}, directory / "training_args.bin")  # beside it on the hub


def test_a_reference_style_bin_from_the_hub_converts_and_keeps_the_encoder_half(
    tmp_path, monkeypatch
):
    import huggingface_hub.constants as hf_constants

    rows = torch.randn(2 * TOKENS, 64, generator=torch.Generator().manual_seed(3))
    repo = tmp_path / "hub" / "models--ivykopal--czech_prompt_100k"
    _reference_style_bin(repo / "snapshots" / ("c" * 40), rows, 64)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("c" * 40)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    for load in (load_peft_prompt, load_representation):
        with pytest.raises(CorruptFileError, match="convert-peft ivykopal/czech_prompt_100k DIR"):
            load("ivykopal/czech_prompt_100k")
    convert_peft_bin("ivykopal/czech_prompt_100k", tmp_path / "czech")
    rep = load_representation(tmp_path / "czech")
    assert (rep.role, rep.language) == ("language", "cs")
    assert torch.equal(rep.weights.embedding, rows[:TOKENS])
    model, tok = load_base("tiny")
    b = batch(tok)
    composed = compose(model, "slp", language=rep)
    with torch.no_grad():
        embeds = model.get_input_embeddings()(b["input_ids"])
        manual = model(
            inputs_embeds=torch.cat([rows[:TOKENS].expand(2, -1, -1), embeds], 1),
            attention_mask=torch.cat([torch.ones(2, TOKENS, dtype=torch.long),
                                      b["attention_mask"]], 1),
            labels=b["labels"],
        ).logits
        assert torch.allclose(composed(**b).logits, manual, atol=1e-6)


def test_cli_errors_are_one_line(tmp_path, capsys):
    model, _ = load_base("tiny")
    lora = peft.get_peft_model(model, peft.LoraConfig(
        task_type=peft.TaskType.SEQ_2_SEQ_LM, r=2, target_modules=["q", "v"]))
    lora.save_pretrained(tmp_path / "lora")
    capsys.readouterr()
    assert main(["import-peft", str(tmp_path / "lora"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'LORA'" in err and "valid: PROMPT_TUNING" in err
    out, _, _ = _peft_prompt(tmp_path)
    assert main(["import-peft", str(out), str(tmp_path / "out"), "--task", "poetry"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'poetry'" in err and "qa" in err
    # The other role's subject is refused, not dropped.
    for role, subject, pattern in (
        ("language", ["--task", "nli"], "a language prompt is for a language, not a task "
                                         "(task 'nli' given); pass --language, or --role task"),
        ("task", ["--language", "sk"], "a task prompt is for a task, not a language "
                                        "(language 'sk' given); pass --task, or --role language"),
    ):
        args = ["import-peft", str(out), str(tmp_path / "out"), "--role", role, *subject]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and pattern in err, err
    assert not (tmp_path / "out").exists()


def test_evaluate_takes_a_peft_directory_as_language_rep(tmp_path):
    """Through the user's path (`langtransfer evaluate --language-rep PEFT_DIR`): the
    generations are PEFT's own for the same inputs."""
    out, peft_model, tok = _peft_prompt(tmp_path)
    code = main(["evaluate", "--model", "tiny", "--task", "nli", "--language", "sk",
                 "--language-rep", str(out), "--data", "fixtures", "--max-examples", "3",
                 "--batch-size", "1", "--output", str(tmp_path / "eval")])
    assert code == 0
    record = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert record["configuration"] == "slp"  # "base" had the PEFT directory been ignored
    rows = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").open()]
    assert len(rows) == 3
    limit = record["generation"]["max_new_tokens"]
    for row in rows:
        enc = tok(row["input"], return_tensors="pt", truncation=True, max_length=256)
        with torch.no_grad():
            ids = peft_model.generate(**enc, max_new_tokens=limit, do_sample=False)
        assert tok.decode(ids[0], skip_special_tokens=True).strip() == row["prediction"]


def test_a_causal_prompt_round_trips_through_peft(tmp_path):
    """A prompt on the causal tiny model exports as PEFT CAUSAL_LM; PEFT prepends it to the
    input embeddings as langtransfer does (same logits over the target), and loading it
    back refuses a seq2seq base, naming both families."""
    model, tok = load_base("tiny-causal")
    composed = build(model, tok, "slp")
    perturb(composed)
    out = export_peft_prompt(composed.language, tmp_path / "peft")
    assert json.loads((out / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
    source, target = tok("ahoj svet").input_ids, tok("Bratislava").input_ids
    with torch.no_grad():
        ours = composed(torch.tensor([source]), labels=torch.tensor([target])).logits[0]
        peft_model = peft.PeftModel.from_pretrained(load_base("tiny-causal")[0], str(out))
        theirs = peft_model(input_ids=torch.tensor([source + target])).logits[0]
    start = composed.prompt_length() + len(source) - 1
    torch.testing.assert_close(ours, theirs[start : start + len(target)], atol=1e-5, rtol=1e-4)
    back = load_peft_prompt(out)
    assert back.base_model["family"] == "causal"
    compose(model, "slp", language=back).close()
    with pytest.raises(IncompatibleModelError, match="family causal vs seq2seq"):
        compose(load_base("tiny")[0], "slp", language=back)
    with pytest.raises(IncompatibleModelError, match="is for a causal base .* is seq2seq"):
        load_peft_prompt(out, model=load_base("tiny")[0])


def test_exporting_an_adapter_says_what_it_is(tmp_path, capsys):
    from langtransfer.errors import LangTransferError
    from langtransfer.representations import new_adapter
    from langtransfer.representations.peft_format import export_peft_prompt

    with pytest.raises(LangTransferError, match=r"is of kind adapter; PEFT export is for soft "
                                                r"prompts \(valid: prompt\)"):
        export_peft_prompt(new_adapter("task", task="nli"), tmp_path / "peft")
    assert not (tmp_path / "peft").exists()
