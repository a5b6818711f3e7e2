"""restore_core on a FakeTarget shaped like the process a real core came from.

The fake process has the core's own segments as its mappings, filled with 0xAA. A restore must
leave there exactly the bytes LIEF reads from the core and the registers pyelftools reads; a refused
restore must leave the fake untouched (no log entry, the same bytes)."""

import dataclasses
import shutil
import struct

import pytest

from gdb_checkpoint.errors import MismatchError
from gdb_checkpoint.model import LiveMapping, ProgramIdentity
from gdb_checkpoint.plan import LiveProcess
from gdb_checkpoint.restore import restore_core
from gdb_checkpoint.target import FakeTarget
from oracles import build_id_of, lief_core, pyelf_core, xsave_layout_note

X86_64_NAME = "i386:x86-64"
FILL = 0xAA
SW_RESERVED, HEADER, MXCSR, MXCSR_MASK = 464, 512, 24, 28
INTEL = {2: (576, 256), 3: (960, 64), 4: (1024, 64), 5: (1088, 64), 6: (1152, 512),
         7: (1664, 1024), 9: (2688, 8)}


def perms(flags):
    return ("r" if flags & 4 else "-") + ("w" if flags & 2 else "-") + ("x" if flags & 1 else "-") + "p"


class Process:
    """A FakeTarget built from a real core, and the facts it was built from."""

    def __init__(self, real, core_path=None):
        self.real = real
        self.path = core_path or real.path
        self.lief = lief_core(self.path)
        self.elf = pyelf_core(self.path)
        self.loads = [s for s in self.lief.loads if s.memsz]
        main = real.pid
        lwps = sorted((t.lwp for t in self.lief.threads), key=lambda lwp: (lwp != main, lwp))
        area = self.elf.threads[0].xstate
        xcr0 = struct.unpack_from("<Q", area, SW_RESERVED)[0]
        note = self.lief.note(b"LINUX", 0x205)
        layout = xsave_layout_note(note) if note else {c: INTEL[c] for c in INTEL if xcr0 >> c & 1}
        self.live = LiveProcess(
            pid=main, arch_name=X86_64_NAME,
            maps=tuple(LiveMapping(s.vaddr, s.vaddr + s.memsz, perms(s.flags), 0, "") for s in self.loads),
            lwps=tuple(lwps), identity=ProgramIdentity(str(real.exe), build_id_of(real.exe)),
            xsave_layout=layout, selectors={"cs": 0x33, "ss": 0x2B})
        self.live_xstate = bytearray(len(area))           # what GETREGSET gives on this CPU
        struct.pack_into("<IIQ", self.live_xstate, MXCSR, 0x1F80, 0xFFFF, 0)
        self.live_xstate[SW_RESERVED:SW_RESERVED + 8] = area[SW_RESERVED:SW_RESERVED + 8]
        struct.pack_into("<Q", self.live_xstate, HEADER, 0b11)

    def target(self, vectors="xstate", **changes):
        live = dataclasses.replace(self.live, **changes)
        memory = {s.vaddr: bytearray([FILL]) * s.memsz for s in self.loads
                  if any(m.start == s.vaddr for m in live.maps)}
        regsets = {}
        for lwp in live.lwps:
            regsets[(lwp, "gregs")] = bytes(27 * 8)
            regsets[(lwp, "fpregs")] = bytes(self.live_xstate[:512])
            if vectors == "xstate":
                regsets[(lwp, "xstate")] = bytes(self.live_xstate)
        return FakeTarget(live, memory, regsets)

    def thread(self, lwp):
        return self.elf.threads[[t.lwp for t in self.lief.threads].index(lwp)]


def snapshot(target):
    return {start: bytes(buf) for start, buf in target.memory.items()}, dict(target.regsets)


@pytest.fixture(scope="module")
def gcore_process(gcore_core):
    return Process(gcore_core)


@pytest.fixture(params=["gcore", "kernel"])
def process(request):
    return Process(request.getfixturevalue(f"{request.param}_core"))


