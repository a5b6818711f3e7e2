"""plan_restore on made-up cores and processes: what it refuses, what it skips, what it writes, and
which live thread receives which saved registers.

Registers are laid out by tests/elfbuild.py (the kernel's user_regs_struct), not by our Arch table."""

import pytest

import elfbuild as eb
from gdb_checkpoint.arch.x86_64 import X86_64
from gdb_checkpoint.errors import MismatchError
from gdb_checkpoint.model import Core, LiveMapping, ProgramIdentity, Segment, ThreadState
from gdb_checkpoint.plan import Create, LiveProcess, Protect, Write, plan_restore

X86_64_NAME = "i386:x86-64"          # what gdb's `show architecture` calls it
RW, R, RX = eb.PF_R | eb.PF_W, eb.PF_R, eb.PF_R | eb.PF_X
PROGRAM = ProgramIdentity("/usr/bin/prog", "aa" * 20)
USER_CS, USER_SS = 0x33, 0x2B
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4     # <sys/mman.h>


def thread(lwp, **regs):
    regs = {"cs": USER_CS, "ss": USER_SS, **regs}
    return ThreadState(lwp, eb.prstatus(lwp, regs)[eb.PR_REG:eb.PR_REG + 27 * 8])


def core(segments=(), threads=None, pid=100, machine=eb.EM_X86_64, identity=PROGRAM, **kw):
    return Core(path="/cores/prog.core", machine=machine, elf_class=2, segments=tuple(segments),
                threads=tuple(threads or [thread(pid)]), pid=pid, identity=identity, **kw)


def live(maps=(), lwps=(500,), pid=500, identity=PROGRAM, **kw):
    return LiveProcess(pid=pid, arch_name=kw.pop("arch_name", X86_64_NAME),
                       maps=tuple(sorted(maps, key=lambda m: m.start)), lwps=tuple(lwps),
                       identity=identity, **kw)


def mapping(start, end, perms="rw-p", path=""):
    return LiveMapping(start, end, perms, 0, path)


DATA = Segment(index=3, vaddr=0x601000, memsz=0x3000, filesz=0x3000, offset=0x9000, flags=RW)
HEAP = Segment(index=4, vaddr=0x1000000, memsz=0x21000, filesz=0x21000, offset=0xC000, flags=RW)
DATA_MAPS = [mapping(0x601000, 0x604000), mapping(0x1000000, 0x1021000, path="[heap]")]


def refusal(c, l, **kw) -> str:
    with pytest.raises(MismatchError) as caught:
        plan_restore(c, l, **kw)
    message = str(caught.value)
    assert "/cores/prog.core" in message and "\n" not in message
    return message


# -- what is written ----------------------------------------------------------------------------

def test_every_writable_segment_with_bytes_becomes_one_write():
    plan = plan_restore(core([DATA, HEAP]), live(DATA_MAPS))
    assert plan.writes == (Write(0x601000, 0x9000, 0x3000, 3), Write(0x1000000, 0xC000, 0x21000, 4))
    assert plan.bytes == 0x24000


def test_only_the_file_bytes_of_a_partly_dumped_segment_are_written():
    partial = Segment(5, 0x601000, memsz=0x3000, filesz=0x1000, offset=0x9000, flags=RW)
    plan = plan_restore(core([partial]), live([mapping(0x601000, 0x602000)]))
    assert plan.writes == (Write(0x601000, 0x9000, 0x1000, 5),)


def test_read_only_and_empty_segments_are_skipped():
    text = Segment(1, 0x400000, 0x1000, 0x1000, 0x1000, RX)
    rodata = Segment(2, 0x500000, 0x1000, 0x1000, 0x2000, R)
    guard = Segment(6, 0x7000000, 0x1000, 0, 0x40000, RW)       # the kernel's filesz=0 pages
    plan = plan_restore(core([text, rodata, DATA, guard]), live(DATA_MAPS))
    assert [w.segment for w in plan.writes] == [3]


def test_a_segment_spanning_two_adjacent_live_mappings_is_written_whole():
    maps = [mapping(0x601000, 0x602000, "r--p"), mapping(0x602000, 0x604000)]
    plan = plan_restore(core([DATA]), live(maps))
    assert plan.writes == (Write(0x601000, 0x9000, 0x3000, 3),)


def test_a_writable_shared_mapping_may_be_written():
    plan = plan_restore(core([DATA]), live([mapping(0x600000, 0x605000, "rw-s", "/dev/shm/x")]))
    assert len(plan.writes) == 1


