"""Memory a younger process has but with other protections: malloc arenas of worker threads grow
by making their PROT_NONE reserve writable. A checkpoint (or a gcore core) of a later step, restored
into a process at an earlier one, must give that memory its saved protections back. The oracle is
ckpt_arena.c's clean run."""

import pytest
from helpers import MARK, compiled, from_line, gdb_on, program_output


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    return compiled(tmp_path_factory, "ckpt_arena")


@pytest.mark.parametrize("how", ["checkpoint", "rcore"])
def test_a_later_step_restored_into_a_younger_process_runs_on(arena, tmp_path, how):
    exe, clean = arena
    store, log, core = tmp_path / "store", tmp_path / "out", tmp_path / "s4.core"
    first = gdb_on(exe, store, "break report if step == 4", f'run >> "{log}"', "checkpoint save four",
                   f"gcore {core}", "kill")
    assert "Checkpoint four saved" in first.stdout and core.exists(), first.stderr
    restore = "checkpoint restore four" if how == "checkpoint" else f"rcore {core}"
    out = gdb_on(exe, store, "break report if step == 1", f'run >> "{log}"', restore, "delete",
                 f'shell echo "{MARK}" >> "{log}"', "continue")
    assert out.returncode == 0, out.stderr
    assert "SIGSEGV" not in out.stdout, out.stdout
    assert program_output(log.read_text(), after=MARK) == from_line(clean, "| step 4")
