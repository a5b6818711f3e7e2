"""ymm0-15 and MXCSR come back exactly: the program compares its registers with its own pattern."""

import re

from helpers import MARK, MARK_CMD, clean_run, compile_c, from_line, program_output, run_gdb



def test_vector_registers_and_mxcsr_are_restored(tmp_path):
    exe = compile_c("vectors", tmp_path, "-mavx")
    clean = clean_run(exe)
    assert clean == [f"| round {r}: ymm0-15 ok, mxcsr {m} ok" for r, m in
                     ((1, "0xbf80"), (2, "0x5f80"), (3, "0xff80"), (4, "0x1f80"))]
    core = tmp_path / "round1.core"
    out = run_gdb(exe, "break *vec_stop", "run", "print $ymm7.v8_int32", "print $mxcsr",
                  f"gcore {core}", "continue", "print $ymm7.v8_int32",
                  f"rcore {core}", "print $ymm7.v8_int32", "print $mxcsr",
                  "delete", MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    values = dict(re.findall(r"^\$(\d+) = (.*)$", out.stdout, re.M))
    assert values["3"] != values["1"]          # round 2 loaded other values...
    assert values["4"] == values["1"]          # ...and rcore put round 1's back, as gdb sees them
    assert values["5"] == values["2"]
    # Resumed at round 1's stop, the program finds round 1's pattern in its registers.
    assert program_output(out.program, after=MARK) == from_line(clean, "| round 1")


def test_registers_of_a_later_round_are_restored_into_an_earlier_one(tmp_path):
    """Going forward: a core of round 3 restored while the process is still at round 1."""
    exe = compile_c("vectors", tmp_path, "-mavx")
    clean = clean_run(exe)
    core = tmp_path / "round3.core"
    first = run_gdb(exe, "break *vec_stop", "run", "continue", "continue", f"gcore {core}", "kill")
    assert core.exists(), first.stderr
    out = run_gdb(exe, "break *vec_stop", "run", f"rcore {core}", "delete",
                  MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    assert program_output(out.program, after=MARK) == from_line(clean, "| round 3")
