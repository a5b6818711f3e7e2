"""What LIEF and pyelftools read from a core or an executable: the oracles our reader is checked against.

Only third-party parsers and the kernel's documented layouts here; nothing from gdb_checkpoint."""

import struct
import warnings
from dataclasses import dataclass, field

import lief
from elftools.elf.elffile import ELFFile

PR_REG_OFFSET = 112          # elf_prstatus.pr_reg on x86-64 (include/linux/elfcore.h)
USER_REGS_SIZE = 27 * 8      # struct user_regs_struct
PT_LOAD_NAME = "PT_LOAD"
VSYSCALL = 0xFFFFFFFFFF600000
NT_X86_XSTATE = 0x202

lief.logging.disable()


@dataclass
class LiefSegment:
    index: int
    is_load: bool
    is_note: bool
    vaddr: int
    filesz: int
    memsz: int
    flags: int
    offset: int
    content: bytes


@dataclass
class LiefThread:
    """LIEF's CorePrStatus. LIEF 1.0.0 drops a note whose bytes equal an earlier note's (two idle
    threads' FPREGSET), so the per-thread FP/XSTATE bytes come from pyelftools (PyelfThread)."""
    lwp: int
    cursig: int
    registers: dict                      # LIEF's register names, lower-case -> value
    pc: int
    sp: int


@dataclass
class PyelfThread:
    prstatus: bytes
    fpregs: bytes = None
    xstate: bytes = None

    @property
    def gregs(self) -> bytes:
        return self.prstatus[PR_REG_OFFSET:PR_REG_OFFSET + USER_REGS_SIZE]


@dataclass
class LiefCore:
    segments: list
    threads: list
    auxv: dict
    notes: list = field(default_factory=list)   # (owner, type, description bytes), duplicates dropped

    @property
    def loads(self):
        return [s for s in self.segments if s.is_load]

    def note(self, owner: bytes, ntype: int):
        found = [d for o, t, d in self.notes if o == owner and t == ntype]
        return found[0] if found else None

    def writable_with_bytes(self):
        """The segments a restore writes: writable, with bytes in the file, not the vsyscall page."""
        return [s for s in self.loads if s.flags & 2 and s.filesz and s.vaddr < VSYSCALL]


def lief_core(path) -> LiefCore:
    """Everything LIEF decodes of a core, copied out so nothing dangles once the Binary goes."""
    binary = lief.ELF.parse(str(path))
    assert binary is not None, f"LIEF could not parse {path}"
    segments = []
    for i, s in enumerate(binary.segments):
        segments.append(LiefSegment(i, s.type == lief.ELF.Segment.TYPE.LOAD,
                                    s.type == lief.ELF.Segment.TYPE.NOTE, s.virtual_address,
                                    s.physical_size, s.virtual_size, int(s.flags), s.file_offset,
                                    bytes(s.content)))
    threads, auxv, notes = [], {}, []
    regs = lief.ELF.CorePrStatus.Registers.X86_64
    for n in binary.notes:
        desc = bytes(n.description)
        owner = n.name.encode().rstrip(b"\0 ")
        notes.append((owner, n.original_type, desc))
        if isinstance(n, lief.ELF.CorePrStatus):
            values = {name.lower(): n.get(reg) for name, reg in regs.__members__.items()}
            threads.append(LiefThread(n.status.pid, n.status.cursig, values, n.pc, n.sp))
        elif isinstance(n, lief.ELF.CoreAuxv):
            with warnings.catch_warnings():       # LIEF warns about auxv keys it has no name for
                warnings.simplefilter("ignore")
                auxv = {int(k): v for k, v in n.values.items()}
    return LiefCore(segments, threads, auxv, notes)


@dataclass
class PyelfCore:
    segments: list        # (index, vaddr, filesz, memsz, flags, offset) of every PT_LOAD
    files: list           # (start, end, offset in bytes, path)
    threads: list         # PyelfThread per NT_PRSTATUS, in note order
    pid: int
    fname: str
    note_offsets: list    # (owner, type name or number, offset of the descriptor in the file, size)
    note_segment: tuple   # (offset, filesz) of the PT_NOTE
    phoff: int
    phnum: int


def pyelf_core(path) -> PyelfCore:
    with open(path, "rb") as f:
        elf = ELFFile(f)
        segments, files, pid, fname, offsets, note_seg, threads = [], [], None, None, [], None, []
        for i, seg in enumerate(elf.iter_segments()):
            h = seg.header
            if h.p_type == PT_LOAD_NAME:
                segments.append((i, h.p_vaddr, h.p_filesz, h.p_memsz, h.p_flags, h.p_offset))
            if h.p_type != "PT_NOTE":
                continue
            note_seg = (h.p_offset, h.p_filesz)
            for n in seg.iter_notes():
                desc_at = n["n_offset"] + 12 + (n["n_namesz"] + 3) // 4 * 4
                offsets.append((n["n_name"], n["n_type"], desc_at, n["n_descsz"]))
                owner_type = (n["n_name"], n["n_type"])
                if owner_type == ("CORE", "NT_PRSTATUS"):
                    threads.append(PyelfThread(n["n_descdata"]))
                elif owner_type == ("CORE", "NT_FPREGSET"):
                    threads[-1].fpregs = n["n_descdata"]
                elif owner_type == ("LINUX", NT_X86_XSTATE):
                    threads[-1].xstate = n["n_descdata"]
                elif n["n_type"] == "NT_FILE":
                    d = n["n_desc"]
                    for entry, name in zip(d["Elf_Nt_File_Entry"], d["filename"]):
                        files.append((entry.vm_start, entry.vm_end, entry.page_offset * d["page_size"],
                                      name.decode()))
                elif n["n_type"] == "NT_PRPSINFO":
                    pid = n["n_desc"]["pr_pid"]
                    fname = n["n_desc"]["pr_fname"].split(b"\0")[0].decode()
        return PyelfCore(segments, files, threads, pid, fname, offsets, note_seg,
                         elf.header.e_phoff, elf.header.e_phnum)


def build_id_of(exe) -> str:
    """The executable's build-id as pyelftools reads it from its .note.gnu.build-id section."""
    with open(exe, "rb") as f:
        section = ELFFile(f).get_section_by_name(".note.gnu.build-id")
        assert section is not None, f"{exe} has no .note.gnu.build-id section"
        return [n["n_desc"] for n in section.iter_notes() if n["n_type"] == "NT_GNU_BUILD_ID"][0]


def xsave_layout_note(desc: bytes) -> dict:
    """The kernel's note 0x205: struct x86_xfeat_component {u32 type, size, offset, flags} each."""
    return {t: (off, size) for t, size, off, _ in struct.iter_unpack("<IIII", desc)}
