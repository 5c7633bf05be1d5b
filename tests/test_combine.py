"""Language representations without training: combinations equal the weighted sum of
their parts, proxies follow the registry, bad input is refused naming the value."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from langtransfer.composition.combine import (
    build_proxy,
    check_weights,
    combine_language_representations,
)
from langtransfer.composition.composed import compose
from langtransfer.composition.loaded_base import LoadedBase
from langtransfer.errors import IncompatibleModelError, LangTransferError
from langtransfer.languages import get_language, relatives
from langtransfer.representations import PromptConfig, load_representation, new_prompt
from tests.helpers import make_rep, perturb


def _prompt(model, tok, lang, path, seed, num_tokens=8):
    config = PromptConfig(num_tokens=num_tokens, init="text", init_text=f"language {lang}:")
    rep = new_prompt("language", model, tok, config, language=lang)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        rep.weights.embedding.add_(torch.randn(rep.weights.embedding.shape, generator=g))
    from langtransfer.representations import save_representation

    save_representation(rep, path, training={"steps": 10})
    return path


def _adapter(model, tok, lang, path, seed):
    rep = make_rep("language", "adapter", model, tok, lang)
    with compose(model, "la", language=rep) as composed:
        perturb(composed, seed)
        composed.save("language", path, training={"steps": 10})
    return path


@pytest.fixture
def loaded():
    return LoadedBase.load("tiny")


def test_combined_prompt_is_exactly_the_weighted_sum(loaded, tmp_path):
    model, tok = loaded.model, loaded.tokenizer
    parts = {_prompt(model, tok, c, tmp_path / c, i): w
             for i, (c, w) in enumerate([("cs", 0.5), ("ru", 0.3), ("de", 0.2)])}
    out = combine_language_representations(parts, tmp_path / "sk", language="sk")
    expected = torch.zeros(8, 64)
    for path, w in parts.items():
        expected = expected + w * load_representation(path).weights.embedding
    assert torch.equal(out.weights.embedding, expected)
    assert not torch.equal(out.weights.embedding,
                           load_representation(tmp_path / "cs").weights.embedding)
    # saved like any representation: safetensors, an id, its parts and weights recorded
    assert set(load_file(str(tmp_path / "sk" / "prompt.safetensors"))) == {"embedding"}
    manifest = json.loads((tmp_path / "sk" / "manifest.json").read_text())
    assert manifest["language"] == "sk" and manifest["kind"] == "prompt"
    composed = manifest["training"]["composed"]
    assert [(p["language"], p["weight"]) for p in composed["parts"]] == [
        ("cs", 0.5), ("ru", 0.3), ("de", 0.2)]
    assert composed["weights_from"] == "user" and manifest["training"]["steps"] == 0
    assert out.id.startswith("slp-sk-") and out.language == "sk"
    # and it composes and runs like a trained one
    with loaded.compose("slp", language=loaded.representation(tmp_path / "sk")) as cm:
        enc = tok(["ahoj"], return_tensors="pt")
        assert cm.generate(**enc, max_new_tokens=2).shape[0] == 1


def test_averaged_adapter_weights_are_the_weighted_average(loaded, tmp_path):
    model, tok = loaded.model, loaded.tokenizer
    a = _adapter(model, tok, "cs", tmp_path / "cs", 1)
    b = _adapter(model, tok, "ru", tmp_path / "ru", 2)
    before = loaded.weights_digest()
    out = combine_language_representations({a: 0.75, b: 0.25}, tmp_path / "sk",
                                           language="sk", model=loaded)
    wa, wb = (load_file(str(p / "adapter.safetensors")) for p in (a, b))
    wo = load_file(str(tmp_path / "sk" / "adapter.safetensors"))
    rename = {k.replace(".lang_sk.", ".lang_cs."): k for k in wo}
    assert set(rename) == set(wa) and len(wo) > 4
    for key_a, key_o in rename.items():
        key_b = key_a.replace(".lang_cs.", ".lang_ru.")
        torch.testing.assert_close(wo[key_o], 0.75 * wa[key_a] + 0.25 * wb[key_b])
    assert not torch.allclose(wa[next(iter(wa))], wb[next(iter(wa)).replace("cs", "ru")])
    # the base is left as it was: no adapter remains, frozen weights unchanged
    assert not list(getattr(model, "adapters_config", {}).adapters)
    assert loaded.weights_digest() == before
    assert out.kind == "adapter" and out.training["composed"]["method"].startswith("adapters")
    with loaded.compose("la", language=loaded.representation(tmp_path / "sk")) as cm:
        enc = tok(["ahoj"], return_tensors="pt")
        assert cm.generate(**enc, max_new_tokens=2).shape[0] == 1


def test_registry_weights_follow_family_and_script():
    # Slovak (Slavic, Latin): Czech shares both, Russian the family, German the script.
    assert relatives("sk", ["cs", "ru", "de", "zh"]) == {"cs": 0.5, "ru": 0.25, "de": 0.25}
    # the language itself is never its own relative; unrelated ones are left out
    assert relatives("ru", ["ru", "bg", "sk", "en"]) == {"bg": 2 / 3, "sk": 1 / 3}
    for lang, weights in (("sk", relatives("sk", ["cs", "ru"])), ("de", relatives("de", ["en"]))):
        me = get_language(lang)
        for code, w in weights.items():
            other = get_language(code)
            assert w > 0 and (other.family == me.family or other.script == me.script)


def test_proxy_uses_the_registry_weights(loaded, tmp_path):
    model, tok = loaded.model, loaded.tokenizer
    available = {c: _prompt(model, tok, c, tmp_path / c, i)
                 for i, c in enumerate(["cs", "ru", "de", "zh"])}
    out = build_proxy("sk", available, tmp_path / "sk")
    expected = torch.zeros(8, 64)
    for code, w in (("cs", 0.5), ("ru", 0.25), ("de", 0.25)):
        expected = expected + w * load_representation(available[code]).weights.embedding
    assert torch.equal(out.weights.embedding, expected)
    composed = out.training["composed"]
    assert composed["weights_from"] == "registry"
    assert {p["language"]: p["weight"] for p in composed["parts"]} == {
        "cs": 0.5, "ru": 0.25, "de": 0.25}
    user = build_proxy("sk", available, tmp_path / "sk-user", weights={"zh": 1.0})
    assert torch.equal(user.weights.embedding,
                       load_representation(available["zh"]).weights.embedding)
    assert user.training["composed"]["weights_from"] == "user"


def test_bad_input_is_refused_naming_the_value(loaded, tmp_path):
    model, tok = loaded.model, loaded.tokenizer
    cs = _prompt(model, tok, "cs", tmp_path / "cs", 0)
    ru = _prompt(model, tok, "ru", tmp_path / "ru", 1)
    with pytest.raises(LangTransferError, match=r"sum to 0\.9, not 1"):
        combine_language_representations({cs: 0.5, ru: 0.4}, tmp_path / "x", language="sk")
    assert not (tmp_path / "x").exists()
    normalised = combine_language_representations(
        {cs: 1, ru: 3}, tmp_path / "n", language="sk", normalize=True)
    assert [p["weight"] for p in normalised.training["composed"]["parts"]] == [0.25, 0.75]
    with pytest.raises(LangTransferError, match=r"weight of .*ru must be positive, got -0\.5"):
        check_weights({"cs": 1.5, "ru": -0.5})
    with pytest.raises(LangTransferError, match="repeats"):
        combine_language_representations({cs: 0.5, str(cs) + "/.": 0.5}, tmp_path / "x",
                                         language="sk")
    cs2 = _prompt(model, tok, "cs", tmp_path / "cs2", 5)
    with pytest.raises(LangTransferError, match="repeats language cs"):
        combine_language_representations({cs: 0.5, cs2: 0.5}, tmp_path / "x", language="sk")
    short = _prompt(model, tok, "de", tmp_path / "short", 2, num_tokens=4)
    with pytest.raises(LangTransferError, match="prompt of 4 tokens.*of 8"):
        combine_language_representations({cs: 0.5, short: 0.5}, tmp_path / "x", language="sk")
    adapter = _adapter(model, tok, "de", tmp_path / "ad", 3)
    with pytest.raises(LangTransferError, match="is of kind adapter but .* of kind prompt"):
        combine_language_representations({cs: 0.5, adapter: 0.5}, tmp_path / "x",
                                         language="sk")
    manifest = json.loads((ru / "manifest.json").read_text())
    manifest["base_model"]["num_layers"] = 7
    (ru / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleModelError, match="num_layers 2 vs 7"):
        combine_language_representations({cs: 0.5, ru: 0.5}, tmp_path / "x", language="sk")
    with pytest.raises(LangTransferError, match=r"no relative of language 'zh'.*among cs, ru"):
        build_proxy("zh", {"cs": cs, "ru": ru}, tmp_path / "x")
    with pytest.raises(LangTransferError, match="no representation of 'de' is available"):
        build_proxy("sk", {"cs": cs}, tmp_path / "x", weights={"de": 1.0})
    assert not (tmp_path / "x").exists()
