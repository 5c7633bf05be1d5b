"""The commands the docs show use flags their verb has (a renamed or dropped flag fails)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from langtransfer.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"),
               *(REPO / "examples").glob("*/README.md")])


def verb_options() -> dict[str, set[str]]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return {name: {o for a in p._actions for o in a.option_strings}
            for name, p in sub.choices.items()}


def commands(text: str, verbs: set[str]):
    """(line number, verb, its flags) of every `langtransfer VERB ...` in the text, up to
    the end of its code span, a comment or a shell operator."""
    pattern = re.compile(r"langtransfer (" + "|".join(map(re.escape, verbs)) + r")\b([^`#|>\n]*)")
    for n, line in enumerate(text.splitlines(), 1):
        for m in pattern.finditer(line):
            yield n, m.group(1), re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", m.group(2))


def test_the_extractor_sees_flags_and_stops_at_comments():
    text = ("x `langtransfer study a.yaml --dry-run` y --nope\n"
            "langtransfer report runs/x --quiet  # --not-a-flag")
    found = list(commands(text, {"study", "report"}))
    assert found == [(1, "study", ["--dry-run"]), (2, "report", ["--quiet"])]
    # what the README once said: train-task takes --data, not train-language's --corpus
    ((_, verb, flags),) = commands("langtransfer train-task --corpus fixture", {"train-task"})
    assert flags == ["--corpus"] and "--corpus" not in verb_options()[verb]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_documented_flag_is_one_its_verb_takes(doc):
    options = verb_options()
    wrong = [f"{doc.name}:{n}: langtransfer {verb} {flag}"
             for n, verb, flags in commands(doc.read_text(encoding="utf-8"), set(options))
             for flag in flags if flag not in options[verb]]
    assert not wrong, "flags the verb does not take:\n" + "\n".join(wrong)


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_and_anchor_resolves():
    headings = {doc: {slug(h) for h in re.findall(r"^#+ (.*)$", doc.read_text(encoding="utf-8"),
                                                    re.M)} for doc in DOCS}
    broken = []
    for doc in DOCS:
        for link in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", link):
                continue
            path, _, anchor = link.partition("#")
            target = (doc.parent / path).resolve() if path else doc
            if not target.exists():
                broken.append(f"{doc.name}: {link} (no such file)")
            elif anchor and target.suffix == ".md" and anchor not in headings.get(target, ()):
                broken.append(f"{doc.name}: {link} (no such heading)")
    assert not broken, "\n".join(broken)
    assert slug("The paper's grid") == "the-papers-grid"
    assert slug("Study axes: initialisation, instruction, corpus size") == \
        "study-axes-initialisation-instruction-corpus-size"
