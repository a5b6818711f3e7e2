"""Export a checkpoint as a standard x86-64 Linux ELF core that stock gdb, LIEF and our reader open.

Streams memory from the store to disk (never more than one piece of READ_PIECE bytes in hand) and
replaces the target atomically; it reads no process and imports no gdb.

Format (what the kernel writes, in the note order of gdb's gcore): ELF header (ET_CORE, no
section headers), one PT_NOTE, then one PT_LOAD per mapping of state.maps except [vvar],
[vvar_vclock] and [vsyscall]. A PT_LOAD has p_filesz = p_memsz when a saved region touches its
mapping (pages outside the saved regions were never touched and read as zeros: they are holes in
a sparse file), else p_filesz = 0 (file-backed pages we have no copy of; gdb reads them from the
file named in NT_FILE). Segment data starts at the first page boundary after the notes and
follows in address order. Notes, each 4-byte aligned:
  CORE  NT_PRPSINFO   pid, fname = basename of the program (15 bytes), psargs (79 bytes)
  per thread, main thread first:
  CORE  NT_PRSTATUS   pr_pid = LWP, pr_cursig = si_signo = signo, pr_sighold = sigmask, pr_reg
  CORE  NT_FPREGSET   the 512-byte FXSAVE area, when the thread has one
  LINUX NT_X86_XSTATE the XSAVE area, when the thread has one, at the offsets and size gdb reads
                      (xsave.to_gdb_layout: moved there from an AMD CPU's AVX-512 layout)
  CORE  NT_AUXV       state.auxv, then AT_NULL
  CORE  NT_FILE       file-backed mappings (paths starting with "/"): offsets in pages of 4096
  LINUX 0x205         NT_X86_XSAVE_LAYOUT, {u32 feature, size, offset, flags=0} per component,
                      when the layout is known (where the XSTATE note's components lie)
  GDBCKPT 1           JSON {"format": 1, "writer": "gdb-checkpoint", "program", "build_id"},
                      so readers know who wrote the file (notes.OWNER_OURS)."""

import json
import os
import stat
import struct
import time
from dataclasses import dataclass

from ..arch import by_name, xsave
from ..errors import CheckpointError
from ..model import PF_R, PF_W, PF_X
from ..plan import UNWRITABLE_NAMES
from . import elf, notes

PAGE = 4096
READ_PIECE = 16 << 20        # read() is asked for at most this much at a time: bounds our memory
OURS_FORMAT = 1
NT_OURS = 1
# elf_prstatus_common on 64-bit Linux: pr_info (si_signo, si_code, si_errno), pr_cursig at 12,
# pr_sigpend at 16, pr_sighold at 24, pr_pid at 32; pr_fpvalid follows pr_reg.
SIGHOLD_OFFSET = 24
PSARGS_OFFSET, PSARGS_SIZE = 56, 80
SNAME_OFFSET = 1
EV_CURRENT, ELFOSABI_NONE = 1, 0


@dataclass(frozen=True)
class WriteResult:
    bytes_written: int       # size of the core file (holes included)
    segments: int            # PT_LOAD headers
    seconds: float

    def summary(self, path: str) -> str:
        mib = self.bytes_written / (1 << 20)
        return (f"Wrote {path}: {mib:.1f} MiB, {self.segments} segment"
                f"{'s' * (self.segments != 1)}, {self.seconds:.3f} s.")


@dataclass(frozen=True)
class _Load:
    start: int
    end: int
    flags: int
    offset: int
    filesz: int


def write_core(path, state, regions, read, psargs=None) -> WriteResult:
    """Write `state` and the memory `read` gives for `regions` as an ELF core at `path`.

    regions: sorted, page-aligned (start, end) ranges with saved bytes, inside state.maps.
    read(ranges) -> iterable of (start, bytes-like) covering exactly `ranges`, in order; it is
    called once per batch of at most READ_PIECE bytes, so a reader that returns lists is fine.
    psargs: the command line for NT_PRPSINFO (gdb prints it); default the program's path.
    Any failure leaves no file behind and raises CheckpointError with one line."""
    started = time.perf_counter()
    path = os.fspath(path)
    arch = _arch(state.arch_name)
    regions = [(int(a), int(b)) for a, b in regions]
    maps = _kept_maps(state.maps)
    _check_regions(regions, state.maps, path)
    if not state.threads:
        raise CheckpointError("can't export: the checkpoint has no threads")
    note_bytes = build_notes(state, arch, maps, psargs)
    loads, size = _layout(maps, regions, len(note_bytes))
    head = _headers(arch, loads, len(note_bytes)) + note_bytes
    _write_atomically(path, size, lambda fd: _fill(fd, path, head, loads, regions, read))
    return WriteResult(size, len(loads), time.perf_counter() - started)


