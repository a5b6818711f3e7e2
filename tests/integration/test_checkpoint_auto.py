"""`set checkpoint-auto on` saves every stop; `checkpoint back [N]` returns to an earlier one.

The oracle: what gdb printed of the program's variables and registers at each stop, in the same
session, before going back; and ckpt_walk.c's clean-run output for the run that follows."""

import re

import pytest
from helpers import MARK, MARK_CMD, clean_run, compile_c, from_line, gdb_on, program_output

STOPS = 20


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    d = tmp_path_factory.mktemp("walk")
    exe = compile_c("ckpt_walk", d)
    clean = clean_run(exe)
    assert clean[-1].endswith("list check ok")
    return exe, clean



# What the program holds at a stop in tick(): its globals, the heap list, the argument, pc and sp.
IN_TICK = ('printf "@ i=%d a=%ld b=%ld head=%ld label=%s printed=%d pc=%p sp=%p\\n", '
           'i, a, b, list->value, label, printed, $pc, $sp')
# ...and at a stop in main (after `next`): its locals too.
IN_MAIN = ('printf "@ i=%d local=%ld a=%ld b=%ld sum=%ld printed=%d pc=%p sp=%p\\n", '
           'i, local, a, b, sum, printed, $pc, $sp')


def states(out):
    return re.findall(r"^@ (.*)$", out.stdout, re.M)


def printed(state):
    return int(re.search(r"printed=(\d+)", state).group(1))


def test_back_through_twenty_breakpoint_stops(walk, tmp_path):
    exe, clean = walk
    stops = []
    for k in range(STOPS):
        stops += ["continue"] if k else ["run"]
        stops.append(IN_TICK)
    out = gdb_on(exe, tmp_path / "store", "set checkpoint-auto on", "break tick", *stops,
                 "checkpoint back", IN_TICK, "checkpoint back", IN_TICK,
                 "checkpoint back 5", IN_TICK,
                 "delete", MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr
    seen = states(out)
    recorded, went_back = seen[:STOPS], seen[STOPS:]
    assert len(set(recorded)) == STOPS
    assert went_back == [recorded[18], recorded[17], recorded[12]]        # stops 19, 18, 13
    assert program_output(out.program, after=MARK) == from_line(clean, "| 13:")


def test_back_through_twenty_nexts(walk, tmp_path):
    exe, clean = walk
    steps = []
    for _ in range(STOPS):
        steps += ["next", IN_MAIN]
    out = gdb_on(exe, tmp_path / "store", "break main", "run", "delete", "set checkpoint-auto on",
                 *steps, "checkpoint back", IN_MAIN, "checkpoint back", IN_MAIN,
                 "checkpoint back 5", IN_MAIN, MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr
    seen = states(out)
    recorded, went_back = seen[:STOPS], seen[STOPS:]
    assert len(set(recorded)) == STOPS
    assert went_back == [recorded[18], recorded[17], recorded[12]]
    assert program_output(out.program, after=MARK) == clean[printed(recorded[12]):]


def test_auto_limit_keeps_the_last_five(walk, tmp_path):
    exe, clean = walk
    stops = []
    for k in range(STOPS):
        stops += ["continue"] if k else ["run"]
        stops.append(IN_TICK)
    out = gdb_on(exe, tmp_path / "store",
                 "set checkpoint-auto-limit 5", "show checkpoint-auto-limit",
                 "set checkpoint-auto on", "break tick", *stops, "checkpoint list",
                 "checkpoint back 5", "checkpoint back 4", IN_TICK, "delete", MARK_CMD, "continue")
    assert out.returncode == 0, out.stderr
    assert re.search(r"automatic checkpoints.* 5\.?$", out.stdout, re.M), out.stdout
    listed = re.findall(r"^(auto-\S+)", out.stdout, re.M)
    assert len(listed) == 5, out.stdout
    # back 5 would need a sixth: refused in one line, nothing done.
    assert len(out.stderr.splitlines()) == 1 and "4" in out.stderr, out.stderr
    seen = states(out)
    assert seen[STOPS] == seen[15]                                         # stop 16
    assert program_output(out.program, after=MARK) == from_line(clean, "| 16:")


def test_an_unlimited_ring_goes_back_to_the_first_stop(walk, tmp_path):
    exe, clean = walk
    stops = []
    for k in range(8):
        stops += ["continue"] if k else ["run"]
        stops.append(IN_TICK)
    out = gdb_on(exe, tmp_path / "store", "set checkpoint-auto-limit 3", "set checkpoint-auto-limit unlimited",
                 "show checkpoint-auto-limit", "set checkpoint-auto on", "break tick", *stops,
                 "checkpoint back 7", IN_TICK, "delete", MARK_CMD, "continue")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert re.search(r"automatic checkpoints kept is unlimited\.$", out.stdout, re.M), out.stdout
    seen = states(out)
    assert seen[8] == seen[0]                                              # stop 1
    assert program_output(out.program, after=MARK) == from_line(clean, "|  1:")


def test_back_without_auto_is_refused(walk, tmp_path):
    exe, _ = walk
    out = gdb_on(exe, tmp_path / "store", "break tick", "run", "continue", "checkpoint back",
                 "print 6*7")
    assert len(out.stderr.splitlines()) == 1 and "checkpoint-auto" in out.stderr, out.stderr
    assert "$1 = 42" in out.stdout
