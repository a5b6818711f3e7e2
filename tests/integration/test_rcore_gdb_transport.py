"""rcore through gdb's own memory and register writes, the path remote targets take.

GDB_CHECKPOINT_TRANSPORT=gdb makes a local process take that path, so it runs here without a
gdbserver: memory through inferior.write_memory, general registers through `set $reg`; its undo
checkpoint is saved through gdb too (tests/integration/test_checkpoint_remote.py runs gdbserver)."""

import os

from helpers import MARK, MARK_CMD, clean_run, compile_c, from_line, program_output, run_gdb


def test_rcore_through_gdbs_write_path_resumes_the_program(tmp_path):
    exe = compile_c("counter", tmp_path)
    clean = clean_run(exe)
    core = tmp_path / "step3.core"
    env = {**os.environ, "GDB_CHECKPOINT_TRANSPORT": "gdb"}
    out = run_gdb(exe, "break report if step == 3", "run", f"gcore {core}", "delete",
                  "break report if step == 7", "continue", f"rcore {core}", "print total",
                  "checkpoint restore before-rcore", "print total", f"rcore {core}",
                  "delete", MARK_CMD, "continue", env=env)
    assert out.returncode == 0, out.stderr
    assert "Checkpoint before-rcore saved" in out.stdout    # through gdb too, by hashing
    assert "only general registers" in out.stdout or "general registers only" in out.stdout
    assert "$1 = 14" in out.stdout
    assert f"$2 = {sum(n * n for n in range(1, 8))}" in out.stdout     # undone: step 7's total
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  3")
