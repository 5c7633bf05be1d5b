"""LoRA: exact sums and merges of LoRA modules, the PEFT directory format checked with the
real `peft`, the per-family targets, and the bad input."""

import json

import pytest
import torch
from helpers import batch

from langtransfer.base.families import LORA_ATTENTION_TARGETS, lora_targets
from langtransfer.base.loading import load_base
from langtransfer.errors import CorruptFileError, IncompatibleModelError, LangTransferError
from langtransfer.representations import lora
from langtransfer.representations.kinds.lora import LoraSpec
from langtransfer.representations.lora import LoraFactors, LoraWeights

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:Could not find a config file")

BASES = ["tiny", "tiny-causal"]


def _factors(rows, cols, rank, scaling, seed):
    g = torch.Generator().manual_seed(seed)
    return LoraFactors(torch.randn(rank, cols, generator=g), torch.randn(rows, rank, generator=g),
                       scaling)


def test_weighted_sum_is_exact_for_any_ranks():
    """sum_i w_i s_i B_i A_i == the concatenated factors' B A; a module one LoRA lacks
    counts as zero there; the rank is the sum of the ranks."""
    one = LoraWeights({"x.q": _factors(6, 5, 2, 2.0, 0), "x.v": _factors(6, 5, 2, 2.0, 1)})
    two = LoraWeights({"x.q": _factors(6, 5, 3, 0.5, 2)})
    three = LoraWeights({"x.v": _factors(6, 5, 4, 1.5, 3), "x.o": _factors(5, 6, 4, 1.5, 4)})
    weights = (0.5, -1.25, 2.0)
    total = lora.weighted_sum(list(zip(weights, (one, two, three), strict=True)))
    assert total.rank == 2 + 3 + 4
    assert {f.rank for f in total.modules.values()} == {9}
    assert sorted(total.modules) == ["x.o", "x.q", "x.v"]
    for path, f in total.modules.items():
        expected = sum(
            w * part.modules[path].delta() for w, part in zip(weights, (one, two, three),
                                                               strict=True)
            if path in part.modules
        )
        assert f.scaling == 1.0
        assert torch.allclose(f.delta(), expected, atol=1e-10)
    with pytest.raises(LangTransferError, match="x.q is 6 x 5 in one LoRA and 7 x 5"):
        lora.weighted_sum([(1.0, one), (1.0, LoraWeights({"x.q": _factors(7, 5, 2, 1.0, 5)}))])


def _inject(model, name, rank, seed, targets=None):
    """A LoRA with PEFT's init (seeded), then B moved off zero so it changes the output."""
    torch.manual_seed(seed)
    spec = LoraSpec(rank=rank, alpha=2 * rank, dropout=0.0)
    lora.inject(model, name, spec.rank, spec.alpha, spec.dropout,
                targets or spec.target_modules(model))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for path, f in lora.weights_in(model, name).modules.items():
            layer = model.get_submodule(path)
            layer.lora_B[name].weight.copy_(torch.randn(f.b.shape, generator=g) * 0.3)


def _close(actual, expected):
    """Equal up to float32 noise of a different summation order (logits here reach ~40)."""
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * scale)


def _logits(model, tok):
    b = batch(tok)
    inputs = {k: b[k] for k in ("input_ids", "attention_mask")}
    if model.config.is_encoder_decoder:
        inputs["labels"] = b["labels"]
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.parametrize("name", BASES)
def test_merged_pair_equals_the_two_applied_together_and_peft_loads_it(tmp_path, name):
    """A language LoRA (rank 4, q/v) and a task LoRA (rank 6, all linear layers) active
    together give the logits of their merge (rank 10, scaling folded in), loaded by PEFT
    itself from the directory written here and by langtransfer into a fresh base."""
    model, tok = load_base(name)
    _inject(model, "lang", 4, 0)
    _inject(model, "task", 6, 1, lora_targets(model, "all-linear"))
    lora.activate(model, ["lang", "task"])
    together = _logits(model, tok)
    lora.activate(model, [])
    assert not torch.allclose(_logits(model, tok), together, atol=1e-3)  # the LoRAs matter

    merged = lora.merge(lora.weights_in(model, "lang"), lora.weights_in(model, "task"))
    assert merged.rank == 10
    family = "seq2seq" if name == "tiny" else "causal"
    config = lora.peft_config(rank=10, alpha=10, targets=merged.targets, family=family,
                              base_model_name_or_path=name)
    lora.write_peft_lora(tmp_path, config, merged)

    fresh, _ = load_base(name)
    theirs = peft.PeftModel.from_pretrained(fresh, str(tmp_path)).eval()
    _close(_logits(theirs, tok), together)

    fresh, _ = load_base(name)
    read_config, read = lora.read_peft_lora(tmp_path)
    assert read_config == config and read.rank == 10
    lora.load_into(fresh, "merged", read_config, read)
    lora.activate(fresh, ["merged"])
    _close(_logits(fresh, tok), together)


