"""The x86-64 Linux table: user_regs_struct order and the prstatus/prpsinfo layouts.

Offsets are the kernel's (arch/x86/include/asm/user_64.h, include/linux/elfcore.h); data only."""

from . import Arch, NoteLayout

EM_X86_64 = 62

X86_64 = Arch(
    name="i386:x86-64",
    elf_machine=EM_X86_64,
    elf_class=2,
    # elf_prstatus: siginfo(12) cursig(2)+pad(2) sigpend(8) sighold(8) pid ppid pgrp sid (4 each)
    # 4 timevals (64) -> pr_reg at 112, 27 words, then pr_fpvalid and padding to 336.
    prstatus=NoteLayout(size=336, regs_offset=112, pid_offset=32, cursig_offset=12),
    # elf_prpsinfo: state sname zomb nice (1 each) pad(4) flag(8) uid gid pid (4 each) ... fname[16] at 40.
    prpsinfo=NoteLayout(size=136, pid_offset=24, fname_offset=40),
    gregs=("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
           "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
           "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs"),
    pc="rip",
    sp="rsp",
    syscall_nr="orig_rax",
    syscall_ret="rax",
    syscall_insn=2,             # syscall (0f 05), as int $0x80 (cd 80)
)