@pytest.mark.parametrize("name", ["[vvar]", "[vvar_vclock]", "[vsyscall]"])
def test_kernel_pages_are_skipped(name):
    page = Segment(7, 0x7FFF0000, 0x4000, 0x4000, 0x50000, RW)
    plan = plan_restore(core([page, DATA]), live([*DATA_MAPS, mapping(0x7FFF0000, 0x7FFF4000, "r--p", name)]))
    assert [w.segment for w in plan.writes] == [3]


def test_the_vsyscall_page_is_skipped_even_when_the_process_has_none():
    vsyscall = Segment(8, 0xFFFFFFFFFF600000, 0x1000, 0x1000, 0x60000, RW | eb.PF_X)
    plan = plan_restore(core([DATA, vsyscall]), live(DATA_MAPS))
    assert [w.segment for w in plan.writes] == [3]


# -- what is refused --------------------------------------------------------------------------

def test_a_core_of_another_architecture_is_refused():
    message = refusal(core([DATA], machine=eb.EM_AARCH64), live(DATA_MAPS))
    assert "AArch64" in message and X86_64_NAME in message


def test_an_inferior_of_another_architecture_is_refused():
    message = refusal(core([DATA]), live(DATA_MAPS, arch_name="aarch64"))
    assert "aarch64" in message


def test_another_program_is_refused_unless_the_check_is_off():
    other = ProgramIdentity("/usr/bin/prog", "bb" * 20)
    message = refusal(core([DATA]), live(DATA_MAPS, identity=other))
    assert "aa" * 20 in message and "bb" * 20 in message and "-force" in message
    plan = plan_restore(core([DATA]), live(DATA_MAPS, identity=other), check_program=False)
    assert [w.segment for w in plan.writes] == [3]


def test_build_ids_decide_over_paths():
    moved = ProgramIdentity("/elsewhere/prog", "aa" * 20)
    assert plan_restore(core([DATA]), live(DATA_MAPS, identity=moved)).writes
    renamed = ProgramIdentity("/usr/bin/other")
    message = refusal(core([DATA], identity=ProgramIdentity("/usr/bin/prog")), live(DATA_MAPS, identity=renamed))
    assert "/usr/bin/other" in message


def test_an_unknown_program_is_not_refused():
    assert plan_restore(core([DATA], identity=ProgramIdentity()), live(DATA_MAPS)).writes


def test_a_different_thread_count_is_refused():
    c = core([DATA], threads=[thread(100), thread(101)])
    message = refusal(c, live(DATA_MAPS, lwps=(500,)))
    assert "2 threads" in message and "has 1" in message


def test_a_segment_in_a_read_only_shared_mapping_is_refused():
    maps = [mapping(0x601000, 0x604000, "r--s", "/var/db/table")]
    message = refusal(core([DATA]), live(maps))
    assert "read-only shared mapping" in message and "/var/db/table" in message


def test_a_thread_in_another_execution_mode_is_refused():
    compat = core([DATA], threads=[thread(100, cs=0x23)])
    message = refusal(compat, live(DATA_MAPS, selectors={"cs": USER_CS, "ss": USER_SS}))
    assert "cs=0x23" in message and "cs=0x33" in message
    same = core([DATA], threads=[thread(100)])
    assert plan_restore(same, live(DATA_MAPS, selectors={"cs": USER_CS, "ss": USER_SS})).writes


def test_one_unwritable_segment_refuses_the_whole_restore():
    maps = [mapping(0x601000, 0x604000), mapping(0x1000000, 0x1021000, "r--s", "/dev/shm/ro")]
    message = refusal(core([DATA, HEAP]), live(maps))
    assert "segment 4" in message and "0x1000000" in message


# -- memory the live process lacks -------------------------------------------------------------

def test_a_writable_segment_the_process_lacks_is_mapped_first():
    plan = plan_restore(core([DATA]), live([]))
    assert plan.creates == (Create(0x601000, 0x604000, "mmap", PROT_READ | PROT_WRITE),)
    assert plan.writes == (Write(0x601000, 0x9000, 0x3000, 3),)


def test_only_the_hole_in_a_partly_mapped_segment_is_created():
    maps = [mapping(0x601000, 0x602000), mapping(0x603000, 0x604000)]
    plan = plan_restore(core([DATA]), live(maps))
    assert plan.creates == (Create(0x602000, 0x603000, "mmap", PROT_READ | PROT_WRITE),)


def test_a_writable_executable_segment_is_created_executable():
    jit = Segment(9, 0x7F0000000000, 0x2000, 0x2000, 0x70000, RW | eb.PF_X)
    plan = plan_restore(core([jit]), live([]))
    assert plan.creates == (Create(0x7F0000000000, 0x7F0000002000, "mmap",
                                   PROT_READ | PROT_WRITE | PROT_EXEC),)


