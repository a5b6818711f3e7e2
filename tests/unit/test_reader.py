"""CoreFile on real cores (gcore's and the kernel's) agrees with LIEF, pyelftools and the program itself."""

import os
import signal
import struct

import pytest

from gdb_checkpoint.arch.x86_64 import X86_64
from gdb_checkpoint.core.identity import identity_of_file
from gdb_checkpoint.core.reader import CoreFile
from oracles import build_id_of, lief_core, pyelf_core, xsave_layout_note

FX_MXCSR = 24                    # FXSAVE area: MXCSR at byte 24 (Intel SDM vol. 1, table 10-2)
AVX_OFFSET, AVX_SIZE = 576, 256  # XSAVE standard format: the AVX component is architectural


@pytest.fixture
def read(any_core):
    with CoreFile(str(any_core.path)) as cf:
        yield cf


def test_segments_are_the_pt_loads_lief_sees(any_core, read):
    lief = lief_core(any_core.path)
    expected = [(s.index, s.vaddr, s.filesz, s.memsz, s.flags, s.offset) for s in lief.loads if s.memsz]
    got = [(s.index, s.vaddr, s.filesz, s.memsz, s.flags, s.offset) for s in read.core.segments]
    assert got == expected


def test_segments_are_the_pt_loads_pyelftools_sees(any_core, read):
    expected = [s for s in pyelf_core(any_core.path).segments if s[3]]
    got = [(s.index, s.vaddr, s.filesz, s.memsz, s.flags, s.offset) for s in read.core.segments]
    assert got == expected


def test_segment_bytes_are_the_bytes_lief_reads(any_core, read):
    lief = lief_core(any_core.path)
    for seg in lief.loads:
        if seg.filesz:
            with read.view(seg.offset, seg.filesz) as view:
                assert view.tobytes() == seg.content, f"segment {seg.index} at {seg.vaddr:#x}"


def test_threads_are_the_prstatus_notes_in_order(any_core, read):
    lief = lief_core(any_core.path)
    assert [t.lwp for t in read.core.threads] == [t.lwp for t in lief.threads]
    assert [t.signo for t in read.core.threads] == [t.cursig for t in lief.threads]


def test_threads_are_the_program_s_threads(any_core, read):
    lwps = [t.lwp for t in read.core.threads]
    assert len(lwps) == 3                       # main and the two waiters unit_target starts
    assert any_core.pid in lwps
    if any_core.gdb_lwps:
        assert sorted(lwps) == sorted(any_core.gdb_lwps)


def test_kernel_core_records_the_signal_that_killed_the_program(kernel_core):
    with CoreFile(str(kernel_core.path)) as cf:
        main = [t for t in cf.core.threads if t.lwp == kernel_core.pid]
    assert [t.signo for t in main] == [signal.SIGABRT]


def test_general_registers_are_pr_reg_of_each_prstatus(any_core, read):
    theirs = pyelf_core(any_core.path).threads
    assert len(theirs) == len(read.core.threads)
    for i, (ours, raw) in enumerate(zip(read.core.threads, theirs)):
        assert ours.gregs == raw.gregs, f"thread {i} (LWP {ours.lwp})"


def test_each_thread_s_pc_and_sp_are_the_ones_lief_decodes(any_core, read):
    lief = {t.lwp: (t.pc, t.sp) for t in lief_core(any_core.path).threads}
    for t in read.core.threads:
        regs = X86_64.unpack_gregs(t.gregs)
        assert (regs["rip"], regs["rsp"]) == lief[t.lwp], f"LWP {t.lwp}"


def test_fp_and_xstate_notes_belong_to_the_thread_before_them(any_core, read):
    theirs = pyelf_core(any_core.path).threads
    assert len(theirs) == len(read.core.threads)
    for i, (ours, raw) in enumerate(zip(read.core.threads, theirs)):
        assert raw.fpregs is not None and raw.xstate is not None
        assert ours.fpregs == raw.fpregs, f"thread {i} (LWP {ours.lwp})"
        assert ours.xstate == raw.xstate, f"thread {i} (LWP {ours.lwp})"


