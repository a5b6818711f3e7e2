"""Turn a core and the facts of a live process into a fully validated restore plan.

Pure: no gdb, no I/O. Everything that can make a restore fail is checked here, before the first
byte is written; apply code only carries out what a plan says."""

from dataclasses import dataclass, field
from typing import Optional

from . import arch as arches
from .arch import xsave
from .core import elf
from .errors import MismatchError
from .model import PF_R, PF_W, PF_X, Core, ProgramIdentity, ThreadState

# Mappings the kernel won't let a debugger write (FACTS: /proc/PID/mem and gdb both refuse).
UNWRITABLE_NAMES = frozenset(("[vvar]", "[vvar_vclock]", "[vsyscall]"))
VSYSCALL_START = 0xFFFFFFFFFF600000


@dataclass(frozen=True)
class LiveProcess:
    """What the planner needs to know of the inferior, gathered once by the Target."""
    pid: int
    arch_name: str
    maps: tuple                        # LiveMapping, sorted by start
    lwps: tuple                        # thread LWPs, main thread first
    identity: ProgramIdentity = field(default_factory=ProgramIdentity)
    xsave_layout: Optional[dict] = None  # component -> (offset, size) on this CPU
    selectors: Optional[dict] = None     # cs/ss of the main thread now, to refuse foreign modes
    brk: Optional[int] = None            # the program break now (None where /proc can't tell)


@dataclass(frozen=True)
class Write:
    vaddr: int
    offset: int     # in the core file
    length: int
    segment: int    # program header index, for messages


@dataclass(frozen=True)
class Create:
    """Memory the live process lacks: grow the heap (`brk`) or map anonymous pages (`mmap`)."""
    start: int
    end: int
    how: str        # "brk" or "mmap"
    prot: int       # PROT_* bits for mmap


@dataclass(frozen=True)
class Assignment:
    lwp: int                 # the live thread that receives...
    state: ThreadState       # ...these registers


@dataclass(frozen=True)
class XsavePolicy:
    layout: dict             # where each component sits in the core's XSTATE notes
    trusted: frozenset       # components we may copy from the core


@dataclass(frozen=True)
class Protect:
    """Live memory whose protection is not the saved one's, such as the part of a malloc arena's
    PROT_NONE reserve that the saved process had made writable: mprotect it before writing."""
    start: int
    end: int
    prot: int       # PROT_* bits to give it
    was: int        # PROT_* bits it has (to undo)

    def undone(self):
        return Protect(self.start, self.end, self.was, self.prot)


@dataclass(frozen=True)
class RestorePlan:
    writes: tuple
    threads: tuple
    matched_by: str          # "LWP" or "order"
    xsave: XsavePolicy
    creates: tuple = ()
    protects: tuple = ()

    @property
    def bytes(self) -> int:
        return sum(w.length for w in self.writes)


def plan_restore(core: Core, live: LiveProcess, check_program: bool = True) -> RestorePlan:
    arch = arches.by_machine(core.machine, core.elf_class)
    if arch is None or arch.name != live.arch_name:
        name = elf.MACHINE_NAMES.get(core.machine, f"machine {core.machine}")
        raise MismatchError(f"{core.path}: is a {name} core but the inferior's architecture is "
                            f"{live.arch_name}")
    if check_program and core.identity.same_program(live.identity) is False:
        raise MismatchError(f"{core.path}: was dumped from {core.identity.describe()}, but the "
                            f"inferior runs {live.identity.describe()}; use -force to restore it anyway")
    threads, matched_by = match_threads(core.path, core.threads, core.pid, live)
    if check_program:
        check_layout(core.path, core.files, live)
    _check_selectors(core, arch, live)
    writes, creates, protects = [], [], []
    for seg in core.segments:
        if _restorable(seg, live):
            creates += gaps(core.path, seg, live)
            protects += reprotects(seg, live)
            writes.append(Write(seg.vaddr, seg.offset, seg.filesz, seg.index))
    return RestorePlan(writes=tuple(writes), threads=threads, matched_by=matched_by,
                       xsave=xsave_policy(core, live.xsave_layout or {}), creates=tuple(creates),
                       protects=tuple(protects))


def check_layout(what: str, files, live: LiveProcess) -> None:
    """Refuse when a file the saved process had mapped is loaded at another address in the live
    one (address randomization was on, or gdb attached to a process started elsewhere): every
    pointer into its code and data would be wrong, and the process wrecked.

    files: FileMapping-like (start, offset, path); each file is placed by its lowest mapping of
    offset 0, and files only one side has are not compared."""
    def placed(maps):
        out = {}
        for m in maps:
            if m.offset == 0 and m.path.startswith("/"):
                out[m.path] = min(out.get(m.path, m.start), m.start)
        return out
    theirs = placed(live.maps)
    for path, start in sorted(placed(files).items(), key=lambda item: item[1]):
        if path in theirs and theirs[path] != start:
            raise MismatchError(f"{what}: {path} was loaded at {start:#x} but process {live.pid} has it "
                                f"at {theirs[path]:#x} (address randomization?); restore into a process "
                                f"gdb started with \"set disable-randomization on\"")


