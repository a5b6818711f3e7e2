"""write_core: a ProcessState taken from a real gcore core, written back out as a core.

Our CoreFile, LIEF and pyelftools must all read the export and agree with the original core; a
failed write must leave one line and no file; memory in hand stays one read piece, whatever the size."""

import json
import os
import re
import shlex
import shutil
import stat
import struct
import subprocess
import sys
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest

import helpers
from gdb_checkpoint.arch import xsave
from gdb_checkpoint.core import notes, writer
from gdb_checkpoint.core.identity import identity_of_file
from gdb_checkpoint.core.reader import CoreFile
from gdb_checkpoint.core.writer import READ_PIECE, write_core
from gdb_checkpoint.errors import CheckpointError
from gdb_checkpoint.model import LiveMapping, ProcessState, ProgramIdentity, ThreadState
from oracles import lief_core, pyelf_core, xsave_layout_note

MIB = 1 << 20
SKIPPED = ("[vvar]", "[vvar_vclock]", "[vsyscall]")
MAPS_LINE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) \S+ \d+ *(.*)$", re.M)


# ---- the scenario: writer_target stopped in writer_checkpoint(), dumped by gcore --------------

@dataclass
class Source:
    """A gcore core of writer_target and the /proc/PID/maps read at the same stop."""
    exe: Path
    core: Path
    maps: tuple          # LiveMapping


def gcore_source(workdir: Path, big_mib: int = 0) -> Source:
    exe = helpers.compile_c("writer_target", workdir)
    core = workdir / "gcore.core"
    show_maps = ("python import gdb; print('MAPS-BEGIN'); "
                 "print(open('/proc/%d/maps' % gdb.selected_inferior().pid).read()); print('MAPS-END')")
    run = f"run {big_mib} > /dev/null" if big_mib else "run"    # `run ARGS` replaces `set args`
    out = helpers.run_gdb(exe, "break writer_checkpoint", run, show_maps, f"gcore {core}", "kill",
                          load=False, timeout=300)
    assert core.exists(), f"gcore wrote no core:\n{out.stdout}\n{out.stderr}"
    text = out.stdout.split("MAPS-BEGIN", 1)[1].split("MAPS-END", 1)[0]
    maps = tuple(LiveMapping(int(a, 16), int(b, 16), perms, int(off, 16), path.strip())
                 for a, b, perms, off, path in MAPS_LINE.findall(text))
    assert any(m.path == "[heap]" for m in maps), text
    return Source(exe, core, maps)


def state_from_core(cf: CoreFile, source: Source):
    """(ProcessState, regions) as a checkpoint of that stop would hold them: the core's registers,
    the real memory map, and every PT_LOAD with bytes as a saved region."""
    core = cf.core
    area = next((t.xstate for t in core.threads if t.xstate), None)
    layout = None
    if area:
        # gcore lays XSTATE out as gdb does: say so in the 0x205 note, as a checkpoint says its own.
        present = set(xsave.components(xsave.xcr0(area)))
        layout = {c: w for c, w in xsave.GDB_LAYOUT.items() if c in present and sum(w) <= len(area)}
    state = ProcessState(pid=core.pid, arch_name="i386:x86-64", program=identity_of_file(str(source.exe)),
                         maps=source.maps, threads=core.threads, auxv=core.auxv, xsave_layout=layout)
    regions = sorted((s.vaddr, s.vaddr + s.filesz) for s in core.segments if s.filesz)
    return state, regions


def read_from(cf: CoreFile):
    """read(ranges) over a CoreFile: zero-copy views, one range at a time."""
    def read(ranges):
        for lo, hi in ranges:
            seg = next(s for s in cf.core.segments if s.vaddr <= lo and hi <= s.vaddr + s.filesz)
            yield lo, cf.view(seg.offset + lo - seg.vaddr, hi - lo)
    return read


def export_core(source: Source, out: Path):
    with CoreFile(str(source.core)) as cf:
        state, regions = state_from_core(cf, source)
        result = write_core(out, state, regions, read_from(cf))
    return state, regions, result


