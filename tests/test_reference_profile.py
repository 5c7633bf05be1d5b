"""The reference profile reproduces what the paper's reference code computed (issue 22):
each behaviour checked on the tiny model against an expectation built here by hand, as
``tests/test_reference_slp_stp_quirk.py`` does for the doubled language prompt.

1. task prompts keep the final step's weights (its keep-best never found them), adapters
   the best checkpoint's;
3. QA rows whose answer text is empty are kept and score as ``evaluate.load("squad")``
   scores them;
4. the prompt parameter has 2 x tokens rows: one Adafactor step equals the hand-written
   algorithm on the zero-padded gradient (not the 50-row one), and the stored parameter
   composes with its first rows;
5. a long input is cut into overflow chunks and the last one predicted;
7. integer NLI labels are read by position; and slp+stp trains with the quirk.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file

from langtransfer.cli import main
from langtransfer.composition.composed import compose
from langtransfer.composition.loaded_base import LoadedBase
from langtransfer.profiles import get_profile
from langtransfer.representations import (
    PromptConfig,
    load_representation,
    new_adapter,
    new_prompt,
    read_manifest,
)
from langtransfer.representations.store import save_representation
from langtransfer.tasks.encoding import last_chunk, load_examples, tokenise
from langtransfer.training.task import train_task
from langtransfer.training.trainer import default_settings, seq2seq_collator, train_representation

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

REFERENCE = get_profile("reference")


def test_the_reference_profile_is_what_the_reference_code_did():
    assert REFERENCE.settings() == {
        "task_prompt_keep_best": False, "prompt_rows_per_token": 2,
        "slp_stp_language_prompt_twice": True, "empty_answers": "keep",
        "long_inputs": "last_chunk", "label_order": "positional"}
    assert REFERENCE.prompt_parameter_rows(50) == 100  # PEFT's 50 x 2 transformer submodules
    assert get_profile("method").prompt_parameter_rows(50) is None


# --- 1. final-step task prompts -------------------------------------------------------------


def _checkpoints(directory: Path) -> dict[int, Path]:
    return {int(p.name.split("-")[1]): p for p in directory.glob("checkpoint-*")}


def _eval_losses(checkpoint: Path) -> dict[int, float]:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return {h["step"]: h["eval_loss"] for h in state["log_history"] if "eval_loss" in h}


def test_task_prompts_keep_the_final_step_and_adapters_the_best(tmp_path):
    """A learning rate high enough that validation loss rises again: the reference's prompt
    is the last checkpoint's, the method's the lowest-loss checkpoint's."""
    common = dict(model="tiny", task="nli", language="en", data="fixtures", max_length=64,
                  max_examples=16, show_progress=False)
    trained = {}
    for profile in ("reference", "method"):
        settings = default_settings("prompt", "task", max_steps=6, batch_size=4, eval_steps=1,
                                    save_steps=1, logging_steps=1000, seed=1, learning_rate=10.0,
                                    keep_best=get_profile(profile).task_prompt_keep_best)
        ckpt = tmp_path / f"ckpt-{profile}"
        out = train_task(kind="prompt", output=tmp_path / profile, settings=settings,
                         spec={"num_tokens": 4}, checkpoint_dir=ckpt, profile=profile, **common)
        losses = _eval_losses(_checkpoints(ckpt)[6])
        best = min(losses, key=losses.__getitem__)
        trained[profile] = (out, ckpt, best)
    out, ckpt, best = trained["reference"]
    assert best != 6, "the setting must make the best checkpoint differ from the last"
    final = load_file(_checkpoints(ckpt)[6] / "model.safetensors")["prompts.task.embedding"]
    saved = load_file(out / "prompt.safetensors")["embedding"]
    assert torch.equal(saved, final)
    training = read_manifest(out)["training"]
    assert training["best_checkpoint"] is None and training["settings"]["keep_best"] is False
    assert training["profile"] == "reference" and training["steps"] == 6

    out, ckpt, best = trained["method"]
    chosen = load_file(_checkpoints(ckpt)[best] / "model.safetensors")["prompts.task.embedding"]
    assert torch.equal(load_file(out / "prompt.safetensors")["embedding"], chosen)
    assert read_manifest(out)["training"]["best_checkpoint"] == f"checkpoint-{best}"



