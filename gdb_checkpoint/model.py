"""Plain values that flow from readers and the store to the planner: no gdb, no I/O.

Everything is a frozen dataclass so a plan can't be changed behind the validator's back."""

from dataclasses import dataclass, field
from typing import Optional

PF_X, PF_W, PF_R = 1, 2, 4


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD of a core: `filesz` bytes at `offset` in the file land at `vaddr`."""
    index: int
    vaddr: int
    memsz: int
    filesz: int
    offset: int
    flags: int

    @property
    def writable(self) -> bool:
        return bool(self.flags & PF_W)

    @property
    def end(self) -> int:
        return self.vaddr + self.memsz


@dataclass(frozen=True)
class FileMapping:
    """One NT_FILE entry (or /proc/PID/maps line with a path): file bytes mapped at [start, end)."""
    start: int
    end: int
    offset: int          # in bytes, whatever unit the producer used
    path: str


@dataclass(frozen=True)
class ThreadState:
    """One thread of a core: its LWP and raw register sets, as the kernel's regsets lay them out."""
    lwp: int
    gregs: bytes                    # user_regs_struct (NT_PRSTATUS pr_reg)
    fpregs: Optional[bytes] = None  # NT_FPREGSET: 512-byte FXSAVE area
    xstate: Optional[bytes] = None  # NT_X86_XSTATE: XSAVE area in standard format, any size
    signo: int = 0                  # pr_cursig
    sigmask: Optional[int] = None   # blocked signals (SigBlk), where known
    siginfo: Optional[bytes] = None  # NT_SIGINFO: the kernel's siginfo_t (128 bytes), where dumped

    @property
    def si_signo(self) -> Optional[int]:
        return int.from_bytes(self.siginfo[:4], "little", signed=True) if self.siginfo else None


@dataclass(frozen=True)
class ProgramIdentity:
    """What names the program a core or a process runs: build-id when the ELF has one."""
    path: Optional[str] = None
    build_id: Optional[str] = None   # hex

    def describe(self) -> str:
        if self.build_id:
            return f"{self.path or '?'} (build-id {self.build_id})"
        return self.path or "an unknown program"

    def same_program(self, other: "ProgramIdentity") -> Optional[bool]:
        """True/False when it can be told, None when neither build-ids nor paths are known."""
        if self.build_id and other.build_id:
            return self.build_id == other.build_id
        if self.path and other.path:
            return self.path == other.path
        return None


@dataclass(frozen=True)
class Core:
    """A parsed, validated ELF core; segment bytes stay in the file until a plan asks for them."""
    path: str
    machine: int
    elf_class: int
    segments: tuple
    threads: tuple                  # ThreadState, in note order
    pid: Optional[int] = None       # NT_PRPSINFO pr_pid (the thread-group id)
    fname: Optional[str] = None     # NT_PRPSINFO pr_fname (16 bytes, truncated by the kernel)
    auxv: tuple = ()                # (type, value) pairs
    files: tuple = ()               # FileMapping
    xsave_layout: Optional[dict] = None   # component -> (offset, size) from note 0x205, when written
    producer: str = "unknown"       # "gdb", "kernel", or "gdb-checkpoint"
    identity: ProgramIdentity = field(default_factory=ProgramIdentity)

    def auxv_value(self, key: int) -> Optional[int]:
        for k, v in self.auxv:
            if k == key:
                return v
        return None


@dataclass(frozen=True)
class LiveMapping:
    """One line of /proc/PID/maps."""
    start: int
    end: int
    perms: str          # e.g. "rw-p"
    offset: int
    path: str

    @property
    def private(self) -> bool:
        return self.perms[3] == "p"

    @property
    def writable(self) -> bool:
        return self.perms[1] == "w"


@dataclass(frozen=True)
class FdInfo:
    """An open descriptor at save time: /proc/PID/fd/N's target and /proc/PID/fdinfo/N's pos, flags."""
    fd: int
    path: str
    pos: int
    flags: int      # octal in fdinfo; O_ACCMODE, O_APPEND, ... as the kernel reports them


@dataclass(frozen=True)
class ProcessState:
    """Everything of a process a checkpoint records besides memory bytes (those live in the store).

    `maps` is the memory map at save time; the checkpoint's memory regions lie inside its
    readable mappings, and bytes of a mapping outside those regions were zero (never touched)."""
    pid: int
    arch_name: str
    program: ProgramIdentity
    maps: tuple                 # LiveMapping, sorted
    threads: tuple              # ThreadState, main thread first
    brk: Optional[int] = None
    auxv: tuple = ()
    fds: tuple = ()             # FdInfo
    cwd: Optional[str] = None
    xsave_layout: Optional[dict] = None
    hidden_fds: tuple = ()      # descriptors that are ours (dirty tracking), not the program's
    cmdline: Optional[str] = None   # the command line, space-separated (for exports' psargs)