@pytest.fixture(scope="module")
def source(tmp_path_factory, have_gdb):
    return gcore_source(tmp_path_factory.mktemp("writer"))


@pytest.fixture(scope="module")
def exported(source):
    out = source.core.parent / "export.core"
    state, regions, result = export_core(source, out)
    return out, state, regions, result


# ---- our reader reads back what was written ----------------------------------------------------

def test_our_reader_gets_the_same_threads_and_registers(source, exported):
    out, state, _, _ = exported
    with CoreFile(str(source.core)) as orig, CoreFile(str(out)) as back:
        assert back.core.producer == "gdb-checkpoint"
        assert back.core.threads == orig.core.threads
        assert len(back.core.threads) == 3
        assert back.core.pid == orig.core.pid
        assert back.core.fname == "writer_target"
        assert back.core.auxv == orig.core.auxv
        assert back.core.xsave_layout == state.xsave_layout


def test_every_saved_byte_reads_back_and_the_rest_is_absent(source, exported):
    out, state, regions, result = exported
    kept = [m for m in state.maps if m.path not in SKIPPED]
    with CoreFile(str(source.core)) as orig, CoreFile(str(out)) as back:
        segs = back.core.segments
        assert [(s.vaddr, s.memsz) for s in segs] == [(m.start, m.end - m.start) for m in kept]
        assert result.segments == len(segs)
        assert result.bytes_written == os.path.getsize(out)
        for lo, hi in regions:
            if any(m.path == "[vsyscall]" and m.start <= lo < m.end for m in state.maps):
                continue       # gcore dumps [vsyscall] (as zeros); an export leaves it out like gcore's maps
            assert back.read_memory(lo, hi - lo) == orig.read_memory(lo, hi - lo), hex(lo)
        for s in segs:
            saved = any(lo < s.end and s.vaddr < hi for lo, hi in regions)
            assert s.filesz == (s.memsz if saved else 0), hex(s.vaddr)
            assert s.offset % 4096 == 0


def test_nt_file_names_the_file_backed_mappings(exported):
    out, state, _, _ = exported
    files = [(m.start, m.end, m.offset, m.path) for m in state.maps if m.path.startswith("/")]
    with CoreFile(str(out)) as back:
        assert [(f.start, f.end, f.offset, f.path) for f in back.core.files] == files
        assert back.core.identity.path == str(files[0][3])      # AT_ENTRY lies in the executable


def test_flags_follow_the_permissions(exported):
    out, state, _, _ = exported
    kept = [m for m in state.maps if m.path not in SKIPPED]
    want = [(4 if m.perms[0] == "r" else 0) | (2 if m.perms[1] == "w" else 0) | (1 if m.perms[2] == "x" else 0)
            for m in kept]
    with CoreFile(str(out)) as back:
        assert [s.flags for s in back.core.segments] == want


# ---- independent parsers agree -----------------------------------------------------------------

def test_lief_and_pyelftools_see_the_same_segments(exported):
    out, _, _, _ = exported
    lief, pyelf = lief_core(out), pyelf_core(out)
    lief_loads = [(s.vaddr, s.filesz, s.memsz, s.flags, s.offset) for s in lief.loads]
    assert lief_loads == [s[1:] for s in pyelf.segments]
    assert [s.is_note for s in lief.segments][0] and sum(s.is_note for s in lief.segments) == 1
    with CoreFile(str(out)) as back:
        assert lief_loads == [(s.vaddr, s.filesz, s.memsz, s.flags, s.offset) for s in back.core.segments]
        for s in lief.loads:
            if s.filesz:
                assert s.content == back.read_memory(s.vaddr, s.filesz)


