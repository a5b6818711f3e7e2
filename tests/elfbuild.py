"""Hand-made ELF cores for tests: a header, one PT_NOTE with the notes you choose, PT_LOAD segments.

Written from the ELF and Linux core specifications (elf.h, include/linux/elfcore.h), never from
gdb_checkpoint's own tables, so the reader can be checked against a second, independent writer.
Every field can be overridden, because the point is to make cores that are wrong in one way."""

import struct
from dataclasses import dataclass, field
from typing import Optional

EM_386, EM_X86_64, EM_AARCH64 = 3, 62, 183
ET_EXEC, ET_DYN, ET_CORE = 2, 3, 4
PT_LOAD, PT_NOTE = 1, 4
PF_X, PF_W, PF_R = 1, 2, 4
NT_PRSTATUS, NT_FPREGSET, NT_PRPSINFO, NT_AUXV = 1, 2, 3, 6
NT_FILE = 0x46494C45
NT_X86_XSTATE = 0x202
NT_X86_XSAVE_LAYOUT = 0x205

# x86-64 struct elf_prstatus: pr_cursig at 12, pr_pid at 32, pr_reg (27 words) at 112, 336 bytes.
PRSTATUS_SIZE, PR_CURSIG, PR_PID, PR_REG = 336, 12, 32, 112
USER_REGS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
             "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
             "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs")
# x86-64 struct elf_prpsinfo: pr_pid at 24, pr_fname[16] at 40, pr_psargs[80] at 56, 136 bytes.
PRPSINFO_SIZE, PRPS_PID, PRPS_FNAME = 136, 24, 40
FXSAVE_SIZE, FX_MXCSR = 512, 24


@dataclass
class Note:
    name: bytes
    type: int
    desc: bytes
    descsz: Optional[int] = None     # the size the header claims, when it should lie


@dataclass
class Load:
    vaddr: int
    data: bytes = b""
    memsz: Optional[int] = None      # defaults to len(data)
    flags: int = PF_R | PF_W
    filesz: Optional[int] = None     # defaults to len(data); may lie


@dataclass
class CoreSpec:
    notes: list = field(default_factory=list)
    loads: list = field(default_factory=list)
    machine: int = EM_X86_64
    elf_class: int = 2               # 1 = ELF32
    type: int = ET_CORE
    note_filesz: Optional[int] = None   # the PT_NOTE's p_filesz, when it should lie

    def bytes(self) -> bytes:
        return build(self)


def prstatus(lwp: int, regs: Optional[dict] = None, cursig: int = 0, size: int = PRSTATUS_SIZE) -> bytes:
    """An x86-64 NT_PRSTATUS descriptor; `regs` by user_regs_struct name, the rest zero."""
    buf = bytearray(max(size, PRSTATUS_SIZE))
    struct.pack_into("<H", buf, PR_CURSIG, cursig)
    struct.pack_into("<i", buf, PR_PID, lwp)
    regs = regs or {}
    struct.pack_into("<27Q", buf, PR_REG, *(regs.get(n, 0) for n in USER_REGS))
    return bytes(buf[:size])


def prpsinfo(pid: int, fname: bytes = b"prog") -> bytes:
    buf = bytearray(PRPSINFO_SIZE)
    struct.pack_into("<i", buf, PRPS_PID, pid)
    buf[PRPS_FNAME:PRPS_FNAME + 16] = fname[:16].ljust(16, b"\0")
    return bytes(buf)


def fpregset(mxcsr: int = 0x1F80) -> bytes:
    buf = bytearray(FXSAVE_SIZE)
    struct.pack_into("<I", buf, FX_MXCSR, mxcsr)
    return bytes(buf)


def minimal_x86_64(pid: int = 4242, **overrides) -> CoreSpec:
    """A well-formed x86-64 core: one thread, its FP registers, PRPSINFO, one writable segment."""
    notes = [Note(b"CORE", NT_PRSTATUS, prstatus(pid, {"rip": 0x401000, "rsp": 0x7ff000, "cs": 0x33,
                                                         "ss": 0x2B})),
             Note(b"CORE", NT_FPREGSET, fpregset()),
             Note(b"CORE", NT_PRPSINFO, prpsinfo(pid))]
    core = CoreSpec(notes=notes, loads=[Load(0x400000, b"\x11" * 0x1000, flags=PF_R | PF_X),
                                    Load(0x600000, b"\x22" * 0x2000)])
    for k, v in overrides.items():
        setattr(core, k, v)
    return core


def _align(n: int, a: int) -> int:
    return (n + a - 1) & ~(a - 1)


def note_bytes(notes) -> bytes:
    out = bytearray()
    for n in notes:
        name = n.name + b"\0"
        descsz = len(n.desc) if n.descsz is None else n.descsz
        out += struct.pack("<III", len(name), descsz, n.type)
        out += name.ljust(_align(len(name), 4), b"\0")
        out += n.desc.ljust(_align(len(n.desc), 4), b"\0")
    return bytes(out)


def build(core: CoreSpec) -> bytes:
    is64 = core.elf_class == 2
    ehsize, phentsize = (64, 56) if is64 else (52, 32)
    phnum = 1 + len(core.loads)
    notes = note_bytes(core.notes)
    note_off = ehsize + phnum * phentsize
    data_off = _align(note_off + len(notes), 4096)
    phdrs, blobs, at = [], [], data_off
    note_filesz = len(notes) if core.note_filesz is None else core.note_filesz
    phdrs.append((PT_NOTE, 0, note_off, 0, note_filesz, 0, 1))
    for seg in core.loads:
        filesz = len(seg.data) if seg.filesz is None else seg.filesz
        memsz = len(seg.data) if seg.memsz is None else seg.memsz
        phdrs.append((PT_LOAD, seg.flags, at, seg.vaddr, filesz, memsz, 4096))
        blobs.append((at, seg.data))
        at = _align(at + len(seg.data), 4096)
    ident = b"\x7fELF" + bytes([core.elf_class, 1, 1, 0]) + b"\0" * 8
    if is64:
        head = struct.pack("<16sHHIQQQIHHHHHH", ident, core.type, core.machine, 1, 0, ehsize, 0, 0,
                           ehsize, phentsize, phnum, 64, 0, 0)
        table = b"".join(struct.pack("<IIQQQQQQ", t, f, o, v, 0, fs, ms, al)
                         for t, f, o, v, fs, ms, al in phdrs)
    else:
        head = struct.pack("<16sHHIIIIIHHHHHH", ident, core.type, core.machine, 1, 0, ehsize, 0, 0,
                           ehsize, phentsize, phnum, 40, 0, 0)
        table = b"".join(struct.pack("<IIIIIIII", t, o, v, 0, fs, ms, f, al)
                         for t, f, o, v, fs, ms, al in phdrs)
    out = bytearray(head + table + notes)
    out += b"\0" * (data_off - len(out))
    for offset, data in blobs:
        out[len(out):] = b"\0" * (offset - len(out))
        out += data
    return bytes(out)
