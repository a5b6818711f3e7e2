"""restore-core-file's logic: read and validate a core, plan, prepare registers, then write.

Every check (core, plan, register values) happens before the first write; this module never
imports gdb and works on any Target."""

import struct
import time
from dataclasses import dataclass

from .arch import xsave
from .arch.x86_64 import X86_64
from .core.reader import CoreFile
from .errors import MismatchError
from .plan import Protect, plan_restore

MXCSR_MASK_OFFSET = 28
DEFAULT_MXCSR_MASK = 0xFFBF


@dataclass(frozen=True)
class Report:
    path: str
    segments: int
    bytes: int
    threads: int
    seconds: float
    matched_by: str
    kept: tuple = ()          # XSAVE components left as they were, and why
    vectors: bool = True      # False when the target could only take general registers
    created: int = 0          # ranges mapped or heap grown because the process lacked them

    def summary(self) -> str:
        threads = f"{self.threads} thread{'s' * (self.threads != 1)}"
        if self.matched_by == "order" and self.threads > 1:
            threads += " (matched in order)"
        line = (f"Restored {self.segments} segment{'s' * (self.segments != 1)} "
                f"({human_bytes(self.bytes)}) and {threads} from {self.path} in {self.seconds:.3f} s.")
        if self.created:
            line += f" Re-created {self.created} missing memory range{'s' * (self.created != 1)}."
        if self.kept:
            names = ", ".join(xsave.COMPONENT_NAMES.get(c, f"component {c}") for c in self.kept)
            line += f" Kept the live {names} state: the core's copy can't be trusted on this CPU."
        if not self.vectors:
            line += " Vector registers were not restored: this target takes general registers only."
        return line


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def restore_core(target, path: str, check_program: bool = True, before_write=None,
                 clock=time.perf_counter) -> Report:
    """Restore core `path` into `target`; `before_write` runs once every check has passed."""
    start = clock()
    with CoreFile(path) as cf:
        live = target.live()
        plan = plan_restore(cf.core, live, check_program)
        regsets, kept, vectors = prepare_registers(target, plan, live.xsave_layout or {}, path)
        if before_write is not None:
            before_write()
        create_memory(target, plan.creates, plan.protects)
        for w in plan.writes:
            with cf.view(w.offset, w.length) as data:
                target.write_memory(w.vaddr, data)
        for lwp, kind, data in regsets:
            target.set_regset(lwp, kind, data)
        target.flush()
    return Report(path, len(plan.writes), plan.bytes, len(plan.threads), clock() - start,
                  plan.matched_by, tuple(sorted(kept)), vectors, len(plan.creates))


def create_memory(target, creates, protects=()):
    """Carry out every Create, then every Protect, or none: on a failure, undo the ones already
    made and re-raise."""
    done = []
    try:
        for c in creates:
            target.create_memory(c)
            done.append(c)
        for p in protects:
            target.protect_memory(p)
            done.append(p)
    except Exception:
        for d in reversed(done):
            if isinstance(d, Protect):
                target.protect_memory(d.undone())
            else:
                target.undo_create(d)
        raise


def prepare_registers(target, plan, live_layout, path):
    """(lwp, kind, bytes) for every register set to write, FP/vector sets before general ones."""
    out, kept = [], set()
    vectors = True
    for a in plan.threads:
        live_x = target.get_regset(a.lwp, "xstate")
        if live_x is None and target.get_regset(a.lwp, "fpregs") is None:
            vectors = False
        elif a.state.xstate and live_x is not None:
            merged, left = xsave.merge(live_x, a.state.xstate, plan.xsave.layout,
                                       live_layout, plan.xsave.trusted)
            kept.update(left)
            _check_mxcsr(merged, live_x, a, path)
            out.append((a.lwp, "xstate", merged))
        elif a.state.fpregs:
            live_fp = target.get_regset(a.lwp, "fpregs")
            _check_mxcsr(a.state.fpregs, live_fp, a, path)
            out.append((a.lwp, "fpregs", a.state.fpregs))
        out.append((a.lwp, "gregs", X86_64.restarted_syscall(a.state.gregs)))
    for lwp, kind, data in out:
        why = target.refused_regset(lwp, kind, data)
        if why:
            raise MismatchError(f"{path}: the kernel refuses the {REGSET_NAMES[kind]} of thread {lwp} "
                                f"({why}); nothing was written")
    return out, kept, vectors


REGSET_NAMES = {"gregs": "general registers", "fpregs": "FP registers", "xstate": "XSAVE area"}


def _check_mxcsr(area, live_area, assignment, path):
    """The kernel refuses (EINVAL) an MXCSR with bits outside MXCSR_MASK: refuse it first."""
    mask = struct.unpack_from("<I", live_area, MXCSR_MASK_OFFSET)[0] if live_area else 0
    mask = mask or DEFAULT_MXCSR_MASK
    mxcsr = struct.unpack_from("<I", area, xsave.MXCSR_OFFSET)[0]
    if mxcsr & ~mask:
        raise MismatchError(f"{path}: thread {assignment.state.lwp} has MXCSR {mxcsr:#x}, which this "
                            f"CPU does not accept (mask {mask:#x})")
