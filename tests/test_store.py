import json
import shutil

import adapters
import pytest
import torch
from helpers import batch, build, perturb
from transformers import MT5Config, MT5ForConditionalGeneration

from langtransfer.base.loading import fingerprint, load_base
from langtransfer.composition.composed import compose
from langtransfer.errors import CorruptFileError, IncompatibleModelError, OutputExistsError
from langtransfer.representations import load_representation, read_manifest


def _other_base():
    config = MT5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                       num_decoder_layers=1, num_heads=4, decoder_start_token_id=0)
    config.name_or_path = "other-model"
    return MT5ForConditionalGeneration(config)


def test_manifest_records_kind_role_and_base_fingerprint(tiny, tmp_path):
    model, tok = tiny
    composed = build(model, tok, "slp+ta")
    composed.save("language", tmp_path / "slp", training={"steps": 3})
    composed.save("task", tmp_path / "ta")
    slp, ta = read_manifest(tmp_path / "slp"), read_manifest(tmp_path / "ta")
    assert (slp["kind"], slp["role"], slp["language"]) == ("prompt", "language", "sk")
    assert (ta["kind"], ta["role"], ta["task"]) == ("adapter", "task", "qa")
    assert slp["base_model"] == fingerprint(model) and ta["base_model"] == fingerprint(model)
    assert slp["base_model"]["name"] == "tiny" and slp["base_model"]["d_model"] == 64
    assert slp["prompt"]["init"] == "text" and slp["prompt"]["init_text"] == "language sk:"
    assert slp["training"] == {"steps": 3}
    assert ta["adapter"] == {"config": "seq_bn", "reduction_factor": 16}


@pytest.mark.parametrize("configuration", ["slp+ta", "la+stp"])
def test_loading_onto_another_base_fails_naming_both(tiny, tmp_path, configuration):
    model, tok = tiny
    composed = build(model, tok, configuration)
    composed.save("language", tmp_path / "language")
    composed.save("task", tmp_path / "task")
    other = _other_base()
    for role in ("language", "task"):
        rep = load_representation(tmp_path / role)
        configuration = {"language": rep.short, "task": rep.short}[role]
        with pytest.raises(IncompatibleModelError, match="'tiny'.*'other-model'.*d_model 64 vs 32"):
            compose(other, configuration, **{role: rep})


def test_adapter_dir_is_readable_by_adapters_library(tiny, tmp_path):
    model, tok = tiny
    composed = build(model, tok, "ta")
    perturb(composed)
    composed.save("task", tmp_path / "ta")
    plain, _ = load_base("tiny")
    adapters.init(plain)
    name = plain.load_adapter(str(tmp_path / "ta"), use_safetensors=True, set_active=True)
    assert name == "task_qa"
    b = batch(tok)
    with torch.no_grad():
        assert torch.equal(plain(**b).logits, composed(**b).logits)


def test_saving_into_a_non_empty_directory_needs_overwrite(tiny, tmp_path):
    model, tok = tiny
    composed = build(model, tok, "slp")
    composed.save("language", tmp_path / "slp")
    before = (tmp_path / "slp" / "prompt.safetensors").read_bytes()
    perturb(composed)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        composed.save("language", tmp_path / "slp")
    assert (tmp_path / "slp" / "prompt.safetensors").read_bytes() == before
    composed.save("language", tmp_path / "slp", overwrite=True)
    assert (tmp_path / "slp" / "prompt.safetensors").read_bytes() != before


def test_truncated_weights_are_rejected(tiny, tmp_path):
    model, tok = tiny
    composed = build(model, tok, "slp+ta")
    composed.save("language", tmp_path / "slp")
    composed.save("task", tmp_path / "ta")
    for path in (tmp_path / "slp" / "prompt.safetensors", tmp_path / "ta" / "adapter.safetensors"):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(CorruptFileError, match=path.name):
            load_representation(path.parent)


def test_manifest_that_lies_about_shape_is_rejected(tiny, tmp_path):
    model, tok = tiny
    build(model, tok, "slp").save("language", tmp_path / "slp")
    manifest = json.loads((tmp_path / "slp" / "manifest.json").read_text())
    manifest["prompt"]["num_tokens"] = 50
    (tmp_path / "slp" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptFileError, match=r"shape \[8, 64\].*manifest says \[50, 64\]"):
        load_representation(tmp_path / "slp")


def test_pickled_adapter_weights_are_never_loaded(tiny, tmp_path):
    model, tok = tiny
    build(model, tok, "ta").save("task", tmp_path / "ta")
    (tmp_path / "ta" / "adapter.safetensors").rename(tmp_path / "ta" / "pytorch_adapter.bin")
    with pytest.raises(CorruptFileError, match="safetensors only"):
        load_representation(tmp_path / "ta")


