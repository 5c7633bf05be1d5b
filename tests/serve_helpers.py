"""Shared by the serve tests: tiny trained representations and a real server process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
LANGUAGES = ("en", "sk")


def tiny_representations(root: Path) -> list[Path]:
    """Soft language prompts for en and sk and two task representations trained on en
    (an nli adapter, a qa prompt), each a few steps on the tiny model: the directories."""
    import torch

    from langtransfer.composition.loaded_base import LoadedBase
    from langtransfer.representations import PromptConfig
    from langtransfer.training.language import train_language
    from langtransfer.training.task import train_task
    from langtransfer.training.trainer import default_settings

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = LoadedBase.load("tiny")
        quick = {"max_steps": 2, "batch_size": 4, "save_steps": 2, "logging_steps": 2}
        out = []
        for lang in LANGUAGES:
            out.append(train_language(
                model=base, language=lang, kind="prompt", corpus="fixture",
                output=root / f"slp-{lang}", sequence_length=32, validation_size=2,
                settings=default_settings("prompt", "language", **quick),
                spec=PromptConfig(num_tokens=4, init_text=f"Output in {lang}:"),
                show_progress=False,
            ))
        task = {**quick, "max_steps": 4, "save_steps": 4, "eval_steps": 4}
        out.append(train_task(
            model=base, task="nli", language="en", kind="adapter", output=root / "ta-nli",
            language_rep=root / "slp-en", data="fixtures", max_examples=16,
            settings=default_settings("adapter", "task", learning_rate=1e-2, **task),
            show_progress=False,
        ))
        out.append(train_task(
            model=base, task="qa", language="en", kind="prompt", output=root / "stp-qa",
            language_rep=root / "slp-en", data="fixtures", max_examples=16,
            settings=default_settings("prompt", "task", **task),
            spec=PromptConfig(num_tokens=4, init_text="Answer the question:"),
            show_progress=False,
        ))
        return [Path(p) for p in out]
    finally:
        torch.set_num_threads(threads)


class ServeProcess:
    """``langtransfer serve SOURCES --port 0 ARGS`` in a child process; ``url`` once it
    listens. Leaving the block stops it (SIGTERM, then SIGKILL after ``stop_timeout``)."""

    def __init__(self, sources, *args: str, start_timeout: float = 90, stop_timeout: float = 30):
        self.command = [sys.executable, "-m", "langtransfer", "serve", *map(str, sources),
                        "--model", "tiny", "--port", "0", "--log-level", "warning", *args]
        self.start_timeout, self.stop_timeout = start_timeout, stop_timeout
        self.url = ""
        self.stderr = ""

    def __enter__(self) -> ServeProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
        self._err = tempfile.TemporaryFile("w+")  # a file: a full pipe would block the server
        self.proc = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=self._err, text=True, env=env
        )
        first: list[str] = []  # the server prints this line once it listens
        reader = threading.Thread(target=lambda: first.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(self.start_timeout)
        line = first[0] if first else ""
        match = re.search(r"listening on (http://\S+)", line)
        if match is None:
            self.stop()
            raise AssertionError(f"serve did not start: {line!r}\n{self.stderr}")
        self.url = match.group(1)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"serve did not answer /health:\n{self.stderr}")

    def terminate(self) -> None:
        self.proc.terminate()

    def stop(self) -> int:
        """Stop it (if still running) and return its exit code; its stderr is kept."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.seek(0)
        self.stderr = self._err.read()
        return self.proc.returncode

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def post(self, body: object, **kwargs) -> httpx.Response:
        return httpx.post(self.url + "/v1/predict", json=body, timeout=60, **kwargs)

    def metric(self, name: str) -> float:
        """The value of one sample of /metrics (``name`` as printed, labels included)."""
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise AssertionError(f"no metric {name}")