def test_a_heap_that_grew_since_grows_the_live_heap_from_the_program_break():
    maps = [mapping(0x1000000, 0x1010000, path="[heap]")]
    plan = plan_restore(core([HEAP]), live(maps, brk=0x1010000))
    assert plan.creates == (Create(0x1010000, 0x1021000, "brk", 0),)


def test_a_fresh_process_without_a_heap_grows_one_from_its_unaligned_break():
    plan = plan_restore(core([HEAP]), live([], brk=0x0FFF010))
    assert plan.creates == (Create(0x1000000, 0x1021000, "brk", 0),)


def test_without_a_known_break_a_missing_heap_is_mapped():
    plan = plan_restore(core([HEAP]), live([]))
    assert [c.how for c in plan.creates] == ["mmap"]


def test_skipped_segments_create_nothing():
    text = Segment(1, 0x400000, 0x1000, 0x1000, 0x1000, RX)
    guard = Segment(6, 0x7000000, 0x1000, 0, 0x40000, RW)
    assert plan_restore(core([text, guard]), live([])).creates == ()


# -- which thread gets which registers -----------------------------------------------------------

def test_threads_are_matched_by_lwp_when_the_core_s_threads_are_the_live_ones():
    c = core([DATA], threads=[thread(11, rip=0xB), thread(10, rip=0xA), thread(12, rip=0xC)], pid=10)
    plan = plan_restore(c, live(DATA_MAPS, lwps=(10, 11, 12), pid=10))
    assert plan.matched_by == "LWP"
    assert sorted((a.lwp, a.state.lwp) for a in plan.threads) == [(10, 10), (11, 11), (12, 12)]


def test_otherwise_main_goes_to_main_and_the_rest_in_lwp_order():
    c = core([DATA], threads=[thread(102), thread(100), thread(101)], pid=100)
    plan = plan_restore(c, live(DATA_MAPS, lwps=(503, 500, 501), pid=500))
    assert plan.matched_by == "order"
    assert [(a.lwp, a.state.lwp) for a in plan.threads] == [(500, 100), (501, 101), (503, 102)]


def test_without_a_process_id_the_first_thread_is_the_main_one():
    c = core([DATA], threads=[thread(102), thread(100)], pid=None)
    plan = plan_restore(c, live(DATA_MAPS, lwps=(600, 601), pid=601))
    assert [(a.lwp, a.state.lwp) for a in plan.threads] == [(601, 102), (600, 100)]


def test_the_assigned_registers_are_the_saved_ones():
    saved = thread(100, rip=0x401234, rsp=0x7FFE0000)
    plan = plan_restore(core([DATA], threads=[saved]), live(DATA_MAPS))
    assert [(a.lwp, a.state) for a in plan.threads] == [(500, saved)]


# -- memory the live process has with other protections ----------------------------------------

def test_a_reserve_the_saved_process_had_made_writable_is_made_writable_first():
    # A malloc arena: the live process has less of its PROT_NONE reserve writable than the core.
    maps = [mapping(0x601000, 0x602000), mapping(0x602000, 0x610000, perms="---p")]
    plan = plan_restore(core([DATA]), live(maps))
    assert plan.protects == (Protect(0x602000, 0x604000, PROT_READ | PROT_WRITE, 0),)
    assert plan.creates == () and plan.writes == (Write(0x601000, 0x9000, 0x3000, 3),)


def test_memory_with_the_segments_protections_is_left_as_it_is():
    assert plan_restore(core([DATA, HEAP]), live(DATA_MAPS)).protects == ()


def test_an_undone_protect_gives_back_what_was_there():
    p = Protect(0x602000, 0x604000, PROT_READ | PROT_WRITE, 0)
    assert p.undone() == Protect(0x602000, 0x604000, 0, PROT_READ | PROT_WRITE)


# -- a system call the kernel would resume through the restart block ----------------------------

def _gregs(**values):
    return X86_64.pack_gregs({n: values.get(n, 0) for n in X86_64.gregs})


def test_a_call_to_restart_through_the_restart_block_runs_again_from_its_start():
    before = _gregs(orig_rax=230, rax=-516, rip=0x401000, rdi=1)
    after = X86_64.unpack_gregs(X86_64.restarted_syscall(before))
    assert (after["rax"], after["rip"], after["orig_rax"], after["rdi"]) == (230, 0x400FFE, 230, 1)


@pytest.mark.parametrize("orig_rax, rax", [(230, -4), (202, -512), (-1, -516), (-1, 0x1234)],
                         ids=["EINTR", "ERESTARTSYS", "no-call", "not-in-a-call"])
def test_other_registers_are_left_as_they_are(orig_rax, rax):
    gregs = _gregs(orig_rax=orig_rax, rax=rax, rip=0x401000)
    assert X86_64.restarted_syscall(gregs) == gregs
