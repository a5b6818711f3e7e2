"""Machines as data: register names, note layouts and XSAVE components, one table per machine.

A new machine is a new module with an Arch table; no other module branches on the machine."""

import struct
from dataclasses import dataclass


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

    @property
    def gregs_size(self) -> int:
        return len(self.gregs) * self.word

    def unpack_gregs(self, raw: bytes) -> dict:
        return dict(zip(self.gregs, struct.unpack_from(f"<{len(self.gregs)}Q", raw)))

    def pack_gregs(self, values: dict) -> bytes:
        return struct.pack(f"<{len(self.gregs)}Q", *(values[n] & (1 << 64) - 1 for n in self.gregs))


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
