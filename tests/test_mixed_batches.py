"""Rows of different languages and tasks in one forward / generate: each row's output
equals running it alone, in every configuration and both model families, for the loss
logits, generation and label ranking."""

from __future__ import annotations

import pytest
import torch
from helpers import make_rep, perturb

from langtransfer.base.loading import load_base
from langtransfer.composition.composed import STUDY_CONFIGURATIONS, compose, loaded_representations
from langtransfer.configurations import configuration_kinds
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.inference.evaluate import generate_texts, pad_rows, rank_labels
from langtransfer.representations import load_representation, save_representation
from langtransfer.tasks import get_task

LANGS = ("sk", "de", "cs")
TASKS = ("nli", "ner", "qa")  # three input formats and output kinds
INPUTS = {
    "nli": [{"premise": "Obchod sa zatvára o ôsmej.", "hypothesis": "Obchod je otvorený."},
            {"premise": "Der Hund schläft.", "hypothesis": "Ein Tier ruht."}],
    "ner": ["Anna žije v Bratislave .", "Karl fährt nach Berlin ."],
    "qa": [{"question": "Kde žije Anna?", "context": "Anna žije v Bratislave."}],
}
#: (task, input index, language) per row: every task in several languages, mixed order.
ROWS = [("nli", 0, "sk"), ("ner", 0, "de"), ("qa", 0, "cs"), ("nli", 1, "de"),
        ("ner", 1, "sk"), ("qa", 0, "sk"), ("nli", 0, "cs"), ("ner", 0, "sk")]
TARGETS = {"nli": "Yes", "ner": "PER: Anna$$LOC: Bratislava", "qa": "Bratislava"}


@pytest.fixture(scope="module", params=["tiny", "tiny-causal"])
def base_name(request) -> str:
    """Both model families: seq2seq (prompts before the encoder input) and causal."""
    return request.param


@pytest.fixture(scope="module")
def reps(tmp_path_factory, base_name):
    """Perturbed language and task representations of both kinds, saved and loaded (so
    other bases load the same adapter weights)."""
    root = tmp_path_factory.mktemp("mixed")
    model, tok = load_base(base_name)
    out: dict[tuple[str, str, str], object] = {}
    for seed, (role, subjects) in enumerate((("language", LANGS), ("task", TASKS))):
        for kind in ("prompt", "adapter"):
            for i, subject in enumerate(subjects):
                rep = make_rep(role, kind, model, tok, subject)
                cfg = ("slp" if kind == "prompt" else "la") if role == "language" else (
                    "stp" if kind == "prompt" else "ta")
                with compose(model, cfg, **{role: rep}) as composed:
                    perturb(composed, seed=10 * seed + i + (5 if kind == "adapter" else 0))
                    save_representation(rep, root / role / kind / subject, model=model)
                out[(role, kind, subject)] = load_representation(root / role / kind / subject)
    return out


def row_texts(tok):
    texts = [get_task(t).request_input(INPUTS[t][i]) for t, i, _ in ROWS]
    return [tok(x).input_ids for x in texts]


def mixed_model(base, configuration, reps):
    """One composed model holding every language and task of ``configuration`` as banks."""
    lang_kind, task_kind = configuration_kinds(configuration)
    composed = compose(base, "base")
    if lang_kind:
        composed.set_languages({c: reps[("language", lang_kind, c)] for c in LANGS})
    if task_kind:
        composed.set_tasks({t: reps[("task", task_kind, t)] for t in TASKS})
    assert composed.configuration == configuration
    ids = {
        "language_ids": [LANGS.index(g) for _, _, g in ROWS] if lang_kind else None,
        "task_ids": [TASKS.index(t) for t, _, _ in ROWS] if task_kind else None,
    }
    return composed, ids


def alone_model(base, configuration, reps, task, language):
    lang_kind, task_kind = configuration_kinds(configuration)
    return compose(
        base, configuration,
        language=reps[("language", lang_kind, language)] if lang_kind else None,
        task=reps[("task", task_kind, task)] if task_kind else None,
    )


def tensor(ids, device="cpu"):
    return None if ids is None else torch.tensor(ids, dtype=torch.long, device=device)


