"""Every malformed file is refused with one BadCoreError line naming the file and the defect.

Cores are truncated real ones (cut where LIEF says a structure lies) or hand-made with
tests/elfbuild.py, each valid but for one defect; any other exception fails the test."""

import os
import random
import re
import threading

import pytest

import elfbuild as eb
from gdb_checkpoint.core.reader import CoreFile
from gdb_checkpoint.errors import BadCoreError
from oracles import lief_core, pyelf_core


def refusal(path) -> str:
    """CoreFile's error for `path`, checked to be one line that names the file; the file's name is
    replaced by FILE in what is returned, so a word in a test's tmp_path can't pass for the reason."""
    with pytest.raises(BadCoreError) as caught:
        CoreFile(str(path))
    message = str(caught.value)
    assert str(path) in message
    assert "\n" not in message and "\r" not in message
    return message.replace(str(path), "FILE")


def write(tmp_path, data: bytes, name="bad.core"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- the baseline: elfbuild's well-formed core is accepted, so each variant below tests one defect --

def test_the_hand_made_baseline_core_is_accepted(tmp_path):
    path = write(tmp_path, eb.minimal_x86_64(pid=4242).bytes())
    with CoreFile(str(path)) as cf:
        assert [t.lwp for t in cf.core.threads] == [4242]
        assert cf.core.pid == 4242
        assert [(s.vaddr, s.filesz) for s in cf.core.segments] == [(0x400000, 0x1000), (0x600000, 0x2000)]
        assert cf.read_memory(0x600010, 4) == b"\x22" * 4


# -- not cores at all ---------------------------------------------------------------------

def test_empty_file(tmp_path):
    assert "empty" in refusal(write(tmp_path, b""))


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(tmp_path, seed):
    data = random.Random(seed).randbytes(4096)
    assert "not an ELF file" in refusal(write(tmp_path, data))


def test_missing_file(tmp_path):
    assert "No such file" in refusal(tmp_path / "absent.core")



def test_a_directory_is_called_a_directory(tmp_path):
    (tmp_path / "dir.core").mkdir()
    assert "directory" in refusal(tmp_path / "dir.core")


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.core"
    os.mkfifo(fifo)
    outcome = []

    def read():
        try:
            CoreFile(str(fifo))
        except BadCoreError as e:
            outcome.append(str(e))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=0.5)
    hung = reader.is_alive()
    if hung:                 # let the blocked open return so the thread ends
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=5)
    assert not hung, "CoreFile blocked opening a named pipe"
    assert outcome and str(fifo) in outcome[0]


def test_the_program_itself_is_not_a_core(unit_exe):
    assert re.search(r"is a shared object or PIE executable, not a core file|is an executable, "
                     r"not a core file", refusal(unit_exe))


def test_big_endian_elf(tmp_path):
    data = bytearray(eb.minimal_x86_64().bytes())
    data[5] = 2
    assert "big-endian" in refusal(write(tmp_path, bytes(data)))


def test_unknown_elf_class(tmp_path):
    data = bytearray(eb.minimal_x86_64().bytes())
    data[4] = 7
    assert "ELF class 7" in refusal(write(tmp_path, bytes(data)))


# -- other machines -------------------------------------------------------------------------

def test_a_32_bit_i386_core(tmp_path):
    spec = eb.minimal_x86_64(machine=eb.EM_386, elf_class=1,
                             loads=[eb.Load(0x8048000, b"\x33" * 0x1000)])
    message = refusal(write(tmp_path, spec.bytes()))
    assert "32-bit i386" in message and "only x86-64" in message


def test_an_aarch64_core(tmp_path):
    message = refusal(write(tmp_path, eb.minimal_x86_64(machine=eb.EM_AARCH64).bytes()))
    assert "AArch64" in message and "only x86-64" in message


# -- truncated real cores, cut where LIEF and pyelftools say each structure lies --------------

def data_end(elf) -> int:
    """Where the last byte any PT_LOAD or PT_NOTE covers ends, by pyelftools' reading."""
    note_off, note_size = elf.note_segment
    return max([off + filesz for _, _, filesz, _, _, off in elf.segments] + [note_off + note_size])


