"""Load test of ``langtransfer serve``: dynamic batching vs one request at a time.

On the tiny model: trains soft language prompts for en, sk, de and two task
representations (an nli adapter, a qa prompt) for a few steps, computes the offline
``evaluate`` prediction of every test input, then for each mode starts ``langtransfer
serve`` on a free loopback port and sends single-input requests of mixed tasks and
languages from ``--clients`` concurrent clients (``--requests`` in all, at most
``--duration`` seconds per mode; every call has a timeout, so it stops by itself).

Modes: ``batched`` (``--max-batch-size`` 32, ``--max-wait-ms``) and ``unbatched``
(``--max-batch-size 1``). Reported per mode: completed requests, throughput, p50/p99
latency, mean rows per model call (from ``/metrics``), and every response compared with
the offline prediction for the same input: ``lost`` (no 200 answer) and ``different``
(another raw generation or parsed output) must both be 0. The target (issue 14): at 32
clients, batched throughput >= 4x unbatched at no worse p99.

    python -m benchmarks.load_test            # 32 clients, 640 requests per mode
    python -m benchmarks.load_test --quick    # 8 clients, 48 requests: checks it works

Measure on a quiet machine: the server and the clients share its cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
LANGUAGES = ("en", "sk", "de")
TASKS = {"nli": "slp+ta", "qa": "slp+stp"}  # task -> the configuration it is served with
OUT = REPO / "benchmarks" / "results" / "load_test.json"


def log(msg: str) -> None:
    print(f"[load_test {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- representations and the offline predictions -----------------------------------------


def train_representations(root: Path) -> dict[str, Path]:
    """A few training steps each on the tiny model: slp-<lang>, ta-nli, stp-qa."""
    from langtransfer.composition.loaded_base import LoadedBase
    from langtransfer.representations import PromptConfig
    from langtransfer.training.language import train_language
    from langtransfer.training.task import train_task
    from langtransfer.training.trainer import default_settings

    base = LoadedBase.load("tiny")
    quick = {"max_steps": 2, "batch_size": 4, "save_steps": 2, "logging_steps": 2}
    reps: dict[str, Path] = {}
    for lang in LANGUAGES:
        reps[f"slp-{lang}"] = Path(train_language(
            model=base, language=lang, kind="prompt", corpus="fixture",
            output=root / f"slp-{lang}", sequence_length=32, validation_size=2,
            settings=default_settings("prompt", "language", **quick),
            spec=PromptConfig(num_tokens=4, init_text=f"Output in {lang}:"),
            show_progress=False,
        ))
    task = {**quick, "max_steps": 8, "save_steps": 8, "eval_steps": 8}
    reps["nli"] = Path(train_task(
        model=base, task="nli", language="en", kind="adapter", output=root / "ta-nli",
        language_rep=reps["slp-en"], data="fixtures", max_examples=16,
        settings=default_settings("adapter", "task", learning_rate=1e-2, **task),
        show_progress=False,
    ))
    reps["qa"] = Path(train_task(
        model=base, task="qa", language="en", kind="prompt", output=root / "stp-qa",
        language_rep=reps["slp-en"], data="fixtures", max_examples=16,
        settings=default_settings("prompt", "task", **task),
        spec=PromptConfig(num_tokens=4, init_text="Answer the question:"),
        show_progress=False,
    ))
    return reps


def raw_inputs(task: str, language: str) -> list[dict]:
    """The fixture test inputs of a task as request inputs (the fields, no gold), in the
    order the task's loader reads them."""
    folder = REPO / "src" / "langtransfer" / "data" / "tasks" / task
    if task == "nli":
        lines = (folder / f"{language}.test.jsonl").read_text(encoding="utf-8").splitlines()
        return [{"premise": r["premise"], "hypothesis": r["hypothesis"]}
                for r in map(json.loads, lines) if r]
    data = json.loads((folder / f"{language}.test.json").read_text(encoding="utf-8"))
    return [{"question": q["question"], "context": p["context"]}
            for a in data["data"] for p in a["paragraphs"] for q in p["qas"]]


