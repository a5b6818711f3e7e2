"""Decode the notes of a Linux core into model values: threads, process info, auxv, files, layout.

Each decoder checks its descriptor's size first; a short or malformed note is a BadCoreError."""

import json
import struct

from ..errors import BadCoreError
from ..model import FileMapping, ThreadState

NT_PRSTATUS, NT_FPREGSET, NT_PRPSINFO, NT_AUXV = 1, 2, 3, 6
NT_SIGINFO = 0x53494749
NT_FILE = 0x46494C45
NT_X86_XSTATE = 0x202
NT_X86_XSAVE_LAYOUT = 0x205      # Linux >= 6.12: (feature, size, offset, flags) per component
NT_GDB_TDESC = 0xFF000000
OWNER_CORE, OWNER_LINUX, OWNER_GDB = b"CORE", b"LINUX", b"GDB"
OWNER_OURS = b"GDBCKPT"          # our exports carry this note, so we know who wrote them


class NoteCollector:
    """Accumulates the notes of one core in order; per-thread regsets follow their NT_PRSTATUS."""

    def __init__(self, arch, buf, what):
        self.arch, self.buf, self.what = arch, buf, what
        self.threads = []            # dicts, turned into ThreadState at the end
        self.pid = None
        self.fname = None
        self.auxv = ()
        self.files = ()
        self.layout = None
        self.owners = set()
        self.ours = {}           # our export's JSON note: program path and build-id

    def add(self, note):
        self.owners.add(note.name)
        desc = self.buf[note.offset:note.offset + note.size]
        key = (note.name, note.type)
        if key == (OWNER_CORE, NT_PRSTATUS):
            self._prstatus(desc)
        elif key == (OWNER_CORE, NT_FPREGSET):
            self._regset("fpregs", desc, exact=self.arch.fpregs_size)
        elif key == (OWNER_LINUX, NT_X86_XSTATE):
            self._regset("xstate", desc, minimum=576)
        elif key == (OWNER_CORE, NT_SIGINFO):
            # gdb writes one per thread; the kernel one, for the thread that took the signal.
            self._regset("siginfo", desc, exact=128)
        elif key == (OWNER_CORE, NT_PRPSINFO):
            self._prpsinfo(desc)
        elif key == (OWNER_CORE, NT_AUXV):
            self.auxv = _auxv(desc, self.what)
        elif key == (OWNER_CORE, NT_FILE):
            self.files = _nt_file(desc, self.what)
        elif key == (OWNER_LINUX, NT_X86_XSAVE_LAYOUT):
            self.layout = _xsave_layout(desc, self.what)
        elif key == (OWNER_OURS, 1):
            self.ours = _our_note(desc)

    def _prstatus(self, desc):
        lay = self.arch.prstatus
        if len(desc) < lay.size:
            raise BadCoreError(f"{self.what}: NT_PRSTATUS note of {len(desc)} bytes, expected {lay.size}")
        lwp = struct.unpack_from("<i", desc, lay.pid_offset)[0]
        signo = struct.unpack_from("<H", desc, lay.cursig_offset)[0]
        gregs = bytes(desc[lay.regs_offset:lay.regs_offset + self.arch.gregs_size])
        self.threads.append({"lwp": lwp, "gregs": gregs, "signo": signo})

    def _regset(self, field, desc, exact=None, minimum=None):
        if not self.threads:
            raise BadCoreError(f"{self.what}: a register note comes before any NT_PRSTATUS")
        if (exact and len(desc) != exact) or (minimum and len(desc) < minimum):
            raise BadCoreError(f"{self.what}: {field} note of thread {self.threads[-1]['lwp']} "
                               f"has {len(desc)} bytes")
        self.threads[-1][field] = bytes(desc)

    def _prpsinfo(self, desc):
        lay = self.arch.prpsinfo
        if len(desc) < lay.size:
            raise BadCoreError(f"{self.what}: NT_PRPSINFO note of {len(desc)} bytes, expected {lay.size}")
        self.pid = struct.unpack_from("<i", desc, lay.pid_offset)[0]
        raw = bytes(desc[lay.fname_offset:lay.fname_offset + 16]).split(b"\0")[0]
        self.fname = raw.decode("utf-8", "replace") or None

    def producer(self) -> str:
        if OWNER_OURS in self.owners:
            return "gdb-checkpoint"
        if OWNER_GDB in self.owners:
            return "gdb"
        return "kernel"

    def thread_states(self):
        return tuple(ThreadState(**t) for t in self.threads)


def _auxv(desc, what):
    if len(desc) % 16:
        raise BadCoreError(f"{what}: NT_AUXV note of {len(desc)} bytes is not a whole number of entries")
    pairs = []
    for key, value in struct.iter_unpack("<QQ", desc):
        if key == 0:
            break
        pairs.append((key, value))
    return tuple(pairs)


def _nt_file(desc, what):
    """NT_FILE: count, page size, count x (start, end, offset), then count NUL-terminated names.

    The kernel and gdb both give offsets in pages of `page size` (gdb's comment says so too)."""
    if len(desc) < 16:
        raise BadCoreError(f"{what}: NT_FILE note of {len(desc)} bytes is too short")
    count, page = struct.unpack_from("<QQ", desc, 0)
    names_at = 16 + 24 * count
    if count > len(desc) // 24 or names_at > len(desc):
        raise BadCoreError(f"{what}: NT_FILE note claims {count} files in {len(desc)} bytes")
    names = bytes(desc[names_at:]).split(b"\0")[:-1]     # each name ends in NUL: drop what follows the last
    if len(names) < count:
        raise BadCoreError(f"{what}: NT_FILE note has {count} files but {len(names)} names")
    out = []
    for i in range(count):
        start, end, off = struct.unpack_from("<QQQ", desc, 16 + 24 * i)
        out.append(FileMapping(start, end, off * page, names[i].decode("utf-8", "surrogateescape")))
    return tuple(out)


def _our_note(desc):
    """The JSON of our exports' note; an unreadable one is ignored (it only adds the build-id)."""
    try:
        doc = json.loads(bytes(desc).rstrip(b" \0"))
        return doc if isinstance(doc, dict) else {}
    except ValueError:
        return {}


def _xsave_layout(desc, what):
    if len(desc) % 16:
        raise BadCoreError(f"{what}: XSAVE layout note of {len(desc)} bytes is malformed")
    return {feature: (offset, size) for feature, size, offset, _ in struct.iter_unpack("<IIII", desc)}
