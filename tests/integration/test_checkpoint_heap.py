"""The program break goes back with the heap: restoring a checkpoint whose heap is bigger than
the live one's grows it with brk (so malloc can go on growing it), and a smaller one shrinks it.
ckpt_heap.c prints where its break stands and whether each step's block lies in the heap: its
clean run's output is the oracle."""

import pytest
from helpers import MARK, MARK_CMD, compiled, from_line, gdb_on, program_output, restored_in_a_new_process


@pytest.fixture(scope="module")
def heap(tmp_path_factory):
    return compiled(tmp_path_factory, "ckpt_heap")


def test_a_new_process_with_a_smaller_heap_grows_it_with_brk(heap, tmp_path):
    exe, clean = heap
    out, after = restored_in_a_new_process(exe, tmp_path, "report if step == 6", "report if step == 1")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert after == from_line(clean, "| step 6")


def test_going_back_shrinks_the_heap_and_it_grows_again(heap, tmp_path):
    exe, clean = heap
    out = gdb_on(exe, tmp_path / "store", "break report if step == 3", "run", "checkpoint save three",
                 "delete", "break report if step == 7", "continue", "checkpoint restore three", "delete",
                 MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr
    assert program_output(out.program, after=MARK) == from_line(clean, "| step 3")