def cut_points(core_path):
    """Named truncation sizes of a real core, from pyelftools' and LIEF's reading of it."""
    elf = pyelf_core(core_path)
    note_off, note_size = elf.note_segment
    with_bytes = [s for s in lief_core(core_path).loads if s.filesz >= 2]
    seg = with_bytes[len(with_bytes) // 2]
    return {
        "inside the ELF header": 40,
        "inside the program header table": elf.phoff + elf.phnum * 56 // 2,
        "inside the notes": note_off + note_size // 2,
        "in the middle of a segment": seg.offset + seg.filesz // 2,
        "one byte short of what the program headers cover": data_end(elf) - 1,
    }


@pytest.mark.parametrize("where", ["inside the ELF header", "inside the program header table",
                                   "inside the notes", "in the middle of a segment",
                                   "one byte short of what the program headers cover"])
def test_truncated_real_core(any_core, tmp_path, where):
    size = cut_points(any_core.path)[where]
    data = any_core.path.read_bytes()[:size]
    message = refusal(write(tmp_path, data))
    assert "truncated" in message, message


def test_a_core_one_byte_short_is_refused_unless_only_section_headers_are_cut(any_core, tmp_path):
    """gcore appends section headers after the notes; a restore never reads them."""
    data = any_core.path.read_bytes()
    elf = pyelf_core(any_core.path)
    path = write(tmp_path, data[:-1])
    if data_end(elf) < len(data):
        with CoreFile(str(path)) as cf:
            assert len(cf.core.segments) == len([s for s in elf.segments if s[3]])
    else:
        assert "truncated" in refusal(path)


def test_a_core_cut_just_after_the_magic_is_called_truncated(tmp_path):
    data = eb.minimal_x86_64().bytes()[:10]
    assert "truncated" in refusal(write(tmp_path, data))


# -- broken program headers ----------------------------------------------------------------

def test_no_program_headers(tmp_path):
    data = bytearray(eb.minimal_x86_64().bytes())
    data[56:58] = b"\0\0"                               # e_phnum
    assert "no program headers" in refusal(write(tmp_path, bytes(data)))


def test_wrong_program_header_size(tmp_path):
    data = bytearray(eb.minimal_x86_64().bytes())
    data[54:56] = (32).to_bytes(2, "little")            # e_phentsize
    assert "program header size is 32" in refusal(write(tmp_path, bytes(data)))


def test_program_header_table_inside_the_elf_header(tmp_path):
    data = bytearray(eb.minimal_x86_64().bytes())
    data[32:40] = (8).to_bytes(8, "little")             # e_phoff
    assert "program header table" in refusal(write(tmp_path, bytes(data)))


def test_segment_with_more_file_bytes_than_memory(tmp_path):
    spec = eb.minimal_x86_64(loads=[eb.Load(0x600000, b"\x22" * 0x2000, memsz=0x1000)])
    message = refusal(write(tmp_path, spec.bytes()))
    assert "program header 1" in message and "0x600000" in message


def test_segment_wrapping_past_the_top_of_the_address_space(tmp_path):
    spec = eb.minimal_x86_64(loads=[eb.Load(0xFFFFFFFFFFFFF000, b"\x22" * 0x1000, memsz=0x2000)])
    assert "program header 1" in refusal(write(tmp_path, spec.bytes()))


def test_overlapping_segments(tmp_path):
    spec = eb.minimal_x86_64(loads=[eb.Load(0x600000, b"\x22" * 0x2000),
                                    eb.Load(0x601000, b"\x44" * 0x2000)])
    message = refusal(write(tmp_path, spec.bytes()))
    assert "overlap" in message and "0x601000" in message


def test_segments_sharing_file_bytes_in_a_real_core(any_core, tmp_path):
    """A corrupted p_offset: the last segment with file bytes now starts inside the first one's."""
    data = bytearray(any_core.path.read_bytes())
    elf = pyelf_core(any_core.path)
    with_bytes = sorted((s for s in elf.segments if s[2]), key=lambda s: s[5])   # by p_offset
    first, last = with_bytes[0], with_bytes[-1]
    moved = first[5] + first[2] // 2                    # earlier than before: still inside the file
    at = elf.phoff + last[0] * 56 + 8                   # its p_offset
    data[at:at + 8] = moved.to_bytes(8, "little")
    message = refusal(write(tmp_path, bytes(data)))
    pair = sorted((first[0], last[0]))
    assert f"program headers {pair[0]} and {pair[1]} overlap in the file" in message, message


def test_segments_sharing_file_bytes_in_a_hand_made_core(tmp_path):
    data = bytearray(eb.minimal_x86_64().bytes())
    first = int.from_bytes(data[64 + 56 + 8:64 + 56 + 16], "little")      # program header 1's p_offset
    data[64 + 2 * 56 + 8:64 + 2 * 56 + 16] = (first + 0x800).to_bytes(8, "little")   # header 2's
    assert refusal(write(tmp_path, bytes(data))) == (
        f"FILE: program headers 1 and 2 overlap in the file at byte {first + 0x800}; the file is corrupt")


# -- broken notes ------------------------------------------------------------------------------

def test_note_claiming_more_bytes_than_its_segment(tmp_path):
    spec = eb.minimal_x86_64()
    spec.notes[2].descsz = 100_000                      # the PRPSINFO
    assert "past the end of its segment" in refusal(write(tmp_path, spec.bytes()))


def test_note_segment_shorter_than_its_notes(tmp_path):
    spec = eb.minimal_x86_64()
    spec.note_filesz = len(eb.note_bytes(spec.notes)) - 20
    assert "past the end of its segment" in refusal(write(tmp_path, spec.bytes()))


def test_note_header_cut_by_the_end_of_its_segment(tmp_path):
    spec = eb.minimal_x86_64()
    spec.note_filesz = len(eb.note_bytes(spec.notes)) + 8
    assert "cut off" in refusal(write(tmp_path, spec.bytes()))


def test_fpregset_before_any_prstatus(tmp_path):
    spec = eb.minimal_x86_64()
    spec.notes = [spec.notes[1], spec.notes[0], spec.notes[2]]
    assert "before any NT_PRSTATUS" in refusal(write(tmp_path, spec.bytes()))


def test_xstate_before_any_prstatus(tmp_path):
    spec = eb.minimal_x86_64()
    spec.notes.insert(0, eb.Note(b"LINUX", eb.NT_X86_XSTATE, bytes(832)))
    assert "before any NT_PRSTATUS" in refusal(write(tmp_path, spec.bytes()))


def test_no_prstatus(tmp_path):
    spec = eb.minimal_x86_64()
    spec.notes = [spec.notes[2]]
    assert "no NT_PRSTATUS" in refusal(write(tmp_path, spec.bytes()))


def test_short_prstatus(tmp_path):
    spec = eb.minimal_x86_64()
    spec.notes[0] = eb.Note(b"CORE", eb.NT_PRSTATUS, eb.prstatus(4242, size=100))
    assert "NT_PRSTATUS note of 100 bytes" in refusal(write(tmp_path, spec.bytes()))


def test_short_prpsinfo(tmp_path):
    spec = eb.minimal_x86_64()
    spec.notes[2] = eb.Note(b"CORE", eb.NT_PRPSINFO, eb.prpsinfo(4242)[:30])
    assert "NT_PRPSINFO note of 30 bytes" in refusal(write(tmp_path, spec.bytes()))


def test_fpregset_of_the_wrong_size(tmp_path):
    spec = eb.minimal_x86_64()
    spec.notes[1] = eb.Note(b"CORE", eb.NT_FPREGSET, bytes(500))
    message = refusal(write(tmp_path, spec.bytes()))
    assert "500 bytes" in message and "4242" in message


def test_xstate_too_short_for_its_header(tmp_path):
    spec = eb.minimal_x86_64()
    spec.notes.insert(2, eb.Note(b"LINUX", eb.NT_X86_XSTATE, bytes(520)))
    assert "520 bytes" in refusal(write(tmp_path, spec.bytes()))


def test_auxv_of_a_partial_entry(tmp_path):
    spec = eb.minimal_x86_64()
    spec.notes.append(eb.Note(b"CORE", eb.NT_AUXV, bytes(24)))
    assert "NT_AUXV" in refusal(write(tmp_path, spec.bytes()))


def nt_file(count: int, entries: int, names: bytes) -> bytes:
    """An NT_FILE descriptor claiming `count` files, with `entries` (start, end, offset) triples."""
    desc = count.to_bytes(8, "little") + (4096).to_bytes(8, "little")
    for i in range(entries):
        desc += (0x400000 + i * 4096).to_bytes(8, "little") + (0x401000 + i * 4096).to_bytes(8, "little")
        desc += bytes(8)
    return desc + names


def test_nt_file_claiming_more_entries_than_it_holds(tmp_path):
    spec = eb.minimal_x86_64()
    spec.notes.append(eb.Note(b"CORE", eb.NT_FILE, nt_file(1000, 2, b"/a\0/b\0")))
    assert "NT_FILE" in refusal(write(tmp_path, spec.bytes()))


def test_nt_file_with_every_name_is_accepted(tmp_path):
    spec = eb.minimal_x86_64()
    spec.notes.append(eb.Note(b"CORE", eb.NT_FILE, nt_file(2, 2, b"/bin/first\0/bin/second\0")))
    with CoreFile(str(write(tmp_path, spec.bytes()))) as cf:
        assert [(f.start, f.path) for f in cf.core.files] == [(0x400000, "/bin/first"), (0x401000, "/bin/second")]


def test_nt_file_with_fewer_names_than_entries(tmp_path):
    spec = eb.minimal_x86_64()
    spec.notes.append(eb.Note(b"CORE", eb.NT_FILE, nt_file(2, 2, b"/only-one-name\0")))
    path = write(tmp_path, spec.bytes())
    try:
        CoreFile(str(path)).close()
    except BadCoreError as e:
        assert str(path) in str(e) and "NT_FILE" in str(e)
        return
    raise AssertionError("an NT_FILE with 2 entries and 1 name was accepted")


def test_xsave_layout_note_of_a_partial_entry(tmp_path):
    spec = eb.minimal_x86_64()
    spec.notes.append(eb.Note(b"LINUX", eb.NT_X86_XSAVE_LAYOUT, bytes(20)))
    assert "XSAVE layout" in refusal(write(tmp_path, spec.bytes()))
