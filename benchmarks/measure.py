"""Measurements on the library's real code paths.

Training: a ``RepresentationTrainer`` built with the library's ``training_arguments`` and
the paper's per-kind settings (Adafactor lr 0.5 for a soft task prompt, AdamW 5e-5 for a
task adapter), its own train dataloader (``LengthGroupedSampler`` + the dynamic-padding
``seq2seq_collator``), ``trainer.training_step`` (``ComposedModel`` forward + backward)
and the optimizer ``trainer.create_optimizer()`` makes. The baseline is the same trainer
with what the reference code does: no length grouping, inputs padded to 256 and targets
to 30.

Evaluation: ``langtransfer.inference.evaluate.generate_texts`` (length-sorted, dynamically padded
batches) against the same function with ``pad_to=256``.

Both families take the same batches (the collator is shared; the causal family turns
each row into ``[pad][prompts][input][target]``), so the causal shapes -- the embedded
``tiny-causal`` and a Qwen2.5-0.5B-shaped Qwen2 with random weights -- are measured by
the same code.
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from datasets import Dataset
from transformers import ByT5Tokenizer, MT5Config, MT5ForConditionalGeneration

from benchmarks.workloads import MAX_INPUT, MAX_TARGET, Workload
from langtransfer.composition.composed import ComposedModel, compose, configuration_kinds
from langtransfer.inference.evaluate import generate_texts
from langtransfer.representations import PromptConfig, new_adapter, new_prompt
from langtransfer.training.trainer import (
    RepresentationTrainer,
    default_settings,
    seq2seq_collator,
    training_arguments,
)

PROMPT_TOKENS = 50


# -- models -----------------------------------------------------------------------------


def mt0_base_config() -> MT5Config:
    """bigscience/mt0-base's architecture (an mT5-base): no download, random weights."""
    return MT5Config(
        vocab_size=250112, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12,
        num_heads=12, relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.1,
        layer_norm_epsilon=1e-6, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )


def qwen_half_b_config():
    """Qwen/Qwen2.5-0.5B's architecture (a decoder-only model of mT0-base's size, the
    multilingual causal base people start from): no download, random weights. Pad 0 and
    EOS 1 like the byte tokenizer the benchmark's ids are decoded with."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
        rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
        pad_token_id=0, eos_token_id=1, bos_token_id=None,
    )


#: Benchmark shape -> the name its rows carry.
SHAPE_NAMES = {"tiny": "tiny", "tiny-causal": "tiny-causal", "mt0": "mt0-base",
               "causal": "qwen2.5-0.5b"}


def build_model(shape: str):
    """(model, vocab size used for random ids). ``tiny``/``tiny-causal``: the embedded
    models; ``mt0``/``causal``: mT0-base / Qwen2.5-0.5B shapes with random weights."""
    if shape in ("tiny", "tiny-causal"):
        from langtransfer.base.loading import load_base

        model, _ = load_base(shape)
        return model, model.config.vocab_size
    from transformers import Qwen2ForCausalLM
    from transformers.modeling_utils import no_init_weights

    with no_init_weights():
        if shape == "mt0":
            model = MT5ForConditionalGeneration(mt0_base_config())
        else:
            model = Qwen2ForCausalLM(qwen_half_b_config())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05, generator=g)
    model.config.name_or_path = f"{SHAPE_NAMES[shape]}-shaped"
    model.requires_grad_(False)
    model.eval()
    return model, 32000


def family(model) -> str:
    from langtransfer.base.families import family_of

    return family_of(model).name


class IdTokenizer(ByT5Tokenizer):
    """ByT5's padding (pad 0, like mT5) with a decode that works for any id."""

    def batch_decode(self, sequences, **kwargs):
        return [" ".join(map(str, row.tolist())) for row in sequences]


_TOKENIZER = None


def tokenizer() -> IdTokenizer:
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = IdTokenizer()
    return _TOKENIZER


def make_rep(model, role: str, kind: str, subject: str):
    """A fresh 50-token prompt (random init) or seq_bn adapter."""
    key = "task" if role == "task" else "language"
    if kind == "prompt":
        cfg = PromptConfig(num_tokens=PROMPT_TOKENS, init="random", seed=sum(map(ord, subject)))
        return new_prompt(role, model, tokenizer(), cfg, **{key: subject})
    return new_adapter(role, **{key: subject})


def composed_for(
    model, configuration: str, train: str | None = "task", language: str = "en"
) -> ComposedModel:
    """``configuration`` on ``model`` with fresh 50-token prompts / seq_bn adapters."""
    lang_kind, task_kind = configuration_kinds(configuration)
    language = make_rep(model, "language", lang_kind, language) if lang_kind else None
    task = make_rep(model, "task", task_kind, "qa") if task_kind else None
    return compose(model, configuration, language=language, task=task, train=train)


def release(composed: ComposedModel) -> None:
    """Detach the representations so the next configuration starts from the bare base."""
    composed.set_languages(None)
    composed.set_language(None)
    composed.set_task(None)


# -- memory and timing ------------------------------------------------------------------