def match_threads(what: str, saved, saved_pid, live: LiveProcess):
    """By LWP when the saved threads are the live ones, else main thread first, then LWP order."""
    if len(saved) != len(live.lwps):
        raise MismatchError(f"{what}: has {len(saved)} thread{'s' * (len(saved) != 1)} but the "
                            f"inferior has {len(live.lwps)}; restore where the thread counts agree")
    if {t.lwp for t in saved} == set(live.lwps):
        return tuple(Assignment(t.lwp, t) for t in saved), "LWP"
    main = saved_pid if saved_pid is not None else saved[0].lwp
    ordered = sorted(saved, key=lambda t: (t.lwp != main, t.lwp))
    live_main = live.pid
    live_ordered = sorted(live.lwps, key=lambda lwp: (lwp != live_main, lwp))
    return tuple(Assignment(lwp, t) for lwp, t in zip(live_ordered, ordered)), "order"


def _check_selectors(core, arch, live):
    if not live.selectors:
        return
    for t in core.threads:
        regs = arch.unpack_gregs(t.gregs)
        for name, want in live.selectors.items():
            if regs[name] != want:
                raise MismatchError(f"{core.path}: thread {t.lwp} has {name}={regs[name]:#x} but the "
                                    f"inferior runs with {name}={want:#x} (another execution mode)")


def _restorable(seg, live) -> bool:
    """A writable segment with bytes, outside the kernel's own mappings ([vvar] and friends)."""
    if not seg.writable or seg.filesz == 0 or seg.vaddr >= VSYSCALL_START:
        return False
    end = seg.vaddr + seg.filesz
    return not any(m.path in UNWRITABLE_NAMES and m.start < end and seg.vaddr < m.end for m in live.maps)


def gaps(what, seg, live):
    """Create actions for the parts of `seg` no live mapping holds; refuse unwritable overlaps.

    A gap that starts at the live program break grows the heap; any other gap is mapped
    anonymous (MAP_FIXED_NOREPLACE, so nothing live can be replaced)."""
    start, end = seg.vaddr, seg.vaddr + seg.filesz
    at, out = start, []
    for m in live.maps:
        if m.end <= at or m.start >= end:
            continue
        if not (m.private or m.writable):
            raise MismatchError(f"{what}: segment {seg.index} [{start:#x}, {end:#x}) falls in a read-only "
                                f"shared mapping of {m.path or 'anonymous memory'} at {m.start:#x} in "
                                f"process {live.pid}; it can't be written")
        if m.start > at:
            out.append(_create(at, m.start, seg, live))
        at = m.end
        if at >= end:
            break
    if at < end:
        out.append(_create(at, end, seg, live))
    return out


def reprotects(seg, live):
    """Protect actions for the live memory inside `seg` whose protection differs from the segment's."""
    start, end, want = seg.vaddr, seg.vaddr + seg.filesz, _prot(seg.flags)
    out = []
    for m in live.maps:
        if m.start < end and start < m.end:
            was = _prot(pflags(m.perms))
            if was != want:
                out.append(Protect(max(start, m.start), min(end, m.end), want, was))
    return out


def _create(start, end, seg, live):
    if live.brk is not None and start == _page_up(live.brk):
        return Create(start, end, "brk", 0)
    return Create(start, end, "mmap", _prot(seg.flags))


def pflags(perms: str) -> int:
    """ELF segment flags (PF_*) of a /proc/PID/maps permission string such as "rw-p"."""
    return (PF_R if perms[0] == "r" else 0) | (PF_W if perms[1] == "w" else 0) | (PF_X if perms[2] == "x" else 0)


def _prot(flags):
    """PROT_* bits of ELF segment flags (PF_R 4, PF_W 2, PF_X 1)."""
    return (1 if flags & 4 else 0) | (2 if flags & 2 else 0) | (4 if flags & 1 else 0)


def _page_up(addr, page=4096):
    return (addr + page - 1) & ~(page - 1)


def xsave_policy(core: Core, live_layout: dict) -> XsavePolicy:
    """Where the core keeps each XSAVE component, and which ones can be believed.

    The kernel's note 0x205 gives its layout. gcore writes gdb 13's fixed layout, which is right
    only where it equals this CPU's (FACTS: gdb misplaces AVX-512 on AMD), so only those components
    are trusted. Without either, a same-sized area from a same-XCR0 CPU is taken to be like ours."""
    areas = [t.xstate for t in core.threads if t.xstate]
    if not areas:
        return XsavePolicy({}, frozenset())
    if core.xsave_layout:
        layout = core.xsave_layout
        trusted = {c for c, where in layout.items() if live_layout.get(c, (None, where[1]))[1] == where[1]}
    elif core.producer == "gdb":
        layout = xsave.GDB_LAYOUT
        trusted = {c for c, where in layout.items() if live_layout.get(c) == where}
    else:
        layout = dict(live_layout)
        trusted = set(layout)
    area = areas[0]
    present = set(xsave.components(xsave.xcr0(area)))
    trusted = {c for c in trusted if c in present and layout[c][0] + layout[c][1] <= len(area)}
    return XsavePolicy(layout, frozenset(trusted))
