"""Only commands/, gdbtarget.py and gdbinject.py talk to gdb; every other module imports and runs without it.

Read from the source (AST), then proven by importing every module in a Python where `import gdb`
fails, so a lazy or indirect import of gdb can't hide."""

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gdb_checkpoint"
ALLOWED = ("commands/", "gdbtarget.py", "gdbinject.py")   # the gdb-facing layer


def modules():
    """(dotted name, path relative to the package) of every module of gdb_checkpoint."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        parts = ["gdb_checkpoint", *rel[:-3].split("/")]
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), rel))
    return out


def imports_gdb(path: Path) -> list:
    """Line numbers where `path` imports gdb: import gdb[.x], from gdb[.x] import, or by name."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")):
            names = [str(node.args[0].value)]
        else:
            continue
        if any(n == "gdb" or n.startswith("gdb.") for n in names):
            lines.append(node.lineno)
    return lines


def test_only_commands_and_gdbtarget_import_gdb():
    offenders = {rel: imports_gdb(PACKAGE / rel) for _, rel in modules()
                 if not rel.startswith(ALLOWED)}
    assert {rel: lines for rel, lines in offenders.items() if lines} == {}


def test_the_scan_sees_the_imports_that_are_there():
    assert imports_gdb(PACKAGE / "gdbtarget.py")
    assert any(imports_gdb(PACKAGE / rel) for _, rel in modules() if rel.startswith("commands/"))


BLOCK_GDB = """
import importlib, json, sys, traceback

class NoGdb:
    def find_spec(self, name, path=None, target=None):
        if name == "gdb" or name.startswith("gdb."):
            raise ImportError("gdb is not available outside gdb")

sys.meta_path.insert(0, NoGdb())
failed = {}
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except Exception:
        failed[name] = traceback.format_exc(limit=-2)
print(json.dumps(failed))
"""


def test_every_other_module_imports_without_gdb():
    names = [name for name, rel in modules() if not rel.startswith(ALLOWED)]
    assert "gdb_checkpoint.plan" in names and "gdb_checkpoint.core.reader" in names
    proc = subprocess.run([sys.executable, "-c", BLOCK_GDB, json.dumps(names)],
                          capture_output=True, text=True, timeout=60, cwd=PACKAGE.parent)
    assert proc.returncode == 0, proc.stderr
    failed = json.loads(proc.stdout)
    assert failed == {}, "\n".join(f"{n}:\n{tb}" for n, tb in failed.items())


def test_the_gdb_modules_really_need_gdb():
    """The blocker above works: the modules that import gdb fail to import under it."""
    proc = subprocess.run([sys.executable, "-c", BLOCK_GDB, json.dumps(["gdb_checkpoint.gdbtarget"])],
                          capture_output=True, text=True, timeout=60, cwd=PACKAGE.parent)
    assert "gdb_checkpoint.gdbtarget" in json.loads(proc.stdout)
