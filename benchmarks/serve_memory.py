"""Memory of ``langtransfer serve`` under maximum-size requests, with and without the caps
of issue 23, and the throughput of ordinary requests in both, side by side in one run.

On the tiny model (representations trained for a few steps, as ``load_test`` does), for
each mode a fresh server on a free loopback port:

1. **throughput**: ``--clients`` concurrent clients send ``--requests`` ordinary
   single-input requests of mixed tasks and languages (the fixture test inputs); req/s,
   p50/p99, and every answer compared with the other mode's for the same request. The
   modes take turns for ``--rounds`` rounds, a fresh server each, so a change in the
   machine's load hits both; the median round is reported;
2. **soak**: ``--soak-clients`` clients send maximum-size requests for ``--soak-seconds``:
   8 MiB bodies of long 4-byte-character inputs (declared and chunked), 8 MiB of dense JSON,
   and a 64 MiB request of the same long inputs, chunked; the server's RSS before (after a
   warm-up batch) and its peak
   during the soak (``VmHWM``, reset first), and the statuses it answered.

Modes: ``capped`` is ``langtransfer serve`` as shipped (``--max-body`` 8 MiB,
``--max-body-total`` 32 MiB, each input cut to ``input_char_cap``); ``uncapped`` is the
same server with the body limits at 1 TiB and no input cap, i.e. how it behaved before
(reading a chunked body whole, tokenizing every input whole). A watchdog kills the
uncapped server past ``--kill-above`` MiB of RSS, so the run cannot take the machine down
(its peak is then reported as at least that).

    python -m benchmarks.serve_memory             # 16 clients, 3 x 320 requests, 30 s soak
    python -m benchmarks.serve_memory --quick     # a short check that it works

Measure on a quiet machine, not while tests run: the server and the clients share its
cores. Results: ``benchmarks/results/serve_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks.load_test import (
    LANGUAGES,
    TASKS,
    Server,
    log,
    raw_inputs,
    run_clients,
    train_representations,
)

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "serve_memory.json"
MAX_BODY = 8 * 2**20
UNCAPPED = ("import sys, langtransfer.serving.predictor as p; "
            "p.input_char_cap = lambda *a: 1 << 62; "
            "from langtransfer.cli import main; sys.exit(main(sys.argv[1:]))")


def vm(pid: int, field: str) -> int:
    """A ``Vm*`` line of /proc/PID/status in bytes (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def long_body(size: int) -> bytes:
    """A valid request of about ``size`` bytes: 64 inputs of long non-Latin-1 text (4 bytes
    a character once parsed)."""
    text = (REPO / "src" / "langtransfer" / "data" / "text" / "sk.txt").read_text("utf-8")
    each = size // 64 - 200
    premise = ("😀 " + text * (each // len(text) + 1))[: each // 2]
    long = {"task": "nli", "language": "en",
            "inputs": [{"premise": premise, "hypothesis": "Je to tak."}] * 64}
    return json.dumps(long, ensure_ascii=False).encode()


def bodies() -> dict[str, bytes]:
    """Maximum-size bodies (at most 8 MiB: long text; an object per three bytes) and a
    valid one of 64 MiB, which only the uncapped server reads."""
    dense = b'{"task":"nli","language":"en","inputs":[' + b"{}," * (MAX_BODY // 3 - 20) + b"{}]}"
    return {"long": long_body(MAX_BODY), "dense": dense, "64MiB": long_body(8 * MAX_BODY)}


def soak(server: Server, seconds: float, clients: int, kill_above: int | None) -> dict:
    """Maximum-size requests from ``clients`` threads for ``seconds``; RSS before and peak."""
    pid = server.proc.pid
    body = bodies()
    warm = json.loads(body["long"])
    warm["inputs"] = warm["inputs"][:32]
    httpx.post(server.url + "/v1/predict", json=warm, timeout=600).raise_for_status()
    before = vm(pid, "VmRSS")
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # VmHWM starts again from VmRSS
    statuses: dict[str, dict[str, int]] = {}
    killed = threading.Event()
    stop_at = time.monotonic() + seconds
    host, port = server.url.removeprefix("http://").rsplit(":", 1)

    def watchdog() -> None:
        while time.monotonic() < stop_at + 60 and server.proc.poll() is None:
            if kill_above is not None and vm(pid, "VmRSS") > kill_above:
                killed.set()
                server.proc.kill()
                return
            time.sleep(0.05)

    def chunked_64mib() -> int:
        """The 64 MiB request, chunked; a sender cut off reads the answer waiting."""
        data = body["64MiB"]
        with socket.create_connection((host, int(port)), timeout=600) as sock:
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: b\r\nContent-Type: "
                         b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            try:
                for j in range(0, len(data), 65536):
                    piece = data[j:j + 65536]
                    sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass
            first = sock.recv(64)
            return int(first.split()[1]) if first else 0

    kinds = ["long", "long-chunked", "dense", "64MiB-chunked"]

    def client(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=600) as http:
            n = i
            while time.monotonic() < stop_at and not killed.is_set():
                kind = kinds[n % len(kinds)]
                n += 1
                try:
                    if kind == "64MiB-chunked":
                        status = chunked_64mib()
                    else:
                        data = body[kind.split("-")[0]]
                        content = iter([data[j:j + 65536] for j in range(0, len(data), 65536)]
                                       ) if kind.endswith("chunked") else data
                        status = http.post("/v1/predict", content=content,
                                           headers={"content-type": "application/json"}
                                           ).status_code
                except (httpx.HTTPError, OSError, ValueError, IndexError):
                    status = 0
                counts = statuses.setdefault(kind, {})
                counts[str(status)] = counts.get(str(status), 0) + 1

    dog = threading.Thread(target=watchdog, daemon=True)
    dog.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 600)
    peak = kill_above if killed.is_set() else vm(pid, "VmHWM")
    return {"rss_before_mib": round(before / 2**20), "peak_mib": round(peak / 2**20),
            "killed": killed.is_set(), "statuses": statuses}


def throughput(server: Server, plan: list[dict], clients: int, duration: float) -> dict:
    run_clients(server.url, plan[: 2 * clients], clients, duration)  # warm-up
    run = run_clients(server.url, plan, clients, duration)
    ok = {i: r for i, r in run["results"].items() if r[1] == 200}
    latencies = sorted(r[0] for r in ok.values())
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {"completed": len(ok), "lost": len(plan) - len(ok),
            "throughput_rps": round(len(ok) / run["wall"], 2),
            "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p99_ms": round(q[98] * 1000, 1),
            "answers": {i: r[2]["outputs"] for i, r in ok.items()}}


def server_for(mode: str, sources: list[Path]) -> Server:
    """A server as shipped (``capped``), or with no body limit and no input cap."""
    flags = ["--max-wait-ms", "5"]
    if mode == "uncapped":
        flags += ["--max-body", str(2**40), "--max-body-total", str(2**40)]
    server = Server(sources, flags, threads=1)
    if mode == "uncapped":
        server.command = [sys.executable, "-c", UNCAPPED, *server.command[3:]]
    return server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=320)
    p.add_argument("--duration", type=float, default=180, help="seconds per throughput run")
    p.add_argument("--rounds", type=int, default=3, help="throughput rounds per mode")
    p.add_argument("--soak-clients", type=int, default=8)
    p.add_argument("--soak-seconds", type=float, default=30)
    p.add_argument("--kill-above", type=int, default=6144, metavar="MIB",
                   help="kill the uncapped server past this RSS (default 6144)")
    p.add_argument("--quick", action="store_true",
                   help="4 clients, 24 requests, 1 round, 8 s soak")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=OUT)
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.requests, args.soak_clients, args.soak_seconds = 4, 24, 4, 8
        args.rounds = 1
    with tempfile.TemporaryDirectory(prefix="lt-mem-") as tmp:
        log("training tiny representations")
        reps = train_representations(Path(tmp))
        cases = [{"task": t, "language": lang, "input": x}
                 for t in TASKS for lang in LANGUAGES for x in raw_inputs(t, lang)]
        rng = random.Random(args.seed)
        plan = [rng.choice(cases) for _ in range(args.requests)]
        sources = sorted(reps.values())
        report: dict = {"clients": args.clients, "requests": args.requests,
                        "rounds": args.rounds, "soak_clients": args.soak_clients,
                        "soak_seconds": args.soak_seconds, "modes": {}}
        modes = ("capped", "uncapped")
        rounds: dict[str, list[dict]] = {mode: [] for mode in modes}
        for r in range(args.rounds):
            for mode in modes if r % 2 == 0 else modes[::-1]:
                with server_for(mode, sources) as server:
                    log(f"{mode}: throughput round {r + 1}, {args.clients} clients, "
                        f"{len(plan)} requests")
                    rounds[mode].append(throughput(server, plan, args.clients, args.duration))
        for mode in modes:
            ordered = sorted(rounds[mode], key=lambda m: m["throughput_rps"])
            result = dict(ordered[len(ordered) // 2])
            result["rounds_rps"] = [m["throughput_rps"] for m in rounds[mode]]
            result["answers_same_every_round"] = all(
                m["answers"] == rounds[mode][0]["answers"] for m in rounds[mode])
            with server_for(mode, sources) as server:
                log(f"{mode}: soak, {args.soak_clients} clients, {args.soak_seconds} s")
                result["soak"] = soak(server, args.soak_seconds, args.soak_clients,
                                      None if mode == "capped" else args.kill_above * 2**20)
            report["modes"][mode] = result
    capped, uncapped = report["modes"]["capped"], report["modes"]["uncapped"]
    same = [i for i in capped["answers"] if i in uncapped["answers"]]
    report["answers_compared"] = len(same)
    report["answers_different"] = sum(capped["answers"][i] != uncapped["answers"][i]
                                      for i in same)
    for m in report["modes"].values():
        m.pop("answers")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{'mode':<9} {'req/s':>7} {'rounds':>20} {'p50 ms':>7} {'p99 ms':>7} {'lost':>5} "
          f"{'RSS before':>10} {'soak peak':>10}  soak statuses")
    for mode, m in report["modes"].items():
        s = m["soak"]
        peak = f"{'>=' if s['killed'] else ''}{s['peak_mib']} MiB"
        print(f"{mode:<9} {m['throughput_rps']:>7} {str(m['rounds_rps']):>20} {m['p50_ms']:>7} "
              f"{m['p99_ms']:>7} {m['lost']:>5} {s['rss_before_mib']:>6} MiB {peak:>10}  "
              f"{s['statuses']}")
    print(f"answers equal in both modes: {report['answers_compared'] - report['answers_different']}"
          f" of {report['answers_compared']} ({args.output})")
    same = all(m["answers_same_every_round"] for m in report["modes"].values())
    return 0 if report["answers_different"] == 0 and same else 1


if __name__ == "__main__":
    sys.exit(main())
