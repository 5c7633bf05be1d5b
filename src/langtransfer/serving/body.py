"""Request bodies bounded while they are read, whatever their transfer encoding.

:class:`BodyLimit` is ASGI middleware that reads each request's body before the app sees
it, counting the ``http.request`` chunks as they arrive, so a ``Transfer-Encoding:
chunked`` body (with or without a ``Content-Length`` that says less) is held to the same
limits as a declared one:

* **per request** (``--max-body``): past ``max_body`` bytes the request gets 413 and no
  more of it is kept (a declared ``Content-Length`` over the limit gets 413 before any of
  the body is read);
* **across requests** (``--max-body-total``): the bodies of all requests being read are
  held to ``max_total`` bytes together; a request whose body would go past it gets 503
  with ``Retry-After``, so many slow uploads at once cost at most that much memory.

Refusing a request that is still sending: a client that asked ``Expect: 100-continue``
gets the answer before it sends the body (the server sends ``100 Continue`` only when the
body is first read). Other clients write the whole body before they read (Python's
``urllib``, ``requests``): the server reads and discards the rest of a body of up to
``2 * max_body`` bytes, keeping none of it, so such a client sees the status; a longer
body is cut off by closing the connection, and the client may see a reset instead. The answer says
``Connection: close`` whenever the body was not read to its end.

A body within the limits reaches the app as one ``http.request`` message; its bytes stop
counting toward ``max_total`` as the app takes it (the predict route parses it at once
and keeps only the inputs, cut to the model's input length).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: A request body may hold this many bytes at most (``langtransfer serve --max-body``).
DEFAULT_MAX_BODY = 8 * 1024 * 1024
#: The bodies being read at once may hold ``max_body`` times this (``--max-body-total``).
DEFAULT_TOTAL_FACTOR = 4


class BodyBudget:
    """The bytes the bodies being read may hold together (``max_total``) and hold now
    (``held``), shared by a :class:`BodyLimit` and whoever reports it (``/metrics``)."""

    def __init__(self, max_total: int):
        self.max_total = max_total
        self.held = 0


class BodyLimit:
    """``app`` behind the per-request and total body limits (see the module docstring).

    ``budget``: the total (default ``DEFAULT_TOTAL_FACTOR * max_body``);
    ``on_refuse(status)`` is called for each request refused here (413 or 503), e.g. to
    count it."""

    def __init__(self, app: ASGIApp, *, max_body: int = DEFAULT_MAX_BODY,
                 budget: BodyBudget | None = None,
                 on_refuse: Callable[[int], None] | None = None) -> None:
        budget = budget or BodyBudget(DEFAULT_TOTAL_FACTOR * max_body)
        if max_body < 1:
            raise ValueError(f"max_body must be >= 1, got {max_body}")
        if budget.max_total < max_body:
            raise ValueError(f"the total must be >= max_body ({max_body}), got "
                             f"{budget.max_total}")
        self.app, self.max_body, self.budget = app, max_body, budget
        self.on_refuse = on_refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        expects = headers.get(b"expect", b"").lower() == b"100-continue"
        declared = _content_length(headers.get(b"content-length"))
        if declared is not None and declared > self.max_body:
            await self._refuse(receive, send, 413, self._too_large(declared),
                               declared=declared, read=0, expects=expects)
            return
        holding = _Holding()
        try:
            body = await self._read(receive, send, declared, holding)
            if body is None:  # answered already
                return
            replay = _Replay(body, lambda: self._drop(holding), receive)
            del body  # from here only the app holds it
            await self.app(scope, replay, send)
        finally:
            self._drop(holding)

    async def _read(self, receive: Receive, send: Send, declared: int | None,
                    holding: _Holding) -> bytes | None:
        """The whole body, counted in ``holding`` and the budget as it arrives; None when
        the request was answered here: refused, or the client went away (then the answer
        goes nowhere, but the app's middleware sees one)."""
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await _answer(send, 400, "the client went away before sending the whole body",
                              close=True)
                return None
            body = message.get("body", b"")
            more = message.get("more_body", False)
            read = holding.size + len(body)
            if read > self.max_body:
                chunks.clear()
                self._drop(holding)
                await self._refuse(receive, send, 413, self._too_large(None),
                                   declared=declared, read=read, done=not more)
                return None
            if self.budget.held + len(body) > self.budget.max_total:
                chunks.clear()
                self._drop(holding)
                await self._refuse(
                    receive, send, 503,
                    f"request bodies being read hold {self.budget.held} of the "
                    f"{self.budget.max_total} bytes allowed at once; retry later",
                    declared=declared, read=read, done=not more, retry_after=1,
                )
                return None
            chunks.append(body)
            holding.size += len(body)
            self.budget.held += len(body)
            if not more:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _drop(self, holding: _Holding) -> None:
        """The request no longer holds its body here (the app took it, or it ended)."""
        self.budget.held -= holding.size
        holding.size = 0

    def _too_large(self, declared: int | None) -> str:
        got = f"got {declared}" if declared is not None else "got more"
        return f"the body must be at most {self.max_body} bytes, {got}"

    async def _refuse(self, receive: Receive, send: Send, status: int,
                      detail: str, *, declared: int | None, read: int, done: bool = False,
                      expects: bool = False, retry_after: int | None = None) -> None:
        """Answer ``status`` to a request whose body is not (all) taken, first reading and
        discarding the rest of it while at most ``2 * max_body`` bytes were sent in all."""
        if not done and not expects:
            allowed = 2 * self.max_body - read
            left = allowed if declared is None else declared - read
            if left <= allowed:
                done = await _discard(receive, left)
        if self.on_refuse is not None:
            self.on_refuse(status)
        # the rest of the body unread, the connection cannot be reused
        await _answer(send, status, detail, close=not done, retry_after=retry_after)


async def _answer(send: Send, status: int, detail: str, *, close: bool,
                  retry_after: int | None = None) -> None:
    """A one-line JSON error, as the app's own."""
    content = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(content)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


class _Holding:
    """The bytes of one request's body held by :class:`BodyLimit`."""

    size = 0


class _Replay:
    """The app's ``receive``: the body, read already, as one message (it stops counting
    toward the total as the app takes it), then the server's own ``receive``."""

    def __init__(self, body: bytes, taken: Callable[[], None], receive: Receive):
        self.body: bytes | None = body
        self.taken, self.receive = taken, receive

    async def __call__(self) -> Message:
        body, self.body = self.body, None
        if body is None:
            return await self.receive()
        self.taken()
        return {"type": "http.request", "body": body, "more_body": False}


async def _discard(receive: Receive, budget: int) -> bool:
    """Read and drop up to ``budget`` more bytes of the body; whether it ended."""
    while budget >= 0:
        message = await receive()
        if message["type"] != "http.request":
            return False
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return budget >= 0
    return False


def _content_length(value: bytes | None) -> int | None:
    """The declared length; the server (h11, httptools) refuses a malformed one itself."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