def test_the_reference_profile_leaves_keep_best_on_for_adapters(tmp_path, monkeypatch):
    """The reference's adapters did get keep-best (through the `adapters` trainer): the
    profile turns it off for prompts alone, in the CLI's settings and train_task's own."""
    from langtransfer.cli.common import settings_from_args
    from langtransfer.training import task as task_module

    class Args:  # what the CLI parses when no training option is given
        def __getattr__(self, name):
            return "reference" if name == "profile" else None

    assert settings_from_args(Args(), "prompt", "task").keep_best is False
    assert settings_from_args(Args(), "adapter", "task").keep_best is True
    seen = {}

    class Stop(Exception):
        pass

    def stop(composed, tokenizer, train, settings, *args, **kwargs):
        seen[composed.task.kind] = settings.keep_best
        raise Stop

    monkeypatch.setattr(task_module, "train_representation", stop)
    for kind in ("prompt", "adapter"):
        with pytest.raises(Stop):
            train_task(model="tiny", task="nli", language="en", kind=kind,
                       output=tmp_path / kind, data="fixtures", max_length=64, max_examples=8,
                       show_progress=False, profile="reference",
                       spec={"num_tokens": 4} if kind == "prompt" else None)
    assert seen == {"prompt": False, "adapter": True}


# --- 3. empty QA answers kept ---------------------------------------------------------------

QA_ROWS = [
    {"id": "a", "question": "Where?", "context": "In Paris.", "answers": {"text": ["Paris"]}},
    {"id": "b", "question": "Who?", "context": "Nobody.", "answers": {"text": [""]}},
    {"id": "c", "question": "What?", "context": "Nothing.", "answers": {"text": [""]}},
    {"id": "d", "question": "When?", "context": "Never.", "answers": {"text": []}},
]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_empty_answers_are_kept_and_scored_as_the_squad_metric_scores_them(tmp_path, capsys):
    """SQuAD v1.1's script on a gold answer '': exact match is 1 for an empty prediction,
    F1 is 0 whatever the prediction (no token in common). A question with no answer entry
    is dropped in both profiles (the reference's filter drops empty answer lists)."""
    data = _write_jsonl(tmp_path / "ur.test.jsonl", QA_ROWS)
    preds = _write_jsonl(tmp_path / "preds.jsonl", [
        {"id": "a", "prediction": "Paris"}, {"id": "b", "prediction": ""},
        {"id": "c", "prediction": "something"}, {"id": "d", "prediction": "x"}])
    expected = {
        # a: EM 1, F1 1; b: EM 1 ('' == ''), F1 0; c: EM 0, F1 0
        "reference": {"n_examples": 3, "exact_match": 200 / 3, "f1": 100 / 3},
        "method": {"n_examples": 1, "exact_match": 100.0, "f1": 100.0},
    }
    for profile, want in expected.items():
        out = tmp_path / profile
        assert main(["score", "--task", "qa", "--data", str(data), "--predictions", str(preds),
                     "--output", str(out), "--profile", profile]) == 0
        record = json.loads((out / "metrics.json").read_text())
        assert record["n_examples"] == want["n_examples"]
        assert record["metrics"]["exact_match"] == pytest.approx(want["exact_match"])
        assert record["metrics"]["f1"] == pytest.approx(want["f1"])
        assert record["profile"] == profile
        assert record["reading"]["empty_answers"] == ("keep" if profile == "reference" else "drop")
    capsys.readouterr()
    kept = load_examples("qa", "ur", "test", data, empty_answers="keep")
    assert [(e.id, e.target, e.gold) for e in kept] == [
        ("a", "Paris", ("Paris",)), ("b", "", ("",)), ("c", "", ("",))]


# --- 4. the 100-row prompt parameter ----------------------------------------------------------


def adafactor_step(p: torch.Tensor, g: torch.Tensor, lr: float, weight_decay: float
                   ) -> tuple[torch.Tensor, float]:
    """transformers' Adafactor, first step, factored second moment, no relative step, no
    parameter scaling, clip threshold 1 (the reference's settings), written out here:
    beta2 at step 1 is 0, so the moments are this step's squared gradient. Returns the new
    weights and the update's RMS before clipping."""
    sq = g.double() ** 2 + 1e-30
    row, col = sq.mean(-1), sq.mean(-2)
    update = (row / row.mean()).rsqrt()[:, None] * col.rsqrt()[None, :] * g.double()
    rms = float(update.norm() / update.numel() ** 0.5)
    update = update / max(1.0, rms)
    return (p.double() * (1 - weight_decay * lr) - lr * update).float(), rms


