"""The HTTP JSON API: a FastAPI app over a :class:`~langtransfer.serving.predictor.Predictor`.

``POST /v1/predict`` validates a request on the event loop (no model work), queues its
inputs as rows in the :class:`~langtransfer.serving.batcher.DynamicBatcher`, whose one
worker thread owns the model, and awaits their futures: the event loop never runs the
model, so it keeps accepting and answering while a batch runs. ``GET
/v1/representations``, ``GET /health`` and ``GET /metrics`` (Prometheus) answer from
memory. OpenAPI docs are at ``/docs`` and ``/openapi.json``.

Errors are JSON ``{"detail": "<one line>", ...}``: 400 malformed JSON; 413 a body over
``max_body`` bytes, however it is sent; 415 a body sent as another content type; 422
wrong types, missing or extra fields, no inputs or more than ``max_inputs``, an unknown
task, language, configuration or source (with ``valid``), or an input the task cannot
read (``inputs[i]: ...``); 503 with ``Retry-After`` when the queue is full, the server is
shutting down, or the bodies being read hold ``max_body_total`` bytes. A request's
failure never fails the other requests batched with it.

Memory (docs/serving.md gives the bound): bodies are limited while they are read
(:class:`~langtransfer.serving.body.BodyLimit`); the predict route parses a body at once,
with no await between reading and cutting, and keeps only its inputs cut to the model's
input length (:meth:`~langtransfer.serving.predictor.Predictor.cap`), so a queued request holds
no more than that whatever its body held.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, Protocol

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langtransfer import __version__
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.serving.batcher import (
    BatchSettings,
    DynamicBatcher,
    QueueFullError,
    RejectedError,
)
from langtransfer.serving.body import (
    DEFAULT_MAX_BODY,
    DEFAULT_TOTAL_FACTOR,
    BodyBudget,
    BodyLimit,
)
from langtransfer.serving.metrics import ServingMetrics
from langtransfer.serving.predictor import Prediction, PredictRequest

log = logging.getLogger("langtransfer.serving")

#: Inputs one request may hold at most (``langtransfer serve --max-inputs``).
DEFAULT_MAX_INPUTS = 64
#: A body of more bytes is refused (413) as soon as it says or sends that much.
MAX_BODY_BYTES = DEFAULT_MAX_BODY


#: Peak bytes while one body is parsed, per byte of the body: the bytes, their text (up to
#: 4 bytes a character) and the parsed JSON (26 bytes a byte for the densest shape,
#: ``[{},{},...]``; a long string: 1 to 4).
PARSE_FACTOR = 32
#: Bytes one queued input may hold per character of the input cap: two text fields of
#: 4-byte characters hold 8; a token list of one-character strings outside Latin-1 holds
#: about 44 (an 80-byte string, 8 bytes in the list, per 2 characters counted).
ROW_FACTOR = 48
#: Bytes a queued row holds besides its input (the request, its future and coroutine).
ROW_OVERHEAD = 4096
#: Bytes one connection that is sending may buffer: uvicorn reads up to 256 KiB at a time
#: and stops reading while 64 KiB wait.
CONNECTION_BYTES = 320 * 1024


def memory_ceiling(*, max_body: int, max_body_total: int, max_queue: int,
                   max_batch_size: int, input_cap: int, connections: int = 0) -> int:
    """Bytes the server may hold above its base (the model loaded, one batch of
    ``max_batch_size`` inputs at the model's input length run), whatever clients send
    (docs/serving.md derives it):

    * the bodies being read: ``max_body_total``, and ``max_body`` more while one is joined;
    * one body being parsed, ``PARSE_FACTOR * max_body``: parsing runs on the event loop
      with no await until the inputs are cut, so one at a time, and then all but the cut
      inputs is dropped;
    * the rows queued, in the model's batch or answered and not yet sent:
      ``(max_queue + 2 * max_batch_size) * (ROW_FACTOR * input_cap + ROW_OVERHEAD)``
      (``--max-inputs`` is at most ``--max-queue``: a request's rows are queued rows);
    * ``CONNECTION_BYTES`` per connection that is sending.

    ``input_cap``: :func:`~langtransfer.serving.predictor.input_char_cap` of the longest
    ``max_length`` served. Tokenizing runs one row at a time on at most the cap."""
    rows = (max_queue + 2 * max_batch_size) * (ROW_FACTOR * input_cap + ROW_OVERHEAD)
    return (max_body_total + max_body + PARSE_FACTOR * max_body + rows
            + CONNECTION_BYTES * connections)


class PredictorLike(Protocol):
    """What the app needs of a :class:`~langtransfer.serving.predictor.Predictor` (contract 3)."""

    def available(self) -> list[dict]: ...

    def validate(self, request: PredictRequest) -> None: ...

    def cap(self, request: PredictRequest) -> tuple[PredictRequest, bool]: ...

    def predict_requests(
        self, requests: Sequence[PredictRequest]
    ) -> Sequence[Prediction | LangTransferError]: ...


# -- the JSON shapes (they are also the OpenAPI schema) -------------------------------------


class PredictBody(BaseModel):
    """One task and language, one or more inputs."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"task": "nli", "language": "sk", "inputs": [
                {"premise": "Pes spí.", "hypothesis": "Zviera spí."}]}]
        },
    )

    task: str = Field(description="a task of GET /v1/representations (qa, ner, nli, ...)")
    language: str = Field(description="the target language code (sk, sw, ur, ...)")
    inputs: list[dict[str, Any] | str] = Field(
        description="the task's example fields per input (e.g. qa: question, context; "
        "nli: premise, hypothesis), or a string for a task with one text field; "
        "1 to max_inputs inputs"
    )
    configuration: str | None = Field(
        None, description="base, ta, stp, la+ta, la+stp, slp+ta or slp+stp; default: the "
        "default entry of GET /v1/representations for this task and language"
    )
    source: str | None = Field(
        None, description="the source language of the task representation, where the "
        "served representations hold several"
    )


