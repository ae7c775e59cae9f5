"""The project's structure drawn from its imports: which room imports which, and the rules they keep.

    python scripts/architecture.py            # print the import table (markdown)
    python scripts/architecture.py --write    # refresh it in docs/architecture.md
    python scripts/architecture.py --check    # exit 1 if docs/architecture.md or a rule is out of date

A *room* is ``local_host`` (the runner package, never deployed), ``function_app``, each module of ``blueprints/``, each package of ``models/`` and each
module of ``shared/``. Imports are read with ``ast`` (nothing is imported or run), including the
ones inside functions, since a deferred import is still a dependency.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- imports:begin (scripts/architecture.py --write) -->", "<!-- imports:end -->"
LAYERS = ("local_host", "function_app", "blueprints", "shared", "models")  # "blueprints" alone is the package that finds them


def room_of_module(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] in ("function_app", "local_host"):
        return parts[0]
    if parts == ["blueprints"]:
        return "blueprints"  # the package itself: it discovers the blueprint modules
    if parts[0] in ("blueprints", "shared") and len(parts) > 1:
        return f"{parts[0]}/{parts[1]}"
    if parts[0] == "models" and len(parts) > 1:
        return f"models/{parts[1]}"
    return None


def room_of_file(path: Path) -> str | None:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = relative.parts
    if parts == ("function_app",) or parts[0] == "local_host":
        return parts[0]
    if parts == ("blueprints", "__init__"):
        return "blueprints"
    if len(parts) >= 2 and parts[0] in ("blueprints", "shared", "models") and parts[1] != "__init__":
        return f"{parts[0]}/{parts[1]}"
    return None


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            package = ROOT.joinpath(*node.module.split("."))
            found.update(f"{node.module}.{alias.name}" for alias in node.names  # submodules of a package
                         if (package / alias.name).is_dir() or (package / f"{alias.name}.py").exists())
    return found


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    files = [*sorted((ROOT / "local_host").glob("*.py")), ROOT / "function_app.py", *sorted((ROOT / "blueprints").glob("*.py")),
             *sorted((ROOT / "shared").glob("*.py")), *sorted((ROOT / "models").rglob("*.py"))]
    for path in files:
        room = room_of_file(path)
        if room is None:
            continue
        targets = {room_of_module(m) for m in imported_modules(path)}
        graph.setdefault(room, set()).update(t for t in targets if t and t != room)
    return graph


def declared_model_package(path: Path) -> str | None:
    """A blueprint's ``MODEL_PACKAGE = "name"`` (the model package it serves when its own name differs), read with ast."""
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "MODEL_PACKAGE" for t in node.targets):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return node.value.value
    return None


def served_models() -> dict[str, str]:
    """blueprint room -> the model room it may import: ``models/<its name>``, or the package it declares."""
    out = {}
    for path in sorted((ROOT / "blueprints").glob("*.py")):
        if path.stem != "__init__":
            out[f"blueprints/{path.stem}"] = f"models/{declared_model_package(path) or path.stem}"
    return out


def violations(graph: dict[str, set[str]]) -> list[str]:
    """The rules: models know nothing of HTTP or storage; shared serves blueprints, never the reverse; a blueprint
    imports its own model package only."""
    out = []
    served = served_models()
    for room, targets in graph.items():
        for target in sorted(targets):
            layer, other = room.split("/")[0], target.split("/")[0]
            if room in served and other == "models" and target not in (served[room], "models/errors"):
                out.append(f"{room} imports {target}: a blueprint imports only its own model package "
                           f"({served[room]}; another one is declared with MODEL_PACKAGE = \"name\")")
            if layer == "models" and other != "models" and target not in ("shared/dataset", "shared/capacity",
                                                                                "shared/cache"):
                out.append(f"{room} imports {target}: model code may use only the dataset type, the "
                           "compute budget and the byte-bounded caches (no HTTP, storage or settings)")
            if layer == "shared" and other in ("blueprints", "function_app", "local_host"):
                out.append(f"{room} imports {target}: shared code must not depend on a blueprint or the app")
            if layer == "shared" and other == "models" and target != "models/errors":
                out.append(f"{room} imports {target}: shared code may know only the models' error type")
            if layer == "models" and other == "models" and target != "models/errors" and room != "models/errors":
                out.append(f"{room} imports {target}: a model package does not import another one")
    return out


def table(graph: dict[str, set[str]]) -> str:
    lines = ["| room | imports (project rooms) |", "|---|---|"]
    order = {layer: i for i, layer in enumerate(LAYERS)}
    for room in sorted(graph, key=lambda r: (order[r.split("/")[0]], r)):
        lines.append(f"| `{room}` | {', '.join(f'`{t}`' for t in sorted(graph[room])) or '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="refresh the table in docs/architecture.md")
    parser.add_argument("--check", action="store_true", help="fail if the document or a rule is out of date")
    args = parser.parse_args(argv)
    graph = import_graph()
    generated = f"{BEGIN}\n{table(graph)}\n{END}"
    broken = violations(graph)
    text = DOC.read_text() if DOC.exists() else ""
    if args.write:
        if BEGIN not in text:
            print(f"{DOC} has no {BEGIN} marker", file=sys.stderr)
            return 2
        head, rest = text.split(BEGIN, 1)
        DOC.write_text(head + generated + rest.split(END, 1)[1])
    elif args.check:
        if generated not in text:
            print("docs/architecture.md does not match the imports: run scripts/architecture.py --write",
                  file=sys.stderr)
            return 1
    else:
        print(table(graph))
    for line in broken:
        print(f"rule broken: {line}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