def test_one_adafactor_step_on_the_reference_shaped_parameter(tiny, tmp_path):
    model, tok = tiny
    tokens = 4
    config = PromptConfig(num_tokens=tokens, init="text", init_text="Answer in English:",
                          parameter_rows=REFERENCE.prompt_parameter_rows(tokens))
    rep = new_prompt("task", model, tok, config, task="nli")
    prompt = rep.weights
    assert (prompt.rows, prompt.num_tokens) == (2 * tokens, tokens)
    init = prompt.embedding.detach().clone()
    # the text init fills every row, as the reference's fill of 100 rows does
    ids = tok("Answer in English:").input_ids
    filled = (ids * 2)[: 2 * tokens]
    assert torch.equal(init, model.get_input_embeddings().weight[torch.tensor(filled)].float())

    examples = load_examples("nli", "en", "train", "fixtures")[:4]
    data = tokenise(examples, tok, 64, 3).dataset.remove_columns("length")
    composed = compose(model, "stp", task=rep, train="task")
    batch = seq2seq_collator(tok)([data[i] for i in range(len(data))])
    composed(**batch).loss.backward()
    grad = prompt.embedding.grad.detach().clone()
    prompt.embedding.grad = None
    assert grad[tokens:].abs().sum() == 0 and grad[:tokens].abs().sum() > 0  # unused rows
    settings = default_settings("prompt", "task", max_steps=1, batch_size=len(data),
                                keep_best=False, logging_steps=1000, save_steps=1000,
                                group_by_length=False)
    expected, rms = adafactor_step(init, grad, settings.learning_rate, settings.weight_decay)
    used_only, rms_used = adafactor_step(init[:tokens], grad[:tokens], settings.learning_rate,
                                         settings.weight_decay)
    assert rms == pytest.approx(rms_used / 2 ** 0.5)  # the zero rows dilute the RMS
    assert rms_used > 1.05, "the 50-row-shaped update must be clipped for the test to bite"
    train_representation(composed, tok, data, settings, tmp_path / "ckpt", show_progress=False)
    after = prompt.embedding.detach()
    assert torch.allclose(after, expected, rtol=1e-4, atol=1e-5)
    # so the used rows move further than a parameter of their own shape would: by the
    # update's RMS, up to sqrt(2) when both are clipped
    assert not torch.allclose(after[:tokens], used_only, rtol=1e-3, atol=1e-4)
    decayed = init[:tokens] * (1 - settings.weight_decay * settings.learning_rate)
    moved = (after[:tokens] - decayed).norm() / (used_only - decayed).norm()
    assert float(moved) == pytest.approx(min(rms_used, 2 ** 0.5), rel=1e-4)
    # the unused rows only decay
    assert torch.allclose(after[tokens:], init[tokens:] * (1 - 0.5 * 1e-5), atol=1e-6)

    # stored whole, composed with its first rows
    saved = save_representation(rep, tmp_path / "stp", model=model)
    assert read_manifest(saved)["prompt"]["parameter_rows"] == 2 * tokens
    assert load_file(saved / "prompt.safetensors")["embedding"].shape[0] == 2 * tokens
    composed.close()
    loaded = load_representation(saved)
    assert loaded.weights.num_tokens == tokens and torch.equal(
        loaded.weights.embedding, after)
    seen = []
    model.get_encoder().register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw.get("inputs_embeds")), with_kwargs=True)
    again = compose(model, "stp", task=loaded)
    enc = tok(["hello"], return_tensors="pt")
    again(**enc, labels=tok(["Yes"], return_tensors="pt").input_ids)
    x = model.get_input_embeddings()(enc["input_ids"])
    assert torch.equal(seen[-1], torch.cat([after[:tokens].unsqueeze(0), x], 1))


def test_the_verbs_prompts_get_the_reference_rows():
    """train-language and train-task build their prompt with --profile's rows."""
    from langtransfer.cli.common import spec_from_args

    class Args:
        prompt_tokens = init = init_text = seed = None
        kind = "prompt"
        profile = "reference"

    spec = spec_from_args(Args(), "language", "Slovak", "Generate the output in Slovak:")
    assert spec.parameter_rows == 100
    Args.profile = None
    assert spec_from_args(Args(), "language", "Slovak", "x").parameter_rows is None


# --- 5. long inputs: the last overflow chunk ---------------------------------------------------


