"""The import graph inside a package: lines and import lines per module, the longest chain, any cycles.

    python tools/import_graph.py [--package corevad_stream] [--top 10]

Edges are module-level imports between the package's own modules (imports inside functions are lazy:
listed apart, not part of the chain). The longest chain is the longest path of module-level imports.
"""

from __future__ import annotations

import argparse
import ast
import functools
import sys
from pathlib import Path


def _modules(root: Path, package: str) -> dict[str, Path]:
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_pkg: bool, level: int, name: str | None) -> str:
    base = module.split(".")
    if not is_pkg:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports(mods: dict[str, Path]) -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, int]]:
    """(module-level edges, lazy edges, import lines) per module, edges restricted to the package."""
    top: dict[str, set[str]] = {m: set() for m in mods}
    lazy: dict[str, set[str]] = {m: set() for m in mods}
    lines: dict[str, int] = {}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_pkg = path.name == "__init__.py"
        module_level = {id(n) for n in tree.body}
        count = 0
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            count += id(node) in module_level
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                src = _resolve(mod, is_pkg, node.level, node.module) if node.level else (node.module or "")
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in mods else src for a in node.names]
            else:
                targets = [a.name for a in node.names]
            for t in targets:
                if t in mods and t != mod:
                    (top if id(node) in module_level else lazy)[mod].add(t)
        lines[mod] = count
    return top, lazy, lines


def longest_chain(edges: dict[str, set[str]]) -> list[str]:
    @functools.cache
    def chain(m: str, seen: frozenset[str]) -> tuple[str, ...]:
        best: tuple[str, ...] = ()
        for n in sorted(edges[m]):
            if n in seen:
                continue  # a cycle: reported separately
            c = chain(n, seen | {n})
            if len(c) > len(best):
                best = c
        return (m, *best)

    return list(max((chain(m, frozenset({m})) for m in edges), key=len, default=()))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                found.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", default="corevad_stream")
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args(argv)
    mods = _modules(args.root, args.package)
    top, _lazy, import_lines = imports(mods)
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in mods.items()}
    print(f"{'module':40s} {'lines':>6s} {'import lines':>13s} {'imports (package)':>18s}")
    for m in sorted(sizes, key=lambda k: -sizes[k])[: args.top]:
        print(f"{m:40s} {sizes[m]:6d} {import_lines[m]:13d} {len(top[m]):18d}")
    chain = longest_chain(top)
    print(f"longest module-level import chain ({len(chain)} modules): " + " -> ".join(chain))
    loops = cycles(top)
    print("import cycles: " + ("none" if not loops else "; ".join(" -> ".join(c) for c in loops)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