def reset_peak() -> bool:
    """Reset the process's peak RSS (Linux: /proc/self/clear_refs); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_mib() -> float:
    """The process's resident set size now (what a reset peak starts from)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load() -> float:
    return os.getloadavg()[0]


@dataclass
class Timing:
    examples_per_s: float  # median over repeats
    runs: list[float]
    peak_rss_mib: float
    start_rss_mib: float
    steps: int

    def to_dict(self) -> dict:
        return {
            "examples_per_s": round(self.examples_per_s, 3),
            "runs": [round(r, 3) for r in self.runs],
            "peak_rss_mib": round(self.peak_rss_mib),
            "start_rss_mib": round(self.start_rss_mib),
            "steps": self.steps,
        }


def timed(fn_batches: list[Callable[[], int]], repeats: int, warmup: int = 1) -> Timing:
    """Run every callable (each returns its number of examples) ``repeats`` times after
    ``warmup`` calls of the first; examples/s per repeat, median reported."""
    for _ in range(warmup):
        fn_batches[0]()
    reset_peak()
    start = rss_mib()
    runs = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        for fn in fn_batches:
            n += fn()
        runs.append(n / (time.perf_counter() - start))
    return Timing(statistics.median(runs), runs, peak_rss_mib(), start, len(fn_batches))


# -- training -----------------------------------------------------------------------------


def _dataset(
    workload: Workload, vocab: int, n: int, padded_targets: bool, seed: int = 0
) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    ids, labels = [], []
    for length, target in zip(workload.inputs[:n], workload.targets[:n], strict=True):
        ids.append(torch.randint(3, vocab, (length - 1,), generator=g).tolist() + [1])
        lab = torch.randint(3, vocab, (target - 1,), generator=g).tolist() + [1]
        labels.append(lab + [-100] * (MAX_TARGET - len(lab)) if padded_targets else lab)
    return Dataset.from_dict({"input_ids": ids, "labels": labels, "length": [len(r) for r in ids]})


def pad_to_max_collator(tok) -> Callable[[list[dict]], dict]:
    """The reference's batches: inputs padded to 256, targets to 30 (-100), whatever the
    batch holds. (``DataCollatorForSeq2Seq(padding="max_length")`` would pad the targets
    to 256 too, which the reference does not.)"""

    def collate(features: list[dict]) -> dict:
        batch = tok.pad([{"input_ids": f["input_ids"]} for f in features], padding="max_length",
                        max_length=MAX_INPUT, return_tensors="pt")
        labels = torch.full((len(features), MAX_TARGET), -100, dtype=torch.long)
        for i, f in enumerate(features):
            lab = [t for t in f["labels"] if t != -100]
            labels[i, : len(lab)] = torch.tensor(lab)
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "labels": labels,
        }

    return collate


def make_trainer(composed: ComposedModel, workload: Workload, vocab: int, batch_size: int,
                 n_batches: int, baseline: bool, out_dir: str) -> RepresentationTrainer:
    kind = composed.task.kind
    settings = default_settings(kind, "task", batch_size=batch_size, max_steps=10**6,
                                eval_steps=None, keep_best=False)
    settings = replace(settings, group_by_length=not baseline, eval_steps=None, keep_best=False)
    data = _dataset(workload, vocab, batch_size * n_batches, padded_targets=False)
    args = training_arguments(settings, out_dir, has_eval=False)
    args.disable_tqdm = True
    tok = tokenizer()
    collator = pad_to_max_collator(tok) if baseline else seq2seq_collator(tok)
    trainer = RepresentationTrainer(
        model=composed, args=args, train_dataset=data, data_collator=collator
    )
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's own loop
    return trainer


def epoch_batches(trainer: RepresentationTrainer, k: int) -> tuple[list[dict], dict]:
    """The trainer's epoch of batches; ``k`` of them stratified by padded width (so a few
    steps represent the whole epoch), plus padding statistics of the whole epoch."""
    batches = list(trainer.get_train_dataloader())
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    padded = sum(b["input_ids"].numel() for b in batches)
    order = sorted(range(len(batches)), key=lambda i: batches[i]["input_ids"].shape[1])
    k = min(k, len(batches))
    chosen = [batches[order[int((j + 0.5) * len(order) / k)]] for j in range(k)]
    widths = [b["input_ids"].shape[1] for b in chosen]
    return chosen, {
        "padding_efficiency": round(real / padded, 3),
        "epoch_batches": len(batches),
        "mean_width": round(statistics.mean(b["input_ids"].shape[1] for b in batches), 1),
        "mean_target_width": round(statistics.mean(b["labels"].shape[1] for b in batches), 1),
        "timed_widths": widths,
    }


