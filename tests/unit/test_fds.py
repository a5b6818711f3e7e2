"""Descriptors at restore: which offsets are moved back, and kcmp telling an inherited open file
from the same file opened again. Runs without gdb, on a child of this test's process."""

import os
import signal
import types

from gdb_checkpoint import checkpoints, ptrace
from gdb_checkpoint.model import FdInfo


def test_an_inherited_open_file_is_shared_and_the_same_file_opened_again_is_not(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"")
    inherited = os.open(path, os.O_WRONLY)
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:
        again = os.open(path, os.O_WRONLY)          # same file, an open file of its own
        os.write(ready_w, again.to_bytes(4, "little"))
        signal.pause()
        os._exit(0)
    try:
        again = int.from_bytes(os.read(ready_r, 4), "little")
        assert ptrace.shares_open_file(child, inherited, os.getpid())
        assert not ptrace.shares_open_file(child, again, os.getpid())
        os.lseek(inherited, 123, os.SEEK_SET)        # one offset: the child's moved too
        with open(f"/proc/{child}/fdinfo/{inherited}") as f:
            assert "pos:\t123" in f.read()
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        for fd in (inherited, ready_r, ready_w):
            os.close(fd)


def test_a_restore_moves_back_offsets_but_not_of_a_file_gdb_writes_too(tmp_path):
    log, data = tmp_path / "log", tmp_path / "data"
    for p in (log, data):
        p.write_bytes(b"x" * 100)
    saved = types.SimpleNamespace(fds=(FdInfo(1, str(log), 10, 0o1), FdInfo(3, str(data), 20, 0o2),
                                       FdInfo(4, str(data), 30, 0o2)))
    now = {1: FdInfo(1, str(log), 90, 0o1), 3: FdInfo(3, str(data), 50, 0o2),
           4: FdInfo(4, str(data), 30, 0o2)}
    target = types.SimpleNamespace(fd_state=now.get, fd_shared_with_debugger=lambda fd: fd == 1)
    seeks, kept = checkpoints._fd_actions(target, saved, "c")
    assert ([fd.fd for fd in seeks], kept) == ([3], (1,))       # 4 is where it was
    report = checkpoints.RestoreReport("c", 4096, 1, 1, 0, 0, 1, 0.01, kept=kept)
    assert "1 file offset reset, the offset of descriptor 1 left alone" in report.summary()
