"""dirty.Injector backed by gdb: syscall() called in the selected thread of the inferior.

One of the modules that import gdb. It runs calls in the program and must leave no trace of
them: gdb puts the registers back after each call, and where this gdb ptraces the process the
kernel's register sets are compared and written back too (gdb 13 misplaces AVX-512 state on some
CPUs: FACTS, "Registers"); errno is put back here (see syscall)."""

import os

import gdb

from . import ptrace
from .dirty import MAP_PRIVATE_ANON, PROT_RW, TrackingError, syscall_numbers


class GdbInjector:
    """Runs syscalls in the selected thread of `inferior` (which must be the selected inferior)
    with every other thread held still. A breakpoint the user put in syscall() or
    __errno_location() would stop the call halfway: gdb 13 can't be told to unwind then."""

    def __init__(self, inferior=None):
        self.inferior = inferior or gdb.selected_inferior()
        self.numbers = syscall_numbers()
        self._sizes = {}            # scratch address -> length
        self._errno = {}            # (lwp, thread pointer) -> address of that thread's errno

    def syscall(self, nr: int, *args: int) -> int:
        """The call's result, or -errno when it fails (errno in the program stays as it was).

        syscall() sets errno only when it fails; then the old value is written back, so a
        program stopped between `r = f(); if (r < 0) use(errno)` sees no difference."""
        if gdb.selected_inferior().num != self.inferior.num:
            raise TrackingError(f"inferior {self.inferior.num} is not the selected one: select it "
                                f"(`inferior {self.inferior.num}`) to track or scan it")
        with _CallSettings(), _RegistersKept(self.inferior.pid):
            where = self._errno_address()
            saved = self.read(where, 4) if where else None
            r = self._eval("syscall", (nr, *args))
            if r != -1:
                return r
            if where is None:
                return -1
            err = int.from_bytes(self.read(where, 4), "little", signed=True)
            self.write(where, saved)
            return -err if err > 0 else -1

    def alloc(self, size: int) -> int:
        addr = self.syscall(self.numbers["mmap"], 0, size, PROT_RW, MAP_PRIVATE_ANON, -1, 0)
        if addr < 0:
            raise TrackingError(f"process {self.inferior.pid} can't map {size} bytes of scratch "
                                f"memory: {os.strerror(-addr)}")
        self._sizes[addr] = size
        return addr

    def free(self, addr: int) -> None:
        self.syscall(self.numbers["munmap"], addr, self._sizes.pop(addr))

    def read(self, addr: int, length: int) -> bytes:
        return self.inferior.read_memory(addr, length).tobytes()

    def write(self, addr: int, data: bytes) -> None:
        self.inferior.write_memory(addr, bytes(data))

    def _errno_address(self):
        """Where the selected thread's errno lives (one inferior call per thread, then cached;
        the thread pointer is in the key because an LWP number can come back as a new thread)."""
        thread = gdb.selected_thread()
        if thread is None:
            raise TrackingError("no thread is selected: dirty tracking needs a stopped thread")
        key = (thread.ptid, _thread_pointer())
        if key not in self._errno:
            try:
                self._errno[key] = self._eval("__errno_location", ()) or None
            except TrackingError:
                self._errno[key] = None     # no libc errno (static or libc-free program)
        return self._errno[key]

    def _eval(self, function, args) -> int:
        """(long)function(args...) called in the program; ints are passed as long."""
        expr = f"(long){function}(" + ", ".join(f"{int(a)}L" for a in args) + ")"
        try:
            return int(gdb.parse_and_eval(expr))
        except gdb.error as e:
            raise TrackingError(f"can't call {function}() in process {self.inferior.pid}: "
                                f"{e}") from None


def _thread_pointer():
    for reg in ("$fs_base", "$tpidr"):
        try:
            return int(gdb.parse_and_eval(reg))
        except gdb.error:
            continue
    return None


class _RegistersKept:
    """The selected thread's register sets as the kernel has them, put back on exit if gdb's
    restore after an inferior call left them different. Only for a process this gdb ptraces."""
    KINDS = ("xstate", "fpregs", "gregs")       # xstate holds fpregs' state: write it first

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        self.saved = {}
        if not ptrace.traced_by_us(self.pid):
            return
        self.lwp = gdb.selected_thread().ptid[1] or self.pid
        for kind in self.KINDS:
            try:
                self.saved[kind] = ptrace.get_regset(self.lwp, kind)
            except OSError:
                pass        # no XSAVE on this CPU

    def __exit__(self, *exc):
        changed = False
        for kind, data in self.saved.items():
            if ptrace.get_regset(self.lwp, kind) != data:
                ptrace.set_regset(self.lwp, kind, data)
                changed = True
        if changed:
            gdb.execute("maintenance flush register-cache", to_string=True)


class _CallSettings:
    """For the duration: only the calling thread runs (scheduler-locking), and a signal during a
    call unwinds it instead of leaving the program inside syscall(); then the user's settings."""
    SETTINGS = {"scheduler-locking": "on", "unwindonsignal": "on"}

    def __enter__(self):
        self.old = {name: gdb.parameter(name) for name in self.SETTINGS}
        for name, value in self.SETTINGS.items():
            gdb.execute(f"set {name} {value}", to_string=True)

    def __exit__(self, *exc):
        for name, value in self.old.items():
            if isinstance(value, bool):
                value = "on" if value else "off"
            gdb.execute(f"set {name} {value}", to_string=True)
