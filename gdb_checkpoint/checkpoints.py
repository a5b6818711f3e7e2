"""The logic of `checkpoint save/restore/diff`: between a Target (the process) and the Store.

No gdb: commands/checkpoint.py passes a Target and a Store in and prints the report. Every check
and every read of stored bytes (each verified) happens before the first write to the process."""

import bisect
import hashlib
import os
import time
from dataclasses import dataclass

from . import state as state_format
from .arch.x86_64 import X86_64
from .errors import MismatchError
from .ranges import covers, intersect, merge, overlaps, subtract
from .restore import create_memory, human_bytes, prepare_registers
from .snapshot import KERNEL_MAPPINGS, plan_checkpoint_restore, restorable_mapping, saved_regions
from .store import chunk_digest

COMPARE_READ = 16 << 20      # live memory is read for comparison in pieces this big


def program_key(identity) -> str:
    """How the store files a program's checkpoints: its build-id, else a digest of its path."""
    if identity.build_id:
        return identity.build_id
    return "path-" + hashlib.sha256((identity.path or "?").encode()).hexdigest()[:32]


@dataclass(frozen=True)
class SaveReport:
    name: str
    logical: int
    new: int
    seconds: float
    program: object = None      # ProgramIdentity it is filed under, when that is worth saying

    def summary(self) -> str:
        line = (f"Checkpoint {self.name} saved: {human_bytes(self.logical)} of memory, "
                f"{human_bytes(self.new)} new in the store, {self.seconds:.3f} s.")
        if self.program is not None:
            line += (f" It belongs to {self.program.describe()}: load that program to list or "
                     f"restore it.")
        return line


@dataclass(frozen=True)
class RestoreReport:
    name: str
    written: int
    ranges: int
    threads: int
    created: int
    removed: int
    seeked: int
    seconds: float
    wrote: tuple = ()       # (start, end) of the memory written with the checkpoint's bytes
    kept: tuple = ()        # descriptors whose offset was left alone: gdb's own files (_fd_actions)
    cwd: str = None         # the working directory, when it went back to the checkpoint's
    cwd_gone: str = None    # the checkpoint's working directory, when it is gone (left as it was)

    def summary(self) -> str:
        line = (f"Restored checkpoint {self.name}: {human_bytes(self.written)} written in "
                f"{self.ranges} range{'s' * (self.ranges != 1)}, {self.threads} "
                f"thread{'s' * (self.threads != 1)}")
        if self.created or self.removed:
            line += f", {self.created} mapping{'s' * (self.created != 1)} re-created, {self.removed} removed"
        if self.seeked:
            line += f", {self.seeked} file offset{'s' * (self.seeked != 1)} reset"
        if self.kept:
            line += (f", the offset of descriptor{'s' * (len(self.kept) != 1)} "
                     f"{', '.join(map(str, self.kept))} left alone (gdb writes to that file too)")
        if self.cwd:
            line += f", working directory back to {self.cwd}"
        if self.cwd_gone:
            line += f", working directory left as it was ({self.cwd_gone} is gone)"
        return line + f", {self.seconds:.3f} s."


def save(target, store, name, info, base=None, dirty=None, hidden_fds=(), reclaim=True,
         prefetched=None) -> SaveReport:
    """Save the stopped process as `name`; with base+dirty, only `dirty` is read (incremental).
    `prefetched`: prefetch_written()'s, started earlier (closed here either way)."""
    started = time.perf_counter()
    if base is None or dirty is None:
        if prefetched is not None:
            prefetched.close()
        prefetched = None
    elif prefetched is None:            # the written pages, read while the rest is captured
        prefetched = prefetch_pages(target, store, dirty)
    try:
        st = target.capture(hidden_fds=hidden_fds)
        regions = saved_regions(st.maps)
        read, read_many = target.read_memory, target.read_many
        if base is None or dirty is None:
            touched = target.present(regions)
            if touched is not None:
                read, read_many = sparse_reader(read, touched), None
        result = store.save(program_key(st.program), name, regions=regions, read=read,
                            info=dict(info, threads=len(st.threads), pid=st.pid),
                            state=state_format.dumps(st), base=base, dirty=dirty, reclaim=reclaim,
                            read_many=read_many, prefetched=prefetched)
    finally:
        if prefetched is not None:
            prefetched.close()
    return SaveReport(name, result.logical_size, result.new_bytes, time.perf_counter() - started)


