"""The signals each thread blocks go back with a checkpoint restore, in the same process and in a
new one. ckpt_sigmask.c prints both of its threads' masks, as sigprocmask reports them, at every
step: its clean run's output is the oracle."""

import pytest
from helpers import MARK, MARK_CMD, compiled, from_line, gdb_on, program_output


@pytest.fixture(scope="module")
def sigmask(tmp_path_factory):
    return compiled(tmp_path_factory, "ckpt_sigmask")


def test_both_threads_block_what_they_blocked_at_the_checkpoint(sigmask, tmp_path):
    exe, clean = sigmask
    out = gdb_on(exe, tmp_path / "store",
                 "break report if step == 3", "run", "checkpoint save three", "delete",
                 "break report if step == 6", "continue", "checkpoint restore three", "delete",
                 MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr
    assert "Restored checkpoint three" in out.stdout, out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step 3")


def test_a_new_process_takes_the_masks_too(sigmask, tmp_path):
    exe, clean = sigmask
    store, log = tmp_path / "store", tmp_path / "out"
    first = gdb_on(exe, store, "break report if step == 5", f'run >> "{log}"', "checkpoint save five", "kill")
    assert "Checkpoint five saved" in first.stdout, first.stderr
    out = gdb_on(exe, store, "break report if step == 1", f'run >> "{log}"', "checkpoint restore five",
                 "delete", f'shell echo "{MARK}" >> "{log}"', "continue")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr
    assert program_output(log.read_text(), after=MARK) == from_line(clean, "| step 5")