def _arch(name):
    arch = by_name(name)
    if arch is None:
        raise CheckpointError(f"can't export a {name} checkpoint as a core: only x86-64 is supported")
    return arch


def _kept_maps(maps):
    # gdb's gcore leaves these out too: the kernel's own pages, which no debugger can read back.
    kept = sorted((m for m in maps if m.path not in UNWRITABLE_NAMES and m.end > m.start),
                  key=lambda m: m.start)
    for a, b in zip(kept, kept[1:]):
        if b.start < a.end:
            raise CheckpointError(f"can't export: the checkpoint's mappings at {a.start:#x} and "
                                  f"{b.start:#x} overlap; its saved state is damaged")
    return kept


def _check_regions(regions, maps, path):
    """Regions sorted and disjoint, each inside the memory map (bytes in skipped mappings are dropped)."""
    spans = sorted((m.start, m.end) for m in maps)
    prev_end, s = 0, 0
    for lo, hi in regions:
        if hi <= lo or lo < prev_end:
            raise CheckpointError(f"can't write {path}: saved memory ranges are not sorted and "
                                  f"disjoint at {lo:#x}; the checkpoint is damaged")
        prev_end, at = hi, lo
        while s < len(spans) and spans[s][1] <= at:
            s += 1
        while at < hi and s < len(spans) and spans[s][0] <= at:
            at = spans[s][1]
            s += 1
        if at < hi:
            raise CheckpointError(f"can't write {path}: saved memory at {at:#x} lies outside the "
                                  f"checkpoint's memory map; the checkpoint is damaged")
        s = max(s - 1, 0)     # the last mapping may hold the next region too


def _pflags(perms):
    return (PF_R if perms[0] == "r" else 0) | (PF_W if perms[1] == "w" else 0) | \
           (PF_X if perms[2] == "x" else 0)


def _layout(maps, regions, notes_size):
    """PT_LOAD headers with their file offsets, and the size of the whole file."""
    phnum = 1 + len(maps)
    data_at = _page_up(elf.EHDR64.size + phnum * elf.PHDR64.size + notes_size)
    loads, at, r = [], data_at, 0
    for m in maps:
        while r < len(regions) and regions[r][1] <= m.start:
            r += 1
        saved = r < len(regions) and regions[r][0] < m.end
        filesz = m.end - m.start if saved else 0
        loads.append(_Load(m.start, m.end, _pflags(m.perms), at, filesz))
        at += filesz
    return loads, at


def _headers(arch, loads, notes_size) -> bytes:
    phnum = 1 + len(loads)
    if phnum >= 0xFFFF:
        raise CheckpointError(f"can't export: {len(loads)} mappings need more program headers "
                              f"than an ELF header can count (65534)")
    ident = elf.ELFMAG + bytes((arch.elf_class, elf.ELFDATA2LSB, EV_CURRENT, ELFOSABI_NONE)) + bytes(8)
    note_at = elf.EHDR64.size + phnum * elf.PHDR64.size
    out = [elf.EHDR64.pack(ident, elf.ET_CORE, arch.elf_machine, EV_CURRENT, 0, elf.EHDR64.size, 0,
                           0, elf.EHDR64.size, elf.PHDR64.size, phnum, 0, 0, 0),
           elf.PHDR64.pack(elf.PT_NOTE, 0, note_at, 0, 0, notes_size, 0, 4)]
    for ld in loads:
        out.append(elf.PHDR64.pack(elf.PT_LOAD, ld.flags, ld.offset, ld.start, 0, ld.filesz,
                                   ld.end - ld.start, PAGE))
    return b"".join(out)