# -- a restore that fits ---------------------------------------------------------------------------

def test_every_writable_segment_gets_the_core_s_bytes(process):
    target = process.target()
    report = restore_core(target, str(process.path))
    written = process.lief.writable_with_bytes()
    assert written, "the fixture core has writable segments"
    for seg in written:
        assert target.read_memory(seg.vaddr, seg.filesz) == seg.content, f"segment {seg.index}"
    assert (report.segments, report.bytes) == (len(written), sum(s.filesz for s in written))


def test_segments_that_are_not_written_keep_the_live_bytes(process):
    target = process.target()
    restore_core(target, str(process.path))
    written = {s.vaddr for s in process.lief.writable_with_bytes()}
    for seg in process.loads:
        if seg.vaddr not in written:
            assert target.memory[seg.vaddr] == bytearray([FILL]) * seg.memsz, f"segment {seg.index}"


def test_the_program_s_global_and_heap_string_are_back(process):
    target = process.target()
    restore_core(target, str(process.path))
    addr, value = process.real.printed_global()
    assert target.read_memory(addr, 8) == struct.pack("<q", value)
    addr, text = process.real.printed_heap()
    assert target.read_memory(addr, len(text) + 1) == text.encode() + b"\0"


def test_every_thread_gets_its_own_general_registers(process):
    target = process.target()
    report = restore_core(target, str(process.path))
    assert report.matched_by == "LWP" and report.threads == 3
    for lwp in process.live.lwps:
        assert target.regsets[(lwp, "gregs")] == process.thread(lwp).gregs, f"LWP {lwp}"


def test_every_thread_gets_its_saved_sse_and_avx_state(process):
    target = process.target()
    restore_core(target, str(process.path))
    avx = process.live.xsave_layout[2]
    for lwp in process.live.lwps:
        saved, now = process.thread(lwp).xstate, target.regsets[(lwp, "xstate")]
        assert now[:SW_RESERVED] == saved[:SW_RESERVED], f"LWP {lwp}"
        assert now[avx[0]:avx[0] + avx[1]] == saved[avx[0]:avx[0] + avx[1]], f"LWP {lwp}"
        assert len(now) == len(process.live_xstate)
    main = target.regsets[(process.real.pid, "xstate")]
    assert struct.unpack_from("<I", main, MXCSR)[0] == process.real.printed_mxcsr


def test_a_target_without_xstate_gets_the_fxsave_area(gcore_process):
    target = gcore_process.target(vectors="fpregs")
    restore_core(target, str(gcore_process.path))
    for lwp in gcore_process.live.lwps:
        assert target.regsets[(lwp, "fpregs")] == gcore_process.thread(lwp).fpregs


def test_memory_is_written_before_registers_and_flushed_last(gcore_process):
    target = gcore_process.target()
    restore_core(target, str(gcore_process.path))
    kinds = [entry[0] for entry in target.log]
    assert kinds[-1] == "flush"
    assert kinds.index("regs") > max(i for i, k in enumerate(kinds) if k == "write")
    regs = [entry for entry in target.log if entry[0] == "regs"]
    for lwp in gcore_process.live.lwps:     # vector state first: SETREGSET of it can't clobber gregs
        mine = [kind for _, who, kind in regs if who == lwp]
        assert mine == ["xstate", "gregs"]


def test_a_segment_the_process_lacks_is_created_then_written(gcore_process):
    addr, value = gcore_process.real.printed_global()
    seg = [s for s in gcore_process.loads if s.vaddr <= addr < s.vaddr + s.memsz][0]
    maps = tuple(m for m in gcore_process.live.maps if m.start != seg.vaddr)
    target = gcore_process.target(maps=maps)
    report = restore_core(target, str(gcore_process.path))
    assert ("create", seg.vaddr, seg.vaddr + seg.filesz, "mmap") in target.log
    assert target.log.index(("create", seg.vaddr, seg.vaddr + seg.filesz, "mmap")) == 0
    assert report.created == 1
    assert target.read_memory(addr, 8) == struct.pack("<q", value)