def train_throughput(composed: ComposedModel, workload: Workload, vocab: int, *, batch_size: int,
                     steps: int, repeats: int, baseline: bool, epoch: int = 64) -> dict:
    with tempfile.TemporaryDirectory() as out:
        trainer = make_trainer(composed, workload, vocab, batch_size, epoch, baseline, out)
        chosen, info = epoch_batches(trainer, steps)
        opt = trainer.optimizer

        def step(batch):
            def run():
                trainer.training_step(trainer.model, dict(batch))
                opt.step()
                opt.zero_grad(set_to_none=True)
                return batch["input_ids"].shape[0]
            return run

        timing = timed([step(b) for b in chosen], repeats)
        result = {**timing.to_dict(), **info, "optimizer": type(opt).__name__}
    composed.base.eval()
    return result


# -- evaluation --------------------------------------------------------------------------


def eval_throughput(
    composed: ComposedModel,
    workload: Workload,
    vocab: int,
    *,
    batch_size: int,
    n: int,
    new_tokens: int,
    repeats: int,
    baseline: bool,
    warmup: int = 1,
) -> dict:
    composed.eval()
    g = torch.Generator().manual_seed(1)
    rows = [
        torch.randint(3, vocab, (length - 1,), generator=g).tolist() + [1]
        for length in workload.inputs[:n]
    ]
    tok = tokenizer()

    def run():
        generate_texts(composed, tok, rows, batch_size=batch_size, max_new_tokens=new_tokens,
                       min_new_tokens=new_tokens, pad_to=MAX_INPUT if baseline else None)
        return len(rows)

    return {
        **timed([run], repeats, warmup).to_dict(),
        "new_tokens": new_tokens,
        "batch_size": batch_size,
    }


# -- mixed-language batches ----------------------------------------------------------------

BANK = ("sk", "cs", "de", "ru")


def mixed_language(model, vocab: int, language_kind: str, workload: Workload, *, batch_size: int,
                   new_tokens: int, repeats: int) -> dict:
    """A batch of ``batch_size`` rows over 4 languages in one call vs one language in one
    call vs the 4 language groups one after another (forward with loss, and generate)."""
    from langtransfer.inference.evaluate import pad_rows

    configuration = "slp+ta" if language_kind == "prompt" else "la+ta"
    composed = composed_for(model, configuration, train=None, language=BANK[0])
    bank = {c: make_rep(model, "language", language_kind, c) for c in BANK}
    composed.set_languages(bank)
    composed.eval()
    g = torch.Generator().manual_seed(2)
    rows = [
        torch.randint(3, vocab, (n - 1,), generator=g).tolist() + [1]
        for n in workload.inputs[:batch_size]
    ]
    targets = [
        torch.randint(3, vocab, (n - 1,), generator=g).tolist() + [1]
        for n in workload.targets[:batch_size]
    ]
    langs = [i % len(BANK) for i in range(batch_size)]

    def tensors(idx):
        ids, mask = pad_rows([rows[i] for i in idx], 0)
        lab, _ = pad_rows([targets[i] for i in idx], -100)
        return ids, mask, lab, torch.tensor([langs[i] for i in idx])

    everyone = list(range(batch_size))
    groups = [[i for i in everyone if langs[i] == k] for k in range(len(BANK))]
    gen = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}

    def forward(idx, same_language=False):
        ids, mask, lab, lid = tensors(idx)
        if same_language:
            lid = torch.zeros_like(lid)
        with torch.no_grad():
            composed(ids, mask, labels=lab, language_ids=lid)
        return len(idx)

    def generate(idx, same_language=False):
        ids, mask, _, lid = tensors(idx)
        if same_language:
            lid = torch.zeros_like(lid)
        composed.generate(ids, mask, language_ids=lid, **gen)
        return len(idx)

    out = {"configuration": configuration, "batch_size": batch_size, "languages": len(BANK)}
    for what, fn in (("forward", forward), ("generate", generate)):
        mixed = timed([lambda fn=fn: fn(everyone)], repeats)
        grouped = timed([lambda idx=idx, fn=fn: fn(idx) for idx in groups], repeats)
        bank_single = timed([lambda fn=fn: fn(everyone, True)], repeats)
        out[what] = {
            "mixed_examples_per_s": round(mixed.examples_per_s, 2),
            "bank_one_language_examples_per_s": round(bank_single.examples_per_s, 2),
            "groups_in_turn_examples_per_s": round(grouped.examples_per_s, 2),
        }
    # The plain single-language model (no bank), the path every existing user has.
    composed.set_languages(None)
    composed.set_language(make_rep(model, "language", language_kind, BANK[0]))

    def plain_forward():
        ids, mask, lab, _ = tensors(everyone)
        with torch.no_grad():
            composed(ids, mask, labels=lab)
        return batch_size

    def plain_generate():
        ids, mask, _, _ = tensors(everyone)
        composed.generate(ids, mask, **gen)
        return batch_size

    for what, fn in (("forward", plain_forward), ("generate", plain_generate)):
        single = timed([fn], repeats)
        o = out[what]
        o["single_language_examples_per_s"] = round(single.examples_per_s, 2)
        o["mixed_cost_vs_single"] = round(single.examples_per_s / o["mixed_examples_per_s"], 3)
        o["groups_in_turn_cost_vs_mixed"] = round(
            o["mixed_examples_per_s"] / o["groups_in_turn_examples_per_s"], 3
        )
    release(composed)
    return out
