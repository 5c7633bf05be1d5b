"""Training language representations (issue 3): learning, kill and resume, two processes,
bad input and the ``train-language`` verb. Tiny model, 64-token sequences, a few dozen steps."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import set_seed

from langtransfer.base.loading import load_base
from langtransfer.cli import main
from langtransfer.composition.composed import compose
from langtransfer.languages import get_language
from langtransfer.representations import (
    PromptConfig,
    load_representation,
    new_adapter,
    new_prompt,
    read_manifest,
)
from langtransfer.training.corpora import load_corpus
from langtransfer.training.language import train_language
from langtransfer.training.span_corruption import span_corruption_dataset
from langtransfer.training.trainer import RepresentationTrainer, default_settings, evaluation_loss

SEQ = 64
SEED = 42
COMMON = ["--model", "tiny", "--corpus", "fixture", "--language", "sk"]
COMMON += ["--sequence-length", str(SEQ), "--batch-size", "4", "--logging-steps", "1000"]
# The uninterrupted reference of the kill-and-resume test uses exactly these arguments.
PROMPT_RUN = [*COMMON, "--kind", "prompt", "--steps", "30", "--save-steps", "5"]
ERROR_PREFIX = "langtransfer train-language: error: "


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def quiet_main(args: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return main(args)


def held_out(tokenizer, seed: int):
    """The run's validation slice of the sk fixture (the corpus split is seeded by --seed),
    span-corrupted with ``seed``; train_language itself corrupts it with seed + 1."""
    corpus = load_corpus("fixture", "sk", seed=SEED)
    assert corpus.validation and set(corpus.validation).isdisjoint(corpus.train)
    return span_corruption_dataset(
        corpus.validation, tokenizer, input_length=SEQ, seed=seed, streaming=False
    )


def complete_checkpoints(folder: Path) -> list[int]:
    """Steps of the checkpoints whose trainer_state.json (written last) is readable."""
    steps = []
    for path in folder.glob("checkpoint-*"):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        steps.append(int(path.name.split("-")[1]))
    return sorted(steps)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def trained_prompt(tmp_path_factory) -> Path:
    """A soft language prompt for sk, 30 uninterrupted steps (Adafactor lr 0.5, the paper's)."""
    root = tmp_path_factory.mktemp("prompt")
    out = root / "out"
    assert quiet_main(["train-language", *PROMPT_RUN, "--output", str(out)]) == 0
    return out


# --- 1. training lowers the held-out loss ------------------------------------------------


def test_soft_language_prompt_lowers_held_out_loss(trained_prompt):
    training = read_manifest(trained_prompt)["training"]
    assert training["steps"] == 30 and training["resumed_from"] is None
    assert training["validation_loss"] < 0.9 * training["validation_loss_initial"]

    # Recomputed from the saved files, not trusting the manifest.
    base, tok = load_base("tiny")
    validation = held_out(tok, SEED + 1)
    trained = compose(base, "slp", language=load_representation(trained_prompt))
    instruction = get_language("sk").instruction
    assert instruction == "Generate the output in Slovak:"
    fresh = new_prompt("language", base, tok, PromptConfig(init_text=instruction), language="sk")
    initial = compose(base, "slp", language=fresh)
    loss_trained = evaluation_loss(trained, validation, tok)
    loss_initial = evaluation_loss(initial, validation, tok)
    assert loss_trained == pytest.approx(training["validation_loss"], rel=1e-5)
    assert loss_initial == pytest.approx(training["validation_loss_initial"], rel=1e-5)
    assert loss_trained < 0.9 * loss_initial
    # Another noise pattern on the same held-out documents: not tied to one corruption.
    other = held_out(tok, 7)
    assert evaluation_loss(trained, other, tok) < 0.9 * evaluation_loss(initial, other, tok)


def test_language_adapter_lowers_held_out_loss(tmp_path):
    out = tmp_path / "la"
    # AdamW as in the paper, but lr 1e-2: the paper's 5e-5 barely moves an adapter in the
    # 30 steps a test can afford (it is tuned for 100k steps); 1e-3 lowered the held-out
    # loss by 4.5%, 1e-2 by 56%, so the margin below (at least 40%) tells an adapter that
    # trains, is saved and reloads from one that moves a little (the old margin was 2%).
    # What the margin cannot tell: on the randomly initialised tiny base most of the drop
    # is the targets' token distribution, which span corruption with its targets shuffled
    # across rows teaches as well (measured: 0.41 of the initial loss vs 0.44); that the
    # objective's targets are the masked spans is tests/test_objectives.py's round trip.
    args = [*COMMON, "--kind", "adapter", "--steps", "30", "--learning-rate", "1e-2"]
    assert quiet_main(["train-language", *args, "--output", str(out)]) == 0
    manifest = read_manifest(out)
    training = manifest["training"]
    assert manifest["adapter"] == {"config": "seq_bn", "reduction_factor": 16}
    assert training["settings"]["optimizer"] == "adamw"
    assert training["settings"]["learning_rate"] == 1e-2
    assert training["validation_loss"] < 0.6 * training["validation_loss_initial"]

    base, tok = load_base("tiny")
    validation = held_out(tok, SEED + 1)
    without = evaluation_loss(compose(base, "base"), validation, tok)
    loss_trained = evaluation_loss(
        compose(base, "la", language=load_representation(out)), validation, tok
    )
    other_base, _ = load_base("tiny")
    set_seed(SEED)  # the adapter's initial weights come from the seeded global RNG
    fresh = compose(other_base, "la", language=new_adapter("language", language="sk"))
    loss_initial = evaluation_loss(fresh, validation, tok)
    assert without == pytest.approx(training["validation_loss_without"], rel=1e-5)
    assert loss_initial == pytest.approx(training["validation_loss_initial"], rel=1e-5)
    assert loss_trained == pytest.approx(training["validation_loss"], rel=1e-5)
    assert loss_trained < 0.6 * min(loss_initial, without)


def test_adapter_same_seed_same_weights(tmp_path):
    """An adapter is initialised before Trainer seeds anything; the run seeds it itself."""
    weights = []
    for i in range(2):
        torch.manual_seed(1000 + i)  # whatever the global RNG state before the run
        out = tmp_path / f"la{i}"
        settings = default_settings("adapter", "language", max_steps=1, batch_size=4)
        train_language(
            model="tiny", language="sk", kind="adapter", corpus="fixture", output=out,
            settings=settings, sequence_length=SEQ, show_progress=False,
        )
        weights.append(load_file(out / "adapter.safetensors"))
    assert weights[0].keys() == weights[1].keys() and weights[0]
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name


# --- 2. a killed run resumes to the same weights -----------------------------------------


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, trained_prompt):
    out, ckpt, log = tmp_path / "out", tmp_path / "ckpt", tmp_path / "log.txt"
    args = ["train-language", *PROMPT_RUN, "--output", str(out), "--checkpoint-dir", str(ckpt)]
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "langtransfer", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=subprocess_env(),
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 300
            while not complete_checkpoints(ckpt):
                assert proc.poll() is None, f"run ended before a checkpoint:\n{log.read_text()}"
                assert time.monotonic() < deadline, "no checkpoint within 300 s"
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    assert not (out / "manifest.json").exists()  # no finished representation
    done = complete_checkpoints(ckpt)
    assert done and done[-1] < 30 and done[-1] % 5 == 0

    # A kill while saving leaves a newer checkpoint without trainer_state.json (Trainer
    # writes it last, in place). Fake one: resuming must skip it, not crash on it.
    partial = ckpt / f"checkpoint-{done[-1] + 5}"
    partial.mkdir(exist_ok=True)
    shutil.copy(ckpt / f"checkpoint-{done[-1]}" / "model.safetensors", partial)
    (partial / "trainer_state.json").write_text('{"global_step": ', encoding="utf-8")

    assert quiet_main([*args, "--resume"]) == 0
    training = read_manifest(out)["training"]
    assert training["steps"] == 30
    assert training["resumed_from"] == f"checkpoint-{done[-1]}"
    # Bit-identical to the uninterrupted run: the checkpoint restores the prompt, the
    # Adafactor state and the RNGs; the sampler is seeded (data_seed) and Trainer skips the
    # batches already seen; every span-corrupted block has its own seeded RNG, so the
    # examples after the skip are the same ones.
    resumed = load_file(out / "prompt.safetensors")["embedding"]
    reference = load_file(trained_prompt / "prompt.safetensors")["embedding"]
    assert torch.equal(resumed, reference)
    assert (
        training["validation_loss"] == read_manifest(trained_prompt)["training"]["validation_loss"]
    )


