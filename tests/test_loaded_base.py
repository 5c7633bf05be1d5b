"""One loaded base for many runs: same results as fresh bases, frozen weights unchanged,
representations side by side under their ids, clashes refused, records not mutated."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from helpers import batch, make_rep, perturb

from langtransfer.composition.composed import compose
from langtransfer.composition.loaded_base import LoadedBase
from langtransfer.errors import IncompatibleModelError, LangTransferError
from langtransfer.inference.evaluate import evaluate
from langtransfer.representations import save_representation
from langtransfer.training.language import train_language
from langtransfer.training.task import train_task
from langtransfer.training.trainer import default_settings

TASK = dict(max_steps=4, batch_size=4, eval_steps=2, save_steps=2, logging_steps=1)


def weights(directory: Path) -> bytes:
    name = (
        "prompt.safetensors"
        if (directory / "prompt.safetensors").exists()
        else "adapter.safetensors"
    )
    return (directory / name).read_bytes()


def comparable(record: dict) -> dict:
    """A metrics record without the paths it names (the two runs write to two roots)."""
    reps = {role: rep and {k: v for k, v in rep.items() if k != "path"}
            for role, rep in record["representations"].items()}
    return {**record, "representations": reps}


def run_sequence(model, root: Path, digests: list[str] | None = None) -> dict:
    """A small study's worth of artefacts, in order, all on ``model``: a language adapter,
    task adapters with and without it (en, de), a task prompt, and evaluations of each."""
    def check() -> None:
        if digests is not None:
            digests.append(model.weights_digest())

    la = train_language(model=model, language="en", kind="adapter", corpus="fixture",
                        output=root / "la-en", sequence_length=64, show_progress=False,
                        settings=default_settings("adapter", "language", max_steps=3,
                                                  batch_size=4, logging_steps=1))
    check()
    task = dict(task="nli", data="fixtures", max_length=96, show_progress=False)
    ta_en = train_task(model=model, language="en", kind="adapter", output=root / "ta-en",
                       language_rep=la, settings=default_settings("adapter", "task", **TASK),
                       **task)
    check()
    ta_de = train_task(model=model, language="de", kind="adapter", output=root / "ta-de",
                       settings=default_settings("adapter", "task", **TASK), **task)
    check()
    stp = train_task(model=model, language="en", kind="prompt", output=root / "stp-en",
                     spec={"num_tokens": 4}, settings=default_settings("prompt", "task", **TASK),
                     **task)
    check()
    common = dict(task="nli", data="fixtures", max_examples=8, show_progress=False,
                  batch_size=4)
    records = [
        evaluate(model=model, language="en", language_rep=la, task_rep=ta_en, **common),
        evaluate(model=model, language="de", task_rep=ta_de, **common),
        evaluate(model=model, language="en", task_rep=stp, **common),
        evaluate(model=model, language="en", **common),
    ]
    check()
    return {
        "weights": {p.name: weights(p) for p in (la, ta_en, ta_de, stp)},
        "records": [comparable(r) for r in records],
        "paths": {"la": la, "ta_en": ta_en, "ta_de": ta_de, "stp": stp},
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    shared = LoadedBase.load("tiny")
    digests = [shared.weights_digest()]
    loads = LoadedBase.loads
    on_shared = run_sequence(shared, tmp_path_factory.mktemp("shared"), digests)
    shared_loads = LoadedBase.loads - loads
    on_fresh = run_sequence("tiny", tmp_path_factory.mktemp("fresh"))
    fresh_loads = LoadedBase.loads - loads - shared_loads
    return dict(shared=shared, digests=digests, on_shared=on_shared, on_fresh=on_fresh,
                shared_loads=shared_loads, fresh_loads=fresh_loads)


def test_runs_on_one_loaded_base_equal_runs_on_fresh_bases(runs):
    shared, fresh = runs["on_shared"], runs["on_fresh"]
    assert shared["weights"].keys() == fresh["weights"].keys()
    for name, data in shared["weights"].items():
        assert data == fresh["weights"][name], name  # bit-identical trained weights
    assert shared["records"] == fresh["records"]
    # The runs differ from one another (the comparison is not of four copies of one thing).
    assert len({bytes(w) for w in shared["weights"].values()}) == 4
    assert len({r["configuration"] for r in shared["records"]}) == 4


def test_the_frozen_base_is_unchanged_and_loaded_once(runs):
    assert len(set(runs["digests"])) == 1 and len(runs["digests"]) == 6
    assert runs["shared_loads"] == 0  # the fixture loaded it before counting
    assert runs["fresh_loads"] == 8  # a name loads a base at every call
    base = runs["shared"]
    assert base.loaded() == {}  # every composed model gave its slots back
    assert base.model.adapters_config.adapters == {}
    assert not base.model.active_adapters


def test_the_digest_sees_a_changed_base_weight_but_not_adapters(tiny):
    base = LoadedBase(*tiny, name="tiny")
    before = base.weights_digest()
    composed = base.compose("ta", task=make_rep("task", "adapter", *tiny, "qa"), train="task")
    perturb(composed)
    assert base.weights_digest() == before
    with torch.no_grad():
        base.model.shared.weight[0, 0] += 1e-3
    assert base.weights_digest() != before


def test_representations_are_cached_and_checked_against_the_base(runs, tmp_path):
    base, paths = runs["shared"], runs["on_shared"]["paths"]
    first = base.representation(paths["ta_en"])
    assert base.representation(str(paths["ta_en"])) is first
    assert base.representation(paths["ta_de"]) is not first
    # Replacing the directory's files (a retrained artefact) is seen.
    old = base.representation(paths["ta_de"])
    with compose(base.model, "ta", task=old) as composed:
        save_representation(composed.task, paths["ta_de"], model=base.model, overwrite=True)
    new = base.representation(paths["ta_de"])
    assert new is not old and new.content_hash == old.content_hash
    other = LoadedBase.load(str(_other_base(tmp_path)))
    with pytest.raises(IncompatibleModelError, match="d_model 64 vs 32"):
        other.representation(paths["ta_en"])


def _other_base(tmp_path: Path) -> Path:
    from transformers import ByT5Tokenizer, MT5Config, MT5ForConditionalGeneration

    config = MT5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                       num_decoder_layers=1, num_heads=4, decoder_start_token_id=0)
    MT5ForConditionalGeneration(config).save_pretrained(tmp_path / "other")
    ByT5Tokenizer().save_pretrained(tmp_path / "other")
    return tmp_path / "other"


def test_task_adapters_of_two_source_languages_coexist_and_are_activated_per_call(runs):
    """ta-en (with the en language adapter) and ta-de live in one base at once; each
    composed model computes exactly what it computes alone on a fresh base."""
    paths = runs["on_shared"]["paths"]
    base = LoadedBase.load("tiny")
    la, ta_en, ta_de = (base.representation(paths[k]) for k in ("la", "ta_en", "ta_de"))
    assert len({la.id, ta_en.id, ta_de.id}) == 3
    assert ta_en.id.startswith("ta-nli-en-") and ta_de.id.startswith("ta-nli-de-")
    en = base.compose("la+ta", language=la, task=ta_en)
    de = base.compose("ta", task=ta_de)
    assert set(base.loaded()) == {la.id, ta_en.id, ta_de.id}
    b = batch(base.tokenizer)
    with torch.no_grad():
        got = [en(**b).logits, de(**b).logits, en(**b).logits]
    for composed, logits in ((en, got[0]), (de, got[1]), (en, got[2])):
        alone = LoadedBase.load("tiny")
        reps = {r.role: alone.representation(r.path) for r in composed.representations()}
        with alone.compose(composed.configuration, **reps) as again, torch.no_grad():
            assert torch.equal(again(**b).logits, logits)
    assert not torch.allclose(got[0], got[1])
    # A composed model that is closed gives back only its own slots.
    de.close()
    assert set(base.loaded()) == {la.id, ta_en.id}
    with torch.no_grad():
        assert torch.equal(en(**b).logits, got[0])
    en.close()
    assert base.loaded() == {} and base.model.adapters_config.adapters == {}


def test_an_id_clash_is_an_error_naming_both_and_deletes_nothing(runs):
    paths = runs["on_shared"]["paths"]
    base = LoadedBase.load("tiny")
    en = base.representation(paths["ta_en"])
    impostor = dataclasses.replace(base.representation(paths["ta_de"]), id=en.id)
    first = base.compose("ta", task=en)
    b = batch(base.tokenizer)
    with torch.no_grad():
        before = first(**b).logits
    with pytest.raises(LangTransferError) as info:
        base.compose("ta", task=impostor)
    message = str(info.value)
    assert "\n" not in message and en.id in message
    assert str(paths["ta_en"]) in message and str(paths["ta_de"]) in message
    with torch.no_grad():
        assert torch.equal(first(**b).logits, before)  # the loaded one is still there
    assert set(base.loaded()) == {en.id}
    # Two fresh representations given one id clash too; two without ids never do.
    fresh = [make_rep("task", "adapter", base.model, base.tokenizer, "qa") for _ in range(2)]
    both = [base.compose("ta", task=r) for r in fresh]
    named = [dataclasses.replace(r, id="ta-qa-mine") for r in fresh]
    base.compose("ta", task=named[0])
    with pytest.raises(LangTransferError, match="'ta-qa-mine'.*clashes.*in memory"):
        base.compose("ta", task=named[1])
    assert all(c.task is not None for c in both)


def fields_of(rep) -> dict:
    """The record's fields but its weights (a module: the same object before and after)."""
    return {f.name: copy.deepcopy(getattr(rep, f.name))
            for f in dataclasses.fields(rep) if f.name != "weights"}