# -- a restore that doesn't fit changes nothing -------------------------------------------------------

def refused(target, path, **kw) -> str:
    before = snapshot(target)
    with pytest.raises(MismatchError) as caught:
        restore_core(target, str(path), **kw)
    assert target.log == []
    assert snapshot(target) == before
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    return message.replace(str(path), "FILE")


def test_another_program_is_refused_and_nothing_is_touched(gcore_process):
    other = ProgramIdentity("/bin/true", "00" * 20)
    assert "-force" in refused(gcore_process.target(identity=other), gcore_process.path)


def test_another_program_is_restored_when_forced(gcore_process):
    target = gcore_process.target(identity=ProgramIdentity("/bin/true", "00" * 20))
    assert restore_core(target, str(gcore_process.path), check_program=False).segments


def test_another_thread_count_is_refused_and_nothing_is_touched(gcore_process):
    target = gcore_process.target(lwps=gcore_process.live.lwps[:2])
    assert "3 threads" in refused(target, gcore_process.path)


def test_another_architecture_is_refused_and_nothing_is_touched(gcore_process):
    assert "aarch64" in refused(gcore_process.target(arch_name="aarch64"), gcore_process.path)


def test_another_execution_mode_is_refused_and_nothing_is_touched(gcore_process):
    target = gcore_process.target(selectors={"cs": 0x23, "ss": 0x2B})
    assert "cs=0x33" in refused(target, gcore_process.path)


def test_a_segment_in_a_read_only_shared_mapping_is_refused_and_nothing_is_touched(gcore_process):
    addr, _ = gcore_process.real.printed_global()
    maps = tuple(LiveMapping(m.start, m.end, "r--s", 0, "/dev/shm/frozen") if m.start <= addr < m.end
                 else m for m in gcore_process.live.maps)
    message = refused(gcore_process.target(maps=maps), gcore_process.path)
    assert "/dev/shm/frozen" in message


@pytest.fixture(scope="module")
def bad_mxcsr_core(gcore_core, tmp_path_factory):
    """gcore's core with MXCSR of the last thread's FPREGSET and XSTATE set to reserved bits."""
    path = tmp_path_factory.mktemp("mxcsr") / "bad-mxcsr.core"
    shutil.copyfile(gcore_core.path, path)
    notes = pyelf_core(path).note_offsets
    fp = [at for owner, ntype, at, _ in notes if (owner, ntype) == ("CORE", "NT_FPREGSET")][-1]
    xs = [at for owner, ntype, at, _ in notes if (owner, ntype) == ("LINUX", 0x202)][-1]
    with open(path, "r+b") as f:
        for at in (fp, xs):
            f.seek(at + MXCSR)
            f.write(struct.pack("<I", 0xFFFF1F80))
    return path


@pytest.mark.parametrize("vectors", ["xstate", "fpregs"])
def test_an_mxcsr_the_cpu_refuses_is_refused_before_anything_is_touched(gcore_core, bad_mxcsr_core, vectors):
    process = Process(gcore_core, bad_mxcsr_core)
    message = refused(process.target(vectors=vectors), bad_mxcsr_core)
    assert "MXCSR 0xffff1f80" in message


def test_an_mxcsr_refusal_comes_before_missing_memory_is_created(gcore_core, bad_mxcsr_core):
    process = Process(gcore_core, bad_mxcsr_core)
    addr, _ = process.real.printed_global()
    maps = tuple(m for m in process.live.maps if not m.start <= addr < m.end)
    assert "MXCSR" in refused(process.target(maps=maps), bad_mxcsr_core)


def test_a_register_set_the_kernel_refuses_is_refused_before_anything_is_touched(gcore_process):
    target = gcore_process.target()
    target.refuse_regsets[(gcore_process.live.lwps[-1], "gregs")] = "Input/output error"
    message = refused(target, gcore_process.path)
    assert "refuses the general registers" in message and "Input/output error" in message
