"""The store under stress: damaged pack bytes, two gdb sessions saving at once, deletes that give
space back. The oracle is the programs' clean runs (ckpt_noise.c prints a hash of its 4 MiB buffer
at every step, counter.c its running totals) and the store folder's disk usage as du counts it."""

import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import MARK, MARK_CMD, compiled, from_line, gdb_on, program_output


@pytest.fixture(scope="module")
def noise(tmp_path_factory):
    return compiled(tmp_path_factory, "ckpt_noise")


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    return compiled(tmp_path_factory, "counter")



def disk_usage(folder):
    """Bytes of disk the folder's files take (du's count: allocated blocks)."""
    return sum(os.stat(os.path.join(d, f)).st_blocks * 512
               for d, _, files in os.walk(folder) for f in files)


# -- a damaged store -----------------------------------------------------------------------------

FLIP = """import pathlib, sys
pack = max(pathlib.Path(sys.argv[1]).glob("packs/*.pack"), key=lambda p: p.stat().st_size)
data = bytearray(pack.read_bytes())
for i in range(len(data) // 2, len(data) // 2 + 64):
    data[i] ^= 0xFF
pack.write_bytes(data)
"""


def one_corrupt_error(out, name):
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert f"'{name}'" in lines[0] or f" {name} " in lines[0] or lines[0].endswith(name), lines
    assert "corrupt" in lines[0], lines
    assert "Traceback" not in out.stdout + out.stderr


def test_damaged_pack_is_reported_and_nothing_is_applied(noise, tmp_path):
    """Session 1 saves step 2; 64 bytes in the middle of the pack are flipped; session 2, at step 5,
    is told the checkpoint is corrupt, and its program runs on as if nothing had been asked."""
    exe, clean = noise
    store = tmp_path / "store"
    first = gdb_on(exe, store, "break step_done if step == 2", "run", "checkpoint save s2", "kill")
    assert "Checkpoint s2 saved" in first.stdout, first.stderr
    flip = tmp_path / "flip.py"
    flip.write_text(FLIP)
    subprocess.run([sys.executable, str(flip), str(store)], check=True)
    out = gdb_on(exe, store, "break step_done if step == 5", "run", "checkpoint restore s2",
                 "print 6*7", "print step", "delete", MARK_CMD, "continue")
    one_corrupt_error(out, "s2")
    assert "$1 = 42" in out.stdout and "$2 = 5" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  5")


def test_damage_done_during_the_session_is_caught_too(noise, tmp_path):
    exe, clean = noise
    store = tmp_path / "store"
    flip = tmp_path / "flip.py"
    flip.write_text(FLIP)
    out = gdb_on(exe, store, "break step_done if step == 2", "run", "checkpoint save s2", "delete",
                 "break step_done if step == 4", "continue",
                 f'shell "{sys.executable}" "{flip}" "{store}"',
                 "checkpoint restore s2", "print 6*7", "print step", "delete", MARK_CMD, "continue")
    one_corrupt_error(out, "s2")
    assert "$1 = 42" in out.stdout and "$2 = 4" in out.stdout
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  4")