def prefetch_written(target, store, history):
    """Start reading and compressing the pages the next incremental save of `history`'s process
    would store (Store.prefetch), for a caller with other work to do first; or None."""
    base, dirty = history.incremental()
    return prefetch_pages(target, store, dirty, encode=True) if base is not None else None


def prefetch_pages(target, store, dirty, encode=False):
    """Start reading the pages an incremental save against `dirty` will store (Store.prefetch), for
    save(prefetched=); or None."""
    concurrent = target.concurrent_read_many()
    return store.prefetch(dirty, concurrent, encode) if concurrent is not None else None


def sparse_reader(read, touched):
    """read(addr, length), but zeros without reading for memory no page of `touched` lies in:
    pages never touched are zero, and a thread's 8 MiB stack is mostly that."""
    starts = [lo for lo, _ in touched]

    def sparse(addr, length):
        i = bisect.bisect_right(starts, addr + length - 1) - 1
        if i < 0 or touched[i][1] <= addr:
            return bytes(length)
        return read(addr, length)
    return sparse


def load(target, store, name):
    """(checkpoint, its ProcessState) for the inferior's program; errors name the checkpoint."""
    ck = store.load(program_key(target.live().identity), name)
    return ck, state_format.loads(ck.state, f"checkpoint '{name}'")


def restore(target, store, name, changed=None, before_write=None) -> RestoreReport:
    """Bring the process back to checkpoint `name`.

    `changed`: page ranges written since the checkpoint, when dirty tracking knows them; otherwise
    live memory is compared with the checkpoint chunk by chunk. `before_write` runs once every
    check has passed and every byte to write is in hand (it saves the undo checkpoint)."""
    started = time.perf_counter()
    live = target.live()
    ck, saved = load(target, store, name)
    plan = plan_checkpoint_restore(name, saved, live)
    seeks, kept = _fd_actions(target, saved, name)
    cwd = saved.cwd if saved.cwd and saved.cwd.startswith("/") and target.cwd() not in (None, saved.cwd) else None
    gone = cwd if cwd and not os.path.isdir(cwd) else None
    ranges = merge(_to_write(target, ck, saved, plan, changed) +
                   intersect(_below_stack_pointers(target, live), ck.regions))
    data = ck.read_runs(ranges)                      # verified; CorruptCheckpointError -> nothing done
    regsets, _, _ = prepare_registers(target, plan, live.xsave_layout or {}, f"checkpoint '{name}'")
    if before_write is not None:
        before_write()
    # Calls into the program first, while gdb's register cache still holds the truth: gdb puts
    # back the registers it has cached after each call. Their frames land below the stack
    # pointers, which is why those pages are always rewritten.
    for u in plan.unmaps:
        target.remove_memory(u)
    create_memory(target, plan.creates, plan.protects)
    if plan.brk is not None:
        target.set_brk(plan.brk)
    for fd in seeks:
        target.restore_fd(fd)
    if cwd and not gone:
        target.set_cwd(cwd)
    target.write_many(data)
    for lwp, kind, raw in regsets:
        target.set_regset(lwp, kind, raw)
    for a in plan.threads:
        if a.state.sigmask is not None:         # None: imported from a core file
            target.set_sigmask(a.lwp, a.state.sigmask)
    target.flush()
    return RestoreReport(name, sum(hi - lo for lo, hi in ranges), len(ranges), len(plan.threads),
                         len(plan.creates), len(plan.unmaps), len(seeks), time.perf_counter() - started,
                         tuple(ranges), kept, cwd if not gone else None, gone)