@pytest.mark.parametrize("name", BASES)
def test_a_lora_directory_round_trips_through_peft(tmp_path, name):
    """One LoRA written in PEFT's format: PEFT loads it with the same logits, and reading
    it back gives the same factors and scaling."""
    model, tok = load_base(name)
    _inject(model, "one", 8, 3)
    lora.activate(model, ["one"])
    expected = _logits(model, tok)
    weights = lora.weights_in(model, "one")
    family = "seq2seq" if name == "tiny" else "causal"
    config = lora.peft_config(rank=8, alpha=16, targets=weights.targets, family=family,
                              base_model_name_or_path=name, dropout=0.1)
    lora.write_peft_lora(tmp_path, config, weights)
    fresh, _ = load_base(name)
    theirs = peft.PeftModel.from_pretrained(fresh, str(tmp_path)).eval()
    assert torch.allclose(_logits(theirs, tok), expected, atol=1e-6)
    _, read = lora.read_peft_lora(tmp_path)
    assert read.modules.keys() == weights.modules.keys()
    for path, f in read.modules.items():
        assert f.scaling == 2.0
        assert torch.equal(f.a, weights.modules[path].a)
        assert torch.equal(f.b, weights.modules[path].b)


@pytest.mark.parametrize("name", BASES)
def test_per_row_loras_equal_each_row_alone(name):
    """Rows with (language, task) LoRA pairs of their own in one forward give each row's
    logits with its pair active alone."""
    model, tok = load_base(name)
    for i, lora_name in enumerate(("l1", "l2", "t1", "t2")):
        _inject(model, lora_name, 2 + i, i)
    b = batch(tok)
    b = {k: torch.cat([v, v, v.flip(0)]) for k, v in b.items()}  # 6 rows
    rows = [["l1", "t1"], ["l2", "t1"], ["l1", "t2"], ["l2", "t2"], ["l1"], []]
    slots = [[r[0] if r else None for r in rows], [r[1] if len(r) > 1 else None for r in rows]]
    inputs = {k: b[k] for k in ("input_ids", "attention_mask")}
    if model.config.is_encoder_decoder:
        inputs["labels"] = b["labels"]
    with lora.per_row(model, slots), torch.no_grad():
        mixed = model(**inputs).logits
    for i, names in enumerate(rows):
        lora.activate(model, names)
        with torch.no_grad():
            alone = model(**{k: v[i : i + 1] for k, v in inputs.items()}).logits
        _close(mixed[i : i + 1], alone)
    lora.activate(model, [])
    with lora.per_row(model, [s[:2] for s in slots]), pytest.raises(
            LangTransferError, match="set for 2 rows but a call has 6"), torch.no_grad():
        model(**inputs)


def test_removing_the_last_lora_gives_the_base_its_own_modules_back():
    model, tok = load_base("tiny-causal")
    before = [n for n, _ in model.named_parameters()]
    expected = _logits(model, tok)
    _inject(model, "a", 2, 0)
    _inject(model, "b", 2, 1)
    lora.remove(model, "a")
    assert lora.names_in(model) == {"b"}
    lora.remove(model, "b")
    assert [n for n, _ in model.named_parameters()] == before
    assert torch.equal(_logits(model, tok), expected)


def test_default_targets_are_peft_s_and_presets_resolve_per_family():
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as peft_s

    for model_type, names in LORA_ATTENTION_TARGETS.items():
        if model_type in peft_s:
            assert sorted(peft_s[model_type]) == list(names), model_type
    seq2seq, _ = load_base("tiny")
    causal, _ = load_base("tiny-causal")
    assert LoraSpec().target_modules(seq2seq) == ["q", "v"]
    assert LoraSpec().target_modules(causal) == ["q_proj", "v_proj"]
    assert LoraSpec(targets="all-linear").target_modules(causal) == [
        "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert LoraSpec(targets="q, k").target_modules(seq2seq) == ["k", "q"]


def test_bad_input_is_one_line_naming_the_values(tmp_path):
    causal, _ = load_base("tiny-causal")
    with pytest.raises(IncompatibleModelError, match=r"LoRA: target module 'q' is not a "
                       r"linear layer of base model 'tiny-causal' \(llama\); its linear "
                       r"layers: .*q_proj"):
        LoraSpec(targets=["q"]).target_modules(causal)
    with pytest.raises(LangTransferError, match="LoRA targets 'q;v'; valid: all-linear"):
        LoraSpec(targets="q;v")
    with pytest.raises(IncompatibleModelError, match="'everything' is not a linear layer"):
        LoraSpec(targets="everything").target_modules(causal)
    with pytest.raises(LangTransferError, match="rank must be a positive integer, got 0"):
        LoraSpec(rank=0)
    with pytest.raises(LangTransferError, match=r"dropout must be in \[0, 1\), got 1.5"):
        LoraSpec(dropout=1.5)

    # a seq2seq LoRA onto the causal base: the family, then the modules
    seq2seq, _ = load_base("tiny")
    _inject(seq2seq, "s", 2, 0)
    config = lora.peft_config(rank=2, alpha=4, targets=["q", "v"], family="seq2seq",
                              base_model_name_or_path="tiny")
    lora.write_peft_lora(tmp_path, config, lora.weights_in(seq2seq, "s"))
    config, weights = lora.read_peft_lora(tmp_path)
    with pytest.raises(IncompatibleModelError, match="is for a seq2seq base .* 'tiny-causal' is "
                       "causal"):
        lora.check_family(config, causal, "LoRA x")
    with pytest.raises(IncompatibleModelError, match="'q', 'v' is not a linear layer"):
        lora.load_into(causal, "s", config, weights)

    raw = json.loads((tmp_path / "adapter_config.json").read_text())
    (tmp_path / "adapter_config.json").write_text(json.dumps({**raw, "use_dora": True}))
    with pytest.raises(LangTransferError, match="use_dora True is a PEFT LoRA feature"):
        lora.read_peft_lora(tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({**raw, "r": 3}))
    with pytest.raises(CorruptFileError, match=r"factors are A \[2, 64\] .* not rank 3"):
        lora.read_peft_lora(tmp_path)
