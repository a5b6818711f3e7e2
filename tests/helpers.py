"""Shared test helpers: compile the C programs under tests/programs and drive a real gdb on them."""

import os
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "tests" / "programs"
GDB = os.environ.get("GDB", "gdb")


def compile_c(name: str, out_dir: Path, *flags: str) -> Path:
    """Compile tests/programs/NAME.c into out_dir; returns the executable's path."""
    src = PROGRAMS / f"{name}.c"
    exe = Path(out_dir) / name
    subprocess.run(["gcc", "-g", "-O0", "-pthread", *flags, "-o", str(exe), str(src)],
                   check=True, capture_output=True, text=True)
    return exe


def _unlimited_core():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


MARK = "=== restored ==="
# The program's output goes to its own file, never through gdb's pipe: gdb's "[Thread ... exited]"
# lines would otherwise interleave with it. A marker appended to the same file splits before/after.
MARK_CMD = f'shell echo "{MARK}" >> "$PROG_OUT"'


def run_gdb(program, *commands, cwd=None, load=True, timeout=120, env=None, core_limit=False):
    """Run `gdb -nx -batch` on PROGRAM with each command as -ex; returns the CompletedProcess.

    With load=True the extension is loaded exactly as a user would (source gdbinit.py). A command
    that is exactly "run" becomes `run >> "$PROG_OUT"`, and the result's `.program` holds what the
    program printed (with MARK where MARK_CMD ran)."""
    args = [GDB, "-nx", "-batch", "-ex", "set pagination off", "-ex", "set confirm off"]
    if load:
        args += ["-ex", f"source {ROOT / 'gdbinit.py'}"]
    for c in commands:
        args += ["-ex", 'run >> "$PROG_OUT"' if c == "run" else c]
    if program is not None:
        args.append(str(program))
    fd, out_path = tempfile.mkstemp(prefix="program-", suffix=".out")
    os.close(fd)
    env = dict(env or os.environ, PROG_OUT=out_path)
    scratch = None
    if "GDB_CHECKPOINT_DIR" not in env:     # never the user's own store
        scratch = tempfile.mkdtemp(prefix="store-")
        env["GDB_CHECKPOINT_DIR"] = scratch
    try:
        result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL, env=env,
                                preexec_fn=_unlimited_core if core_limit else None)
        with open(out_path, errors="replace") as f:
            result.program = f.read()
    finally:
        os.unlink(out_path)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return result


def gdb_on(exe, store, *commands, **kwargs):
    """run_gdb with the checkpoint store in folder `store`."""
    env = {**os.environ, **kwargs.pop("env", {}), "GDB_CHECKPOINT_DIR": str(store)}
    return run_gdb(exe, *commands, env=env, **kwargs)


def restored_in_a_new_process(exe, tmp_path, save_at, stop_at):
    """Session 1 stops at `break SAVE_AT` and saves checkpoint `saved`; session 2 stops at `break
    STOP_AT`, restores it and runs to the end. Both programs print into one file. Returns session
    2's result and the program's lines after the restore."""
    store, log = tmp_path / "store", tmp_path / "out"
    first = gdb_on(exe, store, f"break {save_at}", f'run >> "{log}"', "checkpoint save saved", "kill")
    assert "Checkpoint saved saved" in first.stdout, first.stdout + first.stderr
    out = gdb_on(exe, store, f"break {stop_at}", f'run >> "{log}"', "checkpoint restore saved", "delete",
                 f'shell echo "{MARK}" >> "{log}"', "continue")
    return out, program_output(log.read_text(), after=MARK)


def compiled(tmp_path_factory, name, *flags):
    """(executable, its clean run's lines) for tests/programs/NAME.c, in a fresh folder."""
    exe = compile_c(name, tmp_path_factory.mktemp(name), *flags)
    return exe, clean_run(exe)


def program_output(text: str, after: str = None):
    """The program's own lines (they start with '| '), optionally only those after marker `after`."""
    if after is not None:
        if after not in text:
            raise AssertionError(f"marker {after!r} not in gdb's output:\n{text}")
        text = text.split(after, 1)[1]
    return [line for line in text.splitlines() if line.startswith("| ")]


def clean_run(exe, *args, env=None):
    """The program's output when run on its own: the oracle restored runs are compared with."""
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60, env=env)
    return program_output(proc.stdout)


def from_line(lines, prefix):
    """lines from the first one that starts with prefix."""
    for i, line in enumerate(lines):
        if line.startswith(prefix):
            return lines[i:]
    raise AssertionError(f"no line starts with {prefix!r} in {lines}")


@pytest.fixture
def workdir(tmp_path):
    return tmp_path


@pytest.fixture(scope="session")
def have_gdb():
    if shutil.which(GDB) is None:
        pytest.fail("gdb is not installed: the suite needs a real gdb")
    return GDB