def test_after_damage_is_found_new_checkpoints_store_the_content_again(noise, tmp_path):
    """Session 1 saves step 2 and its pack is cut in half. Session 2, at step 5, is told s2 is
    corrupt; then it saves s5, whose unchanged memory s2's cut records held: s5 must not name them.
    An export reads all of s5, and s5 restored at step 7 runs on like a clean run from step 5."""
    exe, clean = noise
    store = tmp_path / "store"
    first = gdb_on(exe, store, "break step_done if step == 2", "run", "checkpoint save s2", "kill")
    assert "Checkpoint s2 saved" in first.stdout, first.stderr
    (pack,) = (store / "packs").glob("*.pack")
    os.truncate(pack, pack.stat().st_size // 2)
    out = gdb_on(exe, store, "break step_done if step == 5", "run", "checkpoint restore s2",
                 "checkpoint save s5", f"checkpoint export s5 {tmp_path / 's5.core'}", "delete",
                 "break step_done if step == 7", "continue", "checkpoint restore s5", "delete", MARK_CMD,
                 "continue")
    one_corrupt_error(out, "s2")
    assert "Checkpoint s5 saved" in out.stdout and "Restored checkpoint s5" in out.stdout, out.stdout
    assert (tmp_path / "s5.core").exists()
    assert program_output(out.program, after=MARK) == from_line(clean, "| step  5")


# -- two sessions at once ------------------------------------------------------------------------

def saves_every_step(prefix, log):
    commands = ["break report", f'run >> "{log}"']
    for k in range(1, 11):
        commands += [f"checkpoint save {prefix}{k}", "continue"]
    return commands


def test_two_sessions_save_into_one_store_at_the_same_time(counter, tmp_path):
    """Both sessions' programs, and the third's, print into one file, so the restores in the third
    session are judged the same whatever a restore does with stdout's saved file."""
    exe, clean = counter
    store, log = tmp_path / "store", tmp_path / "out"
    start = threading.Barrier(2)

    def session(prefix):
        start.wait()
        return gdb_on(exe, store, *saves_every_step(prefix, log))

    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(session, ["a", "b"]))
    for prefix, out in zip("ab", runs):
        assert out.stderr == "", out.stderr
        saved = re.findall(rf"^Checkpoint {prefix}\d+ saved", out.stdout, re.M)
        assert len(saved) == 10, out.stdout
    assert sorted(program_output(log.read_text())) == sorted(clean * 2)    # lines interleave

    third = gdb_on(exe, store, "checkpoint list", "break report if step == 6", f'run >> "{log}"',
                   "checkpoint restore a3", f'shell echo "{MARK}" >> "{log}"', "continue",
                   "checkpoint restore b8", "delete", f'shell echo "{MARK}" >> "{log}"', "continue")
    assert third.stderr == "", third.stderr
    listed = re.findall(r"^([ab]\d+) ", third.stdout, re.M)
    assert sorted(listed) == sorted(f"{p}{k}" for p in "ab" for k in range(1, 11)), third.stdout
    _, from3, from8 = log.read_text().split(MARK)
    assert program_output(from3) == from_line(clean, "| step  3")[:3]          # steps 3, 4, 5
    assert program_output(from8) == from_line(clean, "| step  8")


# -- delete gives space back ---------------------------------------------------------------------

def test_deleting_four_of_five_checkpoints_frees_their_space(noise, tmp_path):
    """The program's output goes to one file in both sessions (see the concurrency test)."""
    exe, clean = noise
    store, log = tmp_path / "store", tmp_path / "out"
    commands = ["break step_done", f'run >> "{log}"']
    for k in range(1, 6):
        commands += [f"checkpoint save c{k}", "continue"]
    first = gdb_on(exe, store, *commands, "kill")
    assert first.stderr == "", first.stderr
    full = disk_usage(store)
    assert full > 5 * (4 << 20)                  # five different 4 MiB buffers of random bytes

    deleted = gdb_on(exe, store, "checkpoint delete c1 c2 c4 c5", "checkpoint list")
    assert deleted.stderr == "", deleted.stderr
    assert re.findall(r"^(c\d) ", deleted.stdout, re.M) == ["c3"], deleted.stdout
    after = disk_usage(store)
    assert after < full - 3 * (4 << 20), (full, after)

    out = gdb_on(exe, store, "break step_done if step == 7", f'run >> "{log}"',
                 "checkpoint restore c3", "print step", "delete", f'shell echo "{MARK}" >> "{log}"',
                 "continue")
    assert out.stderr == "", out.stderr
    assert "$1 = 3" in out.stdout
    assert program_output(log.read_text(), after=MARK) == from_line(clean, "| step  3")
