"""The public surface of core/, model/ and attacks/ is typed: every public function and method there
has annotations on its parameters and its return, and mypy (settings in pyproject.toml) finds the
package consistent with them."""

import ast
import os
import subprocess
import sys

import pytest

from linfool.core import paths

pytestmark = pytest.mark.fast
PACKAGES = ("core", "model", "attacks")


def _public_functions(tree):
    """(name, node) of the module-level functions and the public classes' methods, not _private."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            yield node.name, node
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                    yield f"{node.name}.{item.name}", item


def test_every_public_function_is_annotated():
    missing = []
    for package in PACKAGES:
        for path in sorted((paths.ROOT / "python" / "linfool" / package).glob("*.py")):
            for name, node in _public_functions(ast.parse(path.read_text())):
                args = [a for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs] if a.arg != "self"]
                args += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
                if node.returns is None or any(a.annotation is None for a in args if a.arg != "cls"):
                    missing.append(f"{path.relative_to(paths.ROOT)}:{node.lineno} {name}")
    assert not missing, "not annotated: " + ", ".join(missing)


def test_mypy_finds_the_typed_packages_consistent(tmp_path):
    # its cache in the tree, or in tmp_path where the tree is read-only (the Docker image run as a user)
    cache = paths.ROOT / ".mypy_cache" if os.access(paths.ROOT, os.W_OK) else tmp_path
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--cache-dir", str(cache)],
        cwd=paths.ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
