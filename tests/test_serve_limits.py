"""The server's memory is bounded whatever a client sends (issue 23): request bodies are
limited while they are read, however they are framed; each input is cut to what the
model reads before any work, with the same tokens as cutting after tokenizing; and a soak
of hostile requests stays under the bound docs/serving.md states. Real server processes
on free loopback ports, raw sockets where a client must misbehave; all bounded in time."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator

import httpx
import pytest
from serve_helpers import ServeProcess, tiny_representations

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

MAX_BODY = 256 * 1024  # the module server's --max-body; its --max-body-total is 4 x that
SEND_AT_MOST = 64 * 2**20  # a sender that gets this far was never cut off
GOOD = {"task": "nli", "language": "en",
        "inputs": [{"premise": "The shop closes at eight.", "hypothesis": "It is open."}]}


@pytest.fixture(scope="module")
def reps(tmp_path_factory):
    return tiny_representations(tmp_path_factory.mktemp("limits-reps"))


@pytest.fixture(scope="module")
def predictor(reps):
    from langtransfer.predictor import Predictor

    with Predictor.load(reps, model="tiny") as p:
        yield p


@pytest.fixture(scope="module")
def server(reps):
    with ServeProcess(reps, "--max-body", str(MAX_BODY), "--max-wait-ms", "5") as s:
        yield s


def expected(predictor, body: dict) -> list[dict]:
    return [{"output": p.output, "raw": p.raw, "truncated": p.truncated}
            for p in predictor.predict(body["task"], body["language"], body["inputs"])]


# -- a client that misbehaves: raw sockets ------------------------------------------------


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=30)


def head(length: int | None = None, *, chunked: bool = False, expect: bool = False) -> bytes:
    lines = ["POST /v1/predict HTTP/1.1", "Host: test", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    if expect:
        lines.append("Expect: 100-continue")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunks(size: int = 64 * 1024) -> Iterator[bytes]:
    """Chunked framing of an endless body (of spaces), up to SEND_AT_MOST bytes."""
    for _ in range(SEND_AT_MOST // size):
        yield f"{size:x}\r\n".encode() + b" " * size + b"\r\n"


class Sender(threading.Thread):
    """Writes ``parts`` to the socket until they end or the server cuts it off."""

    def __init__(self, sock: socket.socket, parts: Iterable[bytes]):
        super().__init__(daemon=True)
        self.sock, self.parts = sock, parts
        self.sent, self.error = 0, None

    def run(self) -> None:
        try:
            for part in self.parts:
                self.sock.sendall(part)
                self.sent += len(part)
        except OSError as e:
            self.error = e


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response: status, headers (lower-case names), body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before a response: {data!r}"
        data += chunk
    top, _, rest = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    while len(rest) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        assert chunk, "the connection closed inside a response"
        rest += chunk
    return int(lines[0].split()[1]), headers, rest


def assert_cut_off(sender: Sender) -> None:
    sender.join(60)
    assert not sender.is_alive(), "the server kept reading the body"
    assert sender.error is not None and sender.sent < SEND_AT_MOST, sender.sent


def assert_still_serving(server, predictor) -> None:
    r = server.post(GOOD)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == expected(predictor, GOOD)


# -- the body limit -------------------------------------------------------------------------


def test_a_chunked_body_over_the_limit_gets_413_and_no_more_of_it_is_read(server, predictor):
    with connect(server.url) as sock:
        sock.sendall(head(chunked=True))
        sender = Sender(sock, chunks())
        sender.start()
        status, headers, body = read_response(sock)
        assert_cut_off(sender)
    assert status == 413
    assert json.loads(body)["detail"] == f"the body must be at most {MAX_BODY} bytes, got more"
    assert headers["connection"] == "close"  # the rest was not read: the connection ends
    assert_still_serving(server, predictor)


def test_a_body_that_declares_less_than_it_sends_gets_413(server, predictor):
    """Content-Length says 20 bytes, the chunked framing (which HTTP/1.1 obeys over it)
    carries megabytes: counted as they come, refused past the limit."""
    with connect(server.url) as sock:
        sock.sendall(head(20, chunked=True))
        sender = Sender(sock, chunks())
        sender.start()
        status, _, body = read_response(sock)
        assert_cut_off(sender)
    assert status == 413
    assert "at most" in json.loads(body)["detail"]
    # Content-Length framing: what follows the declared bytes is not this body but the
    # next request, which is no HTTP; the server answers the first, then 400 and closes
    # without reading the rest.
    valid = json.dumps(GOOD).encode()
    with connect(server.url) as sock:
        sock.sendall(head(len(valid)) + valid)
        sender = Sender(sock, (b"x" * 65536 for _ in range(SEND_AT_MOST // 65536)))
        sender.start()
        status, _, body = read_response(sock)
        assert status == 200 and json.loads(body)["outputs"] == expected(predictor, GOOD)
        status, _, _ = read_response(sock)
        assert status == 400
        assert_cut_off(sender)
    assert_still_serving(server, predictor)


def test_clients_that_write_the_whole_body_first_see_the_413(server):
    """urllib writes the body before reading: a body up to twice the limit is read and
    dropped so the answer reaches it (it asks Connection: close); chunked from httpx too."""
    for size in (MAX_BODY + 1, 2 * MAX_BODY - 1000):
        request = urllib.request.Request(server.url + "/v1/predict", data=b" " * size,
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=30)
        assert info.value.code == 413
        assert json.loads(info.value.read())["detail"] == (
            f"the body must be at most {MAX_BODY} bytes, got {size}")
    r = httpx.post(server.url + "/v1/predict", content=iter([b" " * 65536] * 5), timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and "got more" in r.json()["detail"]
    assert "connection" not in r.headers  # read to its end: the connection stays usable


def test_expect_100_continue_gets_the_413_before_sending_the_body(server, predictor):
    with connect(server.url) as sock:
        sock.sendall(head(10 * MAX_BODY, expect=True))
        status, headers, body = read_response(sock)  # no "100 Continue" first
    assert status == 413 and headers["connection"] == "close"
    assert json.loads(body)["detail"].endswith(f"got {10 * MAX_BODY}")
    small = json.dumps(GOOD).encode()
    with connect(server.url) as sock:
        sock.sendall(head(len(small), expect=True))
        assert read_response(sock)[0] == 100
        sock.sendall(small)
        status, _, body = read_response(sock)
    assert status == 200 and json.loads(body)["outputs"] == expected(predictor, GOOD)


def test_bodies_being_read_share_a_budget_past_which_requests_get_503(server, predictor):
    """Four uploads that stall just under the limit hold the whole --max-body-total (4 x
    --max-body): a fifth request gets 503 with Retry-After; once they go, all is well."""
    socks = [connect(server.url) for _ in range(4)]
    try:
        for sock in socks:
            sock.sendall(head(MAX_BODY) + b" " * (MAX_BODY - 10))
        deadline = time.monotonic() + 30
        while server.metric("langtransfer_body_bytes") < 4 * (MAX_BODY - 10):
            assert time.monotonic() < deadline, "the stalled bodies never arrived"
            time.sleep(0.05)
        r = server.post(GOOD)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert "bytes allowed at once; retry later" in r.json()["detail"]
        assert server.metric('langtransfer_rejected_total{reason="body_memory"}') == 1
    finally:
        for sock in socks:
            sock.close()
    deadline = time.monotonic() + 30
    while server.metric("langtransfer_body_bytes") > 0:
        assert time.monotonic() < deadline, "the budget was not given back"
        time.sleep(0.05)
    assert_still_serving(server, predictor)
