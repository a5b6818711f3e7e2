"""The logic of `checkpoint save/restore/diff`: between a Target (the process) and the Store.

No gdb: commands/checkpoint.py passes a Target and a Store in and prints the report. Every check
and every read of stored bytes (each verified) happens before the first write to the process."""

import hashlib
import os
import time
from dataclasses import dataclass

from . import state as state_format
from .restore import create_memory, human_bytes, prepare_registers
from .snapshot import plan_checkpoint_restore, saved_regions
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

    def summary(self) -> str:
        return (f"Checkpoint {self.name} saved: {human_bytes(self.logical)} of memory, "
                f"{human_bytes(self.new)} new in the store, {self.seconds:.3f} s.")


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

    def summary(self) -> str:
        line = (f"Restored checkpoint {self.name}: {human_bytes(self.written)} written in "
                f"{self.ranges} range{'s' * (self.ranges != 1)}, {self.threads} "
                f"thread{'s' * (self.threads != 1)}")
        if self.created or self.removed:
            line += f", {self.created} mapping{'s' * (self.created != 1)} re-created, {self.removed} removed"
        if self.seeked:
            line += f", {self.seeked} file offset{'s' * (self.seeked != 1)} reset"
        return line + f", {self.seconds:.3f} s."


def save(target, store, name, info, base=None, dirty=None, hidden_fds=()) -> SaveReport:
    """Save the stopped process as `name`; with base+dirty, only `dirty` is read (incremental)."""
    started = time.perf_counter()
    st = target.capture(hidden_fds=hidden_fds)
    result = store.save(program_key(st.program), name, regions=saved_regions(st.maps),
                        read=target.read_memory, info=dict(info, threads=len(st.threads), pid=st.pid),
                        state=state_format.dumps(st), base=base, dirty=dirty)
    return SaveReport(name, result.logical_size, result.new_bytes, time.perf_counter() - started)


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
    ranges = _to_write(target, ck, plan, changed)
    data = ck.read(ranges)                           # verified; CorruptCheckpointError -> nothing done
    regsets, _, _ = prepare_registers(target, plan, live.xsave_layout or {}, f"checkpoint '{name}'")
    seeks = _fd_actions(target, saved)
    if before_write is not None:
        before_write()
    for u in plan.unmaps:
        target.remove_memory(u)
    create_memory(target, plan.creates)
    if plan.brk is not None:
        target.set_brk(plan.brk)
    for addr, buf in data:
        target.write_memory(addr, buf)
    for lwp, kind, raw in regsets:
        target.set_regset(lwp, kind, raw)
    for fd in seeks:
        target.restore_fd(fd)
    target.flush()
    return RestoreReport(name, sum(len(b) for _, b in data), len(data), len(plan.threads),
                         len(plan.creates), len(plan.unmaps), len(seeks), time.perf_counter() - started)


def _to_write(target, ck, plan, changed):
    """The ranges of the checkpoint whose bytes differ from the live process (merged, sorted)."""
    fresh = [(c.start, c.end) for c in plan.creates]
    if changed is not None:
        wanted = _intersect(_merge(list(changed) + fresh), ck.regions)
        return _merge(wanted)
    out = []
    live_maps = [(m.start, m.end) for m in target.live().maps]
    for lo, hi, digest in ck.chunks():
        if _overlaps(lo, hi, fresh) or not _inside(lo, hi, live_maps):
            if digest is not None:
                out.append((lo, hi))
            continue
        out.append((lo, hi, digest))
    return _merge(_differing(target, out))


def _differing(target, chunks):
    """Keep (lo, hi) entries; for (lo, hi, digest) entries, read live memory and keep those that differ."""
    pending = []
    for c in chunks:
        if len(c) == 2:
            yield c
            continue
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


def _fd_actions(target, saved):
    """The saved regular-file descriptors whose offset or file differs now."""
    out = []
    for fd in saved.fds:
        if not fd.path.startswith("/") or fd.path.endswith(" (deleted)"):
            continue
        now = target.fd_state(fd.fd)
        if now is None or now.path != fd.path or now.pos != fd.pos:
            if now is None and not os.path.isfile(fd.path):
                continue        # the file is gone: nothing to reopen
            out.append(fd)
    return out


def _merge(ranges):
    out = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _intersect(ranges, regions):
    out = []
    for lo, hi in ranges:
        for a, b in regions:
            x, y = max(lo, a), min(hi, b)
            if x < y:
                out.append((x, y))
    return out


def _overlaps(lo, hi, ranges):
    return any(a < hi and lo < b for a, b in ranges)


def _inside(lo, hi, ranges):
    at = lo
    for a, b in sorted(ranges):
        if a <= at < b:
            at = b
            if at >= hi:
                return True
    return False
