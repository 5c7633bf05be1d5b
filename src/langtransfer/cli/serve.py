"""``langtransfer serve``: the HTTP JSON API over one base and its representations."""

from __future__ import annotations

import argparse
import signal
import socket
import sys

from langtransfer.cli.common import add_extension_options
from langtransfer.serving.body import DEFAULT_MAX_BODY  # the standard library only

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve predictions over HTTP (POST /v1/predict), batching concurrent requests",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Load one base model and the representations in SOURCE, then answer JSON\n"
            "requests naming a task and a target language:\n\n"
            "  POST /v1/predict         {task, language, inputs: [...], configuration?, source?}\n"
            "  GET  /v1/representations what can be asked for, and the defaults\n"
            "  GET  /health             ok, queue depth\n"
            "  GET  /metrics            Prometheus metrics\n"
            "  GET  /docs               OpenAPI docs (schema: /openapi.json)\n\n"
            "Inputs of concurrent requests -- any languages and tasks -- are batched into one\n"
            "model call (up to --max-batch-size rows, waiting at most --max-wait-ms). At most\n"
            "--max-queue rows wait; past that a request gets 503 with Retry-After. A body\n"
            "over --max-body bytes gets 413 however it is sent (chunked too), and each\n"
            "input's text is cut to what the model can read before any work, so memory\n"
            "stays bounded (docs/serving.md gives the bound). SIGINT or\n"
            "SIGTERM stops accepting connections, finishes the requests in flight, then\n"
            "exits. Needs the serve extra: pip install 'langtransfer[serve]'. See\n"
            "docs/serving.md (scaling out: several serve processes behind a load balancer)."
        ),
    )
    p.add_argument(
        "sources", nargs="+", metavar="SOURCE",
        help="a study's output directory, representation directories or hub ids",
    )
    p.add_argument(
        "--model",
        help="base model (hub id, local directory, 'tiny' or 'tiny-causal'; default: the "
        "base the representations were trained on; a study of several bases needs it, "
        "naming one of its models)",
    )
    p.add_argument(
        "--default", dest="defaults", action="append", default=[], metavar="TASK=CONFIGURATION",
        help="the configuration a request for TASK gets when it names none (repeatable; "
        "default: a study's best on the target, else slp+ta, la+ta, slp+stp, la+stp, ta, "
        "stp, base, the first the sources have)",
    )
    p.add_argument(
        "--host", default=DEFAULT_HOST,
        help=f"address to bind (default {DEFAULT_HOST}: this machine only; 0.0.0.0 "
        "listens on every interface)",
    )
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, metavar="PORT",
        help=f"port (default {DEFAULT_PORT}; 0: a free one, printed at start)",
    )
    g = p.add_argument_group("batching and limits")
    g.add_argument("--max-batch-size", type=int, default=32, metavar="N",
                   help="rows per model call at most (default 32; 1 = one at a time)")
    g.add_argument("--max-wait-ms", type=float, default=10.0, metavar="MS",
                   help="how long the oldest waiting row waits for batch mates (default 10)")
    g.add_argument("--max-queue", type=int, default=1024, metavar="N",
                   help="rows waiting at most; more get 503 + Retry-After (default 1024)")
    g.add_argument("--max-inputs", type=int, default=64, metavar="N",
                   help="inputs per request at most (default 64)")
    g.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, metavar="BYTES",
                   help="bytes of one request body at most, however it is sent; more get 413 "
                   f"(default {DEFAULT_MAX_BODY}, 8 MiB)")
    g.add_argument("--max-body-total", type=int, default=None, metavar="BYTES",
                   help="bytes of the request bodies being read at once at most; a body that "
                   "would pass it gets 503 + Retry-After (default 4 x --max-body)")
    g.add_argument("--graceful-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="seconds to let requests in flight finish at shutdown (default 60)")
    p.add_argument("--log-level", default="info",
                   choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn's log level (default info)")
    p.add_argument(
        "--trust-remote-code", action="store_true",
        help="with --model: allow a hub model to run its own Python code when loading (off by "
        "default)",
    )
    add_extension_options(p)
    p.set_defaults(func=run)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (so --port 0 can print the port it got)."""
    from langtransfer.errors import LangTransferError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        raise LangTransferError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    from langtransfer.errors import LangTransferError

    try:
        import uvicorn

        from langtransfer.serving.app import create_app
    except ImportError as e:
        raise LangTransferError(
            f"langtransfer serve needs the serve extra ({e.name} is missing): "
            "pip install 'langtransfer[serve]'"
        ) from None
    from langtransfer.serving.batcher import BatchSettings
    from langtransfer.serving.predictor import Predictor

    try:
        settings = BatchSettings(args.max_batch_size, args.max_wait_ms, args.max_queue)
    except ValueError as e:
        raise LangTransferError(str(e).replace("max_", "--max-").replace("_", "-")) from None
    if not 1 <= args.max_inputs <= args.max_queue:
        raise LangTransferError(
            f"--max-inputs must be in 1..--max-queue ({args.max_queue}), got {args.max_inputs}"
        )
    if args.max_body < 1:
        raise LangTransferError(f"--max-body must be >= 1, got {args.max_body}")
    if args.max_body_total is not None and args.max_body_total < args.max_body:
        raise LangTransferError(f"--max-body-total must be >= --max-body ({args.max_body}), "
                                f"got {args.max_body_total}")
    defaults = {}
    for item in args.defaults:
        task, sep, configuration = item.partition("=")
        if not sep or not task or not configuration:
            raise LangTransferError(f"--default takes TASK=CONFIGURATION, got {item!r}")
        defaults[task] = configuration
    # The sources' own base (no --model) is always loaded with remote code off.
    if args.trust_remote_code and args.model is None:
        raise LangTransferError(
            "--trust-remote-code applies to the base --model names; pass --model too"
        )
    model = args.model
    if model is not None:
        from langtransfer.composition.loaded_base import LoadedBase

        model = LoadedBase.load(model, trust_remote_code=args.trust_remote_code)
    predictor = Predictor.load(
        args.sources, model=model, batch_size=args.max_batch_size, defaults=defaults
    )
    app = create_app(predictor, settings, max_inputs=args.max_inputs, max_body=args.max_body,
                     max_body_total=args.max_body_total)
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"langtransfer serve: listening on http://{shown}:{port} (docs: /docs)", flush=True)
    config = uvicorn.Config(
        app, log_level=args.log_level, timeout_graceful_shutdown=args.graceful_timeout,
    )
    # uvicorn handles SIGINT/SIGTERM (stop accepting, finish what is in flight, drain the
    # batcher) and then raises the signal again: SIGTERM, the usual way to stop a service,
    # then ends here with exit code 0 instead of killing the process after the fact.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except _Stopped:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("langtransfer serve: stopped", file=sys.stderr, flush=True)
    return 0


class _Stopped(Exception):
    """SIGTERM after uvicorn's graceful shutdown."""


def _stopped(signum: int, frame: object) -> None:
    raise _Stopped
