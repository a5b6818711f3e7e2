"""Memory that changed since a checkpoint by other means than the program's own stores: emptied by
madvise(MADV_DONTNEED) or unmapped and mapped again, or written by gdb (`set var`, a called
function). A restore must bring all of it back, whatever keeps track of written pages.

The oracle: ckpt_zap.c hashes its 1 MiB mapping when it stops and prints the hash; counter.c
prints its totals; ckpt_scatter.c hashes its 16 MiB buffer at every step; all as in a clean run."""


import os

import pytest
from helpers import MARK, MARK_CMD, clean_run, compile_c, from_line, gdb_on, program_output


@pytest.mark.parametrize("mode", ["dontneed", "remap"])
def test_memory_emptied_without_a_write_comes_back(tmp_path, mode):
    exe = compile_c("ckpt_zap", tmp_path)
    clean = clean_run(exe, mode)
    out = gdb_on(exe, tmp_path / "store", "break check if step == 2", f'run {mode} >> "$PROG_OUT"',
                 "checkpoint save s2", "delete", "break emptied if step == 3", "continue",
                 "checkpoint restore s2", "print step", "delete", MARK_CMD, "continue")
    assert out.stderr == "", out.stderr
    assert "$1 = 2" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step 2:")


def test_what_gdb_wrote_since_the_checkpoint_is_undone(tmp_path):
    exe = compile_c("counter", tmp_path)
    clean = clean_run(exe)
    out = gdb_on(exe, tmp_path / "store", "break report if step == 3", "run", "checkpoint save s3",
                 "set var total = 99999", "set var list->value = -5", "set var big[300000] = 77",
                 "print report(42, 1)", "checkpoint restore s3",
                 "print total", "print list->value", "print big[300000]", "delete", MARK_CMD,
                 "continue")
    assert out.stderr == "", out.stderr
    assert "$2 = 14" in out.stdout and "$3 = 9" in out.stdout and "$4 = 0 '\\000'" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  3")


@pytest.mark.parametrize("undo, keep, restore", [
    ("before-restore", ["checkpoint save s2"], "checkpoint restore s2"),
    # With a checkpoint of the process saved, before-rcore is saved incrementally too.
    ("before-rcore", ["checkpoint save s2", "gcore {core}"], "rcore {core}"),
], ids=["checkpoint-restore", "rcore"])
def test_the_undo_of_a_restore_after_scattered_writes_brings_them_all_back(tmp_path, undo, keep, restore):
    """Steps 3 to 5 write 1,536 scattered pages. Restoring step 2 at step 5 saves them as the undo
    checkpoint (read and compressed while the restore reads step 2); restoring that, the program
    goes on as from step 5, which it can't unless every one of those pages came back."""
    exe = compile_c("ckpt_scatter", tmp_path)
    clean = clean_run(exe)
    core = tmp_path / "s2.core"
    out = gdb_on(exe, tmp_path / "store", "break step_done if step == 2", "run",
                 *(c.format(core=core) for c in keep), "delete", "break step_done if step == 5",
                 "continue", restore.format(core=core), "print step", f"checkpoint restore {undo}",
                 "print step", "delete", MARK_CMD, "continue")
    # gcore's own warning: it can't read the [vsyscall] page.
    errors = [e for e in out.stderr.splitlines() if "Memory read failed for corefile section" not in e]
    assert errors == [], out.stderr
    assert "$1 = 2" in out.stdout and "$2 = 5" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  5")


def test_gdb_and_the_programs_it_starts_may_run_on_every_cpu_after_saves_and_restores(tmp_path):
    """While a save or restore runs, gdb's thread is kept to one CPU (pipeline.own_cpu); afterwards
    it, the program and the next program gdb starts may use every CPU gdb was given, as the
    kernel reports them, and the program goes on as in a clean run."""
    exe = compile_c("ckpt_scatter", tmp_path)
    clean = clean_run(exe)
    show = ('python import os; print("CPUS", sorted(os.sched_getaffinity(0)), '
            'sorted(os.sched_getaffinity(gdb.selected_inferior().pid)))')
    out = gdb_on(exe, tmp_path / "store", "break step_done if step == 2", "run", "checkpoint save s2",
                 "delete", "break step_done if step == 5", "continue", "checkpoint save s5",
                 "checkpoint restore s2", show, "delete", MARK_CMD, "continue",
                 "break step_done if step == 1", "run", show)
    assert out.stderr == "", out.stderr
    every = str(sorted(os.sched_getaffinity(0)))
    assert out.stdout.count(f"CPUS {every} {every}") == 2, out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  2")
