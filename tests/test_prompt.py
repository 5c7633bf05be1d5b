import pytest
import torch

from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.representations import INIT_STRATEGIES, PromptConfig, SoftPrompt
from langtransfer.representations.kinds.prompt import initial_prompt

INSTRUCTION = "Generate the output in Slovak:"


def _init(tiny, **kw) -> SoftPrompt:
    model, tok = tiny
    return initial_prompt(PromptConfig(**kw), model.get_input_embeddings(), tok)


def test_text_init_is_repeated_instruction_embeddings(tiny):
    model, tok = tiny
    prompt = _init(tiny, num_tokens=50, init="text", init_text=INSTRUCTION)
    ids = tok(INSTRUCTION).input_ids
    assert ids[-1] == tok.eos_token_id  # the end token is part of the initialisation
    expected_ids = (ids * 3)[:50]
    expected = model.get_input_embeddings().weight[torch.tensor(expected_ids)]
    assert prompt.embedding.shape == (50, model.config.d_model)
    assert torch.equal(prompt.embedding.detach(), expected.detach())


def test_text_init_cuts_when_instruction_is_longer(tiny):
    model, tok = tiny
    prompt = _init(tiny, num_tokens=5, init="text", init_text=INSTRUCTION)
    ids = tok(INSTRUCTION).input_ids[:5]
    assert torch.equal(prompt.embedding.detach(), model.get_input_embeddings().weight[ids].detach())


def test_labels_init_uses_label_words(tiny):
    model, tok = tiny
    words = ["Yes", "Maybe", "No"]
    prompt = _init(tiny, num_tokens=12, init="labels", label_words=words)
    ids = [i for w in words for i in tok(w, add_special_tokens=False).input_ids]
    assert len(ids) == 10
    expected = model.get_input_embeddings().weight[(ids * 2)[:12]]
    assert torch.equal(prompt.embedding.detach(), expected.detach())


def test_vocab_init_samples_ordinary_tokens(tiny):
    model, tok = tiny
    prompt = _init(tiny, num_tokens=20, init="vocab", seed=3)
    weight = model.get_input_embeddings().weight.detach()
    special = set(tok.all_special_ids)
    for row in prompt.embedding.detach():
        matches = (weight == row).all(dim=1).nonzero().flatten().tolist()
        assert matches and not special.intersection(matches)
    again = _init(tiny, num_tokens=20, init="vocab", seed=3)
    assert torch.equal(prompt.embedding, again.embedding)


def test_random_init_matches_embedding_scale(tiny):
    model, _ = tiny
    prompt = _init(tiny, num_tokens=200, init="random")
    std = model.get_input_embeddings().weight.std().item()
    assert prompt.embedding.std().item() == pytest.approx(std, rel=0.2)


def test_the_strategies_differ(tiny):
    kw = {"init_text": INSTRUCTION, "label_words": ["Yes", "No"],
          "extra": {"token_ids": [5, 6, 7]}}  # frequent: the ids language training counts
    prompts = {s: _init(tiny, num_tokens=16, init=s, **kw).embedding for s in INIT_STRATEGIES}
    names = list(prompts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.allclose(prompts[a], prompts[b]), (a, b)


def test_bad_prompt_configs():
    valid = "frequent, labels, random, text, vocab"
    with pytest.raises(UnknownNameError, match=f"'vocabulary'.*{valid}"):
        PromptConfig(init="vocabulary")
    with pytest.raises(LangTransferError, match="init_text"):
        PromptConfig(init="text")
    with pytest.raises(LangTransferError, match="label_words"):
        PromptConfig(init="labels")
    with pytest.raises(LangTransferError, match="num_tokens"):
        PromptConfig(num_tokens=0, init="random")
