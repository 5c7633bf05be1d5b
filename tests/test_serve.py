"""`langtransfer serve` as a user runs it: a real server process on a free loopback port,
a real HTTP client. Answers equal the Predictor's; concurrent requests of several
languages and tasks are batched and each gets its own answer; every bad input gets a
clear 4xx and leaves the server working; a full queue answers 503 with Retry-After;
SIGTERM finishes the requests in flight. Everything is bounded in count and time."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time

import httpx
import pytest
from serve_helpers import LANGUAGES, REPO, ServeProcess, tiny_representations

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

DATA = REPO / "src" / "langtransfer" / "data" / "tasks"


def nli_inputs(language: str, n: int = 4) -> list[dict]:
    lines = (DATA / "nli" / f"{language}.test.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines[:n]]
    return [{"premise": r["premise"], "hypothesis": r["hypothesis"]} for r in rows]


def qa_inputs(language: str, n: int = 3) -> list[dict]:
    data = json.loads((DATA / "qa" / f"{language}.test.json").read_text(encoding="utf-8"))
    out = [{"question": q["question"], "context": p["context"]}
           for article in data["data"] for p in article["paragraphs"] for q in p["qas"]]
    return out[:n]


INPUTS = {(task, lang): (nli_inputs if task == "nli" else qa_inputs)(lang)
          for task in ("nli", "qa") for lang in LANGUAGES}


@pytest.fixture(scope="module")
def reps(tmp_path_factory):
    return tiny_representations(tmp_path_factory.mktemp("serve-reps"))


@pytest.fixture(scope="module")
def predictor(reps):
    from langtransfer.serving.predictor import Predictor

    return Predictor.load(reps, model="tiny")


def expected(predictor, task, language, inputs, **kw) -> list[dict]:
    return [{"output": p.output, "raw": p.raw, "truncated": p.truncated}
            for p in predictor.predict(task, language, inputs, **kw)]


@pytest.fixture(scope="module")
def server(reps):
    with ServeProcess(reps, "--max-batch-size", "16", "--max-wait-ms", "50",
                      "--max-inputs", "8") as s:
        yield s


def test_answers_equal_the_predictors(server, predictor):
    for (task, lang), inputs in INPUTS.items():
        r = server.post({"task": task, "language": lang, "inputs": inputs})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["outputs"] == expected(predictor, task, lang, inputs)
        assert (body["task"], body["language"]) == (task, lang)
        default = next(e for e in predictor.available()
                       if e["task"] == task and e["language"] == lang and e["default"])
        assert body["configuration"] == default["configuration"]
    # naming the configuration explicitly gives the same answer
    inputs = INPUTS["nli", "sk"]
    r = server.post({"task": "nli", "language": "sk", "inputs": inputs,
                     "configuration": "slp+ta", "source": "en"})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == expected(predictor, "nli", "sk", inputs)


def test_an_input_longer_than_the_model_takes_is_truncated_and_flagged(server, predictor):
    long = {"premise": "The shop closes at eight. " * 40, "hypothesis": "It is open."}
    r = server.post({"task": "nli", "language": "en", "inputs": [long, INPUTS["nli", "en"][0]]})
    assert r.status_code == 200, r.text
    outputs = r.json()["outputs"]
    assert [o["truncated"] for o in outputs] == [True, False]
    assert outputs == expected(predictor, "nli", "en", [long, INPUTS["nli", "en"][0]])


def test_concurrent_requests_of_mixed_languages_and_tasks_are_batched(server, predictor):
    jobs = [(task, lang, x) for (task, lang), xs in INPUTS.items() for x in xs[:2]]
    before_rows = server.metric("langtransfer_batch_size_sum")
    before_calls = server.metric("langtransfer_batch_size_count")
    answers: dict[int, httpx.Response] = {}
    barrier = threading.Barrier(len(jobs))

    def client(i: int) -> None:
        task, lang, x = jobs[i]
        barrier.wait(10)
        answers[i] = server.post({"task": task, "language": lang, "inputs": [x]})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == len(jobs)
    for i, (task, lang, x) in enumerate(jobs):
        assert answers[i].status_code == 200, answers[i].text
        assert answers[i].json()["outputs"] == expected(predictor, task, lang, [x])
    rows = server.metric("langtransfer_batch_size_sum") - before_rows
    calls = server.metric("langtransfer_batch_size_count") - before_calls
    assert rows == len(jobs)
    assert calls < len(jobs)  # some model calls held several requests' rows


BAD = [
    # (what, body or raw bytes, headers, status, a phrase the message must hold)
    ("malformed JSON", b'{"task": "nli", "language": ', None, 400, "malformed JSON"),
    ("not JSON", b"task=nli", {"content-type": "text/plain"}, 415, "must be JSON"),
    ("a body too large", b" " * (9 * 2**20) + b"{}", None, 413, "at most"),
    ("not an object", [1, 2], None, 422, "valid dictionary"),
    ("task not a string", {"task": 5, "language": "sk", "inputs": ["x"]}, None, 422, "task"),
    ("inputs not a list", {"task": "nli", "language": "sk", "inputs": "x"}, None, 422,
     "inputs"),
    ("an input a number", {"task": "nli", "language": "sk", "inputs": [3]}, None, 422,
     "inputs[0]: must be an object"),
    ("missing language", {"task": "nli", "inputs": ["x"]}, None, 422, "language: Field required"),
    ("unknown field", {"task": "nli", "language": "sk", "inputs": ["x"], "lang": "sk"}, None,
     422, "lang: Extra inputs"),
    ("no inputs", {"task": "nli", "language": "sk", "inputs": []}, None, 422,
     "expected 1 to 8 inputs, got 0"),
    ("too many inputs", {"task": "nli", "language": "sk", "inputs": [{}] * 9}, None, 422,
     "expected 1 to 8 inputs, got 9"),
    ("unknown task", {"task": "sentiment", "language": "sk", "inputs": ["x"]}, None, 422,
     "valid: nli, qa"),
    ("unknown language", {"task": "nli", "language": "xx", "inputs": ["x"]}, None, 422,
     "valid: en, sk"),
    ("unknown configuration", {"task": "nli", "language": "sk", "inputs": ["x"],
                               "configuration": "la+ta"}, None, 422, "valid: slp+ta"),
    ("an input missing a field", {"task": "nli", "language": "sk",
                                  "inputs": [{"premise": "A dog sleeps."}]}, None, 422,
     "inputs[0]: "),
    ("a string for a task of two fields", {"task": "qa", "language": "sk", "inputs": ["x"]},
     None, 422, "inputs[0]: "),
]


@pytest.mark.parametrize("what, body, headers, status, phrase", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_clear_4xx(server, what, body, headers, status, phrase):
    if isinstance(body, bytes):
        r = httpx.post(server.url + "/v1/predict", content=body, timeout=30,
                       headers=headers or {"content-type": "application/json"})
    else:
        r = server.post(body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    assert phrase in detail, detail


def test_bad_requests_do_not_fail_good_ones_and_the_server_keeps_working(server, predictor):
    good = INPUTS["qa", "en"][:1]
    answers: dict[str, httpx.Response] = {}
    bodies = {
        "good-1": {"task": "qa", "language": "en", "inputs": good},
        "bad-field": {"task": "nli", "language": "en", "inputs": [{"premise": "x"}]},
        "good-2": {"task": "qa", "language": "en", "inputs": good},
        "bad-language": {"task": "qa", "language": "zz", "inputs": good},
    }
    barrier = threading.Barrier(len(bodies))

    def client(name: str) -> None:
        barrier.wait(10)
        answers[name] = server.post(bodies[name])

    threads = [threading.Thread(target=client, args=(n,)) for n in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    want = expected(predictor, "qa", "en", good)
    assert [answers[n].status_code for n in bodies] == [200, 422, 200, 422]
    assert answers["good-1"].json()["outputs"] == want == answers["good-2"].json()["outputs"]
    assert httpx.get(server.url + "/health", timeout=10).json()["status"] == "ok"
    assert httpx.get(server.url + "/v1/predict", timeout=10).status_code == 405


def test_health_representations_metrics_and_docs(server, predictor):
    health = httpx.get(server.url + "/health", timeout=10).json()
    assert health == {"status": "ok", "queue_depth": 0, "max_queue": 1024,
                      "max_batch_size": 16, "max_inputs": 8}
    listed = httpx.get(server.url + "/v1/representations", timeout=10).json()
    assert listed["representations"] == json.loads(json.dumps(predictor.available()))
    pairs = {(e["task"], e["language"]) for e in listed["representations"] if e["default"]}
    assert pairs == set(INPUTS)  # one default per task and language
    text = httpx.get(server.url + "/metrics", timeout=10).text
    for name in ("langtransfer_http_requests_total", "langtransfer_http_request_seconds_bucket",
                 "langtransfer_batch_size_bucket", "langtransfer_batch_seconds_bucket",
                 "langtransfer_queue_depth", "langtransfer_inputs_total"):
        assert name in text
    assert re.search(r'langtransfer_http_requests_total\{route="/v1/predict",status="200"\} '
                     r"[1-9]", text)
    schema = httpx.get(server.url + "/openapi.json", timeout=10).json()
    assert {"/v1/predict", "/v1/representations", "/health"} <= set(schema["paths"])
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["title"] == "PredictBody"  # the route reads its body itself
    assert {"task", "language", "inputs"} <= set(body["schema"]["required"])
    docs = httpx.get(server.url + "/docs", timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_a_full_queue_answers_503_and_sigterm_finishes_the_requests_in_flight(reps, predictor):
    """Six single-input requests fill the queue (a long max wait holds them there): the
    seventh gets 503 with Retry-After; then SIGTERM, and the six still get their answers
    before the process exits 0."""
    jobs = [("nli", "sk", x) for x in INPUTS["nli", "sk"][:3]] + [
        ("qa", "en", x) for x in INPUTS["qa", "en"][:3]]
    s = ServeProcess(reps, "--max-batch-size", "64", "--max-wait-ms", "3000",
                     "--max-queue", "6", "--max-inputs", "6")
    with s:
        answers: dict[int, httpx.Response] = {}

        def client(i: int) -> None:
            task, lang, x = jobs[i]
            answers[i] = s.post({"task": task, "language": lang, "inputs": [x]})

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(jobs))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while s.metric("langtransfer_queue_depth") < len(jobs):  # all queued, none run yet
            assert time.monotonic() < deadline, "the requests never reached the queue"
            time.sleep(0.02)
        full = s.post({"task": "nli", "language": "en", "inputs": INPUTS["nli", "en"][:1]})
        assert full.status_code == 503, full.text
        assert int(full.headers["retry-after"]) >= 1
        assert "queue is full (6 of 6 rows waiting)" in full.json()["detail"]
        assert s.metric('langtransfer_rejected_total{reason="queue_full"}') == 1
        s.terminate()
        for t in threads:
            t.join(60)
        code = s.stop()
    assert code == 0, s.stderr
    assert "langtransfer serve: stopped" in s.stderr
    for i, (task, lang, x) in enumerate(jobs):
        assert answers[i].status_code == 200, answers[i].text
        assert answers[i].json()["outputs"] == expected(predictor, task, lang, [x])
    with pytest.raises(httpx.TransportError):
        httpx.get(s.url + "/health", timeout=5)


def test_the_readme_curl_example_runs(server, predictor):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Serving"):]
    command = re.search(r"```bash\n(curl .*?)```", section, re.S).group(1)
    command = command.replace("http://127.0.0.1:8000", server.url)
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    body = json.loads(out)
    sent = json.loads(re.search(r"-d '(.*?)'", command, re.S).group(1))
    assert body["outputs"] == expected(predictor, sent["task"], sent["language"], sent["inputs"])


def test_help_and_bad_settings(reps, tmp_path, capsys):
    from langtransfer.cli import main

    help_text = subprocess.run(
        [sys.executable, "-m", "langtransfer", "serve", "--help"], capture_output=True,
        text=True, timeout=60, check=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    ).stdout
    help_text = " ".join(help_text.split())
    for phrase in ("POST /v1/predict", "/metrics", "--max-batch-size", "--max-wait-ms",
                   "--max-queue", "default 127.0.0.1", "Retry-After", "SIGTERM"):
        assert phrase in help_text
    assert main(["serve", "somewhere", "--max-batch-size", "0"]) == 2
    assert "--max-batch-size must be >= 1, got 0" in capsys.readouterr().err
    assert main(["serve", "somewhere", "--max-inputs", "9", "--max-queue", "8"]) == 2
    assert "--max-inputs must be in 1..--max-queue (8), got 9" in capsys.readouterr().err
    assert main(["serve", "somewhere", "--default", "nli"]) == 2
    assert "--default takes TASK=CONFIGURATION, got 'nli'" in capsys.readouterr().err
    # bad sources stop it before it listens, in one line naming the problem
    assert main(["serve", *map(str, reps), "--model", "tiny", "--default", "nli=la+ta"]) == 2
    err = capsys.readouterr().err
    assert "la+ta" in err and "valid: slp+ta" in err and len(err.splitlines()) == 1
    assert main(["serve", str(tmp_path / "missing"), "--model", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and len(err.splitlines()) == 1
