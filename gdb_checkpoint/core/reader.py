"""Open an ELF core, validate every header and bound, and expose it as a model.Core plus its bytes.

The file is mapped, never read whole: segment bytes are memoryviews into the mapping and stay on
disk until written. Everything a malformed file can get wrong is a BadCoreError, raised here."""

import mmap
import os
import stat

from .. import arch as arches
from ..errors import BadCoreError
from ..model import Core, ProgramIdentity, Segment
from . import elf
from .identity import identity_from_memory
from .notes import NoteCollector


class CoreFile:
    """A validated core, open until close(): `.core` is the model, `.view()` gives segment bytes."""

    def __init__(self, path: str):
        self.path = path
        self._map = None
        what = path
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            raise BadCoreError(f"{path}: {e.strerror}") from None
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind != stat.S_IFREG:
            os.close(fd)
            name = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a named pipe",
                    stat.S_IFCHR: "a character device", stat.S_IFSOCK: "a socket"}.get(kind, "not a regular file")
            raise BadCoreError(f"{path}: is {name}, not a core file")
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                raise BadCoreError(f"{what}: file is empty")
            # A private writable (copy-on-write) mapping, never written: process_vm_writev needs
            # the address of the bytes, and ctypes only gives that for a writable buffer.
            self._map = mmap.mmap(fd, size, access=mmap.ACCESS_COPY)
        except (OSError, ValueError) as e:
            raise BadCoreError(f"{path}: can't map the file: {e}") from None
        finally:
            os.close(fd)
        try:
            self.core = _parse(self._map, path)
        except BaseException:
            self.close()
            raise

    def view(self, offset: int, length: int) -> memoryview:
        return memoryview(self._map)[offset:offset + length]

    def read_memory(self, addr: int, length: int):
        return read_segments(self._map, self.core.segments, addr, length)

    def close(self):
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass    # a caller still holds a view; the mapping goes when that view does
            self._map = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_segments(buf, segments, addr: int, length: int):
    """The bytes at [addr, addr+length) if the file holds all of them (in one or more adjacent
    segments), else None."""
    out, at, end = [], addr, addr + length
    for seg in sorted(segments, key=lambda s: s.vaddr):
        if seg.vaddr <= at < seg.vaddr + seg.filesz:
            take = min(end, seg.vaddr + seg.filesz) - at
            off = seg.offset + at - seg.vaddr
            out.append(buf[off:off + take])
            at += take
            if at == end:
                return b"".join(out)
    return b"" if length == 0 else None


def _parse(buf, what) -> Core:
    hdr = elf.read_header(buf, what)
    if hdr.type != elf.ET_CORE:
        kind = elf.TYPE_NAMES.get(hdr.type, f"ELF type {hdr.type}")
        raise BadCoreError(f"{what}: is {kind}, not a core file")
    arch = arches.by_machine(hdr.machine, hdr.elf_class)
    if arch is None:
        bits = 64 if hdr.elf_class == elf.ELFCLASS64 else 32
        machine = elf.MACHINE_NAMES.get(hdr.machine, f"machine {hdr.machine}")
        raise BadCoreError(f"{what}: is a {bits}-bit {machine} core; only x86-64 cores are supported")
    phdrs = elf.read_phdrs(buf, hdr, what)
    segments = tuple(Segment(p.index, p.vaddr, p.memsz, p.filesz, p.offset, p.flags)
                     for p in phdrs if p.type == elf.PT_LOAD and p.memsz)
    _check_no_overlap(segments, what)
    _check_no_shared_file_bytes(segments, what)
    notes = NoteCollector(arch, buf, what)
    for p in phdrs:
        if p.type == elf.PT_NOTE:
            for note in elf.iter_notes(buf, p.offset, p.filesz, what):
                notes.add(note)
    threads = notes.thread_states()
    if not threads:
        raise BadCoreError(f"{what}: has no NT_PRSTATUS note, so no thread's registers")
    core = Core(path=what, machine=hdr.machine, elf_class=hdr.elf_class, segments=segments,
                threads=threads, pid=notes.pid, fname=notes.fname, auxv=notes.auxv,
                files=notes.files, xsave_layout=notes.layout, producer=notes.producer())
    identity = identity_from_memory(lambda a, n: read_segments(buf, segments, a, n),
                                    core.auxv, core.files, fallback_path=core.fname)
    if identity.build_id is None and isinstance(notes.ours.get("build_id"), str):
        # Our exports hold no ELF header pages; their own note names the program instead.
        identity = ProgramIdentity(notes.ours.get("program") or identity.path, notes.ours["build_id"])
    return Core(**{**core.__dict__, "identity": identity})


def _check_no_overlap(segments, what):
    ordered = sorted(segments, key=lambda s: s.vaddr)
    for a, b in zip(ordered, ordered[1:]):
        if b.vaddr < a.end:
            raise BadCoreError(f"{what}: program headers {a.index} and {b.index} overlap at {b.vaddr:#x}")


def _check_no_shared_file_bytes(segments, what):
    # gcore and the kernel give every PT_LOAD with file bytes a range of its own; two sharing bytes
    # means a corrupted p_offset, and restoring would write one segment's bytes as the other's.
    ordered = sorted((s for s in segments if s.filesz), key=lambda s: s.offset)
    for a, b in zip(ordered, ordered[1:]):
        if b.offset < a.offset + a.filesz:
            raise BadCoreError(f"{what}: program headers {a.index} and {b.index} overlap in the file "
                               f"at byte {b.offset}; the file is corrupt")
