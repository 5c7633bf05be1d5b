import pytest
import torch
from helpers import PROMPT_TOKENS, batch, build, make_rep, perturb

from langtransfer.base.loading import load_base
from langtransfer.composition.composed import STUDY_CONFIGURATIONS, compose
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.representations import load_representation

D = 64  # tiny d_model
ADAPTER_PARAMS = 4 * (D * (D // 16) + D // 16 + (D // 16) * D + D)  # 4 layers with seq_bn
PROMPT_PARAMS = PROMPT_TOKENS * D

# (configuration, role trained) -> (expected parameter-name marker, count)
EXPECTED_TRAINABLE = {
    ("base", None): (None, 0),
    ("ta", "task"): (".adapters.{task}.", ADAPTER_PARAMS),
    ("stp", "task"): ("prompts.task.", PROMPT_PARAMS),
    ("la+ta", "task"): (".adapters.{task}.", ADAPTER_PARAMS),
    ("la+stp", "task"): ("prompts.task.", PROMPT_PARAMS),
    ("slp+ta", "task"): (".adapters.{task}.", ADAPTER_PARAMS),
    ("slp+stp", "task"): ("prompts.task.", PROMPT_PARAMS),
    ("la", "language"): (".adapters.{language}.", ADAPTER_PARAMS),
    ("slp", "language"): ("prompts.language.", PROMPT_PARAMS),
}


@pytest.mark.parametrize(("configuration", "role"), list(EXPECTED_TRAINABLE))
def test_exactly_the_trained_representation_has_gradients(tiny, configuration, role):
    model, tok = tiny
    composed = build(model, tok, configuration, train=role)
    marker, count = EXPECTED_TRAINABLE[(configuration, role)]
    if marker:  # an adapter's parameters are named by its id
        ids = {r.role: r.id for r in composed.representations()}
        marker = marker.format(**{"language": None, "task": None, **ids})
    trainable = composed.trainable_parameters()
    assert sum(p.numel() for p in trainable.values()) == count
    assert all(marker in n for n in trainable), list(trainable)
    assert composed.configuration == configuration
    if trainable:
        composed(**batch(tok)).loss.backward()
        frozen_grads = [
            n for n, p in composed.named_parameters() if p.grad is not None and n not in trainable
        ]
        assert frozen_grads == []
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.values())


def test_all_seven_configurations_are_named():
    assert STUDY_CONFIGURATIONS == ("base", "ta", "stp", "la+ta", "la+stp", "slp+ta", "slp+stp")


@pytest.mark.parametrize("configuration", STUDY_CONFIGURATIONS)
def test_save_load_round_trip_gives_identical_logits(tiny, tmp_path, configuration):
    model, tok = tiny
    composed = build(model, tok, configuration)
    perturb(composed)
    for rep in list(composed.representations()):
        composed.save(rep.role, tmp_path / rep.role)
    fresh, _ = load_base("tiny")
    loaded = {role: load_representation(tmp_path / role) for role in ("language", "task")
              if (tmp_path / role).exists()}
    again = compose(fresh, configuration, **loaded)
    b = batch(tok)
    with torch.no_grad():
        expected = composed(**b).logits
        got = again(**b).logits
    assert torch.equal(expected, got)
    if configuration != "base":
        plain, _ = load_base("tiny")
        with torch.no_grad():
            assert not torch.allclose(plain(**b).logits, got)  # the representations matter


def test_prompts_are_prepended_language_then_task(tiny):
    model, tok = tiny
    composed = build(model, tok, "slp+stp")
    enc = tok(["abc", "a"], padding=True, return_tensors="pt")
    inputs = composed.encoder_inputs(enc.input_ids, enc.attention_mask)
    emb, mask = inputs["inputs_embeds"], inputs["attention_mask"]
    n = PROMPT_TOKENS
    assert emb.shape == (2, 2 * n + enc.input_ids.shape[1], D)
    assert torch.equal(emb[0, :n], composed.language.weights.embedding)
    assert torch.equal(emb[1, n : 2 * n], composed.task.weights.embedding)
    assert torch.equal(emb[:, 2 * n :], model.get_input_embeddings()(enc.input_ids))
    assert mask[:, : 2 * n].eq(1).all()
    assert torch.equal(mask[:, 2 * n :], enc.attention_mask)


def test_prompt_does_not_touch_decoder(tiny):
    model, tok = tiny
    composed = build(model, tok, "slp")
    b = batch(tok)
    out = composed(**b)
    assert out.logits.shape[1] == b["labels"].shape[1]


@pytest.mark.parametrize("configuration", ["slp+ta", "la+ta", "slp+stp", "la+stp"])
def test_swapping_language_keeps_task_representation(tiny, configuration):
    model, tok = tiny
    composed = build(model, tok, configuration, train="task")
    perturb(composed)
    task_before = {n: p.detach().clone() for n, p in composed.trainable_parameters().items()}
    b = batch(tok)
    with torch.no_grad():
        before = composed(**b).logits
    kind, source_id = composed.language.kind, composed.language.id
    target = make_rep("language", kind, model, tok, "de")
    composed.set_language(target)
    assert composed.language.language == "de"
    assert composed.configuration == configuration
    task_after = composed.trainable_parameters()
    assert task_after.keys() == task_before.keys()
    assert all(torch.equal(task_after[n], task_before[n]) for n in task_before)
    if kind == "adapter":
        expected = [target.id] + ([composed.task.id] if composed.task.kind == "adapter" else [])
        assert [str(a) for a in composed.base.active_adapters] == expected
        assert source_id not in composed.base.adapters_config  # given back: no other user
    with torch.no_grad():
        assert not torch.allclose(composed(**b).logits, before)


def test_generate_with_prompts_and_adapters(tiny):
    model, tok = tiny
    composed = build(model, tok, "slp+ta")
    enc = tok(["hello", "ahoj svet"], padding=True, return_tensors="pt")
    out = composed.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape == (2, 6)
    # Greedy generation equals argmax decoding through forward.
    dec = out[:, :1]
    for _ in range(5):
        logits = composed(**enc, decoder_input_ids=dec).logits
        dec = torch.cat([dec, logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(dec, out)


def test_configuration_mismatch_and_unknown_names(tiny):
    model, tok = tiny
    adapter = make_rep("task", "adapter", model, tok, "qa")
    with pytest.raises(LangTransferError, match="'slp\\+ta' needs prompt language"):
        compose(model, "slp+ta", task=adapter)
    with pytest.raises(UnknownNameError, match="'slp\\+xx'.*la\\+ta"):
        compose(model, "slp+xx")
    with pytest.raises(LangTransferError, match="none is attached"):
        compose(model, "ta", task=adapter, train="language")
