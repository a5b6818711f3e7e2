"""The signals each thread blocks go back with a checkpoint restore, in the same process and in a
new one. ckpt_sigmask.c prints both of its threads' masks, as sigprocmask reports them, at every
step: its clean run's output is the oracle."""

import pytest
from helpers import MARK, MARK_CMD, compiled, from_line, gdb_on, program_output, restored_in_a_new_process


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
    out, after = restored_in_a_new_process(exe, tmp_path, "report if step == 5", "report if step == 1")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert after == from_line(clean, "| step 5")
