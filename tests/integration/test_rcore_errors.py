"""Bad inputs to rcore: each refused in one line, gdb alive, the inferior exactly as it was.

"Exactly as it was" is judged by the program: after the refusal it runs on and must print what a
clean run prints from that step, and its final self-check must pass."""

import os
import random
import shutil
import struct

import pytest

from helpers import MARK, MARK_CMD, clean_run, compile_c, from_line, program_output, run_gdb



@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("errors")
    exe = compile_c("counter", d)
    core = d / "step5.core"
    out = run_gdb(exe, "break report if step == 5", "run", f"gcore {core}", "kill")
    assert core.exists(), out.stderr
    return d, exe, core, clean_run(exe)


def bad_files(d, exe, core):
    """name -> (path, what the one-line error must say)."""
    data = core.read_bytes()
    phnum = struct.unpack_from("<H", data, 56)[0]
    note_off = next(struct.unpack_from("<Q", data, 64 + 56 * i + 8)[0] for i in range(phnum)
                    if struct.unpack_from("<I", data, 64 + 56 * i)[0] == 4)
    files = {}

    def put(name, content, expect):
        p = d / name
        p.write_bytes(content)
        files[name] = (p, expect)

    put("empty", b"", "file is empty")
    put("random", random.Random(7).randbytes(4096), "not an ELF file")
    put("cut-in-header", data[:40], "ELF header truncated")
    put("cut-in-phdrs", data[:64 + 56 * 2 + 10], "program header table")
    put("cut-in-notes", data[:note_off + 100], "truncated")
    put("cut-in-half", data[:len(data) // 2], "truncated")
    # gcore puts section headers after the segments; cut one byte short of the segment data.
    data_end = max(struct.unpack_from("<Q", data, 64 + 56 * i + 8)[0] +
                   struct.unpack_from("<Q", data, 64 + 56 * i + 32)[0] for i in range(phnum))
    put("cut-by-one", data[:data_end - 1], "truncated")
    i386 = bytearray(52)
    i386[:7] = b"\x7fELF\x01\x01\x01"
    struct.pack_into("<HH", i386, 16, 4, 3)
    put("i386-core", bytes(i386), "32-bit i386 core")
    foreign = bytearray(data)
    struct.pack_into("<H", foreign, 18, 183)
    put("aarch64-core", bytes(foreign), "AArch64 core")
    files["executable"] = (exe, "not a core file")
    files["missing"] = (d / "no-such.core", "No such file or directory")
    return files


CASES = ["empty", "random", "cut-in-header", "cut-in-phdrs", "cut-in-notes", "cut-in-half",
         "cut-by-one", "i386-core", "aarch64-core", "executable", "missing"]


@pytest.mark.parametrize("case", CASES)
def test_bad_core_is_refused_in_one_line_and_nothing_changes(setup, case):
    d, exe, core, clean = setup
    path, expect = bad_files(d, exe, core)[case]
    out = run_gdb(exe, "break report if step == 5", "run", "print total", f"rcore {path}",
                  "print total", "print 6*7", "delete", MARK_CMD, "continue")
    errors = [l for l in out.stderr.splitlines() if str(path) in l or "Python" in l]
    assert len(errors) == 1 and expect in errors[0], out.stderr
    assert "Traceback" not in out.stderr and "Python Exception" not in out.stderr
    assert "$1 = 55" in out.stdout and "$2 = 55" in out.stdout and "$3 = 42" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  5"), out.stdout


def test_core_of_another_program_is_refused_unless_forced(setup, tmp_path):
    d, exe, core, clean = setup
    other = compile_c("vectors", tmp_path, "-mavx")
    other_core = tmp_path / "other.core"
    run_gdb(other, "break *vec_stop", "run", f"gcore {other_core}", "kill")
    out = run_gdb(exe, "break report if step == 5", "run", f"rcore {other_core}", "print 6*7",
                  "delete", MARK_CMD, "continue")
    assert f"{other_core}: was dumped from {other}" in out.stderr and "use -force" in out.stderr
    assert "$1 = 42" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  5")
    forced = run_gdb(exe, "break report if step == 5", "run", f"rcore -force {other_core}", "print 6*7")
    assert "use -force" not in forced.stderr and "$1 = 42" in forced.stdout


def test_no_process_no_file_and_bad_arguments(setup):
    d, exe, core, clean = setup
    out = run_gdb(exe, f"rcore {core}", "rcore", "rcore a b", "rcore -bogus x", "print 6*7")
    lines = out.stderr.splitlines()
    assert "The program is not being run." in lines
    assert "Missing core file name. Usage: restore-core-file [-force] FILE" in lines
    assert "Too many arguments. Usage: restore-core-file [-force] FILE" in lines
    assert "Unknown option -bogus. Usage: restore-core-file [-force] FILE" in lines
    assert "$1 = 42" in out.stdout


def test_help_is_in_gdbs_style(setup):
    d, exe, core, clean = setup
    out = run_gdb(None, "help rcore", "help restore-core-file")
    text = out.stdout
    assert text.startswith("restore-core-file, rcore\nRestore the live inferior's memory and "
                           "registers from an ELF core file.\n\nUsage: ")
    assert "Usage: restore-core-file [-force] FILE" in text


def test_loading_without_setup_says_so_in_one_line(tmp_path):
    from helpers import ROOT
    clone = tmp_path / "checkout"
    shutil.copytree(ROOT, clone, ignore=shutil.ignore_patterns(".venv", ".git", "examples", "tests"))
    out = run_gdb(None, f"source {clone / 'gdbinit.py'}", "print 6*7", load=False)
    assert out.stdout.splitlines()[0].startswith("gdb-checkpoint: not set up")
    assert "make setup" in out.stdout and "$1 = 42" in out.stdout and out.stderr == ""


def test_loading_after_setup_is_silent():
    out = run_gdb(None, "print 6*7")
    assert out.stdout == "$1 = 42\n" and out.stderr == ""


def _prstatus_regs(data):
    """Offset of the first NT_PRSTATUS note's pr_reg (user_regs_struct) in core bytes `data`."""
    phnum = struct.unpack_from("<H", data, 56)[0]
    note = next(64 + 56 * i for i in range(phnum) if struct.unpack_from("<I", data, 64 + 56 * i)[0] == 4)
    at, size = struct.unpack_from("<Q", data, note + 8)[0], struct.unpack_from("<Q", data, note + 32)[0]
    end = at + size
    while at < end:
        namesz, descsz, ntype = struct.unpack_from("<III", data, at)
        desc = at + 12 + (namesz + 3 & ~3)
        if ntype == 1:
            return desc + 112
        at = desc + (descsz + 3 & ~3)
    raise AssertionError("no NT_PRSTATUS")


@pytest.mark.parametrize("reg, index, value", [("fs_base", 21, 0xFFFF800000000000), ("ds", 23, 0x1234)])
def test_registers_the_kernel_refuses_are_refused_before_any_memory_is_written(setup, tmp_path, reg, index, value):
    """The kernel refuses a kernel-space fs_base or a selector of another privilege level; the core
    is step 5's and the process at step 3, so any memory written would show."""
    d, exe, core, clean = setup
    data = bytearray(core.read_bytes())
    struct.pack_into("<Q", data, _prstatus_regs(data) + 8 * index, value)
    bad = tmp_path / f"bad-{reg}.core"
    bad.write_bytes(bytes(data))
    out = run_gdb(exe, "break report if step == 3", "run", f"rcore {bad}", "print total", "delete",
                  MARK_CMD, "continue")
    errors = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "refuses the general registers" in errors[0], out.stderr
    assert "nothing was written" in errors[0]
    assert "$1 = 14" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  3"), out.stdout


def test_a_core_file_gdb_reads_is_no_process_to_restore_or_save(setup, tmp_path):
    """gdb PROGRAM CORE: the inferior has the core's pid but there is no process to write to."""
    d, exe, core, clean = setup
    out = run_gdb(exe, f"core-file {core}", f"rcore {core}", "checkpoint save x", "print total",
                  env={**os.environ, "GDB_CHECKPOINT_DIR": str(tmp_path / "store")})
    errors = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert errors == ["The program is not being run."] * 2, out.stderr
    assert "$1 = 55" in out.stdout