def test_lief_and_pyelftools_read_the_notes(source, exported):
    out, state, _, _ = exported
    lief, pyelf = lief_core(out), pyelf_core(out)
    orig = pyelf_core(source.core)
    assert [t.lwp for t in lief.threads] == [t.lwp for t in state.threads]
    assert [t.gregs for t in pyelf.threads] == [t.gregs for t in orig.threads]
    assert [t.fpregs for t in pyelf.threads] == [t.fpregs for t in orig.threads]
    assert [t.xstate for t in pyelf.threads] == [t.xstate for t in orig.threads]
    main = state.threads[0]
    assert lief.threads[0].pc == int.from_bytes(main.gregs[16 * 8:17 * 8], "little")
    assert pyelf.pid == state.pid and pyelf.fname == "writer_target"
    assert lief.auxv == dict(state.auxv)
    assert sorted(pyelf.files) == sorted(orig.files)
    assert xsave_layout_note(lief.note(b"LINUX", notes.NT_X86_XSAVE_LAYOUT)) == state.xsave_layout
    ours = json.loads(lief.note(b"GDBCKPT", 1))
    assert ours["format"] == 1 and ours["writer"] == "gdb-checkpoint"
    assert ours["build_id"] == state.program.build_id


def test_notes_come_in_gcores_order(source, exported):
    out, _, _, _ = exported
    order = [(o, t) for o, t, _, _ in pyelf_core(out).note_offsets]
    # gcore's own order for the same process, as pyelftools reads it, less gdb's target
    # description; then the two notes that are ours.
    want = [(o, t) for o, t, _, _ in pyelf_core(source.core).note_offsets if o != "GDB"]
    assert order == want + [("LINUX", notes.NT_X86_XSAVE_LAYOUT),
                            ("GDBCKPT", "NT_PRSTATUS")]    # pyelftools names type 1 for every owner


def test_header_has_no_sections_and_the_notes_follow_the_program_headers(exported):
    out, state, _, _ = exported
    raw = open(out, "rb").read(64)
    e_shoff, = struct.unpack_from("<Q", raw, 40)
    e_shnum, = struct.unpack_from("<H", raw, 60)
    assert (e_shoff, e_shnum) == (0, 0)
    p = pyelf_core(out)
    assert p.phoff == 64 and p.phnum == 1 + sum(m.path not in SKIPPED for m in state.maps)
    assert p.note_segment[0] == 64 + 56 * p.phnum


# ---- failures: one line, nothing left behind ---------------------------------------------------

def synthetic(size=MIB, maps=None, regions=None):
    """A one-thread state with one anonymous mapping of `size` bytes, all of it saved."""
    base = 0x10000000
    maps = maps or (LiveMapping(base, base + size, "rw-p", 0, ""),)
    state = ProcessState(pid=4242, arch_name="i386:x86-64", program=ProgramIdentity("/bin/true"),
                         maps=maps, threads=(ThreadState(lwp=4242, gregs=bytes(27 * 8)),))
    return state, regions if regions is not None else [(maps[0].start, maps[0].end)]


def filler(byte=0xAB, piece=None):
    """read() that makes each range's bytes on demand (in `piece`-sized chunks when given)."""
    def read(ranges):
        for lo, hi in ranges:
            step = piece or hi - lo
            for at in range(lo, hi, step):
                yield at, bytes([byte]) * min(step, hi - at)
    return read


def child_write(path, mib):
    """Entry point for the subprocess tests: export a synthetic state, print the error line."""
    state, regions = synthetic(mib * MIB)
    try:
        write_core(path, state, regions, filler())
        print("OK")
    except CheckpointError as e:
        print("ERROR", e)