def build_notes(state, arch, maps, psargs=None) -> bytes:
    """The whole PT_NOTE area for `state` (maps: the mappings that get a PT_LOAD)."""
    out = [_note(notes.OWNER_CORE, notes.NT_PRPSINFO, _prpsinfo(state, arch, psargs))]
    layout = state.xsave_layout
    for t in state.threads:
        if len(t.gregs) != arch.gregs_size:
            raise CheckpointError(f"can't export: thread {t.lwp} has {len(t.gregs)} bytes of "
                                  f"general registers, expected {arch.gregs_size}")
        out.append(_note(notes.OWNER_CORE, notes.NT_PRSTATUS, _prstatus(t, arch)))
        if t.fpregs is not None:
            out.append(_note(notes.OWNER_CORE, notes.NT_FPREGSET, t.fpregs))
        if t.xstate is not None:
            # As gdb reads it: its offsets and size (an AMD CPU packs AVX-512 state lower).
            area, layout = xsave.to_gdb_layout(t.xstate, state.xsave_layout)
            out.append(_note(notes.OWNER_LINUX, notes.NT_X86_XSTATE, area))
        if t.siginfo is not None:       # after the register notes, where gcore puts it
            out.append(_note(notes.OWNER_CORE, notes.NT_SIGINFO, t.siginfo))
    if state.auxv:
        auxv = b"".join(struct.pack("<QQ", k, v) for k, v in state.auxv) + bytes(16)
        out.append(_note(notes.OWNER_CORE, notes.NT_AUXV, auxv))
    out.append(_note(notes.OWNER_CORE, notes.NT_FILE, _nt_file(maps)))
    if layout:
        described = b"".join(struct.pack("<IIII", comp, size, offset, 0)
                             for comp, (offset, size) in sorted(layout.items()))
        out.append(_note(notes.OWNER_LINUX, notes.NT_X86_XSAVE_LAYOUT, described))
    ours = {"format": OURS_FORMAT, "writer": "gdb-checkpoint",
            "program": state.program.path, "build_id": state.program.build_id}
    text = json.dumps(ours, separators=(",", ":")).encode()
    # Padded with spaces, not NULs: some readers (LIEF) hand out the aligned descriptor.
    out.append(_note(notes.OWNER_OURS, NT_OURS, text + b" " * (-len(text) % 4)))
    return b"".join(out)


def _note(owner: bytes, ntype: int, desc) -> bytes:
    name = owner + b"\0"
    return (elf.NHDR.pack(len(name), len(desc), ntype) + name + bytes(-len(name) % 4)
            + bytes(desc) + bytes(-len(desc) % 4))


def _prpsinfo(state, arch, psargs):
    lay = arch.prpsinfo
    buf = bytearray(lay.size)
    buf[SNAME_OFFSET] = ord("t")             # stopped by the debugger, as /proc shows it
    struct.pack_into("<i", buf, lay.pid_offset, state.pid)
    name = os.path.basename(state.program.path or "")
    # The kernel keeps 15 bytes of comm and a NUL; bfd compares this with the executable's name.
    buf[lay.fname_offset:lay.fname_offset + 16] = _c_string(name, 16)
    args = psargs if psargs is not None else state.program.path or name
    buf[PSARGS_OFFSET:PSARGS_OFFSET + PSARGS_SIZE] = _c_string(args, PSARGS_SIZE)
    return bytes(buf)


def _c_string(text, size):
    """`text` cut to size-1 bytes, NUL-padded to `size`: always terminated, as the kernel writes it."""
    return text.encode("utf-8", "surrogateescape")[:size - 1].ljust(size, b"\0")


def _prstatus(t, arch):
    lay = arch.prstatus
    buf = bytearray(lay.size)
    struct.pack_into("<i", buf, 0, t.signo)                    # pr_info.si_signo, like the kernel
    struct.pack_into("<H", buf, lay.cursig_offset, t.signo)
    struct.pack_into("<Q", buf, SIGHOLD_OFFSET, (t.sigmask or 0) & (1 << 64) - 1)
    struct.pack_into("<i", buf, lay.pid_offset, t.lwp)
    buf[lay.regs_offset:lay.regs_offset + arch.gregs_size] = t.gregs
    struct.pack_into("<i", buf, lay.regs_offset + arch.gregs_size, 1 if t.fpregs is not None else 0)
    return bytes(buf)


