"""Checkpoints of a process gdb debugs through a real gdbserver: memory and general registers go
through gdb's remote protocol (no ptrace or /proc of ours), saves compare pages by hashing. The
oracle is counter.c's clean run; the program writes into a file of its own, beside gdbserver."""

import shutil
import socket
import subprocess

import pytest
from helpers import MARK, compiled, from_line, gdb_on, program_output

GDBSERVER = shutil.which("gdbserver")


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    return compiled(tmp_path_factory, "counter")


@pytest.fixture
def serve(tmp_path):
    """serve(exe, out) starts `gdbserver --once` on a free local port with the program's stdout
    appended to `out`, and gives the gdb command that connects to it."""
    assert GDBSERVER, "gdbserver is not installed: `make setup` installs it (Debian's package, as root)"
    servers = []

    def start(exe, out):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with open(out, "a") as f:
            servers.append(subprocess.Popen([GDBSERVER, "--once", f"127.0.0.1:{port}", str(exe)],
                                            stdout=f, stderr=subprocess.DEVNULL))
        return f"target remote 127.0.0.1:{port}"
    yield start
    for p in servers:
        p.kill()
        p.wait()


def test_save_and_restore_through_gdbserver(counter, tmp_path, serve):
    exe, clean = counter
    out = tmp_path / "out"
    gdb = gdb_on(exe, tmp_path / "store", serve(exe, out),
                 "break report if step == 3", "continue", "checkpoint save three", "delete",
                 "break report if step == 6", "continue", "checkpoint restore three", "print step",
                 "delete", f'shell echo "{MARK}" >> "{out}"', "continue")
    assert gdb.returncode == 0, gdb.stderr
    assert "Checkpoint three saved" in gdb.stdout and "Checkpoint before-restore saved" in gdb.stdout
    assert "Restored checkpoint three" in gdb.stdout, gdb.stdout + gdb.stderr
    assert "$1 = 3" in gdb.stdout
    assert program_output(out.read_text(), after=MARK) == from_line(clean, "| step  3")


def test_undo_a_remote_restore_and_save_again_by_hashing(counter, tmp_path, serve):
    """before-restore takes the process back to step 6; a save after more steps stores only what
    changed (found by hashing), and restoring it goes on like a clean run from there."""
    exe, clean = counter
    out = tmp_path / "out"
    gdb = gdb_on(exe, tmp_path / "store", serve(exe, out),
                 "break report if step == 3", "continue", "checkpoint save three", "delete",
                 "break report if step == 6", "continue", "checkpoint restore three",
                 "checkpoint restore before-restore", "print step", "delete",
                 "break report if step == 8", "continue", "checkpoint save eight", "delete",
                 "break report if step == 9", "continue", "checkpoint restore eight", "delete",
                 f'shell echo "{MARK}" >> "{out}"', "continue")
    assert gdb.returncode == 0, gdb.stderr
    assert "$1 = 6" in gdb.stdout, gdb.stdout + gdb.stderr
    lines = program_output(out.read_text())
    assert lines[:5] == clean[:5]           # steps 1-5, then (after before-restore) 6 on
    assert program_output(out.read_text(), after=MARK) == from_line(clean, "| step  8")


def test_a_remote_checkpoint_restored_in_a_later_session(counter, tmp_path, serve):
    exe, clean = counter
    store, out = tmp_path / "store", tmp_path / "out"
    first = gdb_on(exe, store, serve(exe, out), "break report if step == 4", "continue",
                   "checkpoint save four", "kill")
    assert "Checkpoint four saved" in first.stdout, first.stdout + first.stderr
    gdb = gdb_on(exe, store, serve(exe, out), "break report if step == 2", "continue",
                 "checkpoint restore four", "delete", f'shell echo "{MARK}" >> "{out}"', "continue")
    assert gdb.returncode == 0, gdb.stderr
    assert "Restored checkpoint four" in gdb.stdout, gdb.stdout + gdb.stderr
    assert program_output(out.read_text(), after=MARK) == from_line(clean, "| step  4")