def test_last_chunk_is_what_a_fast_tokenizer_overflows_into():
    """The reference's tokenizer call (truncation, return_overflowing_tokens, no stride) on a
    fast tokenizer with a T5-style end token, against :func:`last_chunk` on the whole ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "</s>", "<unk>"] + [f"w{i}" for i in range(40)]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(single="$A </s>",
                                                        special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    for n in range(1, 31):
        text = " ".join(f"w{i}" for i in range(n))
        chunks = fast(text, max_length=8, truncation=True,
                      return_overflowing_tokens=True)["input_ids"]
        assert chunks[-1] == last_chunk(fast(text)["input_ids"], 8), n


def test_a_long_qa_input_is_predicted_from_its_last_chunk(tmp_path):
    loaded = LoadedBase.load("tiny")
    tok = loaded.tokenizer
    context = "Bratislava is the capital of Slovakia. " * 4
    rows = [{"id": "long", "question": "What is the capital?", "context": context,
             "answers": {"text": ["Bratislava"]}}]
    data = _write_jsonl(tmp_path / "sk.test.jsonl", rows)
    seen: list[torch.Tensor] = []
    loaded.model.get_encoder().register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw.get("input_ids")), with_kwargs=True)
    ids = tok(f"question: What is the capital? context: {context}").input_ids
    max_length = 40
    assert len(ids) > 3 * max_length
    # by hand: windows of 39 tokens of the text (its end token aside), each closed by it
    body, eos = ids[:-1], ids[-1]
    windows = [body[i:i + max_length - 1] for i in range(0, len(body), max_length - 1)]
    expected = {"reference": windows[-1] + [eos], "method": body[:max_length - 1] + [eos]}
    for profile, want in expected.items():
        seen.clear()
        record = evaluate_once(loaded, data, tmp_path / profile, max_length, profile)
        assert seen[0][0].tolist() == want
        assert record["n_truncated"] == 1
        assert record["reading"]["long_inputs"] == get_profile(profile).long_inputs
    assert "question" not in tok.decode(expected["reference"])  # the reference's chunk
    assert tok.decode(expected["method"]).startswith("question:")


def evaluate_once(loaded, data, out, max_length, profile):
    from langtransfer.inference.evaluate import evaluate

    return evaluate(model=loaded, task="qa", language="sk", data=data, output=out,
                    max_length=max_length, max_new_tokens=2, show_progress=False,
                    profile=profile)


# --- 7. NLI labels by position ------------------------------------------------------------------


def test_nli_labels_are_read_by_position(tmp_path):
    """Class names that reverse XNLI's order (as ctu-aic/anli_cs's public use indicates):
    the reference reads id 0 as entailment whatever the names say."""
    features = datasets.Features({
        "id": datasets.Value("string"), "claim": datasets.Value("string"),
        "evidence": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["contradiction", "neutral", "entailment"])})
    datasets.Dataset.from_dict(
        {"id": ["0", "1", "2"], "claim": ["h"] * 3, "evidence": ["p"] * 3, "label": [0, 1, 2]},
        features=features).to_parquet(str(tmp_path / "cs.test.parquet"))
    golds = {"reference": ["entailment", "neutral", "contradiction"],
             "method": ["contradiction", "neutral", "entailment"]}
    from langtransfer.inference.evaluate import evaluate

    for profile, want in golds.items():
        out = tmp_path / profile
        record = evaluate(model="tiny", task="nli", language="cs", data=tmp_path, output=out,
                          max_new_tokens=2, show_progress=False, profile=profile)
        lines = (out / "predictions.jsonl").read_text().splitlines()
        assert [json.loads(line)["gold"] for line in lines] == want
        assert record["profile"] == profile
        assert record["reading"]["label_order"] == get_profile(profile).label_order


# --- the slp+stp quirk through the profile -------------------------------------------------------


def test_the_profile_turns_the_quirk_on_for_slp_stp_only(tiny, tmp_path):
    model, tok = tiny
    slp = save_representation(
        new_prompt("language", model, tok, PromptConfig(num_tokens=4, init_text="en:"),
                   language="en"), tmp_path / "slp", model=model)
    with compose(model, "la", language=new_adapter("language", language="en")) as attached:
        la = attached.save("language", tmp_path / "la")
    settings = default_settings("prompt", "task", max_steps=1, batch_size=4, eval_steps=1,
                                save_steps=1, logging_steps=1000)
    quirk = {}
    for name, rep in (("slp+stp", slp), ("la+stp", la)):
        out = train_task(model="tiny", task="nli", language="en", kind="prompt",
                         output=tmp_path / name, language_rep=rep, data="fixtures",
                         settings=settings, spec={"num_tokens": 4}, max_length=64, max_examples=8,
                         show_progress=False, profile="reference")
        training = read_manifest(out)["training"]
        quirk[training["configuration"]] = training["reference_slp_stp_quirk"]
        assert read_manifest(out)["prompt"]["parameter_rows"] == 8
    assert quirk == {"slp+stp": True, "la+stp": False}
