"""The Target protocol: what restore needs of a live process, and FakeTarget to test it without gdb.

A Target gathers the process facts for the planner once (live()), then carries out writes."""

from typing import Optional, Protocol

from .errors import TargetError
from .model import LiveMapping
from .plan import LiveProcess


class Target(Protocol):
    def live(self) -> LiveProcess: ...
    def write_memory(self, addr: int, data) -> None: ...
    def write_many(self, items) -> None: ...                    # [(addr, data) or (addr, data, at, n)]
    def read_many(self, ranges, into=None) -> list: ...         # [(addr, length)] -> [data]
    def concurrent_read_many(self): ...                         # read_many for any thread, or None
    def get_regset(self, lwp: int, kind: str) -> Optional[bytes]: ...
    def set_regset(self, lwp: int, kind: str, data: bytes) -> None: ...
    def refused_regset(self, lwp: int, kind: str, data: bytes) -> Optional[str]: ...  # why not, or None
    def create_memory(self, create) -> None: ...
    def protect_memory(self, protect) -> None: ...
    def undo_create(self, create) -> None: ...
    def flush(self) -> None: ...


def piece(item) -> tuple:
    """(addr, data) of a write_many() item: (addr, data), or (addr, data, at, n) for bytes [at,
    at + n) of data (a restore's, from the blocks it read)."""
    if len(item) == 2:
        return item
    addr, data, at, n = item
    return addr, memoryview(data)[at:at + n]


def gather(datas, into=None) -> list:
    """`datas` as read_many returns them: copied into `into` one after another, and views of it,
    when `into` is given (a reused buffer); else as they are."""
    if into is None:
        return datas
    view, at, out = memoryview(into).cast("B"), 0, []
    for data in datas:
        view[at:at + len(data)] = data
        out.append(view[at:at + len(data)])
        at += len(data)
    return out


def parse_maps(text: str) -> tuple:
    """LiveMapping per line of /proc/PID/maps text, sorted by address."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        lo, hi = parts[0].split("-")
        path = parts[5].strip() if len(parts) == 6 else ""
        out.append(LiveMapping(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), path))
    return tuple(sorted(out, key=lambda m: m.start))


class FakeTarget:
    """An in-memory process: mappings of bytearrays and per-thread register sets."""

    def __init__(self, live: LiveProcess, memory: dict, regsets: dict, fail_writes_at=None):
        self._live = live
        self.memory = memory          # start -> bytearray, one per mapping
        self.regsets = regsets        # (lwp, kind) -> bytes
        self.fail_writes_at = fail_writes_at
        self.refuse_regsets = {}      # (lwp, kind) -> why the "kernel" refuses it
        self.log = []

    def live(self):
        return self._live

    def write_memory(self, addr, data):
        data = bytes(data)
        if self.fail_writes_at is not None and addr <= self.fail_writes_at < addr + len(data):
            raise TargetError(f"write refused at {self.fail_writes_at:#x}")
        for start, buf in self.memory.items():
            if start <= addr and addr + len(data) <= start + len(buf):
                buf[addr - start:addr - start + len(data)] = data
                self.log.append(("write", addr, len(data)))
                return
        raise TargetError(f"no mapping holds [{addr:#x}, {addr + len(data):#x})")

    def write_many(self, items):
        for addr, data in map(piece, items):
            self.write_memory(addr, data)

    def read_many(self, ranges, into=None):
        return gather([self.read_memory(addr, length) for addr, length in ranges], into)

    def concurrent_read_many(self):
        return self.read_many

    def present(self, regions):
        return None         # everything counts as touched

    def read_memory(self, addr, length):
        for start, buf in self.memory.items():
            if start <= addr and addr + length <= start + len(buf):
                return bytes(buf[addr - start:addr - start + length])
        return None

    def get_regset(self, lwp, kind):
        return self.regsets.get((lwp, kind))

    def set_regset(self, lwp, kind, data):
        self.regsets[(lwp, kind)] = bytes(data)
        self.log.append(("regs", lwp, kind))

    def refused_regset(self, lwp, kind, data):
        return self.refuse_regsets.get((lwp, kind))

    def create_memory(self, create):
        self.memory[create.start] = bytearray(create.end - create.start)
        self.log.append(("create", create.start, create.end, create.how))

    def protect_memory(self, protect):
        self.log.append(("protect", protect.start, protect.end, protect.prot))

    def undo_create(self, create):
        del self.memory[create.start]
        self.log.append(("undo", create.start))

    def flush(self):
        self.log.append(("flush",))