def _nt_file(maps):
    files = [m for m in maps if m.path.startswith("/")]
    head = struct.pack("<QQ", len(files), PAGE)
    entries = b"".join(struct.pack("<QQQ", m.start, m.end, m.offset // PAGE) for m in files)
    names = b"".join(m.path.encode("utf-8", "surrogateescape") + b"\0" for m in files)
    return head + entries + names


def _fill(fd, path, head, loads, regions, read):
    _pwrite_all(fd, head, 0)
    li = 0
    for batch in _batches(regions):
        for start, data in _checked(batch, read, path):
            view = memoryview(data).cast("B")
            while view.nbytes:
                while li < len(loads) and loads[li].end <= start:
                    li += 1
                if li == len(loads) or loads[li].start > start:
                    # In a skipped kernel mapping ([vsyscall]): dropped, as gcore drops them.
                    nxt = loads[li].start if li < len(loads) else start + view.nbytes
                    skip = min(view.nbytes, nxt - start)
                    view, start = view[skip:], start + skip
                    continue
                ld = loads[li]
                n = min(view.nbytes, ld.end - start)
                _pwrite_all(fd, view[:n], ld.offset + start - ld.start)
                view, start = view[n:], start + n
            del data, view      # before the next piece is made: one piece in hand, not two


def _batches(regions):
    """Split and group the regions so that each read() call asks for at most READ_PIECE bytes."""
    batch, size = [], 0
    for lo, hi in regions:
        while lo < hi:
            n = min(hi - lo, READ_PIECE - size)
            batch.append((lo, lo + n))
            size += n
            lo += n
            if size == READ_PIECE:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def _checked(ranges, read, path):
    """The (start, data) pairs of read(ranges), checked to tile `ranges` exactly, in order."""
    r, at = 0, ranges[0][0]
    for start, data in read(ranges):
        n = memoryview(data).nbytes
        if r == len(ranges) or start != at or at + n > ranges[r][1]:
            want = f"{at:#x}" if r < len(ranges) else "nothing more"
            raise CheckpointError(f"can't write {path}: the checkpoint's memory came back as {n} "
                                  f"bytes at {start:#x}, expected {want}; the store is inconsistent")
        yield start, data
        del data
        at += n
        if at == ranges[r][1]:
            r += 1
            at = ranges[r][0] if r < len(ranges) else at
    if r != len(ranges):
        raise CheckpointError(f"can't write {path}: the checkpoint's memory stopped at {at:#x}, "
                              f"before the end of its saved ranges; the store is inconsistent")


def _pwrite_all(fd, data, offset):
    view = memoryview(data)
    while view.nbytes:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _write_atomically(path, size, fill):
    """Write through a temporary file in the target's directory; fsync, rename, fsync the directory.

    Refuses a target that exists and is not a regular file: the rename would silently put a
    regular file in place of a FIFO, device, socket or directory."""
    real = os.path.realpath(path)      # through symbolic links, as gcore writes: the link stays
    directory = os.path.dirname(real)
    try:
        mode = os.stat(real).st_mode
    except OSError:
        mode = None         # absent (or unreachable): creating the temporary file says why
    if mode is not None and not stat.S_ISREG(mode):
        raise CheckpointError(f"can't write {path}: not a regular file ({_kind(mode)})")
    try:
        tmp, fd = _create_temp(directory, os.path.basename(real))
    except OSError as e:
        # Not the target's own error: /proc/version exists, yet no file can be created in /proc.
        raise CheckpointError(f"can't write {path}: can't create a file in {directory}: "
                              f"{e.strerror or e}") from None
    try:
        try:
            fill(fd)
            os.ftruncate(fd, size)      # the tail may be a hole: untouched pages read as zeros
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, real)
        tmp = None
        _fsync_dir(directory)
    except OSError as e:
        raise CheckpointError(f"can't write {path}: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _kind(mode):
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return f"file type {stat.S_IFMT(mode):#o}"


def _create_temp(directory, base):
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{os.urandom(4).hex()}.tmp")
        try:
            # 0o666 and the umask, like any new file (mkstemp would make it 0600).
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(17, "could not create a temporary file")


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass          # some filesystems refuse fsync on a directory; the rename still happened
    finally:
        os.close(fd)


def _page_up(n):
    return (n + PAGE - 1) & ~(PAGE - 1)
