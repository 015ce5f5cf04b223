"""Counts of the code's shape (issue 20's targets): functions over 100 lines, internal functions with more than 15
parameters (public entry points' keyword options excepted: a public function's keyword-only parameters are not
counted), and the Python call sites of ``solver.step(`` / ``solver.attempt(`` outside ``sdekit/solvers``.

Run from the repository root: ``python scripts/shape_count.py`` (prints each offender, then the three counts).
"""

from __future__ import annotations

import ast
import pathlib
import re

ROOT = pathlib.Path("src/sdekit")


def main():
    long, wide, calls = [], [], []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 100:
                    long.append(f"{path}:{node.lineno} {node.name} {lines} lines")
                a = node.args
                n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
                internal = node.name.startswith("_") and not node.name.endswith("__")
                if not internal:  # a public entry point's keyword options (parameters with defaults) are excepted
                    n -= len(a.kwonlyargs) + len(a.defaults)
                if n > 15:
                    wide.append(f"{path}:{node.lineno} {node.name} {n} parameters")
        if "solvers" not in path.parts:
            for i, line in enumerate(text.splitlines(), 1):
                if re.search(r"solver\.(step|attempt)\(", line):
                    calls.append(f"{path}:{i} {line.strip()}")
    for group in (long, wide, calls):
        for line in group:
            print(line)
    print(f"functions over 100 lines: {len(long)}; internal functions over 15 parameters: {len(wide)}; "
          f"solver.step/attempt call sites outside solvers/: {len(calls)}")  # fmt: skip


if __name__ == "__main__":
    main()