def test_main_thread_mxcsr_is_what_the_program_set(any_core, read):
    main = [t for t in read.core.threads if t.lwp == any_core.pid][0]
    assert struct.unpack_from("<I", main.fpregs, FX_MXCSR)[0] == any_core.printed_mxcsr
    assert struct.unpack_from("<I", main.xstate, FX_MXCSR)[0] == any_core.printed_mxcsr


def test_process_info_is_the_prpsinfo_pyelftools_decodes(any_core, read):
    theirs = pyelf_core(any_core.path)
    assert (read.core.pid, read.core.fname) == (theirs.pid, theirs.fname)
    assert read.core.pid == any_core.pid
    assert read.core.fname == any_core.exe.name[:15]


def test_file_mappings_are_the_nt_file_entries_pyelftools_decodes(any_core, read):
    expected = pyelf_core(any_core.path).files
    got = [(f.start, f.end, f.offset, f.path) for f in read.core.files]
    assert got == expected
    assert str(any_core.exe) in {f.path for f in read.core.files}


def test_auxv_is_the_one_lief_decodes(any_core, read):
    assert dict(read.core.auxv) == lief_core(any_core.path).auxv


def test_memory_holds_the_global_the_program_printed(any_core, read):
    addr, value = any_core.printed_global()
    assert read.read_memory(addr, 8) == struct.pack("<q", value)


def test_memory_holds_the_heap_string_the_program_printed(any_core, read):
    addr, text = any_core.printed_heap()
    assert read.read_memory(addr, len(text) + 1) == text.encode() + b"\0"


def test_memory_not_in_any_segment_reads_as_none(read):
    assert read.read_memory(0, 8) is None
    assert read.read_memory(0x1000, 16) is None


def test_memory_the_kernel_did_not_dump_reads_as_none(kernel_core):
    undumped = [s for s in lief_core(kernel_core.path).loads if s.filesz == 0 and s.memsz]
    assert undumped, "the kernel writes p_filesz=0 for unmodified file-backed text"
    with CoreFile(str(kernel_core.path)) as cf:
        for seg in undumped:
            assert cf.read_memory(seg.vaddr, 8) is None, f"segment {seg.index} at {seg.vaddr:#x}"


def test_build_id_is_the_executable_s(any_core, read):
    expected = build_id_of(any_core.exe)
    assert read.core.identity.build_id == expected
    assert identity_of_file(str(any_core.exe)).build_id == expected
    assert read.core.identity.path == str(any_core.exe)


def test_producer_names_who_wrote_the_core(any_core, read):
    assert read.core.producer == any_core.producer


def test_kernel_xsave_layout_note_is_decoded(kernel_core):
    note = lief_core(kernel_core.path).note(b"LINUX", 0x205)
    with CoreFile(str(kernel_core.path)) as cf:
        layout = cf.core.xsave_layout
    if note is None:
        assert layout is None       # kernels before 6.12 write no layout note
        return
    assert layout == xsave_layout_note(note)
    assert layout[2] == (AVX_OFFSET, AVX_SIZE)


def test_gcore_has_no_xsave_layout(gcore_core):
    with CoreFile(str(gcore_core.path)) as cf:
        assert cf.core.xsave_layout is None


def test_gcore_main_thread_registers_are_what_gdb_printed(gcore_core):
    with CoreFile(str(gcore_core.path)) as cf:
        main = [t for t in cf.core.threads if t.lwp == gcore_core.pid][0]
    regs = X86_64.unpack_gregs(main.gregs)
    assert {name: regs[name] for name in gcore_core.gdb_regs} == gcore_core.gdb_regs


def test_closing_twice_and_views_outliving_close_are_harmless(gcore_core):
    cf = CoreFile(str(gcore_core.path))
    seg = cf.core.segments[0]
    view = cf.view(seg.offset, seg.filesz)
    cf.close()
    cf.close()
    assert len(view) == seg.filesz
    view.release()


def test_a_core_can_be_opened_many_times_without_leaking_descriptors(gcore_core):
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        with CoreFile(str(gcore_core.path)):
            pass
    assert len(os.listdir("/proc/self/fd")) == before


def test_the_kernel_core_says_the_program_died_of_sigabrt(kernel_core):
    """unit_target called abort(): the kernel's NT_SIGINFO must name SIGABRT (6)."""
    with CoreFile(str(kernel_core.path)) as cf:
        signals = [t.si_signo for t in cf.core.threads if t.siginfo is not None]
    assert signals == [6]