def test_composing_and_saving_leave_the_record_as_it_was(tiny, tmp_path):
    model, tok = tiny
    reps = [make_rep("language", "adapter", model, tok, "sk"),
            make_rep("task", "prompt", model, tok, "qa")]
    before = [fields_of(r) for r in reps]
    composed = compose(model, "la+stp", language=reps[0], task=reps[1], train="task")
    composed.save("language", tmp_path / "la", training={"steps": 1})
    composed.save("task", tmp_path / "stp", training={"steps": 2})
    composed.close()
    assert [fields_of(r) for r in reps] == before
    assert reps[0].base_model is None and reps[0].training == {} and reps[0].path is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        reps[0].training = {}  # type: ignore[misc]


def test_a_failed_training_leaves_the_base_as_it_was(tmp_path, monkeypatch):
    """A run that fails mid-training gives its slot back: the next run of the same
    artefact on the same base (a study retrying it) trains normally."""
    from langtransfer.training import task as task_training

    base = LoadedBase.load("tiny")
    digest = base.weights_digest()
    real = task_training.train_representation

    def boom(composed, *args, **kwargs):
        assert set(base.loaded()) == {composed.task.id}
        raise LangTransferError("killed mid-training")

    monkeypatch.setattr(task_training, "train_representation", boom)
    args = dict(model=base, task="nli", language="en", kind="adapter", data="fixtures",
                max_length=96, show_progress=False, output=tmp_path / "ta",
                settings=default_settings("adapter", "task", **TASK))
    with pytest.raises(LangTransferError, match="killed mid-training"):
        train_task(**args)
    assert base.loaded() == {} and base.model.adapters_config.adapters == {}
    monkeypatch.setattr(task_training, "train_representation", real)
    train_task(**args)
    assert (tmp_path / "ta" / "adapter.safetensors").is_file()
    assert base.weights_digest() == digest and base.loaded() == {}