def _to_write(target, ck, saved, plan, changed):
    """The ranges of the checkpoint whose bytes differ from the live process (merged, sorted)."""
    fresh = [(c.start, c.end) for c in plan.creates]
    # Never the kernel's mappings, whatever the checkpoint says ([vvar] reads fail with EIO).
    writable = subtract(intersect(ck.regions, [(m.start, m.end) for m in saved.maps if restorable_mapping(m)]),
                        [(m.start, m.end) for m in target.live().maps if m.path in KERNEL_MAPPINGS])
    if changed is not None:
        return merge(intersect(merge(list(changed) + fresh), writable))
    live_maps = [(m.start, m.end) for m in target.live().maps]
    missing, present = [], []       # chunks the process lacks (written whole), and ones to compare
    for lo, hi, digest in ck.chunks():
        if not covers(writable, lo, hi):
            continue            # [vdso]: the kernel's, kept for exports only
        if overlaps(lo, hi, fresh) or not covers(live_maps, lo, hi):
            missing.append((lo, hi))
        else:
            present.append((lo, hi, digest))
    return merge(missing + list(_differing(target, present)))


def _differing(target, chunks):
    """The (lo, hi) of the (lo, hi, digest) chunks whose live bytes differ, read in long runs."""
    pending = []
    for c in chunks:
        if pending and (pending[-1][1] != c[0] or c[1] - pending[0][0] > COMPARE_READ):
            yield from _compare(target, pending)
            pending = []
        pending.append(c)
    if pending:
        yield from _compare(target, pending)


def _compare(target, run):
    base = run[0][0]
    live = memoryview(target.read_memory(base, run[-1][1] - base))
    for lo, hi, digest in run:
        if chunk_digest(live[lo - base:hi - base]) != digest:
            yield (lo, hi)


def _fd_actions(target, saved, name):
    """(the saved regular-file descriptors to reopen (the process lacks them) or to move back, the
    numbers of those left where they are because gdb shares them).

    Standard input, output or error open on another file now belongs to this process (a new
    session's terminal on fd 1, say) and is left alone; any other descriptor on another file is
    reopened on the saved one, since the program's memory goes back to using it. Left alone too is
    gdb's own open file (gdb run with its output in a file, which the program inherited as its
    stdout or stderr): moving it back would move gdb's output back over what it wrote since. One
    that must be reopened but whose file is gone refuses the whole restore, before anything is
    written."""
    out, kept = [], []
    for fd in saved.fds:
        if not fd.path.startswith("/") or fd.path.endswith(" (deleted)"):
            continue
        now = target.fd_state(fd.fd)
        if now is None or (now.path != fd.path and fd.fd > 2):
            if not os.path.isfile(fd.path):
                raise MismatchError(f"checkpoint '{name}': descriptor {fd.fd} was open on {fd.path}, "
                                    f"which is gone; nothing was restored")
            out.append(fd)
        elif now.path == fd.path and now.pos != fd.pos and os.path.isfile(fd.path):
            if target.fd_shared_with_debugger(fd.fd):
                kept.append(fd.fd)
            else:
                out.append(fd)
    return out, tuple(kept)


def _below_stack_pointers(target, live, reach=64 << 10):
    """The pages just below each thread's stack pointer, where calls into the program put their
    frames (gdb's, ours): page-aligned [sp - reach, sp)."""
    out = []
    for lwp in live.lwps:
        gregs = target.get_regset(lwp, "gregs")
        if gregs:
            sp = X86_64.unpack_gregs(gregs)[X86_64.sp]
            out.append(((sp - reach) & ~0xFFF, (sp + 0xFFF) & ~0xFFF))
    return out


# -- diff --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiffReport:
    a: str
    b: str
    mappings: tuple      # (mapping label, bytes differing, pages differing)
    only_a: tuple        # (label, size) of memory A has and B lacks
    only_b: tuple
    registers: tuple     # (thread label, names differing)

    def lines(self):
        yield f"Comparing checkpoint {self.a} with {self.b}:"
        if not (self.mappings or self.only_a or self.only_b):
            yield "  memory: no differences"
        for label, nbytes, pages in self.mappings:
            differ = "byte differs" if nbytes == 1 else "bytes differ"
            yield f"  {label}: {nbytes} {differ} in {pages} page{'s' * (pages != 1)}"
        for label, size in self.only_a:
            yield f"  {label}: only in {self.a} ({human_bytes(size)})"
        for label, size in self.only_b:
            yield f"  {label}: only in {self.b} ({human_bytes(size)})"
        if not self.registers:
            yield "  registers: no differences"
        for thread, names in self.registers:
            yield f"  registers of {thread}: {' '.join(names)}"