def test_missing_or_foreign_directories(tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        load_representation(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorruptFileError, match="no manifest.json"):
        load_representation(tmp_path / "empty")
    (tmp_path / "empty" / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        load_representation(tmp_path / "empty")


def test_hub_ids_resolve_through_the_hub_cache(tiny, tmp_path, monkeypatch):
    """A hub id takes huggingface_hub's snapshot path; here the cache is pre-filled offline."""
    import huggingface_hub.constants as hf_constants

    model, tok = tiny
    composed = build(model, tok, "slp")
    perturb(composed)
    composed.save("language", tmp_path / "saved")
    repo = tmp_path / "hub" / "models--someone--slp-sk"
    snapshot = repo / "snapshots" / ("a" * 40)
    shutil.copytree(tmp_path / "saved", snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    rep = load_representation("someone/slp-sk")
    assert torch.equal(rep.weights.embedding, composed.language.weights.embedding)
    with pytest.raises(Exception, match="someone/missing.*Hugging Face Hub"):
        load_representation("someone/missing")


# --- hostile and broken files (issue 7) --------------------------------------------------


def _edit_manifest(directory, **changes):
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        target = manifest
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        target[last] = value
    path.write_text(json.dumps(manifest))


def test_manifest_that_lies_about_kind_is_rejected(tiny, tmp_path):
    model, tok = tiny
    composed = build(model, tok, "slp+ta")
    composed.save("language", tmp_path / "slp")
    composed.save("task", tmp_path / "ta")
    _edit_manifest(tmp_path / "slp", kind="adapter")
    with pytest.raises(CorruptFileError, match="missing adapter.safetensors.*safetensors only"):
        load_representation(tmp_path / "slp")
    _edit_manifest(tmp_path / "ta", kind="prompt", prompt={"num_tokens": 8, "init_text": "x"})
    with pytest.raises(CorruptFileError, match="missing prompt.safetensors"):
        load_representation(tmp_path / "ta")
    _edit_manifest(tmp_path / "ta", kind="lora")
    with pytest.raises(CorruptFileError, match="kind 'lora'"):
        load_representation(tmp_path / "ta")


def test_manifest_that_lies_about_the_base_model_is_rejected(tiny, tmp_path):
    model, tok = tiny
    # An adapter trained on a 32-wide model whose manifest claims the 64-wide tiny model.
    build(_other_base(), tok, "ta").save("task", tmp_path / "ta")
    _edit_manifest(tmp_path / "ta", base_model=fingerprint(model))
    with pytest.raises(CorruptFileError, match=r"adapter_config.json: the adapter is for hidden "
                       r"size 32 but the manifest says its base model has d_model 64"):
        load_representation(tmp_path / "ta")
    # A prompt whose manifest claims another width.
    build(model, tok, "slp").save("language", tmp_path / "slp")
    _edit_manifest(tmp_path / "slp", **{"base_model.d_model": 32})
    with pytest.raises(CorruptFileError, match=r"shape \[8, 64\] but the manifest says \[8, 32\]"):
        load_representation(tmp_path / "slp")
    _edit_manifest(tmp_path / "slp", **{"base_model.d_model": "64"})
    with pytest.raises(CorruptFileError, match="d_model must be a positive integer"):
        load_representation(tmp_path / "slp")


def test_adapter_config_that_lies_about_the_weights_is_rejected(tiny, tmp_path):
    model, tok = tiny
    build(model, tok, "ta").save("task", tmp_path / "ta")
    path = tmp_path / "ta" / "adapter_config.json"
    config = json.loads(path.read_text())
    config["config"]["reduction_factor"] = 2  # the weights were made with 16
    path.write_text(json.dumps(config))
    rep = load_representation(tmp_path / "ta")  # the shapes are only known to the library
    fresh, _ = load_base("tiny")
    with pytest.raises(CorruptFileError, match=r"ta: the adapter files do not load onto base "
                       r"model 'tiny' \(.*size mismatch"):
        compose(fresh, "ta", task=rep)
    path.write_text("{not json")
    with pytest.raises(CorruptFileError, match="adapter_config.json: not valid JSON"):
        load_representation(tmp_path / "ta")


def test_non_finite_weights_and_newer_formats_are_rejected(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    model, tok = tiny
    build(model, tok, "slp").save("language", tmp_path / "slp")
    weights = tmp_path / "slp" / "prompt.safetensors"
    tensors = load_file(weights)
    tensors["embedding"][3, 5] = float("nan")
    save_file(tensors, weights)
    with pytest.raises(CorruptFileError, match="'embedding' holds NaN or infinite values"):
        load_representation(tmp_path / "slp")
    _edit_manifest(tmp_path / "slp", format_version=99)
    with pytest.raises(CorruptFileError, match="format_version 99.*a newer langtransfer"):
        load_representation(tmp_path / "slp")


def test_source_never_unpickles_nor_runs_remote_code():
    """Audit: weights are read through safetensors only (Trainer's own resume state, the
    optimizer and RNG files of our checkpoints, is loaded by transformers with
    ``weights_only``), and remote code is never switched on by default. The one
    ``torch.load`` allowed is a call with ``weights_only=True`` (the explicit PEFT ``.bin``
    conversion)."""
    import ast
    from pathlib import Path

    import langtransfer

    src = Path(langtransfer.__file__).parent
    found = []
    for path in src.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        weights_only = {
            id(node.func) for node in ast.walk(tree)
            if isinstance(node, ast.Call) and any(
                k.arg == "weights_only" and isinstance(k.value, ast.Constant)
                and k.value.value is True for k in node.keywords)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("load", "loads")
                and isinstance(node.value, ast.Name)
                and node.value.id in ("torch", "pickle", "dill")
                and not (
                    node.value.id == "torch" and node.attr == "load" and id(node) in weights_only
                )
            ):
                found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] in ("pickle", "dill", "joblib") for n in names):
                    found.append(f"{path.name}:{node.lineno} imports pickle")
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code" and \
                    isinstance(node.value, ast.Constant) and node.value.value is True:
                found.append(f"{path.name}:{node.lineno} trust_remote_code=True")
            if isinstance(node, ast.keyword) and node.arg == "use_safetensors" and \
                    not (isinstance(node.value, ast.Constant) and node.value.value is True):
                found.append(f"{path.name}:{node.lineno} use_safetensors not True")
    assert found == []
