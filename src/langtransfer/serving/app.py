"""The HTTP JSON API: a FastAPI app over a :class:`~langtransfer.serving.predictor.Predictor`.

``POST /v1/predict`` validates a request on the event loop (no model work), queues its
inputs as rows in the :class:`~langtransfer.serving.batcher.DynamicBatcher`, whose one
worker thread owns the model, and awaits their futures: the event loop never runs the
model, so it keeps accepting and answering while a batch runs. ``GET
/v1/representations``, ``GET /health`` and ``GET /metrics`` (Prometheus) answer from
memory. OpenAPI docs are at ``/docs`` and ``/openapi.json``.

Errors are JSON ``{"detail": "<one line>", ...}``: 400 malformed JSON; 413 a body over
:data:`MAX_BODY_BYTES`; 415 a body sent as another content type; 422 wrong types,
missing or extra fields, no inputs or more than ``max_inputs``, an unknown task,
language, configuration or source (with ``valid``), or an input the task cannot read
(``inputs[i]: ...``); 503 with ``Retry-After`` when the queue is full or the server is
shutting down. A request's failure never fails the other requests batched with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from langtransfer import __version__
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.serving.batcher import (
    BatchSettings,
    DynamicBatcher,
    QueueFullError,
    RejectedError,
)
from langtransfer.serving.metrics import ServingMetrics
from langtransfer.serving.predictor import Prediction, PredictRequest

log = logging.getLogger("langtransfer.serving")

#: Inputs one request may hold at most (``langtransfer serve --max-inputs``).
DEFAULT_MAX_INPUTS = 64
#: A body declaring more bytes is refused (413) before it is read.
MAX_BODY_BYTES = 8 * 1024 * 1024


class PredictorLike(Protocol):
    """What the app needs of a :class:`~langtransfer.serving.predictor.Predictor` (contract 3)."""

    def available(self) -> list[dict]: ...

    def validate(self, request: PredictRequest) -> None: ...

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
    bad_json = [e for e in errors if e.get("type") == "json_invalid"]
    if bad_json:
        reason = bad_json[0].get("ctx", {}).get("error", "cannot be parsed")
        return _error(400, f"malformed JSON body: {reason}")
    content_type = request.headers.get("content-type", "")
    if "json" not in content_type and any(tuple(e.get("loc", ())) == ("body",) for e in errors):
        return _error(415, f"the body must be JSON (Content-Type: application/json), got "
                      f"{content_type or 'no Content-Type'}")
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


def create_app(
    predictor: PredictorLike,
    settings: BatchSettings | None = None,
    *,
    max_inputs: int = DEFAULT_MAX_INPUTS,
) -> FastAPI:
    """The app for ``predictor``; its lifespan starts the batcher and, at shutdown, runs
    the rows still queued before the process ends (uvicorn first lets requests in flight
    finish)."""
    settings = settings or BatchSettings()
    if not 1 <= max_inputs <= settings.max_queue:
        raise ValueError(f"max_inputs must be in 1..max_queue ({settings.max_queue}), "
                         f"got {max_inputs}")
    metrics = ServingMetrics(lambda: batcher.queue_depth)
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

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]):
        start = time.perf_counter()
        length = request.headers.get("content-length", "0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            response: Response = _error(
                413, f"the body must be at most {MAX_BODY_BYTES} bytes, got {length}"
            )
        else:
            response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "other")
        metrics.observe_request(route, response.status_code, time.perf_counter() - start)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(request, exc)

    error_responses: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorBody, "description": "malformed JSON"},
        413: {"model": ErrorBody, "description": f"a body over {MAX_BODY_BYTES} bytes"},
        415: {"model": ErrorBody, "description": "the body is not JSON"},
        422: {"model": ErrorBody, "description": "wrong types, bad input count, unknown name"},
        503: {"model": ErrorBody, "description": "queue full or shutting down; see Retry-After"},
    }

    @app.post("/v1/predict", response_model=PredictResponse, responses=error_responses)
    async def predict(body: PredictBody) -> Any:
        """Predict for every input of one task and target language."""
        n = len(body.inputs)
        if not 1 <= n <= max_inputs:
            return _error(422, f"inputs: expected 1 to {max_inputs} inputs, got {n}")
        rows = [PredictRequest(task=body.task, language=body.language, input=x,
                               configuration=body.configuration, source=body.source)
                for x in body.inputs]
        for i, row in enumerate(rows):
            try:
                predictor.validate(row)
            except UnknownNameError as e:
                return _error(422, str(e), field=e.what, value=e.value, valid=e.valid)
            except LangTransferError as e:
                return _error(422, f"inputs[{i}]: {e}")
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
            outputs.append(Output(output=r.output, raw=r.raw, truncated=r.truncated))
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