def run_child(directory, mib, prefix=(), setup=""):
    target = Path(directory) / "out.core"
    code = (f"import sys; sys.path[:0] = {[str(Path(__file__).parent), str(helpers.ROOT / 'tests')]}; "
            f"import test_writer; test_writer.child_write({str(target)!r}, {mib})")
    script = f"{setup}{sys.executable} -c {shlex.quote(code)}; ls -A {shlex.quote(str(directory))}"
    proc = subprocess.run([*prefix, "sh", "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=helpers.ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def private_mount_ns():
    """A command prefix that runs in a mount namespace of its own (to mount a tiny tmpfs)."""
    prefix = ["unshare", "--mount", "--map-root-user"]
    if shutil.which("unshare") is None or subprocess.run([*prefix, "true"], capture_output=True).returncode:
        pytest.skip("no private mount namespace here (unshare --mount --map-root-user failed)")
    return prefix


def test_a_full_filesystem_fails_with_one_line_and_leaves_nothing(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    lines = run_child(mnt, 4, private_mount_ns(), f"mount -t tmpfs -o size=1m tmpfs {mnt} && ")
    assert lines == [f"ERROR can't write {mnt}/out.core: No space left on device"]


def test_a_read_only_filesystem_fails_with_one_line(tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    lines = run_child(mnt, 1, private_mount_ns(), f"mount -t tmpfs -o ro,size=1m tmpfs {mnt} && ")
    assert lines == [f"ERROR can't write {mnt}/out.core: can't create a file in {mnt}: Read-only file system"]


def test_a_directory_without_write_permission_fails_with_one_line(tmp_path):
    # root ignores permission bits: run the writer as nobody then, in a directory nobody can reach.
    import tempfile
    top = Path(tempfile.mkdtemp(prefix="writer-ro-", dir="/tmp"))
    try:
        top.chmod(0o755)
        (top / "locked").mkdir(mode=0o555)
        (top / "locked").chmod(0o555)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        lines = run_child(top / "locked", 1, prefix)
        assert lines == [f"ERROR can't write {top}/locked/out.core: can't create a file in {top}/locked: "
                         "Permission denied"]
    finally:
        (top / "locked").chmod(0o755)
        shutil.rmtree(top)


def test_a_directory_as_target_or_a_missing_directory_fail_with_one_line(tmp_path):
    state, regions = synthetic()
    (tmp_path / "adir").mkdir()
    with pytest.raises(CheckpointError) as e:
        write_core(tmp_path / "adir", state, regions, filler())
    assert str(e.value) == f"can't write {tmp_path}/adir: not a regular file (a directory)"
    with pytest.raises(CheckpointError) as e:
        write_core(tmp_path / "nowhere" / "x.core", state, regions, filler())
    assert str(e.value) == (f"can't write {tmp_path}/nowhere/x.core: can't create a file in "
                            f"{tmp_path}/nowhere: No such file or directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir"]
    assert list((tmp_path / "adir").iterdir()) == []


def test_a_fifo_or_a_device_as_target_is_refused_and_left_as_it_was(tmp_path):
    state, regions = synthetic()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError) as e:
        write_core(fifo, state, regions, filler())
    assert str(e.value) == f"can't write {fifo}: not a regular file (a FIFO)"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)                 # not replaced by a regular file
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]      # and no temporary file left
    link = tmp_path / "to-pipe"
    link.symlink_to(fifo)                                        # a link to one is refused too
    with pytest.raises(CheckpointError, match="not a regular file"):
        write_core(link, state, regions, filler())
    assert link.is_symlink()
    before = os.stat("/dev/null")
    with pytest.raises(CheckpointError) as e:
        write_core("/dev/null", state, regions, filler())
    assert str(e.value) == "can't write /dev/null: not a regular file (a character device)"
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


def test_a_symbolic_link_is_written_through_and_stays_a_link(tmp_path):
    state, regions = synthetic()
    (tmp_path / "real").mkdir()
    target, link = tmp_path / "real" / "x.core", tmp_path / "x.core"
    target.write_bytes(b"previous export")
    link.symlink_to(target)
    write_core(link, state, regions, filler())
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes()[:4] == b"\x7fELF"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["x.core"]     # no temporary left


def test_a_regular_file_in_a_folder_that_takes_no_new_files_says_so(tmp_path):
    # /proc/version is a regular file, but the temporary file the rename needs can't be made in /proc.
    assert stat.S_ISREG(os.stat("/proc/version").st_mode)
    state, regions = synthetic()
    with pytest.raises(CheckpointError) as e:
        write_core("/proc/version", state, regions, filler())
    assert str(e.value) == "can't write /proc/version: can't create a file in /proc: No such file or directory"


def test_a_short_memory_stream_fails_and_keeps_the_old_file(tmp_path):
    state, regions = synthetic(4 * MIB)
    target = tmp_path / "x.core"
    target.write_bytes(b"previous export")

    def short(ranges):
        for lo, hi in ranges:
            yield lo, bytes(hi - lo - 4096)
    with pytest.raises(CheckpointError, match="store is inconsistent"):
        write_core(target, state, regions, short)

    def stray(ranges):
        yield ranges[0][0] + 4096, bytes(4096)
    with pytest.raises(CheckpointError, match=r"expected 0x10000000"):
        write_core(target, state, regions, stray)
    assert target.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["x.core"]


def test_memory_outside_the_map_is_refused_before_anything_is_written(tmp_path):
    state, _ = synthetic(MIB)
    with pytest.raises(CheckpointError, match="0x10100000 lies outside the checkpoint's memory map"):
        write_core(tmp_path / "x.core", state, [(0x10000000, 0x10200000)], filler())
    assert list(tmp_path.iterdir()) == []


# ---- streaming -----------------------------------------------------------------------------------

def test_memory_in_hand_stays_one_read_piece_for_64_mib(tmp_path):
    size = 64 * MIB
    asked = []
    state, regions = synthetic(size)
    base = filler(0x5A)

    def read(ranges):
        asked.append(sum(hi - lo for lo, hi in ranges))
        yield from base(ranges)
    tracemalloc.start()
    try:
        write_core(tmp_path / "big.core", state, regions, read)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert max(asked) <= READ_PIECE and sum(asked) == size
    assert peak < READ_PIECE + 2 * MIB, f"peak {peak / MIB:.1f} MiB"
    with CoreFile(str(tmp_path / "big.core")) as back:
        seg = back.core.segments[0]
        assert seg.filesz == size
        assert back.read_memory(seg.vaddr + size - 4096, 4096) == b"\x5a" * 4096


def test_a_reader_that_returns_lists_is_still_asked_for_one_piece_at_a_time(tmp_path):
    # Store.Checkpoint.read returns a list for all the ranges it is given.
    state, regions = synthetic(48 * MIB)
    tracemalloc.start()
    try:
        write_core(tmp_path / "big.core", state, regions,
                   lambda ranges: [(lo, bytearray(hi - lo)) for lo, hi in ranges])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < READ_PIECE + 2 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_regions_spanning_mappings_and_gaps_land_in_the_right_segments(tmp_path):
    base = 0x20000000
    maps = (LiveMapping(base, base + 8192, "rw-p", 0, ""),
            LiveMapping(base + 8192, base + 16384, "r--p", 0, ""),      # merged region spans both
            LiveMapping(base + 16384, base + 32768, "rw-p", 0, ""),     # only its 2nd page saved
            LiveMapping(base + 32768, base + 36864, "r-xp", 0x1000, "/bin/true"),   # not saved
            LiveMapping(0xFFFFFFFFFF600000, 0xFFFFFFFFFF601000, "--xp", 0, "[vsyscall]"))
    regions = [(base, base + 16384), (base + 20480, base + 24576), (0xFFFFFFFFFF600000, 0xFFFFFFFFFF601000)]
    state, _ = synthetic(maps=maps, regions=regions)

    def read(ranges):
        for lo, hi in ranges:
            for at in range(lo, hi, 4096):
                yield at, (at >> 12 & 0xFF).to_bytes(1, "little") * 4096
    write_core(tmp_path / "x.core", state, regions, read)
    with CoreFile(str(tmp_path / "x.core")) as back:
        segs = back.core.segments
        assert [(s.vaddr - base, s.filesz) for s in segs] == [(0, 8192), (8192, 8192), (16384, 16384),
                                                              (32768, 0)]
        for page in (0, 1, 2, 3, 5):
            at = base + page * 4096
            assert back.read_memory(at, 4096) == bytes([at >> 12 & 0xFF]) * 4096
        for page in (4, 6, 7):                                # untouched: zeros
            assert back.read_memory(base + page * 4096, 4096) == bytes(4096)
        assert [f.path for f in back.core.files] == ["/bin/true"] and back.core.files[0].offset == 0x1000


def test_the_summary_is_one_line():
    result = writer.WriteResult(3 * MIB, 5, 0.25)
    assert result.summary("/tmp/x.core") == "Wrote /tmp/x.core: 3.0 MiB, 5 segments, 0.250 s."
