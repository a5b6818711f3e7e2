"""The Target backed by gdb's current inferior: /proc and ptrace for a local process, gdb's API otherwise.

With commands/ and gdbinject.py, the only code that imports gdb. Local processes take the fast
path (process_vm_writev or /proc/PID/mem, PTRACE_SETREGSET, /proc for facts); remote ones go
through inferior.write_memory and `set $reg`."""

import os
import re

import gdb

from . import dirty, procmem, ptrace
from .gdbinject import GdbInjector
from .arch import by_machine, by_name, cpuid, xsave
from .core.identity import identity_from_memory
from .errors import CheckpointError, TargetError
from .model import FdInfo, FileMapping, ProcessState, ProgramIdentity, ThreadState
from .plan import LiveProcess
from .target import gather, parse_maps, piece

CHUNK = 16 << 20            # FACTS: one huge write is 4x slower than 64 KiB-16 MiB chunks
# Registers gdb can set on any target; selectors are left alone (gdb can't set them remotely).
GDB_SETTABLE = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
                "r12", "r13", "r14", "r15", "rip", "eflags", "fs_base", "gs_base")


def running(inferior=None):
    """Whether the (selected) inferior is a live process: a core file gdb reads has a pid too."""
    inferior = inferior or gdb.selected_inferior()
    conn = getattr(inferior, "connection", None)
    return bool(inferior.pid) and (conn is None or conn.type != "core")


