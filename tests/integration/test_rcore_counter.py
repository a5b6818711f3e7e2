"""rcore on a real single-threaded program: same process, a new process, gcore and kernel cores.

The oracle is the program itself: its output when run on its own, and its final self-check."""


import pytest

from helpers import MARK, MARK_CMD, clean_run, compile_c, from_line, program_output, run_gdb



@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    d = tmp_path_factory.mktemp("counter")
    exe = compile_c("counter", d)
    return exe, clean_run(exe)


def test_same_process_restore_resumes_where_gcore_was_taken(counter, tmp_path):
    exe, clean = counter
    core = tmp_path / "step3.core"
    out = run_gdb(exe, "break report if step == 3", "run", "print $pc", f"gcore {core}",
                  "delete", "break report if step == 7", "continue",
                  f"restore-core-file {core}", "print total", "print list->value", "print $pc",
                  "print history", "up", "print history", "delete", MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    # gdb's own view right after the restore: the step-3 values (14 = 1+4+9, head 9).
    assert "$2 = 14" in out.stdout and "$3 = 9" in out.stdout
    pc_at_gcore = _value(out.stdout, 1)
    assert _value(out.stdout, 4) == pc_at_gcore
    # ...and the program, resumed, prints exactly what a clean run prints from step 3 on.
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  3")
    assert clean[-1].endswith("list check ok")


def test_restore_into_a_new_process_of_the_same_program(counter, tmp_path):
    exe, clean = counter
    core = tmp_path / "step4.core"
    first = run_gdb(exe, "break report if step == 4", "run", f"gcore {core}", "kill")
    assert first.returncode == 0 and core.exists(), first.stderr
    again = run_gdb(exe, "break report if step == 8", "run", f"rcore {core}", "delete",
                    MARK_CMD, "continue")
    assert again.returncode == 0, again.stderr
    assert "Restored" in again.stdout and "1 thread" in again.stdout
    assert program_output(again.program, after=MARK) == from_line(clean, "| step  4")


def test_kernel_core_restores_into_a_live_process(counter, tmp_path):
    """The kernel dumps the process at step 5 (SIGQUIT at the breakpoint); a new process takes it."""
    exe, clean = counter
    dumped = run_gdb(exe, "break report if step == 5", "run", "delete", "signal SIGQUIT",
                     cwd=tmp_path, core_limit=True)
    core = tmp_path / "core"
    if not core.exists():
        pattern = open("/proc/sys/kernel/core_pattern").read().strip()
        pytest.skip(f"the kernel wrote no core file here (core_pattern {pattern!r}): {dumped.stdout[-200:]}")
    again = run_gdb(exe, "break report if step == 9", "run", f"rcore {core}", "delete",
                    MARK_CMD, "continue")
    assert again.returncode == 0, again.stderr
    assert program_output(again.program, after=MARK) == from_line(clean, "| step  5")


def test_restore_is_repeatable_and_undoes_later_steps(counter, tmp_path):
    """Restoring the same core twice (after running on) brings the same state back both times."""
    exe, clean = counter
    core = tmp_path / "s2.core"
    out = run_gdb(exe, "break report if step == 2", "run", f"gcore {core}", "delete",
                  "break report if step == 6", "continue", f"rcore {core}", "print total",
                  "continue", f"rcore {core}", "print total", "delete", MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    assert "$1 = 5" in out.stdout and "$2 = 5" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  2")


def _value(text, n):
    for line in text.splitlines():
        if line.startswith(f"${n} = "):
            return line.split(" = ", 1)[1]
    raise AssertionError(f"${n} not printed:\n{text}")




def test_page_made_read_only_since_the_core_is_still_restored(tmp_path):
    exe = compile_c("readonly", tmp_path)
    core = tmp_path / "stop1.core"
    out = run_gdb(exe, "break stop", "run", f"gcore {core}", "continue", "print page",
                  "info proc mappings", f"rcore {core}", "print page", "print n")
    assert out.returncode == 0, out.stderr
    assert '$1 = "second words"' in out.stdout
    assert '$2 = "first words"' in out.stdout and "$3 = 1" in out.stdout
