"""The package's layers (docs/development.md): imports only go down, there are no import
cycles, and no module reaches into another's private names. Read from the source, so
the check costs no imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "langtransfer"

#: Bottom to top. A module may import its own layer and the ones below.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations", ("__init__", "errors", "io", "jsonl", "configurations", "languages",
                     "quiet", "options", "profiles")),
    ("the base model", ("base",)),
    ("representations", ("representations",)),
    ("composition", ("composition",)),
    ("task data", ("tasks",)),
    ("training", ("training",)),
    ("inference", ("inference",)),
    # the results store (and failed artefacts' records) sits below the report that reads it
    ("results", ("results",)),
    ("the report", ("report",)),
    ("the study", ("study",)),
    # Serving reads a study's output and predicts with its representations; the HTTP
    # server sits on the predictor, its batcher needs only the standard library.
    ("serving", ("serving",)),
    ("the CLI", ("cli", "__main__")),
]


def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, type_only: bool = False) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``langtransfer`` import that runs, at module level or
    inside functions; with ``type_only``, also those under ``if TYPE_CHECKING``."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node) and not type_only:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names if a.name.startswith("langtransfer"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("langtransfer"):
            found.append((node.module or "", [a.name for a in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def graph(type_only: bool = False) -> dict[str, set[str]]:
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for target, names in imports(path, type_only):
            rel = target.removeprefix("langtransfer").removeprefix(".") or "__init__"
            candidates = [f"{rel}.{n}" for n in names if f"{rel}.{n}" in mods] or [rel]
            for c in candidates:
                while c not in mods and "." in c:
                    c = c.rpartition(".")[0]
                # A module's own package (its __init__) is not a dependency of it.
                if c in mods and c != mod and not mod.startswith(c + "."):
                    edges[mod].add(c)
    return edges


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    for i, (_, members) in enumerate(LAYERS):
        if top in members:
            return i
    raise AssertionError(f"module {module} is in no layer: add it to LAYERS and the docs")


def test_the_package_root_holds_only_foundations():
    """Every concept above the foundations lives in its own package (folder)."""
    root = {m for m in modules() if "." not in m and (SRC / f"{m}.py").is_file()}
    assert root - set(LAYERS[0][1]) - {"__main__"} == set()


def test_type_only_imports_are_seen():
    """The cycle check reads ``if TYPE_CHECKING:`` imports (study.jobs types its
    arguments with study.config's classes)."""
    assert "study.config" in graph(type_only=True)["study.jobs"]
    assert "study.config" not in graph()["study.jobs"]


def test_every_module_has_a_layer():
    for module in modules():
        layer_of(module)


def test_imports_only_go_down_the_layers():
    wrong = [
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
        for m, targets in graph().items()
        for t in targets
        if layer_of(t) > layer_of(m)
    ]
    assert wrong == []


def test_no_import_cycles():
    """Type-only imports count: a cycle through one is a cycle in the design."""
    edges = graph(type_only=True)
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [node, nxt]))
            elif nxt not in state:
                walk(nxt, path + [node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            walk(node, [])
    assert cycles == []


def test_the_cycle_check_finds_a_cycle(monkeypatch):
    """The checker itself: a two-module cycle is reported."""
    fake = {"a": {"b"}, "b": {"a"}}
    monkeypatch.setattr(__import__(__name__), "graph", lambda type_only=False: fake)
    with pytest.raises(AssertionError, match="a -> b -> a|b -> a -> b"):
        test_no_import_cycles()


def test_no_private_name_is_used_across_modules():
    """``from langtransfer.x import _y`` or ``x._y(...)`` on another module of ours."""
    mods = modules()
    wrong = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("langtransfer"):
                wrong += [f"{mod} imports {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
                aliases.update({a.asname or a.name: a.name for a in node.names})
            elif isinstance(node, ast.Import):
                aliases.update({(a.asname or a.name).split(".")[0]: a.name for a in node.names
                                if a.name.startswith("langtransfer")})
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in aliases):
                wrong.append(f"{mod} uses {node.value.id}.{node.attr}")
    assert wrong == []
