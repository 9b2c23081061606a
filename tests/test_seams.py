"""Static checks of the seams between the layers (issue 11): what each piece of code may know.

- Hints of the lower layers and the jobs name no command: the step that fixes an error travels
  as an ``Action`` that the CLI turns into a (quoted) command and the GUI into a step to open.
- Image files are read through ``personalize.video.read_image`` (``cv2.imread`` cannot open
  non-ASCII paths on Windows); a file's sha256 through ``personalize.fileio.sha256_file``.
- ``bench/`` imports the installed packages only: no test helpers, no ``sys.path`` changes.
"""
from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("personalize", "optimize", "editing", "studio")


def _modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _strings_outside_docstrings(tree: ast.AST) -> list[ast.Constant]:
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings]


def test_hints_outside_the_cli_name_no_commands():
    files = _modules("personalize", "optimize", "editing", "studio/jobs") + [ROOT / "studio" / "project.py"]
    found = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in files
             for node in _strings_outside_docstrings(ast.parse(path.read_text()))
             if "studio-cli" in node.value]
    assert not found, f"hints that name a command (raise an Action instead): {found}"


def _calls(tree: ast.AST, attr: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == attr]


def test_images_are_read_by_read_image_only():
    found = [f"{path.relative_to(ROOT)}:{call.lineno}" for path in _modules(*PACKAGES, "bench")
             for call in _calls(ast.parse(path.read_text()), "imread")]
    assert not found, f"cv2.imread (use personalize.video.read_image): {found}"


def test_one_file_hash_helper():
    """Only ``fileio.sha256_file`` reads a file into a sha256 (the weights' installer hashes a
    stream while it copies it, in the same pass: a copy, not a hash helper)."""
    allowed = {("personalize/fileio.py", "sha256_file"), ("studio/weights/store.py", "install_stream")}
    found = []
    for path in _modules(*PACKAGES):
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, ast.FunctionDef) and _calls(fn, "sha256") and _calls(fn, "read"):
                if (path.relative_to(ROOT).as_posix(), fn.name) not in allowed:
                    found.append(f"{path.relative_to(ROOT)}:{fn.name}")
    assert not found, f"another sha256-of-a-file helper: {found}"


def test_benchmarks_import_only_the_packages():
    for path in _modules("bench"):
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                    for alias in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom) and n.module}
        assert "tests" not in imported, path.name
        path_edits = [c.lineno for c in _calls(tree, "insert") + _calls(tree, "append")
                      if isinstance(c.func.value, ast.Attribute) and c.func.value.attr == "path"]
        assert not path_edits, f"{path.name} changes sys.path at lines {path_edits}"
        # run as a script, bench/ comes first on sys.path: a file named like a package would hide it
        assert path.stem not in PACKAGES, f"bench/{path.name} hides the {path.stem} package when a bench runs"
