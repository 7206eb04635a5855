"""Every module and script can run as a program: nothing follows its last ``__main__`` guard.

A name defined after ``if __name__ == "__main__": sys.exit(main())`` exists when the module is
imported (as the tests import it) but not when it runs as ``python -m`` (main() runs first),
which is how the docs run it: the persistence benchmark once failed that way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "taxdata").rglob("*.py"), *(ROOT / "scripts").glob("*.py")])


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__"
                    for c in node.test.comparators))


def test_the_sources_hold_programs():
    guarded = [p for p in SOURCES if any(map(_is_main_guard, ast.parse(p.read_text()).body))]
    assert len(guarded) >= 8  # the four scripts and the benchmarks at least: the check checks


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_follows_the_last_main_guard(path):
    body = ast.parse(path.read_text(encoding="utf-8")).body
    guards = [i for i, node in enumerate(body) if _is_main_guard(node)]
    if guards:
        after = body[guards[-1] + 1:]
        assert after == [], f"line {after[0].lineno} follows the __main__ guard" if after else ""
