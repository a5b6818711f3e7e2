"""checkpoint save/restore on a single-threaded program: in the same process, in a new process and
gdb session, and undone with before-restore / before-rcore.

The oracle is counter.c itself: what it prints when run on its own, and its final list check."""

import re

import pytest
from helpers import MARK, MARK_CMD, clean_run, compile_c, from_line, gdb_on, program_output


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    d = tmp_path_factory.mktemp("counter")
    exe = compile_c("counter", d)
    clean = clean_run(exe)
    assert clean[-1].endswith("list check ok")
    return exe, clean



def pieces(out):
    """The program's lines between the MARK_CMDs: pieces(out)[k] is what it printed after mark k."""
    return [program_output(p) for p in out.program.split(MARK)][1:]


def between(clean, first, last):
    """Clean-run lines from step `first` up to, not including, step `last`."""
    lines = from_line(clean, f"| step {first:2d}")
    return lines[:len(lines) - len(from_line(clean, f"| step {last:2d}"))]


STATE = 'printf "@ total=%ld head=%ld\\n", total, list->value'


def states(out):
    return re.findall(r"^@ (.*)$", out.stdout, re.M)


# -- the same process ----------------------------------------------------------------------------

def test_save_run_restore_cycles_replay_the_clean_run(counter, tmp_path):
    """Save at steps 2 and 4, run to step 9, and go back again and again: each time the program
    prints what a clean run prints from the restored step on."""
    exe, clean = counter
    out = gdb_on(exe, tmp_path / "store",
                 "break report if step == 2", "run", "checkpoint save s2", "delete",
                 "break report if step == 4", "continue", "checkpoint save s4", "delete",
                 "break report if step == 9", "continue",
                 "checkpoint restore s2", MARK_CMD, "continue",        # back to 2, runs to 9
                 "checkpoint restore s2", MARK_CMD, "continue",        # the same one again
                 "checkpoint restore s4", MARK_CMD, "continue",        # a newer one
                 "checkpoint restore s2", MARK_CMD, "continue",        # and the older one again
                 "checkpoint restore s4", "delete", MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr
    assert pieces(out) == [between(clean, 2, 9), between(clean, 2, 9), between(clean, 4, 9),
                           between(clean, 2, 9), from_line(clean, "| step  4")]
    assert clean[-1] in program_output(out.program)


def test_restore_in_the_same_process_shows_the_saved_variables(counter, tmp_path):
    exe, _ = counter
    out = gdb_on(exe, tmp_path / "store",
                 "break report if step == 3", "run", STATE, "checkpoint save three", "delete",
                 "break report if step == 7", "continue", STATE,
                 "checkpoint restore three", STATE, "print step", "bt 1")
    assert out.returncode == 0, out.stderr
    at3, at7, restored = states(out)
    assert at3 != at7
    assert restored == at3
    assert "$1 = 3" in out.stdout
    assert re.search(r"#0 +report \(step=3", out.stdout), out.stdout


def test_restore_after_the_process_was_killed_and_run_again(counter, tmp_path):
    """Same gdb session, a new process: `kill`, `run`, then restore the first process's state."""
    exe, clean = counter
    out = gdb_on(exe, tmp_path / "store",
                 "break report if step == 5", "run", "checkpoint save five", "kill",
                 "delete", "break report if step == 2", "run",
                 "checkpoint restore five", "delete", MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  5")


def test_restore_a_checkpoint_of_main_from_inside_report(counter, tmp_path):
    """Saved at main, restored in report() at step 5: the heap goes, main runs again."""
    exe, clean = counter
    out = gdb_on(exe, tmp_path / "store", "break main", "run", "checkpoint save at-main", "delete",
                 "break report if step == 5", "continue", "checkpoint restore at-main", "bt 1",
                 "delete", MARK_CMD, "continue")
    assert out.stderr == "", out.stderr
    assert re.search(r"^#0 +main \(", out.stdout, re.M), out.stdout
    assert program_output(out.program, after=MARK) == clean


def test_restore_a_checkpoint_of_report_from_main(counter, tmp_path):
    """Saved in report() at step 2, restored from main (after `finish`) at step 5."""
    exe, clean = counter
    out = gdb_on(exe, tmp_path / "store", "break report if step == 2", "run", "checkpoint save s2",
                 "delete", "break report if step == 5", "continue", "finish",
                 "checkpoint restore s2", "bt 1", "delete", MARK_CMD, "continue")
    assert out.stderr == "", out.stderr
    assert re.search(r"^#0 +report \(step=2,", out.stdout, re.M), out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  2")


# -- a new gdb session, a new process ------------------------------------------------------------

def shared_output(path):
    """`run` and mark commands that send the program's output to `path` in every session.

    A checkpoint remembers the file behind each descriptor, stdout included. With one file for all
    sessions the test holds whether a restore in another session gives stdout its saved file back
    or leaves the new session's stdout alone (SPEC says nothing on this)."""
    return f'run >> "{path}"', f'shell echo "{MARK}" >> "{path}"'


def after_last_mark(path):
    return program_output(path.read_text().rsplit(MARK, 1)[1])


@pytest.fixture(scope="module")
def saved(counter, tmp_path_factory):
    """A store with `at-main` (before the heap exists) and `step4`, from a finished gdb session."""
    exe, _ = counter
    d = tmp_path_factory.mktemp("counter-store")
    run, _ = shared_output(d / "out")
    out = gdb_on(exe, d / "store", "break main", run, "checkpoint save at-main", "delete",
                 "break report if step == 4", "continue", "checkpoint save step4", "kill")
    assert out.returncode == 0 and "Checkpoint step4 saved" in out.stdout, out.stdout + out.stderr
    return d


@pytest.mark.parametrize("stop", ["report if step == 8", "report if step == 2", "main"],
                         ids=["later-step", "earlier-step", "main-before-the-heap"])
def test_restore_into_a_new_session_resumes_the_saved_run(counter, saved, stop):
    """A later gdb session restores step4 into its own process, wherever that one stands (at main
    it has no heap yet: the restore must make one), and the program finishes like a clean run."""
    exe, clean = counter
    run, mark = shared_output(saved / "out")
    out = gdb_on(exe, saved / "store", f"break {stop}", run, "checkpoint restore step4",
                 "print total", "print list->next->value", "delete", mark, "continue")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr
    assert "$1 = 30" in out.stdout and "$2 = 9" in out.stdout       # 1+4+9+16; the list: 16 -> 9
    assert after_last_mark(saved / "out") == from_line(clean, "| step  4")


def test_restore_a_checkpoint_from_main_drops_the_heap_grown_since(counter, saved):
    """The reverse: a process at step 8 goes back to `at-main` and runs the whole program again."""
    exe, clean = counter
    run, mark = shared_output(saved / "out")
    out = gdb_on(exe, saved / "store", "break report if step == 8", run,
                 "checkpoint restore at-main", "print list", "delete", mark, "continue")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr
    assert "$1 = (struct node *) 0x0" in out.stdout
    assert after_last_mark(saved / "out") == clean


def test_a_new_session_keeps_its_own_stdout(counter, tmp_path):
    """Each session's program prints into a file of its own, as a user's `run > FILE` would: after
    a restore the program goes on printing into the new session's file, not the saved one."""
    exe, clean = counter
    first = gdb_on(exe, tmp_path / "store", "break report if step == 4", "run",
                   "checkpoint save step4", "kill")
    assert "Checkpoint step4 saved" in first.stdout, first.stderr
    out = gdb_on(exe, tmp_path / "store", "break report if step == 6", "run",
                 "checkpoint restore step4", "delete", MARK_CMD, "continue")
    assert out.stderr == "", out.stderr
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  4")


def test_a_restore_that_fails_on_a_vanished_file_leaves_the_process_as_it_was(counter, tmp_path):
    """Session 1 sends stdout to a file that is gone by the time session 2 restores its checkpoint.
    Either the restore succeeds or it is refused in one line with the process untouched."""
    exe, clean = counter
    gone = tmp_path / "gone.out"
    first = gdb_on(exe, tmp_path / "store", "break report if step == 4", f'run >> "{gone}"',
                   "checkpoint save step4", "kill")
    assert "Checkpoint step4 saved" in first.stdout, first.stderr
    gone.unlink()
    out = gdb_on(exe, tmp_path / "store", "break main", "run", "checkpoint restore step4",
                 "print 6*7", "delete", MARK_CMD, "continue")
    assert "$1 = 42" in out.stdout
    after = program_output(out.program, after=MARK)
    if out.stderr:
        assert len(out.stderr.splitlines()) == 1, out.stderr
        assert after == clean
    else:
        assert after == from_line(clean, "| step  4")


# -- undo ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("undo, go_back", [
    ("before-restore", ["checkpoint save s3"]),
    ("before-rcore", ["gcore {core}"]),
], ids=["checkpoint-restore", "rcore"])
def test_the_undo_checkpoint_undoes_a_restore(counter, tmp_path, undo, go_back):
    """checkpoint restore X / rcore CORE, then `checkpoint restore before-...`: back where we were."""
    exe, clean = counter
    core = tmp_path / "s3.core"
    restore = "checkpoint restore s3" if undo == "before-restore" else f"rcore {core}"
    out = gdb_on(exe, tmp_path / "store",
                 "break report if step == 3", "run", *(c.format(core=core) for c in go_back), "delete",
                 "break report if step == 7", "continue", STATE,
                 restore, STATE,
                 f"checkpoint restore {undo}", STATE, "print step",
                 "delete", MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    at7, at3, undone = states(out)
    assert at3 != at7 and undone == at7
    assert "$1 = 7" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  7")


def test_no_undo_checkpoint_when_checkpoint_undo_is_off(counter, tmp_path):
    exe, clean = counter
    out = gdb_on(exe, tmp_path / "store", "set checkpoint-undo off",
                 "break report if step == 3", "run", "checkpoint save s3", "delete",
                 "break report if step == 7", "continue", "checkpoint restore s3",
                 "checkpoint list", "checkpoint restore before-restore", "print 6*7",
                 "delete", MARK_CMD, "continue")
    assert "before-restore" not in out.stdout
    assert len(out.stderr.splitlines()) == 1 and "before-restore" in out.stderr, out.stderr
    assert "$1 = 42" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  3")


def test_a_process_loaded_at_other_addresses_is_refused_and_left_alone(counter, tmp_path):
    """With address randomization on, the new process has the program elsewhere: the checkpoint
    and a gcore of step 3 are both refused in one line, and the process runs on like a clean run."""
    exe, clean = counter
    core = tmp_path / "s3.core"
    out = gdb_on(exe, tmp_path / "store", "break report if step == 3", "run", "checkpoint save s3",
                 f"gcore {core}", "kill", "set disable-randomization off", "break report if step == 1",
                 "run", "checkpoint restore s3", f"rcore {core}", "print step", "delete", MARK_CMD, "continue")
    errors = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(errors) == 2 and all("address randomization" in e for e in errors), out.stderr
    assert "Checkpoint before-restore saved" not in out.stdout
    assert "$1 = 1" in out.stdout
    assert program_output(out.program, after=MARK) == clean
