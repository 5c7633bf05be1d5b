"""``langtransfer languages``: list the language registry."""

from __future__ import annotations

import argparse
import json

from langtransfer.cli.common import add_extension_options
from langtransfer.languages import all_languages

COLUMNS = (
    ("code", "code"),
    ("name", "name"),
    ("script", "script"),
    ("family", "family"),
    ("source", "source"),
    ("wikipedia_config", "wikipedia config"),
    ("instruction", "instruction"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "languages",
        help="list the known languages (code, name, script, family, Wikipedia config)",
        description=(
            "List the language registry: the paper's 16 languages and any added with "
            "--languages-file. 'source' marks the languages the paper trains tasks in."
        ),
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    add_extension_options(p, tasks=False)
    p.add_argument(  # the older name of --languages-file
        "--register", metavar="FILE", action="append", dest="languages_files",
        help="the same as --languages-file",
    )
    p.set_defaults(func=run)


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else ""
    return str(value)


def format_table(rows: list[dict[str, object]]) -> str:
    """Rows as a plain aligned text table with the registry's columns."""
    cells = [[header for _, header in COLUMNS]]
    cells += [[_cell(row[key]) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rows = [lang.to_dict() for lang in all_languages()]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print(format_table(rows))
    return 0