def diff(store, program, a, b=None, target=None, arch=None) -> DiffReport:
    """Differences between checkpoints a and b, or a and the live process (target) when b is None."""
    ck_a = store.load(program, a)
    st_a = state_format.loads(ck_a.state, f"checkpoint '{a}'")
    if b is not None:
        ck_b = store.load(program, b)
        st_b = state_format.loads(ck_b.state, f"checkpoint '{b}'")
        regions_b, read_b = ck_b.regions, lambda lo, hi: ck_b.read([(lo, hi)])[0][1]
        digests_b = ck_b.chunk_map()
    else:
        st_b = target.capture()
        regions_b = saved_regions(st_b.maps)
        read_b = lambda lo, hi: target.read_memory(lo, hi - lo)  # noqa: E731
        digests_b = None
    per_map = {}
    for lo, hi, digest in ck_a.chunks():
        if not covers(regions_b, lo, hi):
            continue
        other = read_b(lo, hi) if digests_b is None else None
        if digests_b is not None:
            if digests_b.get(lo) == digest:
                continue
            other = read_b(lo, hi)
        elif chunk_digest(other) == digest:
            continue
        mine = ck_a.read([(lo, hi)])[0][1]
        # Per page: a chunk may span several mappings (the program's own are adjacent).
        for at, nbytes in _page_differences(mine, other):
            label = _label(st_a.maps, lo + at)
            got = per_map.get(label, (0, 0))
            per_map[label] = (got[0] + nbytes, got[1] + 1)
    # Memory one side kept and the other didn't, but for read-only file pages: those come from
    # the files either way (gcore and the kernel skip them, a checkpoint keeps them).
    only_a = tuple(_only(ck_a.regions, regions_b, st_a.maps))
    only_b = tuple(_only(regions_b, ck_a.regions, st_b.maps))
    return DiffReport(a, b or "the live process",
                      tuple((k, v[0], v[1]) for k, v in sorted(per_map.items())),
                      only_a, only_b, tuple(_register_diffs(st_a, st_b, arch)))


def _page_differences(x, y):
    """(offset, bytes that differ) of each 4 KiB page where two equal-length buffers differ."""
    for at in range(0, len(x), 4096):
        p, q = bytes(x[at:at + 4096]), bytes(y[at:at + 4096])
        if p != q:
            xor = (int.from_bytes(p, "little") ^ int.from_bytes(q, "little")).to_bytes(len(p), "little")
            yield at, len(xor) - xor.count(0)


def _label(maps, addr):
    for m in maps:
        if m.start <= addr < m.end:
            return f"{m.path or 'anonymous'} ({m.perms}) at {m.start:#x}"
    return f"memory at {addr:#x}"


def _only(mine, other, maps):
    from_files = [(m.start, m.end) for m in maps if m.path.startswith("/") and not m.writable]
    for lo, hi in subtract(mine, from_files):
        at = lo
        for a, b in other:
            if b <= at or a >= hi:
                continue
            if a > at:
                yield _label(maps, at), a - at
            at = max(at, b)
        if at < hi:
            yield _label(maps, at), hi - at


def _register_diffs(st_a, st_b, arch):
    arch = arch or X86_64
    pairs = list(zip(st_a.threads, st_b.threads))
    for n, (ta, tb) in enumerate(pairs, 1):
        ra, rb = arch.unpack_gregs(ta.gregs), arch.unpack_gregs(tb.gregs)
        names = [r for r in arch.gregs if ra[r] != rb[r]]
        va, vb = vector_registers(ta, st_a.xsave_layout), vector_registers(tb, st_b.xsave_layout)
        names += [r for r in va if r in vb and va[r] != vb[r]]
        if names:
            yield f"thread {n} (LWP {ta.lwp})", tuple(names)
    if len(st_a.threads) != len(st_b.threads):
        yield "threads", (f"{len(st_a.threads)} against {len(st_b.threads)}",)