class Output(BaseModel):
    output: Any = Field(description="the parsed answer: answer text, entity spans or label")
    raw: str = Field(description="the generated text the output was parsed from")
    truncated: bool = Field(description="the input was longer than the model takes and was cut")


class PredictResponse(BaseModel):
    task: str
    language: str
    configuration: str | None = Field(description="the configuration that answered")
    source: str | None = Field(description="the task representation's source language")
    outputs: list[Output] = Field(description="one per input, in order")


class ErrorBody(BaseModel):
    detail: str


def _error(status: int, detail: str, headers: Mapping[str, str] | None = None,
           **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status, headers=dict(headers or {}))


def _where(loc: Sequence[Any]) -> str:
    """``("body", "inputs", 2, "premise")`` -> ``inputs[2].premise``."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    parts: dict[str, str] = {}
    for e in errors:
        loc = tuple(e.get("loc", ()))
        if len(loc) == 4 and loc[1] == "inputs" and isinstance(loc[2], int):
            # one error per member of `dict | str`: say it once, plainly
            parts[_where(loc[:3])] = "must be an object (the task's fields) or a string"
        else:
            parts.setdefault(_where(loc), str(e.get("msg")))
    detail = "; ".join(f"{where}: {msg}" for where, msg in parts.items())
    return _error(422, detail, errors=jsonable_encoder(
        [{"loc": e.get("loc"), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
    ))


def _is_json(content_type: str) -> bool:
    """``application/json`` or ``application/*+json``, parameters aside (FastAPI's rule)."""
    kind = content_type.split(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/")
                                          and kind.endswith("+json"))


class _Rows(NamedTuple):
    """A predict request once read: its names, and its inputs as rows cut to the cap."""

    task: str
    language: str
    configuration: str | None
    source: str | None
    rows: list[PredictRequest]
    cut: list[bool]


async def _read_predict(request: Request, predictor: PredictorLike,
                        max_inputs: int) -> _Rows | JSONResponse:
    """The body of a predict request as rows, or the error answer. The body is read, parsed,
    validated and cut with no await after the read, and none of it but the cut inputs
    outlives this call: a queued request holds only those (see the module docstring)."""
    content_type = request.headers.get("content-type", "")
    if not _is_json(content_type):
        return _error(415, f"the body must be JSON (Content-Type: application/json), got "
                      f"{content_type or 'no Content-Type'}")
    raw = b"".join([chunk async for chunk in request.stream()])
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",),
                                       "msg": "Field required", "input": None}])
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        return _error(400, f"malformed JSON body: {e.msg}")
    except ValueError as e:  # not UTF-8 (or -16/-32)
        return _error(400, f"malformed JSON body: {e}")
    del raw
    inputs = data.get("inputs") if isinstance(data, dict) else None
    if isinstance(inputs, list) and len(inputs) > max_inputs:  # before validation copies them
        return _error(422, f"inputs: expected 1 to {max_inputs} inputs, got {len(inputs)}")
    try:
        body = PredictBody.model_validate(data, from_attributes=True)
    except ValidationError as e:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in e.errors()]
        ) from None
    del data, inputs
    n = len(body.inputs)
    if not 1 <= n <= max_inputs:
        return _error(422, f"inputs: expected 1 to {max_inputs} inputs, got {n}")
    rows, cut = [], []
    for i, x in enumerate(body.inputs):
        row = PredictRequest(task=body.task, language=body.language, input=x,
                             configuration=body.configuration, source=body.source)
        try:
            row, was_cut = predictor.cap(row)
            predictor.validate(row)
        except UnknownNameError as e:
            return _error(422, str(e), field=e.what, value=e.value, valid=e.valid)
        except LangTransferError as e:
            return _error(422, f"inputs[{i}]: {e}")
        rows.append(row)
        cut.append(was_cut)
    return _Rows(body.task, body.language, body.configuration, body.source, rows, cut)


def create_app(
    predictor: PredictorLike,
    settings: BatchSettings | None = None,
    *,
    max_inputs: int = DEFAULT_MAX_INPUTS,
    max_body: int = MAX_BODY_BYTES,
    max_body_total: int | None = None,
) -> FastAPI:
    """The app for ``predictor``; its lifespan starts the batcher and, at shutdown, runs
    the rows still queued before the process ends (uvicorn first lets requests in flight
    finish). ``max_body``: bytes one request body may hold; ``max_body_total``: bytes the
    bodies being read may hold together (default 4 x ``max_body``; see
    :class:`~langtransfer.serving.body.BodyLimit`)."""
    settings = settings or BatchSettings()
    if not 1 <= max_inputs <= settings.max_queue:
        raise ValueError(f"max_inputs must be in 1..max_queue ({settings.max_queue}), "
                         f"got {max_inputs}")
    budget = BodyBudget(DEFAULT_TOTAL_FACTOR * max_body if max_body_total is None
                        else max_body_total)
    if not 1 <= max_body <= budget.max_total:
        raise ValueError(f"max_body must be in 1..max_body_total ({budget.max_total}), "
                         f"got {max_body}")
    metrics = ServingMetrics(lambda: batcher.queue_depth, lambda: budget.held)
    batcher: DynamicBatcher[PredictRequest, Prediction] = DynamicBatcher(
        predictor.predict_requests, settings, on_batch=metrics.observe_batch
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await asyncio.to_thread(batcher.close)
            close = getattr(predictor, "close", None)
            if close is not None:  # the base is given back as it was loaded
                close()

    app = FastAPI(
        title="langtransfer",
        version=__version__,
        summary="Zero-shot cross-lingual predictions from one base model",
        description="Many languages and tasks from one frozen base: each request names a "
        "task and a target language; inputs of concurrent requests are batched together.",
        lifespan=lifespan,
    )
    app.state.batcher, app.state.metrics, app.state.predictor = batcher, metrics, predictor
    # What can be asked for is fixed once loaded; listing it here, not per request, also
    # keeps the event loop away from the base while the worker thread uses it.
    available = jsonable_encoder(predictor.available())

    def refused(status: int) -> None:
        if status == 503:
            metrics.rejected.labels(reason="body_memory").inc()

    # Added before `count`, so it runs inside it: its 413s and 503s are counted too.
    app.add_middleware(BodyLimit, max_body=max_body, budget=budget, on_refuse=refused)

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]):
        start = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "other")
        metrics.observe_request(route, response.status_code, time.perf_counter() - start)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(request, exc)

    error_responses: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorBody, "description": "malformed JSON"},
        413: {"model": ErrorBody, "description": f"a body over {max_body} bytes"},
        415: {"model": ErrorBody, "description": "the body is not JSON"},
        422: {"model": ErrorBody, "description": "wrong types, bad input count, unknown name"},
        503: {"model": ErrorBody, "description": "queue full or shutting down; see Retry-After"},
    }

    # The route reads its body itself (FastAPI's own parsing would keep the whole body and
    # its parsed JSON alive until the answer); the schema is PredictBody's all the same.
    body_schema = {"required": True, "content": {
        "application/json": {"schema": PredictBody.model_json_schema()}}}

    @app.post("/v1/predict", response_model=PredictResponse, responses=error_responses,
              openapi_extra={"requestBody": body_schema})
    async def predict(request: Request) -> Any:
        """Predict for every input of one task and target language (the body:
        PredictBody)."""
        body = await _read_predict(request, predictor, max_inputs)
        if isinstance(body, JSONResponse):
            return body
        rows, n = body.rows, len(body.rows)
        try:
            futures = batcher.submit(rows)
        except RejectedError as e:
            reason = "queue_full" if isinstance(e, QueueFullError) else "shutting_down"
            metrics.rejected.labels(reason=reason).inc()
            return _error(503, str(e), {"Retry-After": str(e.retry_after)})
        results = await asyncio.gather(
            *(asyncio.wrap_future(f) for f in futures), return_exceptions=True
        )
        outputs = []
        for i, r in enumerate(results):
            if isinstance(r, LangTransferError):
                return _error(422, f"inputs[{i}]: {r}")
            if isinstance(r, BaseException):
                log.error("predicting inputs[%d] failed", i, exc_info=r)
                return _error(500, f"inputs[{i}]: internal error ({type(r).__name__}: {r})")
            outputs.append(Output(output=r.output, raw=r.raw,
                                  truncated=r.truncated or body.cut[i]))
        metrics.inputs.labels(task=body.task, language=body.language).inc(n)
        # every row of a request runs on the same entry: the first says which it was
        first = results[0]
        return PredictResponse(
            task=body.task, language=body.language,
            configuration=getattr(first, "configuration", None) or body.configuration,
            source=getattr(first, "source", body.source), outputs=outputs,
        )

    @app.get("/v1/representations")
    async def representations() -> dict[str, Any]:
        """What can be asked for: task, language, configuration, source, representation
        ids, and which entry answers when configuration and source are not given."""
        return {"representations": available}

    @app.get("/health", responses={503: {"description": "shutting down"}})
    async def health() -> Any:
        """``ok`` while serving; 503 while the queue drains at shutdown."""
        state = {"queue_depth": batcher.queue_depth, "max_queue": settings.max_queue,
                 "max_batch_size": settings.max_batch_size, "max_inputs": max_inputs}
        if batcher.closing:
            return JSONResponse({"status": "shutting down", **state}, 503)
        return {"status": "ok", **state}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    return app
