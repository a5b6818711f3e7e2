"""A checkpoint keeps the offsets of the files a program has open: after a restore the program
writes its file from where it stood, so the file ends up as a clean run leaves it.

The oracle is ckpt_records.c: the offsets it reads back with lseek(fd, 0, SEEK_CUR) and prints,
its final read-back check, and the bytes of the file a clean run writes."""


import os
import re
import subprocess

import pytest
from helpers import GDB, MARK, MARK_CMD, ROOT, clean_run, compile_c, from_line, gdb_on, program_output


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    d = tmp_path_factory.mktemp("records")
    exe = compile_c("ckpt_records", d)
    clean_file = d / "clean.txt"
    clean = clean_run(exe, str(clean_file))
    assert clean[-1].endswith("check ok")
    return exe, clean, clean_file.read_bytes()


def run_on(data, output='"$PROG_OUT"'):
    """`run` with the program's file as argument (a bare `run` would keep no `set args`), its
    output appended to `output` (run_gdb's own file by default)."""
    return f'run "{data}" >> {output}'



def test_restored_program_rewrites_its_file_from_the_saved_offset(records, tmp_path):
    exe, clean, clean_bytes = records
    data = tmp_path / "records.txt"
    out = gdb_on(exe, tmp_path / "store", "break record if i == 4", run_on(data),
                 "checkpoint save r4", "delete", "break record if i == 9", "continue",
                 "checkpoint restore r4", "print offset",
                 "delete", MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr
    assert "$1 = 110" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| record  4")
    assert data.read_bytes() == clean_bytes


def test_back_and_forth_between_two_offsets(records, tmp_path):
    """Restore r3 at record 10, run to 10 again, restore r7: every offset printed matches a clean
    run, and so does the file."""
    exe, clean, clean_bytes = records
    data = tmp_path / "records.txt"
    out = gdb_on(exe, tmp_path / "store", "break record if i == 3", run_on(data),
                 "checkpoint save r3", "delete", "break record if i == 7", "continue",
                 "checkpoint save r7", "delete",
                 "break record if i == 10", "continue",
                 "checkpoint restore r3", MARK_CMD, "continue",
                 "checkpoint restore r7", "delete", MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    first, second = [program_output(p) for p in out.program.split(MARK)[1:]]
    assert first == from_line(clean, "| record  3")[:7]           # records 3..9
    assert second == from_line(clean, "| record  7")
    assert data.read_bytes() == clean_bytes


@pytest.mark.parametrize("stop", ["record if i == 10", "main"], ids=["later-record", "main"])
def test_a_new_process_takes_the_saved_offset(records, tmp_path, stop):
    """A later gdb session restores r5 into its own process: at record 10 its descriptor is open
    further on; at main it is not open yet and the restore must open the file again."""
    exe, clean, clean_bytes = records
    data, store, log = tmp_path / "records.txt", tmp_path / "store", tmp_path / "out"
    first = gdb_on(exe, store, "break record if i == 5", run_on(data, f'"{log}"'),
                   "checkpoint save r5", "kill")
    assert "Checkpoint r5 saved" in first.stdout, first.stderr
    out = gdb_on(exe, store, f"break {stop}", run_on(data, f'"{log}"'),
                 "checkpoint restore r5", "print offset", "delete",
                 f'shell echo "{MARK}" >> "{log}"', "continue")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr
    assert "$1 = 155" in out.stdout
    assert program_output(log.read_text(), after=MARK) == from_line(clean, "| record  5")
    assert data.read_bytes() == clean_bytes


def test_a_new_process_run_on_another_file_goes_back_to_the_saved_one(records, tmp_path):
    """The new process has descriptor 3 open on a file of its own: the restore reopens r5's file
    there, as the program's restored memory expects, and that file ends as a clean run leaves it."""
    exe, clean, clean_bytes = records
    data, other, store, log = tmp_path / "records.txt", tmp_path / "other.txt", tmp_path / "store", tmp_path / "out"
    first = gdb_on(exe, store, "break record if i == 5", run_on(data, f'"{log}"'),
                   "checkpoint save r5", "kill")
    assert "Checkpoint r5 saved" in first.stdout, first.stderr
    out = gdb_on(exe, store, "break record if i == 2", run_on(other, f'"{log}"'),
                 "checkpoint restore r5", "delete", f'shell echo "{MARK}" >> "{log}"', "continue")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert program_output(log.read_text(), after=MARK) == from_line(clean, "| record  5")
    assert data.read_bytes() == clean_bytes


def test_a_file_that_is_gone_refuses_the_restore_into_a_new_process(records, tmp_path):
    """r5's file is deleted; a new process at main has no descriptor 3 yet, and the file the
    checkpoint had open there can't be opened again: the restore is refused in one line naming the
    checkpoint, and the program, untouched, runs from main like a clean run."""
    exe, clean, clean_bytes = records
    data, store, log = tmp_path / "records.txt", tmp_path / "store", tmp_path / "out"
    first = gdb_on(exe, store, "break record if i == 5", run_on(data, f'"{log}"'),
                   "checkpoint save r5", "kill")
    assert "Checkpoint r5 saved" in first.stdout, first.stderr
    data.unlink()
    out = gdb_on(exe, store, "break main", run_on(data, f'"{log}"'), "checkpoint restore r5",
                 "print 6*7", "delete", f'shell echo "{MARK}" >> "{log}"', "continue")
    assert "$1 = 42" in out.stdout
    assert len(out.stderr.splitlines()) == 1 and "r5" in out.stderr, out.stderr
    assert program_output(log.read_text(), after=MARK) == clean
    assert data.read_bytes() == clean_bytes


def test_a_file_gdb_and_the_program_both_write_keeps_its_offset(tmp_path):
    """gdb's output in a file (`gdb ... > log 2>&1`), which the program inherits as its stdout: a
    restore must not move that file's offset back, or gdb and the program would write over what
    they wrote since. The log keeps every line, in order: the program's are a clean run's steps 1-5
    and then, from the restore on, steps 3-10 again."""
    exe = compile_c("counter", tmp_path)
    clean = clean_run(exe)
    log = tmp_path / "gdb.log"
    args = [GDB, "-nx", "-batch", "-ex", "set pagination off", "-ex", "set confirm off",
            "-ex", f"source {ROOT / 'gdbinit.py'}"]
    for c in ("break report if step == 3", "run", "checkpoint save s3", "delete",
              "break report if step == 6", "continue", "checkpoint restore s3", "echo AFTER\\n",
              "delete", "continue"):
        args += ["-ex", c]
    with open(log, "w") as out:
        subprocess.run([*args, str(exe)], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                       env={**os.environ, "GDB_CHECKPOINT_DIR": str(tmp_path / "store")}, timeout=120,
                       check=True)
    text = log.read_text(errors="replace")
    lines = text.splitlines()
    saved = next(n for n, line in enumerate(lines) if line.startswith("Checkpoint s3 saved"))
    restored = next(n for n, line in enumerate(lines) if line.startswith("Restored checkpoint s3"))
    assert saved < restored < lines.index("AFTER"), text
    assert "left alone (gdb writes to that file too)" in lines[restored]
    assert program_output(text) == clean[:5] + from_line(clean, "| step  3"), text


def test_the_working_directory_goes_back(tmp_path):
    exe = compile_c("ckpt_cwd", tmp_path)
    clean = clean_run(exe, str(tmp_path))
    assert clean[-1] == "| done"
    out = gdb_on(exe, tmp_path / "store", "break report if step == 2", f'run "{tmp_path}" >> "$PROG_OUT"',
                 "checkpoint save two", "delete", "break report if step == 5", "continue",
                 "checkpoint restore two", "delete", MARK_CMD, "continue")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert re.search(r"Restored checkpoint two: .*working directory back to .*/sub/sub,", out.stdout), out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step 2")
