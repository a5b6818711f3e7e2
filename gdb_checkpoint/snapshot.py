"""What a checkpoint saves of a process, and how to bring a live process back to a checkpoint.

Pure: ProcessState and LiveProcess in, plans out. No gdb, no I/O; checkpoints.py carries plans out."""

from dataclasses import dataclass

from .model import LiveMapping, ProcessState, Segment
from .plan import UNWRITABLE_NAMES, LiveProcess, XsavePolicy, check_layout, gaps, match_threads, pflags, reprotects
from .ranges import subtract

KERNEL_MAPPINGS = UNWRITABLE_NAMES | {"[vdso]"}


def saved_mapping(m: LiveMapping) -> bool:
    """Memory a checkpoint keeps: readable private mappings but executable file text, and [vdso].

    Text comes back from its file. Read-only file data is kept: RELRO pages were written by the
    dynamic linker (the executable's holds .dynamic's DT_DEBUG, without which a debugger reading
    an export finds no shared libraries), and they cost nothing after the first checkpoint. The
    [vdso] image makes exports readable by stock gdb; restores never write the kernel's mappings."""
    if m.path in UNWRITABLE_NAMES or m.perms[0] != "r" or not m.private:
        return False
    return m.path == "[vdso]" or m.writable or anonymous(m) or m.perms[2] != "x"


def restorable_mapping(m: LiveMapping) -> bool:
    """Saved memory a restore may write or re-create: anything but the kernel's own mappings."""
    return saved_mapping(m) and m.path not in KERNEL_MAPPINGS


def anonymous(m: LiveMapping) -> bool:
    return m.path == "" or m.path in ("[heap]", "[stack]") or m.path.startswith("[anon:")


def saved_regions(maps) -> list:
    """Sorted (start, end) of the memory a checkpoint of this map stores, adjacent ones merged."""
    out = []
    for m in sorted(maps, key=lambda m: m.start):
        if not saved_mapping(m):
            continue
        if out and out[-1][1] == m.start:
            out[-1] = (out[-1][0], m.end)
        else:
            out.append((m.start, m.end))
    return out


@dataclass(frozen=True)
class Unmap:
    """Anonymous memory the process gained since the checkpoint: give it back."""
    start: int
    end: int
    how: str        # "brk" (shrink the heap to start) or "munmap"


@dataclass(frozen=True)
class CheckpointPlan:
    creates: tuple          # Create, made before writing
    unmaps: tuple           # Unmap, made before creating
    threads: tuple          # Assignment
    matched_by: str
    xsave: XsavePolicy
    brk: int = None         # the break to set, when it differs from the live one
    protects: tuple = ()    # Protect, made after creating


def plan_checkpoint_restore(name: str, saved: ProcessState, live: LiveProcess) -> CheckpointPlan:
    threads, matched_by = match_threads(f"checkpoint '{name}'", saved.threads, saved.pid, live)
    check_layout(f"checkpoint '{name}'", saved.maps, live)
    unmaps = tuple(_unmaps(saved, live))
    # After the unmaps, a gap that starts at the (possibly shrunk) break grows the heap back;
    # any other missing memory is mapped anonymous.
    shrunk = [u.start for u in unmaps if u.how == "brk"]
    after = LiveProcess(**{**live.__dict__, "maps": _without(live.maps, unmaps),
                           "brk": shrunk[0] if shrunk else live.brk})
    creates, protects = [], []
    for i, m in enumerate(saved.maps):
        if restorable_mapping(m):
            seg = Segment(i, m.start, m.end - m.start, m.end - m.start, 0, pflags(m.perms))
            creates += gaps(f"checkpoint '{name}'", seg, after)
            protects += reprotects(seg, after)
    brk = saved.brk if saved.brk is not None and saved.brk != live.brk else None
    layout = saved.xsave_layout or {}
    return CheckpointPlan(tuple(creates), unmaps, threads, matched_by,
                          XsavePolicy(layout, frozenset(layout)), brk, tuple(protects))


def _unmaps(saved, live):
    """Anonymous private live memory no saved mapping covers (the heap above the saved break too)."""
    kept = [(m.start, m.end) for m in saved.maps]
    for m in live.maps:
        if m.private and anonymous(m) and m.path != "[stack]":
            for lo, hi in subtract([(m.start, m.end)], kept):
                yield _unmap(lo, hi, m, saved)


def _unmap(start, end, m, saved):
    how = "brk" if m.path == "[heap]" and saved.brk is not None and end == m.end else "munmap"
    return Unmap(start, end, how)


def _without(maps, unmaps):
    holes = [(u.start, u.end) for u in unmaps]
    return tuple(LiveMapping(lo, hi, m.perms, m.offset, m.path)
                 for m in maps for lo, hi in subtract([(m.start, m.end)], holes))