def offline(reps: dict[str, Path], root: Path) -> list[dict]:
    """Every (task, language, input) with its offline ``evaluate`` prediction."""
    from langtransfer.composition.loaded_base import LoadedBase
    from langtransfer.inference.evaluate import evaluate
    from langtransfer.tasks import get_task

    base = LoadedBase.load("tiny")
    cases = []
    for task, lang in itertools.product(TASKS, LANGUAGES):
        out = root / f"eval-{task}-{lang}"
        evaluate(model=base, task=task, language=lang, language_rep=reps[f"slp-{lang}"],
                 task_rep=reps[task], data="fixtures", output=out, show_progress=False)
        rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
        inputs = raw_inputs(task, lang)
        if len(inputs) != len(rows):
            raise SystemExit(f"{task}/{lang}: {len(inputs)} inputs but {len(rows)} predictions")
        t = get_task(task)
        for x, row in zip(inputs, rows, strict=True):
            if t.request_input(x) != row["input"]:  # the request says what evaluate read
                raise SystemExit(f"{task}/{lang}: input order differs from evaluate's")
            cases.append({"task": task, "language": lang, "input": x,
                          "raw": row["prediction"], "output": t.parse(row["prediction"])})
    return cases


# -- the server and the clients ------------------------------------------------------------


class Server:
    """``langtransfer serve`` on a free loopback port, stopped on leaving the block."""

    def __init__(self, sources: list[Path], args: list[str], threads: int):
        self.command = [sys.executable, "-m", "langtransfer", "serve", *map(str, sources),
                        "--model", "tiny", "--port", "0", "--log-level", "warning", *args]
        self.threads = threads

    def __enter__(self) -> Server:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"),
               "OMP_NUM_THREADS": str(self.threads)}
        self.err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=self.err,
                                     text=True, env=env)
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(120)
        match = re.search(r"listening on (http://\S+)", first[0] if first else "")
        if match is None:
            self.__exit__()
            self.err.seek(0)
            raise SystemExit(f"serve did not start:\n{self.err.read()[-3000:]}")
        self.url = match.group(1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def metric(self, name: str) -> float:
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return float("nan")


def run_clients(url: str, plan: list[dict], clients: int, duration: float) -> dict:
    """``clients`` threads send ``plan``'s requests (one input each) until it is used up
    or ``duration`` seconds pass; every answer is kept with its latency."""
    jobs = iter(enumerate(plan))
    lock = threading.Lock()
    results: dict[int, tuple[float, int, dict | None]] = {}
    stop_at = time.monotonic() + duration

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.monotonic() < stop_at:
                with lock:
                    job = next(jobs, None)
                if job is None:
                    return
                i, case = job
                body = {"task": case["task"], "language": case["language"],
                        "inputs": [case["input"]], "configuration": TASKS[case["task"]]}
                start = time.perf_counter()
                try:
                    r = http.post("/v1/predict", json=body)
                    answer = r.json() if r.status_code == 200 else None
                    status = r.status_code
                except httpx.HTTPError:
                    answer, status = None, 0
                results[i] = (time.perf_counter() - start, status, answer)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 120)
    return {"wall": time.perf_counter() - start, "results": results}


