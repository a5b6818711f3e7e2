"""checkpoint save/restore of a 4-thread program (main + 3 workers), in the same process and in a
new one: each worker keeps its accumulator on its own stack, so a thread given another's registers
shows as wrong numbers. The oracle is threads.c's own output when run on its own."""

import re

import pytest
from helpers import MARK, MARK_CMD, clean_run, compile_c, compiled, from_line, gdb_on, program_output


@pytest.fixture(scope="module")
def threads(tmp_path_factory):
    return compiled(tmp_path_factory, "threads")



def test_four_threads_go_back_to_phase_2_in_the_same_process(threads, tmp_path):
    exe, clean = threads
    out = gdb_on(exe, tmp_path / "store",
                 "break phase if k == 2", "run", "info threads", "checkpoint save phase2", "delete",
                 "break phase if k == 4", "continue", "checkpoint restore phase2", "print k",
                 "thread apply all bt 1", "delete", MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr
    assert len(re.findall(r"^\*? +\d+ +Thread ", out.stdout, re.M)) == 4, out.stdout
    assert re.search(r"Restored checkpoint phase2: .* 4 threads", out.stdout), out.stdout
    assert "$1 = 2" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| phase 2")


def test_phase_2_twice_then_on_to_the_end(threads, tmp_path):
    """Restore, run on to phase 4 again, restore again: the second replay is like the first."""
    exe, clean = threads
    out = gdb_on(exe, tmp_path / "store",
                 "break phase if k == 2", "run", "checkpoint save phase2", "delete",
                 "break phase if k == 4", "continue", "checkpoint restore phase2", MARK_CMD,
                 "continue", "checkpoint restore phase2", "delete", MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    first, second = [program_output(p) for p in out.program.split(MARK)[1:]]
    assert first == [line for line in clean if re.match(r"\| phase [23]:", line)]
    assert second == from_line(clean, "| phase 2")


def test_restore_from_elsewhere_in_main(threads, tmp_path):
    """Stopped in main (after `finish` out of phase 4), not where the checkpoint was taken."""
    exe, clean = threads
    out = gdb_on(exe, tmp_path / "store",
                 "break phase if k == 2", "run", "checkpoint save phase2", "delete",
                 "break phase if k == 4", "continue", "finish", "checkpoint restore phase2",
                 "print k", "delete", MARK_CMD, "continue")
    assert out.stderr == "", out.stderr
    assert "$1 = 2" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| phase 2")


@pytest.mark.parametrize("stop", [1, 4])
def test_four_threads_restored_into_a_new_process(threads, tmp_path, stop):
    """A later gdb session, whose 4 threads stand at phase `stop`, takes the phase-2 checkpoint.

    Both sessions' programs print into one file: the test then holds whether a restore gives
    stdout the file it had when saved or leaves the new session's stdout alone."""
    exe, clean = threads
    store, log = tmp_path / "store", tmp_path / "out"
    first = gdb_on(exe, store, "break phase if k == 2", f'run >> "{log}"',
                   "checkpoint save phase2", "kill")
    assert "Checkpoint phase2 saved" in first.stdout, first.stderr
    out = gdb_on(exe, store, f"break phase if k == {stop}", f'run >> "{log}"',
                 "checkpoint restore phase2", "print k", "delete",
                 f'shell echo "{MARK}" >> "{log}"', "continue")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr
    assert "$1 = 2" in out.stdout
    assert program_output(log.read_text(), after=MARK) == from_line(clean, "| phase 2")


def test_a_new_process_with_one_thread_is_refused_and_left_alone(threads, tmp_path):
    """At main the new process has no workers yet: the 4-thread checkpoint can't go in, and the
    program, untouched, then runs like a clean run."""
    exe, clean = threads
    store = tmp_path / "store"
    gdb_on(exe, store, "break phase if k == 2", "run", "checkpoint save phase2", "kill")
    out = gdb_on(exe, store, "break main", "run", "checkpoint restore phase2", "print 6*7",
                 "delete", MARK_CMD, "continue")
    assert len(out.stderr.splitlines()) == 1 and "4 threads" in out.stderr, out.stderr
    assert "$1 = 42" in out.stdout
    assert program_output(out.program, after=MARK) == clean


def test_a_thread_stopped_inside_a_sleep_sleeps_again_after_a_restore(tmp_path):
    """ckpt_nap.c: the checkpoint holds main inside nanosleep (the worker's stop stopped it there).
    The kernel would resume that call through main's restart block, which is the live thread's,
    not the saved one's: restored, the call must run again, not fail with EINTR."""
    exe = compile_c("ckpt_nap", tmp_path)
    clean = clean_run(exe)
    assert clean[0] == "| step 1: nanosleep returned 0, errno 0"
    out = gdb_on(exe, tmp_path / "store", "break poke", "run", "checkpoint save asleep", "delete",
                 "break report if step == 2", "continue", "checkpoint restore asleep", "delete",
                 MARK_CMD, "continue")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert program_output(out.program, after=MARK) == clean