def vector_registers(thread, layout) -> dict:
    """mxcsr, fcw, fsw, st0-7, xmm0-15 and ymm0-15's upper halves from a thread's FXSAVE/XSAVE area.

    Named values, so areas written by different producers (gdb pads and orders differently)
    compare by what the program can observe, not by their bytes."""
    area = thread.xstate or thread.fpregs
    if not area or len(area) < 416:
        return {}
    out = {"fcw": area[0:2], "fsw": area[2:4], "mxcsr": area[24:28]}
    for i in range(8):
        out[f"st{i}"] = area[32 + 16 * i:42 + 16 * i]
    for i in range(16):
        out[f"xmm{i}"] = area[160 + 16 * i:176 + 16 * i]
    avx = (layout or {}).get(2)
    if thread.xstate and avx and len(area) >= avx[0] + 256:
        live = int.from_bytes(area[512:520], "little") >> 2 & 1   # XSTATE_BV: AVX not in init state
        for i in range(16):
            out[f"ymm{i}h"] = area[avx[0] + 16 * i:avx[0] + 16 * i + 16] if live else bytes(16)
    return out


# -- export ------------------------------------------------------------------------------------

def export(store, program, name, path):
    """Write checkpoint `name` as an ELF core at `path`, streaming its memory from the store."""
    from .core.writer import write_core
    ck = store.load(program, name)
    st = state_format.loads(ck.state, f"checkpoint '{name}'")
    return write_core(path, st, ck.regions, ck.read, psargs=st.cmdline)


# -- import ------------------------------------------------------------------------------------

def import_core(store, path, name=None, next_name=None, live_layout=None, current=None) -> SaveReport:
    """Store any ELF core (gcore, kernel, exported) as a checkpoint of its program; the report names
    that program when it is not `current` (the program key gdb has loaded, if any)."""
    from .core.reader import CoreFile
    from .model import LiveMapping, ProcessState
    from .plan import xsave_policy
    from .snapshot import saved_mapping
    started = time.perf_counter()
    with CoreFile(path) as cf:
        core = cf.core
        names = {f.start: (f.path, f.offset) for f in core.files}
        vdso = core.auxv_value(33)              # AT_SYSINFO_EHDR: NT_FILE doesn't name the vDSO
        if vdso is not None:
            names[vdso] = ("[vdso]", 0)
            at = vdso       # the kernel dumps [vvar] (and [vvar_vclock]) unnamed, right below it
            for seg in sorted(core.segments, key=lambda sg: -sg.vaddr):
                if seg.end == at and not seg.flags & 2 and seg.vaddr not in names:
                    names[seg.vaddr] = ("[vvar]", 0)
                    at = seg.vaddr
        maps, regions = [], []
        for seg in sorted(core.segments, key=lambda s: s.vaddr):
            if seg.vaddr >= 1 << 63:
                continue    # [vsyscall]: the kernel's
            path, offset = names.get(seg.vaddr, ("", 0))
            perms = ("r" if seg.flags & 4 else "-") + ("w" if seg.flags & 2 else "-") + \
                    ("x" if seg.flags & 1 else "-") + "p"
            m = LiveMapping(seg.vaddr, seg.end, perms, offset, path)
            maps.append(m)
            if seg.filesz == seg.memsz and saved_mapping(m):
                regions.append((seg.vaddr, seg.end))
        policy = xsave_policy(core, live_layout or {})
        main = core.pid if core.pid is not None else core.threads[0].lwp
        threads = tuple(sorted(core.threads, key=lambda t: (t.lwp != main, t.lwp)))
        st = ProcessState(pid=main, arch_name="i386:x86-64", program=core.identity, maps=tuple(maps),
                          threads=threads, auxv=core.auxv,
                          xsave_layout={c: policy.layout[c] for c in policy.trusted})
        key = program_key(core.identity)
        name = name or next_name(store, key)
        info = {"time": time.time(), "pc": X86_64.unpack_gregs(st.threads[0].gregs)[X86_64.pc],
                "function": None,
                "program": core.identity.path, "threads": len(threads), "pid": main,
                "imported": os.path.basename(path)}
        result = store.save(key, name, regions=regions, read=cf.read_memory, info=info,
                            state=state_format.dumps(st))
    other = core.identity if current is not None and key != current else None
    return SaveReport(name, result.logical_size, result.new_bytes, time.perf_counter() - started, other)
