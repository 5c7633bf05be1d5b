"""The causal family (issue 13) on the embedded ``tiny-causal`` (Llama architecture) and a
tiny Qwen2: loading and the family seam, composed logits and generation against manual
computations, independence from batch mates and padding, label ranking, mixed-language
banks, adapters through `adapters`, and the bad input of the issue."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import BertConfig, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaForCausalLM

from langtransfer.base.families import CAUSAL, SEQ2SEQ, family_of
from langtransfer.base.loading import TINY_CAUSAL_NAME, ensure_pad_token, fingerprint, load_base
from langtransfer.base.tiny import build_tiny_causal, tiny_causal_config
from langtransfer.composition.composed import compose
from langtransfer.composition.loaded_base import LoadedBase
from langtransfer.errors import IncompatibleModelError, LangTransferError
from langtransfer.inference.evaluate import (
    label_log_likelihoods,
    pad_rows,
    row_label_log_likelihoods,
)
from langtransfer.representations import new_adapter
from langtransfer.representations.store import save_representation
from tests.helpers import batch, build, make_rep, perturb

INPUTS = ["question: who? context: Bratislava", "ahoj", "Guten Morgen, wie geht es?"]


@pytest.fixture(scope="module")
def causal():
    return load_base(TINY_CAUSAL_NAME)


def ids_of(tok, texts):
    return [tok(t).input_ids for t in texts]


def composed_for(model, tok, configuration, seed=0):
    torch.manual_seed(seed)  # a fresh adapter's weights come from the global RNG
    c = build(model, tok, configuration)
    perturb(c, seed)
    return c


# -- loading and the seam -----------------------------------------------------------------


def test_family_is_read_from_the_config(causal):
    assert family_of(load_base("tiny")[0]) is SEQ2SEQ
    assert family_of(causal[0]) is CAUSAL and family_of(causal[0].config) is CAUSAL
    assert LoadedBase(*causal, TINY_CAUSAL_NAME).family is CAUSAL
    bert = BertConfig()
    bert.name_or_path = "my-bert"
    with pytest.raises(IncompatibleModelError,
                       match="'my-bert' \\(model_type 'bert'\\) is neither"):
        family_of(bert)


def test_tiny_causal_is_deterministic_and_small(causal):
    model, tok = causal
    other, _ = load_base(TINY_CAUSAL_NAME)
    assert isinstance(model, LlamaForCausalLM) and type(tok).__name__ == "ByT5Tokenizer"
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), other.parameters(),
                                                 strict=True))
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert not any(p.requires_grad for p in model.parameters())
    assert fingerprint(model)["family"] == "causal" and fingerprint(model)["d_model"] == 64


def test_local_directory_takes_the_from_pretrained_path(tmp_path, causal):
    model, tok = causal
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    loaded, loaded_tok = load_base(str(tmp_path / "m"))
    assert isinstance(loaded, LlamaForCausalLM)
    assert fingerprint(loaded) | {"name": TINY_CAUSAL_NAME} == fingerprint(model)
    ids = loaded_tok(["ahoj"], return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_a_base_of_neither_family_is_refused_before_its_weights(tmp_path):
    BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64).save_pretrained(tmp_path / "bert")
    with pytest.raises(IncompatibleModelError, match="bert.*neither a seq2seq LM"):
        load_base(str(tmp_path / "bert"))


def test_a_tokenizer_without_pad_pads_with_eos_and_says_so(caplog):
    model, tok = build_tiny_causal()
    tok.pad_token = None
    model.config.pad_token_id = None
    model.generation_config.pad_token_id = None
    with caplog.at_level(logging.WARNING, logger="langtransfer.base.loading"):
        ensure_pad_token(model, tok, "my-llama")
    assert tok.pad_token_id == tok.eos_token_id == 1
    assert model.config.pad_token_id == 1 == model.generation_config.pad_token_id
    assert "'my-llama' has no pad token: padding with its EOS token '</s>' (id 1)" in caplog.text
    tok.pad_token = None
    tok.eos_token = None
    with pytest.raises(LangTransferError, match="'my-llama' has neither a pad nor an EOS"):
        ensure_pad_token(model, tok, "my-llama")


# -- composed logits and generation -------------------------------------------------------


def prefix(c) -> torch.Tensor:
    """The composed prompts, ``[language][task]``, as the manual computations see them."""
    parts = [c.prompts[r]() for r in ("language", "task") if r in c.prompts]
    return torch.cat(parts) if parts else torch.empty(0, c.base.config.hidden_size)


@pytest.mark.parametrize("configuration", ["base", "slp+stp", "slp+ta"])
def test_composed_logits_equal_a_manual_computation(causal, configuration):
    """Row by row: ``[prompts][input][target]`` with no padding, through the base alone;
    the composed logits are those over the target, and the loss their mean cross-entropy."""
    model, tok = causal
    with composed_for(model, tok, configuration) as c, torch.no_grad():
        b = batch(tok)
        out = c(**b)
        emb = model.get_input_embeddings()
        wants, targets = [], []
        for row in range(len(b["input_ids"])):
            ids = b["input_ids"][row][b["attention_mask"][row].bool()]
            target = b["labels"][row][b["labels"][row] != -100]
            p = prefix(c)
            seq = torch.cat([p, emb(ids), emb(target)])[None]
            logits = model(inputs_embeds=seq).logits[0]
            start = len(p) + len(ids) - 1
            want = logits[start : start + len(target)]
            torch.testing.assert_close(out.logits[row, : len(target)], want, atol=1e-5, rtol=1e-4)
            wants.append(want)
            targets.append(target)
        loss = torch.nn.functional.cross_entropy(torch.cat(wants), torch.cat(targets))
        assert out.loss.item() == pytest.approx(loss.item(), rel=1e-5)


def greedy(c, ids: list[int], steps: int) -> list[int]:
    """The step-by-step greedy loop: append the argmax token, stop after EOS."""
    model = c.base
    emb = model.get_input_embeddings()
    seq = torch.cat([prefix(c), emb(torch.tensor(ids))])[None]
    out: list[int] = []
    for _ in range(steps):
        token = int(model(inputs_embeds=seq).logits[0, -1].argmax())
        out.append(token)
        if token == model.config.eos_token_id:
            break
        seq = torch.cat([seq, emb(torch.tensor([[token]]))], 1)
    return out


@pytest.mark.parametrize("configuration", ["stp", "slp+stp", "la+ta"])
def test_composed_generation_equals_a_greedy_loop(causal, configuration):
    model, tok = causal
    rows = ids_of(tok, INPUTS)
    with composed_for(model, tok, configuration, seed=1) as c, torch.no_grad():
        ids, mask = pad_rows(rows, tok.pad_token_id)  # right-padded: the family aligns them
        generated = c.generate(ids, mask, max_new_tokens=6, do_sample=False)
        assert generated.shape == (len(rows), 6)  # only the new tokens
        for row, r in enumerate(rows):
            want = greedy(c, r, 6)
            got = generated[row].tolist()
            assert got[: len(want)] == want
            assert all(t == tok.pad_token_id for t in got[len(want):])  # finished rows pad


@pytest.mark.parametrize("configuration", ["slp+stp", "la+ta"])
def test_a_row_does_not_depend_on_batch_mates_or_padding(causal, configuration):
    model, tok = causal
    rows = ids_of(tok, INPUTS)
    targets = [tok(t).input_ids for t in ["Bratislava", "svet", "gut"]]
    with composed_for(model, tok, configuration, seed=2) as c, torch.no_grad():
        def run(rs, ts, width=None, left=False):
            ids, mask = pad_rows(rs, tok.pad_token_id, width)
            if left:  # the same rows, padded on the left instead
                ids, mask = ids.flip(1), mask.flip(1)
                ids = torch.stack([torch.cat([r[m == 0], r[m == 1].flip(0)])
                                   for r, m in zip(ids, mask, strict=True)])
                mask = torch.sort(mask, dim=1, stable=True).values
            labels, _ = pad_rows(ts, -100)
            logits = c(ids, mask, labels=labels).logits
            new = c.generate(ids, mask, max_new_tokens=4, do_sample=False)
            return logits, new

        batched = run(rows, targets)
        wide = run(rows, targets, width=60)
        left = run(rows, targets, left=True)
        for row in range(len(rows)):
            alone = run([rows[row]], [targets[row]])
            n = len(targets[row])
            for other in (batched, wide, left):
                torch.testing.assert_close(other[0][row, :n], alone[0][0, :n], atol=1e-5,
                                           rtol=1e-4)
                assert other[1][row].tolist() == alone[1][0].tolist()


@pytest.mark.parametrize("configuration", ["slp+stp", "la+ta"])
def test_label_ranking_equals_the_manual_log_likelihood(causal, configuration):
    """The cached scoring (input once, each label on a copy of its KV cache) against the
    full sequence through the base, row by row."""
    model, tok = causal
    rows = ids_of(tok, INPUTS)
    candidates = CAUSAL.encode_targets(tok, ["yes", "no", "maybe"])
    assert all(c[-1] == tok.eos_token_id for c in candidates)
    with composed_for(model, tok, configuration, seed=3) as c, torch.no_grad():
        ids, mask = pad_rows(rows, tok.pad_token_id)
        scores = label_log_likelihoods(c, ids, mask, candidates)
        c.activate()
        emb = model.get_input_embeddings()
        for row, r in enumerate(rows):
            for k, cand in enumerate(candidates):
                p = prefix(c)
                seq = torch.cat([p, emb(torch.tensor(r)), emb(torch.tensor(cand))])[None]
                logp = model(inputs_embeds=seq).logits[0].log_softmax(-1)
                start = len(p) + len(r) - 1
                want = sum(float(logp[start + j, t]) for j, t in enumerate(cand))
                assert float(scores[row, k]) == pytest.approx(want, rel=1e-4)
        # Each row its own label set, of unequal lengths (-100 padding inside a position).
        own = [[2, 0], [1], [0, 2, 1]]
        per_row = row_label_log_likelihoods(c, ids, mask, [[candidates[k] for k in ks]
                                                           for ks in own])
        for row, ks in enumerate(own):
            assert per_row[row] == pytest.approx([float(scores[row, k]) for k in ks], rel=1e-4)


# -- adapters and banks -------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("kind", ["prompt", "adapter"])
def test_mixed_language_bank_equals_each_row_alone(arch, kind):
    """Adapters via `adapters`' Stack(BatchSplit(...), task) on Llama and Qwen2; prompts
    gathered from the bank: each row as if run with its own language alone."""
    model, tok = build_tiny_causal(arch=arch)
    task_kind = "adapter" if kind == "adapter" else "prompt"
    configuration = {"prompt": "slp+stp", "adapter": "la+ta"}[kind]
    langs = {code: make_rep("language", kind, model, tok, code) for code in ("de", "sk")}
    task = make_rep("task", task_kind, model, tok, "qa")
    rows = ids_of(tok, INPUTS)
    targets = [tok(t).input_ids for t in ["a", "bb", "ccc"]]
    codes = ["sk", "de", "sk"]
    with compose(model, configuration, language=langs["de"], task=task) as c, torch.no_grad():
        c.set_languages(langs)
        perturb(c, 4)  # the task representation; the bank's below
        g = torch.Generator().manual_seed(5)
        names = [f"bank_prompts.language.{i}." for i in range(len(langs))] + [
            f".adapters.{rep.name}." for rep in langs.values()
        ]
        for n, p in c.named_parameters():
            if any(k in n for k in names):
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
        ids, mask = pad_rows(rows, tok.pad_token_id)
        labels, _ = pad_rows(targets, -100)
        language_ids = c.language_ids(codes)
        mixed = c(ids, mask, labels=labels, language_ids=language_ids).logits
        generated = c.generate(ids, mask, language_ids=language_ids, max_new_tokens=4,
                               do_sample=False)
        for row, code in enumerate(codes):
            one = c.language_ids([code])
            alone = c(ids[row : row + 1], mask[row : row + 1], labels=labels[row : row + 1],
                      language_ids=one).logits
            n = len(targets[row])
            torch.testing.assert_close(mixed[row, :n], alone[0, :n], atol=1e-5, rtol=1e-4)
            again = c.generate(ids[row : row + 1], mask[row : row + 1], language_ids=one,
                               max_new_tokens=4, do_sample=False)
            assert generated[row].tolist() == again[0].tolist()
        other = c(ids, mask, labels=labels, language_ids=c.language_ids(["de", "sk", "de"]))
        assert not torch.allclose(other.logits[0, :1], mixed[0, :1])  # the bank matters


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_adapters_keep_the_kv_cache_right(arch):
    """A cached decoding step gives the logits of the full forward with adapters active
    (`adapters` 1.3's built-in Llama misses transformers 4.57's cache: langtransfer routes
    Llama through the library's plugin interface)."""
    model, tok = build_tiny_causal(arch=arch)
    with composed_for(model, tok, "la+ta", seed=6) as c, torch.no_grad():
        c.activate()
        ids = torch.tensor([tok(INPUTS[0]).input_ids])
        full = model(ids).logits[0, -1]
        past = model(ids[:, :-1], use_cache=True).past_key_values
        step = model(ids[:, -1:], past_key_values=past).logits[0, -1]
        torch.testing.assert_close(step, full, atol=1e-5, rtol=1e-4)
        model.set_active_adapters(None)
        assert not torch.allclose(model(ids).logits[0, -1], full)  # the adapters act


def test_adapters_on_an_unsupported_architecture_name_the_supported_ones():
    config = GPTNeoXConfig(vocab_size=384, hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=64)
    config.name_or_path = "my-neox"
    model = GPTNeoXForCausalLM(config)
    assert family_of(model) is CAUSAL
    with pytest.raises(IncompatibleModelError,
                       match=r"'my-neox' \(gpt_neox\) has no adapter support.*llama.*qwen2"):
        compose(model, "la", language=new_adapter("language", language="sk"))


# -- representations of another family or shape; too many positions ----------------------


@pytest.mark.parametrize("kind", ["prompt", "adapter"])
def test_a_representation_refuses_a_base_of_another_family(tmp_path, kind):
    seq2seq, tok = load_base("tiny")
    rep = make_rep("language", kind, seq2seq, tok, "sk")
    with compose(seq2seq, "slp" if kind == "prompt" else "la", language=rep) as c:
        c.save("language", tmp_path / "rep")
    loaded = LoadedBase(*load_base(TINY_CAUSAL_NAME), TINY_CAUSAL_NAME)
    with pytest.raises(IncompatibleModelError,
                       match="trained on base model 'tiny' but is being loaded onto "
                             "'tiny-causal'; they differ in family seq2seq vs causal"):
        loaded.representation(tmp_path / "rep")
    # And the other way round, in memory.
    causal_rep = make_rep("language", "prompt", loaded.model, loaded.tokenizer, "sk")
    with pytest.raises(IncompatibleModelError, match="family causal vs seq2seq"):
        compose(seq2seq, "slp", language=causal_rep)


def test_a_causal_representation_refuses_another_shape(tmp_path):
    model, tok = load_base(TINY_CAUSAL_NAME)
    qwen, _ = build_tiny_causal(arch="qwen2", name="tiny-qwen2")
    rep = make_rep("task", "prompt", model, tok, "qa")
    save_representation(rep, tmp_path / "rep", model=model)
    with pytest.raises(IncompatibleModelError, match="'tiny-qwen2'.*model_type llama vs qwen2"):
        LoadedBase(qwen, tok, "tiny-qwen2").representation(tmp_path / "rep")


def test_a_sequence_longer_than_the_base_positions_is_refused():
    config = tiny_causal_config("short-llama")
    config.max_position_embeddings = 24
    model, tok = LlamaForCausalLM(config).eval(), build_tiny_causal()[1]
    with build(model, tok, "slp+stp") as c:  # 8 + 8 prompt tokens
        ids, mask = pad_rows(ids_of(tok, ["a much too long input"]), tok.pad_token_id)
        with pytest.raises(LangTransferError,
                           match=r"has \d+ positions but base model 'short-llama' takes at most "
                                 "24"):
            c(ids, mask, labels=torch.tensor([[5, 1]]))
        with pytest.raises(LangTransferError, match="takes at most 24"):
            c.generate(ids[:, :4], mask[:, :4], max_new_tokens=10)


def test_a_prompt_wider_than_the_base_is_refused(causal):
    """A prompt that records no base (as from a bare width) is checked by its width."""
    from langtransfer.representations import Representation
    from langtransfer.representations.prompt import SoftPrompt

    wide = Representation(kind="prompt", role="task", task="qa", weights=SoftPrompt(4, 96))
    with pytest.raises(LangTransferError,
                       match="has width 96 but base model 'tiny-causal' has d_model 64"):
        compose(causal[0], "stp", task=wide)


def test_a_hub_id_loads_from_an_offline_cache_laid_out_as_the_hub(tmp_path, monkeypatch):
    """The hub path itself (``from_pretrained`` on an id, config first to pick the family)
    on a cache in the hub's layout; no network."""
    import huggingface_hub.constants as hf_constants
    import transformers.utils.hub

    model, tok = load_base(TINY_CAUSAL_NAME)
    snapshot = tmp_path / "hub" / "models--someone--tiny-llama" / "snapshots" / ("b" * 40)
    model.save_pretrained(snapshot)
    tok.save_pretrained(snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("b" * 40)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    # transformers reads its default cache directory once, at import.
    monkeypatch.setattr(transformers.utils.hub, "TRANSFORMERS_CACHE", str(tmp_path / "hub"))
    loaded = LoadedBase.load("someone/tiny-llama")
    assert loaded.family is CAUSAL and isinstance(loaded.model, LlamaForCausalLM)
    assert fingerprint(loaded.model)["name"] == "someone/tiny-llama"
    ids = tok(["ahoj"], return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(loaded.model(input_ids=ids).logits, model(input_ids=ids).logits)
