"""The ``langtransfer`` command line: one module per verb in this package.

Each verb module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed namespace and returning an exit code. Errors the
user can fix (:class:`~langtransfer.errors.LangTransferError`) print one line, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from langtransfer import __version__
from langtransfer.errors import LangTransferError

# Verb modules, in the order --help lists them.
VERBS = [
    "languages",
    "train_language",
    "train_task",
    "evaluate",
    "score",
    "study",
    "report",
    "serve",
    "import_peft",
    "export_peft",
    "convert_peft",
    "demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="langtransfer",
        description=(
            "Cross-lingual transfer with soft language prompts and adapters on a frozen "
            "multilingual model (Vykopal et al., NAACL 2025). Train a language "
            "representation per language on unlabelled text, a task representation on "
            "source-language data, and swap the language representation at test time."
        ),
    )
    parser.add_argument("--version", action="version", version=f"langtransfer {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in VERBS:
        importlib.import_module(f"langtransfer.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from langtransfer.cli.common import load_extension_options

        load_extension_options(args)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not as a traceback at exit
        return code
    except LangTransferError as e:
        print(f"langtransfer {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"langtransfer {args.verb}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`langtransfer study X --dry-run | head`): stop quietly, as
        # other command-line tools do. Python would report the failed flush of stdout at
        # exit; pointing stdout at /dev/null leaves it nothing to flush.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it


if __name__ == "__main__":
    sys.exit(main())
