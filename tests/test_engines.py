"""What vLLM and SGLang accept of an exported LoRA, and their command lines."""

import shlex

import pytest

from langtransfer.errors import LangTransferError
from langtransfer.serving import engines

GOOD = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "b",
        "r": 16, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "bias": "none",
        "modules_to_save": None, "use_rslora": False, "use_dora": False}


def test_max_lora_rank_is_the_smallest_vllm_value_that_holds_the_rank():
    assert [engines.max_lora_rank(r) for r in (1, 2, 8, 9, 16, 300, 512)] == [
        1, 8, 8, 16, 16, 320, 512]
    with pytest.raises(LangTransferError, match="rank 513 is above vLLM's largest "
                       "--max-lora-rank 512"):
        engines.max_lora_rank(513)


def test_only_what_vllm_reads_and_accepts_passes():
    engines.check_for_vllm(GOOD, "x")
    with pytest.raises(LangTransferError, match=r"x: keys \['lora_dropout'\] are not read"):
        engines.check_for_vllm({**GOOD, "lora_dropout": 0.1}, "x")
    with pytest.raises(LangTransferError, match="use_dora True is refused by vLLM"):
        engines.check_for_vllm({**GOOD, "use_dora": True}, "x")
    with pytest.raises(LangTransferError, match=r"target modules \['q'\] are not ones vLLM"):
        engines.check_for_vllm({**GOOD, "target_modules": ["q", "q_proj"]}, "x")
    with pytest.raises(LangTransferError, match="seq2seq base: vLLM and SGLang serve no "
                       "encoder-decoder model .*`langtransfer serve`"):
        engines.check_family("seq2seq", "pair qa/sk")


def test_command_lines_name_every_pair_once():
    adapters = {"qa-sk": "/out/qa-sk", "qa-de": "/out/qa de"}
    vllm = engines.vllm_command("Qwen/Qwen2.5-0.5B", adapters, 16)
    assert vllm[:3] == ["vllm", "serve", "Qwen/Qwen2.5-0.5B"]
    assert vllm[vllm.index("--max-lora-rank") + 1] == "16"
    assert vllm[vllm.index("--max-loras") + 1] == "2"
    assert vllm[vllm.index("--lora-modules") + 1:] == ["qa-sk=/out/qa-sk", "qa-de=/out/qa de"]
    assert shlex.split(engines.shell(vllm)) == vllm  # quoted for a shell
    sglang = engines.sglang_command("b", adapters, 16, ["q_proj", "v_proj"])
    assert sglang[sglang.index("--lora-paths") + 1:] == ["qa-sk=/out/qa-sk", "qa-de=/out/qa de"]
    assert engines.vllm_request("qa-sk", "p", 5)["model"] == "qa-sk"
    assert engines.sglang_request("qa-sk", "p", 5)["lora_path"] == "qa-sk"
