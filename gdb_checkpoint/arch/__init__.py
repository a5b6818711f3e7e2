"""Machines as data: register names, note layouts and XSAVE components, one table per machine.

A new machine is a new module with an Arch table; no other module branches on the machine."""

import struct
from dataclasses import dataclass


ERESTART_RESTARTBLOCK = 516     # the kernel's own errno for "restart through the restart block"


@dataclass(frozen=True)
class NoteLayout:
    """Where the fields we read sit in NT_PRSTATUS / NT_PRPSINFO for one machine."""
    size: int
    regs_offset: int = 0
    pid_offset: int = 0
    cursig_offset: int = 0
    fname_offset: int = 0


@dataclass(frozen=True)
class Arch:
    name: str                 # gdb's name for the architecture, as `show architecture` says it
    elf_machine: int
    elf_class: int
    prstatus: NoteLayout
    prpsinfo: NoteLayout
    gregs: tuple              # user_regs_struct, in order, each an unsigned machine word
    pc: str
    sp: str
    word: int = 8
    fpregs_size: int = 512
    syscall_nr: str = ""      # the register the kernel keeps a thread's system call number in
    syscall_ret: str = ""     # ...and its result in
    syscall_insn: int = 0     # the length of the instruction that makes a system call

    @property
    def gregs_size(self) -> int:
        return len(self.gregs) * self.word

    def unpack_gregs(self, raw: bytes) -> dict:
        return dict(zip(self.gregs, struct.unpack_from(f"<{len(self.gregs)}Q", raw)))

    def pack_gregs(self, values: dict) -> bytes:
        return struct.pack(f"<{len(self.gregs)}Q", *(values[n] & (1 << 64) - 1 for n in self.gregs))

    def restarted_syscall(self, gregs: bytes) -> bytes:
        """`gregs` of a thread stopped in a system call that the kernel would resume through the
        thread's restart block (-ERESTART_RESTARTBLOCK: nanosleep, poll, futex waits with a
        timeout), made to run the call again from its start instead. The block is kernel state of
        the thread the registers were saved from; the one that gets them has its own, and its
        restart_syscall would fail with EINTR. A relative sleep so starts over in full."""
        if not self.syscall_nr:
            return gregs
        values = self.unpack_gregs(gregs)
        signed = {n: v - (1 << 64) if v >> 63 else v for n, v in values.items()}
        if signed[self.syscall_nr] < 0 or signed[self.syscall_ret] != -ERESTART_RESTARTBLOCK:
            return gregs
        values[self.syscall_ret] = values[self.syscall_nr]
        values[self.pc] -= self.syscall_insn
        return self.pack_gregs(values) + gregs[self.gregs_size:]


def _tables():
    from .x86_64 import X86_64
    return (X86_64,)


def by_machine(elf_machine: int, elf_class: int):
    """The Arch table for an ELF machine/class pair, or None when we don't support it."""
    for arch in _tables():
        if arch.elf_machine == elf_machine and arch.elf_class == elf_class:
            return arch
    return None


def by_name(name: str):
    """The Arch table for gdb's architecture name (`show architecture`), or None."""
    for arch in _tables():
        if arch.name == name:
            return arch
    return None
