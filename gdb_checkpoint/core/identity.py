"""Name the program a core or a process runs: its build-id, read from its own mapped ELF headers.

Works the same on a core's bytes and on a live process's memory (given a read function), so a
core and an inferior are compared by one rule. No gdb, no file I/O of its own."""


from ..errors import BadCoreError
from ..model import ProgramIdentity
from . import elf

AT_PHDR, AT_PHENT, AT_PHNUM, AT_ENTRY = 3, 4, 5, 9


def identity_from_memory(read, auxv, files, fallback_path=None) -> ProgramIdentity:
    """read(addr, n) -> bytes or None; auxv (key, value) pairs; files: FileMapping sequence."""
    values = dict(auxv)
    phdr_at, phnum = values.get(AT_PHDR), values.get(AT_PHNUM)
    path = _path_at(files, values.get(AT_ENTRY) or phdr_at) or fallback_path
    build_id = None
    if phdr_at and phnum and values.get(AT_PHENT, elf.PHDR64.size) == elf.PHDR64.size and phnum < 4096:
        table = read(phdr_at, phnum * elf.PHDR64.size)
        if table is not None:
            build_id = _build_id(read, table, phdr_at, phnum)
    return ProgramIdentity(path=path, build_id=build_id)


def _path_at(files, addr):
    if addr is None:
        return None
    for f in files:
        if f.start <= addr < f.end:
            return f.path
    return None


def _build_id(read, table, phdr_at, phnum):
    phdrs = [elf.PHDR64.unpack_from(table, i * elf.PHDR64.size) for i in range(phnum)]
    bias = None
    for ptype, _, _, vaddr, *_ in phdrs:
        if ptype == elf.PT_PHDR:
            bias = phdr_at - vaddr
    if bias is None:
        return None
    for ptype, _, _, vaddr, _, filesz, _, _ in phdrs:
        if ptype == elf.PT_NOTE and 0 < filesz <= 1 << 16:
            data = read(bias + vaddr, filesz)
            if data is None:
                continue
            try:
                found = elf.build_id_from_notes(data, 0, len(data), "program notes")
            except BadCoreError:
                continue      # a damaged note in memory: fall back to the path
            if found:
                return found
    return None


def identity_of_file(path: str) -> ProgramIdentity:
    """The build-id of an ELF executable on disk (for tests and for programs not yet started)."""
    with open(path, "rb") as f:
        data = f.read()
    hdr = elf.read_header(data, path)
    for p in elf.read_phdrs(data, hdr, path):
        if p.type == elf.PT_NOTE:
            found = elf.build_id_from_notes(data, p.offset, p.filesz, path)
            if found:
                return ProgramIdentity(path=path, build_id=found)
    return ProgramIdentity(path=path)