@pytest.mark.parametrize("configuration", STUDY_CONFIGURATIONS)
def test_each_mixed_row_equals_the_row_run_alone(reps, base_name, configuration):
    base, tok = load_base(base_name)
    rows = row_texts(tok)
    mixed, ids = mixed_model(base, configuration, reps)
    ids_t = {k: tensor(v) for k, v in ids.items()}
    input_ids, mask = pad_rows(rows, tok.pad_token_id)
    targets = [tok(TARGETS[t]).input_ids for t, _, _ in ROWS]
    labels, _ = pad_rows(targets, -100)
    with torch.no_grad():
        logits = mixed(input_ids, mask, labels=labels, **ids_t).logits
    generated = generate_texts(mixed, tok, rows, batch_size=len(rows), max_new_tokens=8, **ids)
    words = [list(get_task(t).label_words.values()) or ["Bratislava", "Anna", "nič"]
             for t, _, _ in ROWS]  # ner/qa rows rank free words: unequal label sets
    ranked = rank_labels(mixed, tok, rows, words, batch_size=len(rows), **ids)

    ref_base, _ = load_base(base_name)
    alone_logits, alone_generated, alone_ranked = [], [], []
    for i, ((task, _, language), row, target, row_words) in enumerate(
        zip(ROWS, rows, targets, words, strict=True)
    ):
        with alone_model(ref_base, configuration, reps, task, language) as alone:
            ids1, mask1 = pad_rows([row], tok.pad_token_id)
            with torch.no_grad():
                expected = alone(ids1, mask1, labels=torch.tensor([target])).logits[0]
                # The bank run on this row alone: the same computation, to the bit.
                one = mixed(ids1, mask1, labels=torch.tensor([target]),
                            **{k: tensor([v[i]]) for k, v in ids.items() if v}).logits[0]
            torch.testing.assert_close(one, expected, atol=1e-6, rtol=1e-6)
            alone_logits.append(expected)
            alone_generated += generate_texts(alone, tok, [row], max_new_tokens=8)
            alone_ranked += rank_labels(alone, tok, [row], row_words)
    for i, expected in enumerate(alone_logits):
        # In a batch: float noise of other matrix shapes (logits are ~30 here).
        scale = float(expected.abs().max())
        torch.testing.assert_close(logits[i, : expected.shape[0]], expected,
                                   atol=1e-5 * scale, rtol=1e-4)
    assert generated == alone_generated
    assert ranked == alone_ranked
    # The banks matter: rows differ where their representations do (not one for all).
    if configuration != "base":
        assert len({tuple(r) for r in logits[:, 0, :5].tolist()}) > 1
    if any(k == "adapter" for k in configuration_kinds(configuration)):
        # The per-row split is undone after the call.
        assert not base.active_adapters or "BatchSplit" not in str(base.active_adapters)
    mixed.close()  # the base ends as it started
    assert mixed.configuration == "base"
    assert not getattr(base, "adapters_config", None) or not base.adapters_config.adapters


def test_beam_search_refused_with_adapter_banks_and_fine_with_prompt_banks(reps, base_name):
    base, tok = load_base(base_name)
    rows = row_texts(tok)[:3]
    ids, mask = pad_rows(rows, tok.pad_token_id)
    mixed, bank_ids = mixed_model(base, "slp+ta", reps)
    with pytest.raises(LangTransferError, match="num_beams=1"):
        mixed.generate(ids, mask, language_ids=tensor(bank_ids["language_ids"][:3]),
                       task_ids=tensor(bank_ids["task_ids"][:3]), num_beams=2)
    mixed.close()
    prompts, bank_ids = mixed_model(base, "slp+stp", reps)
    beams = prompts.generate(ids, mask, language_ids=tensor(bank_ids["language_ids"][:3]),
                             task_ids=tensor(bank_ids["task_ids"][:3]), num_beams=3,
                             max_new_tokens=6)
    assert beams.shape[0] == 3
    mixed_texts = tok.batch_decode(beams, skip_special_tokens=True)
    # Each row's beam search equals that row's alone, with its own language and task; and
    # beam search is what ran (not greedy decoding under another name).
    ref_base, _ = load_base(base_name)
    greedy: list[str] = []
    for i, ((task, _, language), row) in enumerate(zip(ROWS[:3], rows, strict=True)):
        with alone_model(ref_base, "slp+stp", reps, task, language) as alone:
            one, one_mask = pad_rows([row], tok.pad_token_id)
            beam = alone.generate(one, one_mask, num_beams=3, max_new_tokens=6)
            assert mixed_texts[i] == tok.batch_decode(beam, skip_special_tokens=True)[0], i
            greedy.append(tok.batch_decode(alone.generate(one, one_mask, max_new_tokens=6),
                                           skip_special_tokens=True)[0])
            scored = alone.generate(one, one_mask, num_beams=3, max_new_tokens=6,
                                    num_return_sequences=3, output_scores=True,
                                    return_dict_in_generate=True)
            assert torch.equal(beam[0], scored.sequences[0])
            # The returned beams are ordered by their (length-normalised) log-probability.
            assert scored.sequences_scores.tolist() == sorted(
                scored.sequences_scores.tolist(), reverse=True)
    assert greedy != mixed_texts  # the beams found other outputs than greedy decoding
    prompts.close()


