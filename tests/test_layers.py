"""The layering rules: data flows spec -> registry -> components -> model -> pipeline.

Nothing in charseq imports its built-in plugins (they arrive through entry points, as any
plugin does), the CLI (a shell over the API) or the conformance kit (for plugin authors).
"""

import ast
from pathlib import Path

import pytest

import charseq
from charseq import hookspecs

PACKAGE = Path(charseq.__file__).parent
DOCS = PACKAGE.parent / "docs"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


CORE = [
    p
    for p in PACKAGE.rglob("*.py")
    if p.relative_to(PACKAGE).parts[0] not in {"builtins", "cli", "testing", "__main__.py"}
]


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_core_does_not_import_builtins_cli_or_testing(path):
    forbidden = {"charseq.builtins", "charseq.cli", "charseq.testing"}
    bad = {m for m in _imports(path) if any(m == f or m.startswith(f + ".") for f in forbidden)}
    assert not bad, f"{path.name} imports {bad}"


def test_every_hook_is_documented_in_the_reference():
    page = (DOCS / "reference" / "plugins.md").read_text("utf-8")
    for hook in hookspecs.HOOKS.values():
        assert hook in page, f"hook {hook} is missing from docs/reference/plugins.md"
        assert getattr(hookspecs, hook).__doc__, f"hook {hook} has no docstring"
