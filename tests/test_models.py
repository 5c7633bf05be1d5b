import pytest
import torch

from langtransfer.base.loading import fingerprint, load_base
from langtransfer.errors import LangTransferError


def test_tiny_is_deterministic_and_small():
    (a, tok), (b, _) = load_base("tiny"), load_base("tiny")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert a.config.model_type == "mt5" and type(tok).__name__ == "ByT5Tokenizer"
    assert sum(p.numel() for p in a.parameters()) < 1_000_000
    assert not any(p.requires_grad for p in a.parameters())
    assert tok.convert_tokens_to_ids("<extra_id_0>") < a.config.vocab_size


def test_local_directory_takes_the_from_pretrained_path(tmp_path):
    model, tok = load_base("tiny")
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, loaded_tok = load_base(str(tmp_path / "m"))
    assert fingerprint(loaded) | {"name": "tiny"} == fingerprint(model)
    ids = loaded_tok(["ahoj"], return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(
            loaded(input_ids=ids, labels=ids).logits, model(input_ids=ids, labels=ids).logits
        )


def test_pickle_only_checkpoints_are_refused(tmp_path):
    model, tok = load_base("tiny")
    model.save_pretrained(tmp_path / "m", safe_serialization=False)
    tok.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "pytorch_model.bin").exists()
    with pytest.raises(LangTransferError, match="safetensors"):
        load_base(str(tmp_path / "m"))


def test_remote_code_is_off_by_default(monkeypatch):
    import transformers

    seen = {}

    def fake(name, **kwargs):
        seen[name] = kwargs
        raise OSError("no network here")

    # The config is read first (it picks the family), then the tokenizer and weights.
    for auto in (transformers.AutoConfig, transformers.AutoTokenizer):
        monkeypatch.setattr(auto, "from_pretrained", fake)
        with pytest.raises(LangTransferError, match="bigscience/mt0-base"):
            load_base()
        assert seen.pop("bigscience/mt0-base")["trust_remote_code"] is False
        if auto is transformers.AutoConfig:  # a seq2seq config, to reach the tokenizer
            monkeypatch.setattr(auto, "from_pretrained",
                                lambda name, **kw: transformers.MT5Config())


@pytest.mark.parametrize("verb", ["train-language", "train-task", "evaluate"])
def test_trust_remote_code_only_with_the_flag(monkeypatch, verb):
    """--trust-remote-code reaches load_base; without it remote code stays off."""
    from langtransfer.cli import main
    from langtransfer.composition import loaded_base

    seen = []

    def fake(name, **kwargs):
        seen.append(kwargs.get("trust_remote_code", False))
        raise LangTransferError("stop here")

    monkeypatch.setattr(loaded_base, "load_base", fake)
    args = {"train-language": ["--language", "sk", "--kind", "prompt", "--corpus", "fixture",
                               "--output", "/nonexistent/x"],
            "train-task": ["--task", "nli", "--language", "en", "--kind", "prompt", "--data",
                           "fixtures", "--output", "/nonexistent/x"],
            "evaluate": ["--task", "nli", "--language", "en", "--data", "fixtures",
                         "--output", "/nonexistent/x"]}[verb]
    assert main([verb, *args, "--model", "someone/model"]) == 2
    assert main([verb, *args, "--model", "someone/model", "--trust-remote-code"]) == 2
    assert seen == [False, True]