def test_task_bank_errors_name_the_problem(reps, base_name):
    base, tok = load_base(base_name)
    composed = compose(base, "base")
    composed.set_tasks({t: reps[("task", "prompt", t)] for t in TASKS})
    ids, mask = pad_rows(row_texts(tok)[:2], tok.pad_token_id)
    with pytest.raises(LangTransferError, match="task bank.*pass task_ids"):
        composed(ids, mask)
    with pytest.raises(LangTransferError, match="task_ids must lie in 0..2"):
        composed(ids, mask, task_ids=torch.tensor([0, 3]))
    with pytest.raises(LangTransferError, match="language_ids needs a language bank"):
        composed(ids, mask, task_ids=torch.tensor([0, 1]), language_ids=torch.tensor([0, 0]))
    with pytest.raises(UnknownNameError, match="unknown task in the bank 'pos'; valid: ner"):
        composed.task_ids(["nli", "pos"])
    with pytest.raises(LangTransferError, match="only prompts or only adapters"):
        composed.set_tasks({"nli": reps[("task", "prompt", "nli")],
                            "qa": reps[("task", "adapter", "qa")]})
    assert composed.task_bank == {} and composed.configuration == "base"
    with pytest.raises(LangTransferError, match="not a task one"):
        composed.set_tasks({"nli": reps[("task", "adapter", "nli")],
                            "sk": reps[("language", "adapter", "sk")]})
    # A failed bank gives back what it acquired: the first adapter left the base again.
    assert composed.task_bank == {} and not base.adapters_config.adapters
    assert loaded_representations(base) == {}
    composed.close()


def test_why_a_stack_of_batch_splits_and_not_a_batch_split_of_stacks(reps, base_name):
    """adapters 1.3 applies a bottleneck layer's pre-forward at a BatchSplit and again in
    each nested Stack, so BatchSplit(Stack(la, ta), ...) does not equal Stack(la, ta) per
    row; the composition compose uses does. (If this starts failing, the library changed:
    the literal nesting may then be used.)"""
    from adapters.composition import BatchSplit, Stack

    base, tok = load_base(base_name)
    la = {c: reps[("language", "adapter", c)] for c in ("sk", "de")}
    ta = reps[("task", "adapter", "nli")]
    composed = compose(base, "la+ta", language=la["sk"], task=ta)
    composed.set_languages(la)
    rows = row_texts(tok)[:2]
    ids, mask = pad_rows(rows, tok.pad_token_id)
    labels = torch.tensor([tok("Yes").input_ids] * 2)
    with torch.no_grad():
        ours = composed(ids, mask, labels=labels, language_ids=composed.language_ids(
            ["sk", "de"])).logits
        base.set_active_adapters(BatchSplit(Stack(la["sk"].name, ta.name),
                                            Stack(la["de"].name, ta.name), batch_sizes=[1, 1]))
        nested = composed.family.forward(base, {"input_ids": ids, "attention_mask": mask},
                                         labels=labels).logits
        expected = []
        for i, code in enumerate(("sk", "de")):
            base.set_active_adapters(Stack(la[code].name, ta.name))
            expected.append(composed.family.forward(
                base, {"input_ids": ids[i : i + 1], "attention_mask": mask[i : i + 1]},
                labels=labels[:1]).logits[0])
    torch.testing.assert_close(ours, torch.stack(expected), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(nested, torch.stack(expected), atol=1e-2)
    composed.close()
