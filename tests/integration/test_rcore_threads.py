"""A 4-thread program restored thread by thread, in the same process and in a new one."""

import re

from helpers import MARK, MARK_CMD, clean_run, compile_c, from_line, program_output, run_gdb



def test_four_threads_restored_in_the_same_process(tmp_path):
    exe = compile_c("threads", tmp_path)
    clean = clean_run(exe)
    core = tmp_path / "phase2.core"
    out = run_gdb(exe, "break phase if k == 2", "run", "info threads", f"gcore {core}", "delete",
                  "break phase if k == 4", "continue", f"rcore {core}", "info threads",
                  "thread apply all bt 1", "delete", MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    assert "4 threads" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| phase 2")


def test_four_threads_restored_into_a_new_process_in_order(tmp_path):
    exe = compile_c("threads", tmp_path)
    clean = clean_run(exe)
    core = tmp_path / "phase3.core"
    first = run_gdb(exe, "break phase if k == 3", "run", f"gcore {core}", "kill")
    assert core.exists(), first.stderr
    out = run_gdb(exe, "break phase if k == 1", "run", f"rcore {core}", "delete",
                  MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    assert re.search(r"4 threads \(matched in order\)", out.stdout), out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| phase 3")


def test_thread_count_mismatch_is_refused_and_changes_nothing(tmp_path):
    exe = compile_c("threads", tmp_path)
    clean = clean_run(exe)
    core = tmp_path / "phase2.core"
    run_gdb(exe, "break phase if k == 2", "run", f"gcore {core}", "kill")
    out = run_gdb(exe, "break main", "run", f"rcore {core}", "print 6*7", "delete",
                  MARK_CMD, "continue")
    assert "has 4 threads but the inferior has 1" in out.stderr
    assert "$1 = 42" in out.stdout                     # gdb is alive and well
    assert program_output(out.program, after=MARK) == clean, out.stdout   # program untouched
