"""ELF headers, program headers and note records, checked against the buffer they come from.

Pure struct over any bytes-like object (an mmap of the file): never reads past the end, never
trusts a count or an offset before comparing it with the size; every defect is a BadCoreError."""

import struct
from dataclasses import dataclass

from ..errors import BadCoreError

ELFMAG = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB = 1
ET_EXEC, ET_DYN, ET_CORE = 2, 3, 4
PT_LOAD, PT_NOTE, PT_PHDR = 1, 4, 6
EHDR64 = struct.Struct("<16sHHIQQQIHHHHHH")     # 64 bytes
PHDR64 = struct.Struct("<IIQQQQQQ")             # 56 bytes
NHDR = struct.Struct("<III")
MAX_PHNUM = 0xFFFF           # e_phnum == PN_XNUM needs section 0; we refuse rather than guess
MAX_NOTE_BYTES = 64 << 20    # a core's notes are kilobytes; refuse absurd sizes before looping

MACHINE_NAMES = {3: "i386", 40: "ARM", 62: "x86-64", 183: "AArch64", 243: "RISC-V"}
TYPE_NAMES = {0: "no file type", 1: "a relocatable object", 2: "an executable",
              3: "a shared object or PIE executable", 4: "a core file"}


@dataclass(frozen=True)
class Header:
    elf_class: int
    machine: int
    type: int
    phoff: int
    phentsize: int
    phnum: int


@dataclass(frozen=True)
class Phdr:
    index: int
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


@dataclass(frozen=True)
class Note:
    name: bytes      # without the terminating NUL
    type: int
    offset: int      # of the descriptor, in the buffer
    size: int


def read_header(buf, what: str) -> Header:
    """The ELF identification and header of `buf`; `what` names the file in errors."""
    size = len(buf)
    if size == 0:
        raise BadCoreError(f"{what}: file is empty")
    if bytes(buf[:4]) != ELFMAG[:min(size, 4)] or size < 4:
        raise BadCoreError(f"{what}: not an ELF file (no ELF magic at byte 0)")
    if size < 16:
        raise BadCoreError(f"{what}: ELF header truncated ({size} of 64 bytes)")
    elf_class, data = buf[4], buf[5]
    if elf_class not in (ELFCLASS32, ELFCLASS64):
        raise BadCoreError(f"{what}: unknown ELF class {elf_class}")
    if data != ELFDATA2LSB:
        raise BadCoreError(f"{what}: big-endian ELF files are not supported")
    if elf_class == ELFCLASS32:
        # Enough of the 32-bit header to name the machine in a clear refusal.
        if size < 52:
            raise BadCoreError(f"{what}: ELF header truncated ({size} of 52 bytes)")
        etype, machine = struct.unpack_from("<HH", buf, 16)
        return Header(ELFCLASS32, machine, etype, 0, 0, 0)
    if size < EHDR64.size:
        raise BadCoreError(f"{what}: ELF header truncated ({size} of {EHDR64.size} bytes)")
    (_, etype, machine, _, _, phoff, _, _, _, phentsize, phnum, _, _, _) = EHDR64.unpack_from(buf, 0)
    return Header(ELFCLASS64, machine, etype, phoff, phentsize, phnum)


def read_phdrs(buf, hdr: Header, what: str) -> list:
    """All program headers of a 64-bit ELF, each checked to lie inside the file."""
    size = len(buf)
    if hdr.phnum == 0:
        raise BadCoreError(f"{what}: no program headers")
    if hdr.phentsize != PHDR64.size:
        raise BadCoreError(f"{what}: program header size is {hdr.phentsize}, expected {PHDR64.size}")
    table_end = hdr.phoff + hdr.phnum * PHDR64.size
    if hdr.phoff < EHDR64.size or table_end > size:
        raise BadCoreError(f"{what}: program header table [{hdr.phoff}, {table_end}) lies outside "
                           f"the file ({size} bytes); the file is truncated or corrupt")
    out = []
    for i in range(hdr.phnum):
        ptype, flags, offset, vaddr, _, filesz, memsz, _ = PHDR64.unpack_from(buf, hdr.phoff + i * PHDR64.size)
        if ptype in (PT_LOAD, PT_NOTE) and offset + filesz > size:
            raise BadCoreError(f"{what}: program header {i} ends at byte {offset + filesz}, past the "
                               f"end of the file ({size}); the file is truncated")
        if ptype == PT_LOAD and (filesz > memsz or vaddr + memsz > 1 << 64):
            raise BadCoreError(f"{what}: program header {i} has {filesz} bytes in the file but covers "
                               f"{memsz} bytes of memory at {vaddr:#x}")
        out.append(Phdr(i, ptype, flags, offset, vaddr, filesz, memsz))
    return out


def iter_notes(buf, start: int, size: int, what: str):
    """Yield the Note records of the note area [start, start+size) of `buf`, bounds-checked."""
    if size > MAX_NOTE_BYTES:
        raise BadCoreError(f"{what}: note segment of {size} bytes is implausibly large")
    pos, end = start, start + size
    while pos < end:
        if end - pos < NHDR.size:
            raise BadCoreError(f"{what}: note header at byte {pos} is cut off by the end of its segment")
        namesz, descsz, ntype = NHDR.unpack_from(buf, pos)
        name_at = pos + NHDR.size
        desc_at = name_at + _align4(namesz)
        next_at = desc_at + _align4(descsz)
        if desc_at + descsz > end:
            raise BadCoreError(f"{what}: note at byte {pos} (type {ntype:#x}) claims {descsz} bytes, "
                               f"past the end of its segment at byte {end}")
        name = bytes(buf[name_at:name_at + namesz]).rstrip(b"\0")
        yield Note(name, ntype, desc_at, descsz)
        pos = next_at


def _align4(n: int) -> int:
    return (n + 3) & ~3


def build_id_from_notes(buf, start: int, size: int, what: str):
    """Hex NT_GNU_BUILD_ID from a note area, or None."""
    for note in iter_notes(buf, start, size, what):
        if note.name == b"GNU" and note.type == 3 and 0 < note.size <= 64:
            return bytes(buf[note.offset:note.offset + note.size]).hex()
    return None