def measure(mode: str, sources: list[Path], server_args: list[str], plan: list[dict],
            clients: int, duration: float, threads: int) -> dict:
    with Server(sources, server_args, threads) as server:
        warm = run_clients(server.url, plan[: min(len(plan), 2 * clients)], clients, duration)
        if any(s != 200 for _, s, _ in warm["results"].values()):
            raise SystemExit(f"{mode}: the warm-up got errors")
        rows0 = server.metric("langtransfer_batch_size_sum")
        calls0 = server.metric("langtransfer_batch_size_count")
        run = run_clients(server.url, plan, clients, duration)
        rows = server.metric("langtransfer_batch_size_sum") - rows0
        calls = server.metric("langtransfer_batch_size_count") - calls0
    results = run["results"]
    ok = {i: r for i, r in results.items() if r[1] == 200}
    different = []
    for i, (_, _, answer) in ok.items():
        got = answer["outputs"][0] if answer else None
        want = plan[i]
        if got is None or got["raw"] != want["raw"] or got["output"] != want["output"]:
            different.append({"case": i, "task": want["task"], "language": want["language"],
                              "want": want["raw"], "got": got and got["raw"]})
    latencies = sorted(r[0] for r in ok.values())
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "mode": mode, "server_args": server_args, "clients": clients,
        "planned": len(plan), "sent": len(results), "completed": len(ok),
        "lost": len(plan) - len(ok),
        "statuses": dict(sorted(Counter(str(r[1]) for r in results.values()).items())),
        "different": len(different), "examples_different": different[:5],
        "wall_seconds": round(run["wall"], 3),
        "throughput_rps": round(len(ok) / run["wall"], 2),
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(q[98] * 1000, 1) if latencies else None,
        "mean_rows_per_call": round(rows / calls, 2) if calls else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    p.add_argument("--requests", type=int, default=640, help="requests per mode (default 640)")
    p.add_argument("--duration", type=float, default=180,
                   help="seconds per mode at most (default 180)")
    p.add_argument("--max-wait-ms", default="10", help="batched mode's max wait (default 10)")
    p.add_argument("--server-threads", type=int, default=1,
                   help="the server's torch threads (OMP_NUM_THREADS; default 1: the clients "
                   "keep the other cores)")
    p.add_argument("--quick", action="store_true", help="8 clients, 48 requests: a check")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=OUT, help=f"JSON results (default {OUT})")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.requests, args.duration = 8, 48, 60
    if not (1 <= args.clients <= 256 and 1 <= args.requests <= 100_000 and args.duration > 0):
        p.error("--clients must be in 1..256, --requests in 1..100000, --duration > 0")

    with tempfile.TemporaryDirectory(prefix="lt-load-") as tmp:
        root = Path(tmp)
        log("training tiny representations")
        reps = train_representations(root)
        log("offline predictions (evaluate)")
        cases = offline(reps, root)
        rng = random.Random(args.seed)
        plan = [rng.choice(cases) for _ in range(args.requests)]
        sources = sorted(reps.values())
        modes = {
            "batched": ["--max-batch-size", "32", "--max-wait-ms", args.max_wait_ms],
            "unbatched": ["--max-batch-size", "1", "--max-wait-ms", "0"],
        }
        report = {"clients": args.clients, "requests": args.requests,
                  "server_threads": args.server_threads, "cases": len(cases), "modes": {}}
        for mode, server_args in modes.items():
            log(f"{mode}: {args.clients} clients, {len(plan)} requests")
            report["modes"][mode] = measure(mode, sources, server_args, plan, args.clients,
                                            args.duration, args.server_threads)
    b, u = report["modes"]["batched"], report["modes"]["unbatched"]
    report["speedup"] = round(b["throughput_rps"] / u["throughput_rps"], 2)
    report["p99_ratio"] = round(b["p99_ms"] / u["p99_ms"], 2) if u["p99_ms"] else None
    report["target_met"] = bool(report["speedup"] >= 4 and b["p99_ms"] <= u["p99_ms"])
    report["correct"] = all(m["lost"] == 0 and m["different"] == 0
                            for m in report["modes"].values())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{'mode':<10} {'done':>5} {'lost':>5} {'diff':>5} {'req/s':>8} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'rows/call':>9}")
    for m in report["modes"].values():
        print(f"{m['mode']:<10} {m['completed']:>5} {m['lost']:>5} {m['different']:>5} "
              f"{m['throughput_rps']:>8} {m['p50_ms']:>8} {m['p99_ms']:>8} "
              f"{m['mean_rows_per_call']!s:>9}")
    print(f"speed-up {report['speedup']}x, p99 ratio {report['p99_ratio']}, target (>= 4x at "
          f"no worse p99) {'met' if report['target_met'] else 'NOT met'}; every response "
          f"{'matched' if report['correct'] else 'did NOT match'} the offline prediction "
          f"({args.output})")
    return 0 if report["correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