def test_resume_refuses_a_checkpoint_of_another_representation(
    tmp_path, trained_prompt, capsys
):
    ckpt = tmp_path / "ckpt"  # the prompt run's checkpoints, offered to an adapter run
    shutil.copytree(trained_prompt.with_name(trained_prompt.name + ".checkpoints"), ckpt)
    out = tmp_path / "la"
    args = [*COMMON, "--kind", "adapter", "--steps", "35", "--output", str(out)]
    assert main(["train-language", *args, "--checkpoint-dir", str(ckpt), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(ERROR_PREFIX) and "\n" not in err
    assert "does not hold the weights of the representation being trained" in err
    assert not out.exists()


# --- 3. two CPU processes through accelerate ---------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_accelerate_two_cpu_processes(tmp_path):
    out = tmp_path / "out"
    # `--cpu --num_processes 2` would start ONE process: Accelerate's CPU launcher needs
    # MPI for more. `--multi_gpu` goes through torchrun; with no GPU the training
    # arguments say use_cpu, so the two processes form a gloo group (MULTI_CPU).
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launch += ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    launch += ["--dynamo_backend", "no", "--main_process_port", str(free_port())]
    verb = ["-m", "langtransfer", "train-language", *COMMON, "--kind", "prompt"]
    verb += ["--steps", "4", "--output", str(out)]
    with open(tmp_path / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(
            [*launch, *verb], stdout=subprocess.PIPE, stderr=err, env=subprocess_env(),
            start_new_session=True,
        )
        try:
            stdout, _ = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher's session: its two workers
            proc.communicate()
            pytest.fail(f"accelerate run hung:\n{(tmp_path / 'stderr.txt').read_text()[-3000:]}")
    assert proc.returncode == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    summary = json.loads(stdout)  # exactly one JSON document: only rank 0 prints
    training = read_manifest(out)["training"]
    assert training["world_size"] == 2 and training["steps"] == 4
    assert summary["output"] == str(out) and summary["steps"] == 4
    assert summary["validation_loss"] == training["validation_loss"]
    # Only the finished directory and its checkpoints: no half-written copies beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.checkpoints", "stderr.txt"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "prompt.safetensors"]

    base, tok = load_base("tiny")
    composed = compose(base, "slp", language=load_representation(out))
    loss = evaluation_loss(composed, held_out(tok, SEED + 1), tok)
    assert loss == pytest.approx(training["validation_loss"], rel=1e-5)


def test_only_world_process_zero_writes_the_output(tmp_path, monkeypatch):
    monkeypatch.setattr(RepresentationTrainer, "is_world_process_zero", lambda self: False)
    out = train_language(
        model="tiny", language="sk", kind="prompt", corpus="fixture", output=tmp_path / "out",
        settings=default_settings("prompt", "language", max_steps=1, batch_size=4),
        sequence_length=SEQ, show_progress=False,
    )
    assert out == tmp_path / "out" and not out.exists()


# --- 4. bad input: one error line, exit code 2, before any training ----------------------


def run_bad(tmp_path, capsys, *args: str) -> str:
    out = tmp_path / "out"
    code = main(["train-language", *COMMON, "--kind", "prompt", "--steps", "2", *args,
                 "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    err = captured.err.strip()
    assert err.startswith(ERROR_PREFIX) and "\n" not in err, err
    assert not out.exists() and not (tmp_path / "out.checkpoints").exists()  # nothing trained
    return err[len(ERROR_PREFIX) :]


@pytest.mark.parametrize("content", ["", "  \n\n\t \n   ", "\n\n"])
def test_empty_corpus(tmp_path, capsys, content):
    corpus = tmp_path / "empty.txt"
    corpus.write_text(content, encoding="utf-8")
    assert run_bad(tmp_path, capsys, "--corpus", str(corpus)) == f"corpus {corpus} contains no text"


def test_corpus_too_short_for_one_sequence(tmp_path, capsys):
    corpus = tmp_path / "short.txt"
    corpus.write_text("Krátka veta.\nEšte jedna.\nA tretia.\n", encoding="utf-8")
    message = run_bad(tmp_path, capsys, "--corpus", str(corpus))
    assert "too short" in message and "lower the input length" in message


def test_broken_jsonl_line(tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    lines = [json.dumps({"text": f"Veta číslo {i}."}, ensure_ascii=False) for i in range(4)]
    lines.insert(2, '{"text": "unterminated')
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    message = run_bad(tmp_path, capsys, "--corpus", str(corpus))
    assert message.startswith(f"{corpus}:3: invalid JSON")


def test_missing_corpus_file(tmp_path, capsys):
    corpus = tmp_path / "nowhere.txt"
    message = run_bad(tmp_path, capsys, "--corpus", str(corpus))
    assert message.startswith(f"corpus file {corpus} does not exist")
    assert "'wikipedia', 'fixture'" in message


def test_unknown_language(tmp_path, capsys):
    message = run_bad(tmp_path, capsys, "--language", "xx")
    assert message.startswith("unknown language 'xx'; valid: ")
    codes = message.split("valid: ")[1].split(", ")
    assert {"ar", "sk", "sw", "zh"} <= set(codes) and len(codes) == 16


def test_output_holding_another_representation(tmp_path, capsys):
    out = tmp_path / "out"
    base, _ = load_base("tiny")
    compose(base, "la", language=new_adapter("language", language="de")).save("language", out)
    before = snapshot(out)
    assert "adapter.safetensors" in before

    for extra in ([], ["--resume"]):  # resume continues the same representation only
        code = main(["train-language", *COMMON, "--kind", "prompt", "--steps", "2",
                     "--output", str(out), *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith(ERROR_PREFIX) and "\n" not in err
        assert "kind 'adapter' (wanted 'prompt')" in err
        assert "language 'de' (wanted 'sk')" in err and "--overwrite" in err
        assert snapshot(out) == before
        assert not (tmp_path / "out.checkpoints").exists()

    args = [*COMMON, "--kind", "prompt", "--steps", "2", "--output", str(out), "--overwrite"]
    assert quiet_main(["train-language", *args]) == 0
    manifest = read_manifest(out)
    assert (manifest["kind"], manifest["language"]) == ("prompt", "sk")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "prompt.safetensors"]


# --- 5. the verb's help and summary ------------------------------------------------------


def test_help_mentions_the_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train-language", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for default in (
        "default 100000",  # steps
        "default 32",  # batch size
        "prompt 0.5 (Adafactor), adapter 5e-5 (AdamW)",
        "prompt 1e-5, adapter 0",  # weight decay
        "default 256",  # sequence length
        "virtual tokens (default 50)",
        "default seq_bn",
        "reduction factor (default 16)",
        "default: bigscience/mt0-base",
        "(default wikipedia)",
        "noise density 0.15, mean span 3",
        "default: <output>.checkpoints",
        "default 42",  # seed
        "default: 10% of a local file; for wikipedia 10% of the training slice, at most 1000",
    ):
        assert default in text, default


def test_console_script_help_exits_zero_without_torch():
    script = Path(sys.executable).with_name("langtransfer")
    if not script.is_file():
        pytest.skip(f"console script not installed beside {sys.executable}")
    result = subprocess.run(
        [str(script), "train-language", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "--language" in result.stdout and "--kind" in result.stdout
    probe = (
        "import sys, contextlib, io\nfrom langtransfer.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['train-language', '--help'])\nprint('torch' in sys.modules)\n"
    )
    probed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert probed.stdout.strip() == "False", probed.stderr  # --help stays fast


def test_summary_is_the_only_stdout(tmp_path, capsys):
    out = tmp_path / "out"
    args = [*COMMON, "--kind", "prompt", "--steps", "3", "--logging-steps", "1"]
    assert main(["train-language", *args, "--output", str(out)]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # Trainer's log lines went to stderr
    assert "'loss':" in captured.err
    training = read_manifest(out)["training"]
    assert set(summary) == {
        "output", "steps", "validation_loss_without", "validation_loss_initial", "validation_loss"
    }
    assert summary["output"] == str(out) and summary["steps"] == 3
    for key in ("validation_loss_without", "validation_loss_initial", "validation_loss"):
        assert math.isfinite(summary[key]) and summary[key] == training[key]
    assert summary["validation_loss"] < summary["validation_loss_initial"]
