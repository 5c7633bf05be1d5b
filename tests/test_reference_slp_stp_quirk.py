"""The reference's slp+stp quirk as an option: forward sees [L][L][T][x], generate [L][T][x].

The encoder's input is captured with a forward pre-hook on the base's encoder, so what is
checked is what the encoder really got, against a concatenation built here by hand.
"""

from __future__ import annotations

import pytest
import torch
from helpers import PROMPT_TOKENS, batch, build, make_rep

from langtransfer.cli import main
from langtransfer.composition.composed import compose
from langtransfer.errors import LangTransferError
from langtransfer.representations import read_manifest
from langtransfer.representations.store import save_representation
from langtransfer.training.task import train_task
from langtransfer.training.trainer import default_settings


def capture_encoder(model) -> list[dict]:
    seen: list[dict] = []

    def hook(module, args, kwargs):
        seen.append({k: kwargs.get(k) for k in ("inputs_embeds", "attention_mask")})

    model.get_encoder().register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def manual_inputs(composed, enc, *, twice: bool) -> tuple[torch.Tensor, torch.Tensor]:
    lang = composed.language.weights.embedding
    task = composed.task.weights.embedding
    x = composed.base.get_input_embeddings()(enc["input_ids"])
    blocks = [lang, lang, task] if twice else [lang, task]
    prefix = torch.cat(blocks, 0).unsqueeze(0).expand(x.shape[0], -1, -1)
    mask = torch.cat([torch.ones(x.shape[0], prefix.shape[1], dtype=enc["attention_mask"].dtype),
                      enc["attention_mask"]], 1)
    return torch.cat([prefix, x], 1), mask


def test_forward_duplicates_the_language_prompt_and_the_loss_follows(tiny):
    model, tok = tiny
    composed = build(model, tok, "slp+stp", train="task")
    composed.duplicate_language_prompt_in_forward = True
    seen = capture_encoder(model)
    b = batch(tok)
    out = composed(**b)
    embeds, mask = manual_inputs(composed, b, twice=True)
    got = seen[-1]
    assert got["inputs_embeds"].shape[1] == 3 * PROMPT_TOKENS + b["input_ids"].shape[1]
    assert torch.equal(got["inputs_embeds"], embeds)
    assert torch.equal(got["attention_mask"], mask)
    manual = model(inputs_embeds=embeds, attention_mask=mask, labels=b["labels"]).loss
    assert torch.allclose(out.loss, manual)
    once, once_mask = manual_inputs(composed, b, twice=False)
    other = model(inputs_embeds=once, attention_mask=once_mask, labels=b["labels"]).loss
    assert not torch.allclose(out.loss, other)  # the duplication changes the loss
    out.loss.backward()  # the task prompt still trains; the language prompt stays frozen
    assert composed.task.weights.embedding.grad is not None
    assert composed.language.weights.embedding.grad is None


def test_generate_sees_the_language_prompt_once(tiny):
    model, tok = tiny
    composed = build(model, tok, "slp+stp")
    enc = tok(["hello", "ahoj svet"], padding=True, return_tensors="pt")
    seen = capture_encoder(model)
    plain = composed.generate(**enc, max_new_tokens=4, do_sample=False)
    composed.duplicate_language_prompt_in_forward = True
    quirk = composed.generate(**enc, max_new_tokens=4, do_sample=False)
    assert torch.equal(plain, quirk)
    embeds, mask = manual_inputs(composed, enc, twice=False)
    assert torch.equal(seen[-1]["inputs_embeds"], embeds)
    assert torch.equal(seen[-1]["attention_mask"], mask)


def test_default_is_language_then_task_in_both_paths(tiny):
    model, tok = tiny
    composed = build(model, tok, "slp+stp")
    assert composed.duplicate_language_prompt_in_forward is False
    seen = capture_encoder(model)
    b = batch(tok)
    composed(**b)
    composed.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                      max_new_tokens=2)
    embeds, mask = manual_inputs(composed, b, twice=False)
    for got in (seen[0], seen[-1]):
        assert torch.equal(got["inputs_embeds"], embeds)
        assert torch.equal(got["attention_mask"], mask)


@pytest.mark.parametrize("configuration", ["stp", "la+stp", "slp+ta", "slp"])
def test_the_option_is_refused_outside_slp_stp(tiny, configuration):
    model, tok = tiny
    from langtransfer.configurations import configuration_kinds

    lang_kind, task_kind = configuration_kinds(configuration)
    reps = {"language": make_rep("language", lang_kind, model, tok, "sk") if lang_kind else None,
            "task": make_rep("task", task_kind, model, tok, "qa") if task_kind else None}
    with pytest.raises(LangTransferError, match="slp\\+stp"):
        compose(model, configuration, **reps, duplicate_language_prompt_in_forward=True)


def test_train_task_uses_and_records_the_quirk(tiny, tmp_path):
    model, tok = tiny
    lang_dir = save_representation(make_rep("language", "prompt", model, tok, "en"),
                                   tmp_path / "slp-en", model=model)
    settings = default_settings("prompt", "task", max_steps=2, batch_size=4, eval_steps=2,
                                save_steps=2, logging_steps=1000, seed=1)
    trained = {}
    for quirk in (False, True):
        out = train_task(model="tiny", task="nli", language="en", kind="prompt",
                         output=tmp_path / f"stp-{quirk}", language_rep=lang_dir,
                         data="fixtures", settings=settings, spec={"num_tokens": PROMPT_TOKENS},
                         max_length=64, max_examples=16, show_progress=False,
                         reference_slp_stp_quirk=quirk)
        trained[quirk] = read_manifest(out)["training"]
    assert trained[True]["reference_slp_stp_quirk"] is True
    assert trained[False]["reference_slp_stp_quirk"] is False
    assert trained[True]["configuration"] == "slp+stp"
    # The same fresh prompt on the same validation rows: only the duplication differs.
    assert trained[True]["validation_loss_initial"] != trained[False]["validation_loss_initial"]
    with pytest.raises(LangTransferError, match="slp\\+stp only"):
        train_task(model="tiny", task="nli", language="en", kind="prompt",
                   output=tmp_path / "stp", data="fixtures", settings=settings,
                   reference_slp_stp_quirk=True)


def test_cli_refuses_the_quirk_outside_slp_stp(tmp_path, capsys):
    code = main(["train-task", "--task", "nli", "--language", "en", "--kind", "adapter",
                 "--data", "fixtures", "--output", str(tmp_path / "ta"), "--model", "tiny",
                 "--reference-slp-stp-quirk"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--reference-slp-stp-quirk applies to slp+stp only" in err
    assert "--kind adapter" in err and not (tmp_path / "ta").exists()


def test_study_key_reaches_only_the_slp_stp_task_job(tmp_path, monkeypatch):
    from test_study_jobs import builder_calls, config_with

    from langtransfer.study.jobs import plan

    key = ("task_training", "prompt", "reference_slp_stp_quirk")
    config = config_with(tmp_path, key, True, "quirk")
    jobs = {a.id: a.job for a in plan(config) if a.stage == "task"}
    assert {i for i, j in jobs.items() if j.reference_slp_stp_quirk} == {"task:nli/en/slp+stp"}
    calls = builder_calls(config, monkeypatch)
    assert calls["task:nli/en/slp+stp"]["reference_slp_stp_quirk"] is True
    assert calls["task:nli/en/la+stp"]["reference_slp_stp_quirk"] is False
    with pytest.raises(LangTransferError, match="must be true or false"):
        config_with(tmp_path, key, "yes", "bad")