class GdbTarget:
    """The selected inferior; `local` when this gdb ptraces it on this machine."""

    def __init__(self, inferior):
        self.inferior = inferior
        self.pid = inferior.pid
        conn = getattr(inferior, "connection", None)
        native = conn is None or conn.type == "native"
        self.local = (native and os.environ.get("GDB_CHECKPOINT_TRANSPORT") != "gdb"
                      and ptrace.traced_by_us(self.pid))
        self._mem_fd = None
        self._live = None
        self._injector = None

    @classmethod
    def current(cls):
        inferior = gdb.selected_inferior()
        if not running(inferior):
            raise TargetError("The program is not being run.")
        return cls(inferior)

    # -- facts for the planner -------------------------------------------------------------
    def live(self) -> LiveProcess:
        if self._live is None:
            self._live = self._gather()
        return self._live

    def refresh(self) -> None:
        """Forget the gathered facts: the process's mappings changed (an inferior call made some)."""
        self._live = None

    def _gather(self) -> LiveProcess:
        arch_name = self.inferior.architecture().name()
        threads = sorted(self.inferior.threads(), key=lambda t: t.num)
        for t in threads:
            if not t.is_stopped():
                raise TargetError(f"Thread {t.num} is running; interrupt it first (all threads "
                                  f"must be stopped)")
        lwps = tuple(t.ptid[1] or t.ptid[0] for t in threads)
        main = [lwp for lwp in lwps if lwp == self.pid] + [lwp for lwp in lwps if lwp != self.pid]
        maps = self._maps()
        layout, selectors = None, None
        if self.local and by_name(arch_name):
            live_x = self.get_regset(self.pid, "xstate")
            layout = cpuid.xsave_layout(xsave.xcr0(live_x)) if live_x else {}
            regs = by_name(arch_name).unpack_gregs(self.get_regset(self.pid, "gregs"))
            selectors = {"cs": regs["cs"], "ss": regs["ss"]}
        return LiveProcess(pid=self.pid, arch_name=arch_name, maps=maps, lwps=tuple(main),
                           identity=self._identity(maps), xsave_layout=layout, selectors=selectors,
                           brk=self._brk(maps))

    def _brk(self, maps):
        """The program break, or None where it can't be read: the end of the [heap] mapping (the
        break rounded up to a page), else start_brk from /proc/PID/stat (field 47), where the
        heap would begin. The break itself is in no file of /proc."""
        if not self.local:
            return None
        heap = [m.end for m in maps if m.path == "[heap]"]
        if heap:
            return heap[-1]
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[44])      # fields[0] is field 3 (state)
        except (OSError, IndexError, ValueError):
            return None

    def _maps(self):
        if self.local:
            with open(f"/proc/{self.pid}/maps") as f:
                return parse_maps(f.read())
        try:
            text = gdb.execute("info proc mappings", to_string=True)
        except gdb.error as e:
            raise TargetError(f"can't read the memory map of process {self.pid}: {e}") from None
        lines = [line for line in text.splitlines() if line.strip().startswith("0x")]
        return parse_maps("\n".join(_gdb_maps_line(line) for line in lines))

    def _auxv(self):
        with open(f"/proc/{self.pid}/auxv", "rb") as f:
            raw = f.read()
        return tuple((int.from_bytes(raw[i:i + 8], "little"), int.from_bytes(raw[i + 8:i + 16], "little"))
                     for i in range(0, len(raw) - 15, 16))

    def _identity(self, maps) -> ProgramIdentity:
        if self.local:
            files = [FileMapping(m.start, m.end, m.offset, m.path) for m in maps if m.path.startswith("/")]
            ident = identity_from_memory(self._read, self._auxv(), files)
            if ident.build_id or ident.path:
                return ident
        return loaded_program()

    def _read(self, addr, length):
        try:
            return os.pread(self._fd(), length, addr)
        except OSError:
            return None

    def capture(self, hidden_fds=()) -> ProcessState:
        """The whole state of the stopped process but its memory bytes (read those with read_memory).

        Of a remote process (gdbserver), what gdb can tell: the memory map, general registers and
        auxv; no FP/vector registers, signal masks, brk, descriptors or cwd."""
        live = self.live()
        if not self.local:
            return ProcessState(pid=self.pid, arch_name=live.arch_name, program=live.identity, maps=live.maps,
                                threads=tuple(ThreadState(lwp, self.get_regset(lwp, "gregs")) for lwp in live.lwps),
                                auxv=_gdb_auxv())
        threads = tuple(ThreadState(lwp, self.get_regset(lwp, "gregs"), self.get_regset(lwp, "fpregs"),
                                    self.get_regset(lwp, "xstate"), sigmask=_sigmask(self.pid, lwp))
                        for lwp in live.lwps)
        return ProcessState(pid=self.pid, arch_name=live.arch_name, program=live.identity, maps=live.maps,
                            threads=threads, brk=live.brk, auxv=self._auxv(),
                            fds=tuple(_fds(self.pid, hidden_fds)), cwd=_readlink(f"/proc/{self.pid}/cwd"),
                            xsave_layout=live.xsave_layout, hidden_fds=tuple(hidden_fds),
                            cmdline=_cmdline(self.pid))

    def present(self, regions):
        """The pages of `regions` that exist (in memory or swap), or None where /proc can't tell."""
        if not self.local:
            return None
        try:
            return [run for lo, hi in regions for run in dirty.present_runs(self.pid, lo, hi)]
        except CheckpointError:
            return None

    def read_memory(self, addr: int, length: int):
        try:
            if self.local:
                return procmem.read(self.pid, self._fd(), addr, length)
            return self.inferior.read_memory(addr, length).tobytes()
        except (OSError, gdb.error) as e:
            raise TargetError(f"reading {length} bytes at {addr:#x} in process {self.pid} failed: "
                              f"{getattr(e, 'strerror', None) or e}") from None

    def read_many(self, ranges, into=None) -> list:
        """read_memory() of each (addr, length), in one system call for up to 1024 of them; into
        `into` when given (see procmem.read_many)."""
        if not self.local:
            return gather([self.read_memory(addr, length) for addr, length in ranges], into)
        try:
            return procmem.read_many(self.pid, self._fd(), ranges, into)
        except OSError as e:
            raise TargetError(f"reading {len(ranges)} ranges of memory in process {self.pid} "
                              f"failed: {e.strerror or e}") from None

    def concurrent_read_many(self):
        """read_many() for another thread to call while this one goes on with gdb (a local process:
        its reads are system calls, not gdb's), or None."""
        if not self.local:
            return None
        pid, fd = self.pid, self._fd()
        return lambda ranges, into=None: procmem.read_many(pid, fd, ranges, into)

    # -- carrying out a plan ---------------------------------------------------------------
    def write_many(self, items) -> None:
        """write_memory() of each (addr, data) or (addr, data, at, n) (target.piece), in one system
        call for up to 1024 of them."""
        if not self.local:
            for addr, data in map(piece, items):
                self.write_memory(addr, data)
            return
        try:
            procmem.write_many(self.pid, self._fd(), items)
        except OSError as e:
            raise TargetError(f"writing {len(items)} ranges of memory in process {self.pid} "
                              f"failed: {e.strerror or e}") from None

    def write_memory(self, addr: int, data) -> None:
        try:
            if self.local:
                procmem.write(self.pid, self._fd(), addr, data)
            else:
                self._write_with_gdb(addr, memoryview(data))
        except (OSError, gdb.error) as e:
            raise TargetError(f"writing {len(data)} bytes at {addr:#x} in process {self.pid} failed: "
                              f"{getattr(e, 'strerror', None) or e}") from None

    def _write_with_gdb(self, addr, data):
        # With gdb's stack and code caches on, every write_memory also updates them: measured
        # 115-140 MiB/s with them, ~1,800 MiB/s without (bench/restore.py).
        saved = {name: gdb.parameter(name) for name in ("stack-cache", "code-cache")}
        for name in saved:
            gdb.execute(f"set {name} off", to_string=True)
        try:
            for done in range(0, len(data), CHUNK):
                self.inferior.write_memory(addr + done, data[done:done + CHUNK])
        finally:
            for name, value in saved.items():
                gdb.execute(f"set {name} {'on' if value else 'off'}", to_string=True)

    def get_regset(self, lwp, kind):
        if not self.local:
            return self._gregs_with_gdb(lwp) if kind == "gregs" else None
        try:
            return ptrace.get_regset(lwp, kind)
        except OSError as e:
            if kind == "xstate":
                return None     # a CPU without XSAVE: FXSAVE (fpregs) is all there is
            raise TargetError(str(e)) from None

    def set_regset(self, lwp, kind, data):
        if self.local:
            try:
                ptrace.set_regset(lwp, kind, data)
            except OSError as e:
                raise TargetError(e.strerror or str(e)) from None
        elif kind == "gregs":
            self._set_with_gdb(lwp, data)

    def refused_regset(self, lwp, kind, data):
        """Why the kernel refuses register set `kind` = `data` for thread `lwp` (a bad fs_base or
        segment selector, say), or None: it is set and at once put back as it was. Elsewhere None."""
        if not self.local:
            return None
        was = ptrace.get_regset(lwp, kind)
        try:
            ptrace.set_regset(lwp, kind, data)
        except OSError as e:
            return os.strerror(e.errno) if e.errno else str(e)
        finally:
            ptrace.set_regset(lwp, kind, was)
        return None

    def set_sigmask(self, lwp, mask):
        """The signals thread `lwp` blocks; a remote target's stay as they are (ptrace is not ours)."""
        if self.local:
            try:
                ptrace.set_sigmask(lwp, mask)
            except OSError as e:
                raise TargetError(str(e)) from None

    def _gregs_with_gdb(self, lwp):
        """Thread `lwp`'s general registers as the kernel lays them out, read through gdb; a
        register gdb doesn't know on this target reads as 0."""
        arch = by_name(self.inferior.architecture().name())
        if arch is None:
            return None
        before = gdb.selected_thread()
        self._thread(lwp).switch()
        try:
            frame = gdb.newest_frame()
            values = {}
            for name in arch.gregs:
                try:
                    values[name] = int(frame.read_register(name))
                except ValueError:      # gdb: "Bad register"
                    values[name] = 0
        finally:
            before.switch()
        return arch.pack_gregs(values)

    def _thread(self, lwp):
        return {t.ptid[1] or t.ptid[0]: t for t in self.inferior.threads()}[lwp]

    def _set_with_gdb(self, lwp, data):
        arch = by_name(self.inferior.architecture().name()) or by_machine(62, 2)
        values = arch.unpack_gregs(data)
        before = gdb.selected_thread()
        self._thread(lwp).switch()
        try:
            for name in GDB_SETTABLE:
                gdb.execute(f"set ${name} = {values[name]:#x}", to_string=True)
        finally:
            before.switch()

    def create_memory(self, create):
        """Grow the heap or map anonymous pages, by calls the inferior makes (FACTS)."""
        if create.how == "brk":
            got = self.syscall("brk", create.end)
            if got < create.end:
                raise TargetError(f"can't grow the heap of process {self.pid} to {create.end:#x} "
                                  f"(the break stays at {got:#x})")
        else:
            flags = 0x02 | 0x20 | 0x100000      # MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE
            got = self.syscall("mmap", create.start, create.end - create.start, create.prot, flags, -1, 0)
            if got != create.start:
                if got > 0:     # an old kernel took NOREPLACE as a hint and mapped elsewhere
                    self.syscall("munmap", got, create.end - create.start)
                raise TargetError(f"can't map [{create.start:#x}, {create.end:#x}) in process "
                                  f"{self.pid}: {_why(got)}")
        self._live = None

    def protect_memory(self, protect):
        """Give [start, end) the protection `protect.prot`, by an mprotect the inferior makes."""
        got = self.syscall("mprotect", protect.start, protect.end - protect.start, protect.prot)
        if got != 0:
            raise TargetError(f"can't change the protection of [{protect.start:#x}, {protect.end:#x}) in "
                              f"process {self.pid}: {_why(got)}")
        self._live = None

    def undo_create(self, create):
        if create.how == "brk":
            self.syscall("brk", create.start)
        else:
            self.syscall("munmap", create.start, create.end - create.start)

    def remove_memory(self, unmap):
        if unmap.how == "brk":
            self.syscall("brk", unmap.start)
        else:
            got = self.syscall("munmap", unmap.start, unmap.end - unmap.start)
            if got != 0:
                raise TargetError(f"can't unmap [{unmap.start:#x}, {unmap.end:#x}) in process "
                                  f"{self.pid}: {_why(got)}")
        self._live = None

    def set_brk(self, brk):
        self.syscall("brk", brk)
        self._live = None               # the heap's mapping changed size

    def fd_state(self, fd):
        return _fd_info(self.pid, fd)

    def fd_shared_with_debugger(self, fd) -> bool:
        """Whether the process's descriptor `fd` is an open file of gdb's own (gdb's output
        redirected to a file, inherited by the program): its offset is gdb's too."""
        return self.local and ptrace.shares_open_file(self.pid, fd, os.getpid())

    def restore_fd(self, saved):
        """Give descriptor saved.fd its saved file and offset: reopen it if it changed, then lseek."""
        now = _fd_info(self.pid, saved.fd)
        if now is None or now.path != saved.path:
            flags = saved.flags & ~(0o100 | 0o200 | 0o1000)     # never O_CREAT, O_EXCL, O_TRUNC
            tmp = self._syscall_on_path("open", saved.path, flags, 0)
            if tmp < 0:
                raise TargetError(f"can't reopen {saved.path} as descriptor {saved.fd} in process "
                                  f"{self.pid}: {_why(tmp)}")
            if tmp != saved.fd:
                self.syscall("dup2", tmp, saved.fd)
                self.syscall("close", tmp)
        got = self.syscall("lseek", saved.fd, saved.pos, 0)
        if got != saved.pos:
            raise TargetError(f"can't move descriptor {saved.fd} of process {self.pid} to offset "
                              f"{saved.pos}: {_why(got)}")

    def cwd(self):
        """The process's working directory, or None where it can't be read (a remote target)."""
        return _readlink(f"/proc/{self.pid}/cwd") if self.local else None

    def set_cwd(self, path):
        """chdir(path) made by the program."""
        got = self._syscall_on_path("chdir", path)
        if got != 0:
            raise TargetError(f"can't change the working directory of process {self.pid} to {path}: {_why(got)}")

    def _syscall_on_path(self, name, path, *args):
        """syscall(name, path, *args) with the path in scratch memory of our own: a string literal
        would make gdb call malloc in the program, changing its heap."""
        inj = self.injector()
        raw = path.encode() + b"\0"
        scratch = inj.alloc(len(raw))
        try:
            inj.write(scratch, raw)
            return self.syscall(name, scratch, *args)
        finally:
            inj.free(scratch)

    def syscall(self, name, *args):
        """The system call `name` made by the inferior's selected thread, others held still:
        its result, or -errno (the program's errno is left as it was)."""
        inj = self.injector()
        return inj.syscall(inj.numbers[name], *args)

    def injector(self):
        if self._injector is None:
            self._injector = GdbInjector(self.inferior)
        return self._injector

    def flush(self):
        if self._mem_fd is not None:
            os.close(self._mem_fd)
            self._mem_fd = None
        # Memory and registers changed behind gdb's back: drop its caches so bt/x/p show them.
        gdb.execute("maintenance flush register-cache", to_string=True)
        gdb.execute("maintenance flush dcache", to_string=True)
        self._live = None

    def _fd(self):
        if self._mem_fd is None:
            self._mem_fd = os.open(f"/proc/{self.pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        return self._mem_fd


def loaded_program() -> ProgramIdentity:
    """The program gdb has loaded (`file`), named by its main objfile's build-id."""
    progspace = gdb.current_progspace()
    if not progspace.filename:
        raise TargetError('No program is loaded; use "file PROGRAM" first.')
    objfile = progspace.objfiles()[0] if progspace.objfiles() else None
    return ProgramIdentity(progspace.filename, objfile.build_id if objfile else None)


def _why(result):
    return os.strerror(-result) if result < 0 else f"it returned {result:#x}"


def _sigmask(pid, lwp):
    try:
        with open(f"/proc/{pid}/task/{lwp}/status") as f:
            for line in f:
                if line.startswith("SigBlk:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return None


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None


def _gdb_auxv():
    """The auxiliary vector as gdb reads it from any target ("info auxv"), or () where it can't."""
    try:
        text = gdb.execute("info auxv", to_string=True)
    except gdb.error:
        return ()
    pairs = []
    for line in text.splitlines():
        m = re.match(r"^(\d+)\s.*?\s(0x[0-9a-fA-F]+|\d+)(?:\s+\".*\")?\s*$", line)
        if m:
            pairs.append((int(m.group(1)), int(m.group(2), 0)))
    return tuple(pairs)


def _readlink(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def _fds(pid, hidden):
    """FdInfo of each open descriptor but ours, from /proc/PID/fd and /proc/PID/fdinfo."""
    try:
        names = sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return
    for fd in names:
        info = None if fd in hidden else _fd_info(pid, fd)
        if info is not None:
            yield info


def _fd_info(pid, fd):
    path = _readlink(f"/proc/{pid}/fd/{fd}")
    pos = flags = 0
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == "pos":
                    pos = int(value)
                elif key == "flags":
                    flags = int(value, 8)
    except (OSError, ValueError):
        return None         # closed while we looked
    return None if path is None else FdInfo(fd, path, pos, flags)


def _gdb_maps_line(line):
    """`info proc mappings` row -> /proc/PID/maps row (start-end perms offset dev inode path)."""
    f = line.split()
    start, end = f[0], f[1]
    perms = f[4] if len(f) > 4 and len(f[4]) == 4 else "rw-p"
    offset = f[3]
    path = " ".join(f[5:]) if len(f) > 5 else ""
    return f"{int(start, 16):x}-{int(end, 16):x} {perms} {int(offset, 16):x} 00:00 0 {path}"
