"""Private files and folders (0600/0700), directory fsync, and flock-based store locks.

Knows nothing of packs, chunks or SQLite; callers decide what to lock and when."""

import contextlib
import fcntl
import os
import time

from .errors import StoreError


def make_private_dir(path) -> None:
    """Create `path` (and missing parents) with the leaf at mode 0700; leave an existing one alone."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not os.path.isdir(path):
            raise StoreError(f"checkpoint store {path} exists and is not a folder") from None
        return
    os.chmod(path, 0o700)       # mkdir's mode is filtered by the umask; make it exact
    fsync_dir(parent)


def open_private(path, flags: int) -> int:
    """os.open with O_CLOEXEC; a file it creates gets mode 0600 whatever the umask."""
    fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
    if flags & os.O_CREAT and os.fstat(fd).st_mode & 0o777 != 0o600:
        os.fchmod(fd, 0o600)
    return fd


def touch_private(path) -> None:
    os.close(open_private(path, os.O_CREAT | os.O_RDWR))


def fsync_dir(path) -> None:
    """Make a file's creation, rename or removal in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def try_flock(fd: int, exclusive: bool, timeout: float) -> bool:
    """flock `fd`, polling for up to `timeout` seconds; False if it stayed busy."""
    op = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, op)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


@contextlib.contextmanager
def store_lock(path, *, exclusive: bool, timeout: float, required: bool = True):
    """Hold the store-wide lock file: shared for saves and reads, exclusive for compaction.

    Yields True when held; when busy past `timeout`, raises StoreError if `required`, else yields False."""
    # A fresh descriptor each time: flock locks belong to the open file, so this
    # never silently converts a lock some other code path holds.
    fd = open_private(path, os.O_CREAT | os.O_RDWR)
    try:
        held = try_flock(fd, exclusive, timeout)
        if not held and required:
            raise StoreError(f"checkpoint store {os.path.dirname(path)} is busy "
                             f"(another gdb is compacting it); try again")
        yield held
    finally:
        os.close(fd)            # closing releases the lock
