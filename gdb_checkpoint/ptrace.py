"""PTRACE_GETREGSET / PTRACE_SETREGSET and PTRACE_SETSIGMASK through ctypes, for the process that
traces the threads; and kcmp, which tells whether two processes share an open file.

gdb 13 reads and writes AVX-512 state at wrong offsets on some CPUs (FACTS), so register sets go
to the kernel directly. Must run in the tracer (gdb's main thread); no gdb import here."""

import ctypes
import os

PTRACE_GETREGSET, PTRACE_SETREGSET = 0x4204, 0x4205
PTRACE_SETSIGMASK = 0x420b          # Linux >= 3.11
NT_PRSTATUS, NT_PRFPREG, NT_X86_XSTATE = 1, 2, 0x202
REGSETS = {"gregs": NT_PRSTATUS, "fpregs": NT_PRFPREG, "xstate": NT_X86_XSTATE}
MAX_REGSET = 1 << 16


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_KCMP = {"x86_64": 312, "aarch64": 272}     # syscall numbers
KCMP_FILE = 0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long


# The tracer's one buffer for register sets: only gdb's main thread calls these. A buffer made per
# call with ctypes.cast() pointing at it was a reference cycle, 64 KiB each, freed only by the
# collector, and each new size of SETREGSET buffer a new ctypes array type, freed the same way.
_BUF = ctypes.create_string_buffer(MAX_REGSET)


def get_regset(lwp: int, kind: str) -> bytes:
    """The kernel's current register set `kind` of thread `lwp`, at the kernel's own size."""
    iov = _Iovec(ctypes.addressof(_BUF), MAX_REGSET)
    _call(PTRACE_GETREGSET, lwp, REGSETS[kind], iov)
    return ctypes.string_at(_BUF, min(iov.len, MAX_REGSET))


def set_regset(lwp: int, kind: str, data: bytes) -> None:
    if len(data) > MAX_REGSET:
        raise ValueError(f"a register set of {len(data)} bytes is bigger than any the kernel has")
    ctypes.memmove(_BUF, bytes(data), len(data))
    iov = _Iovec(ctypes.addressof(_BUF), len(data))
    _call(PTRACE_SETREGSET, lwp, REGSETS[kind], iov)


def set_sigmask(lwp: int, mask: int) -> None:
    """Set the signals thread `lwp` blocks (the kernel leaves SIGKILL and SIGSTOP out)."""
    blocked = ctypes.c_uint64(mask & (1 << 64) - 1)
    ctypes.set_errno(0)
    if _libc.ptrace(PTRACE_SETSIGMASK, lwp, ctypes.sizeof(blocked), ctypes.byref(blocked)) == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"ptrace SETSIGMASK of thread {lwp}: {os.strerror(err)}")


def _call(request, lwp, note_type, iov):
    ctypes.set_errno(0)
    if _libc.ptrace(request, lwp, note_type, ctypes.byref(iov)) == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"ptrace {'GET' if request == PTRACE_GETREGSET else 'SET'}REGSET "
                           f"{note_type:#x} of thread {lwp}: {os.strerror(err)}")


def traced_by_us(pid: int) -> bool:
    """True when this process is the ptrace tracer of `pid` (so the calls above can work)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return int(line.split()[1]) == os.getpid()
    except OSError:
        return False
    return False


def shares_open_file(pid: int, fd: int, other: int) -> bool:
    """Whether descriptor `fd` of process `pid` is the very open file (one offset) that one of process
    `other`'s descriptors is: what a child inherits. False where the kernel can't tell (no kcmp)."""
    number = _KCMP.get(os.uname().machine)
    if number is None:
        return False
    try:
        theirs = [int(name) for name in os.listdir(f"/proc/{other}/fd")]
    except OSError:
        return False
    args = [ctypes.c_long(v) for v in (number, pid, other, KCMP_FILE, fd)]
    return any(_libc.syscall(*args, ctypes.c_long(mine)) == 0 for mine in theirs)
