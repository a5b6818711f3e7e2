"""Dirty tracking of a real program under gdb: what a scan reports against what the program wrote.

The program prints every page it writes while tracked; the test holds the scan to that set inside a
region only the program touches, and holds the program's output to an untracked run's."""

import json
import os

import pytest

from gdb_checkpoint import dirty
from helpers import clean_run, compile_c, program_output, run_gdb

PAGE = dirty.PAGE
pytestmark = pytest.mark.skipif(not dirty.pagemap_scan_supported(os.getpid()),
                                reason=f"this kernel ({os.uname().release}) lacks PAGEMAP_SCAN and "
                                       f"userfaultfd write-protect-async (Linux >= 6.7)")

# Loaded into gdb with `source`: functions the test's `python` commands call. Each prints one
# "@@ {json}" line for the test to read.
DRIVER = '''
import json, time
import gdb
from gdb_checkpoint import dirty, gdbinject
from gdb_checkpoint.target import parse_maps

def _emit(kind, **kw):
    gdb.write("@@ " + json.dumps({"kind": kind, **kw}) + "\\n")

def _maps():
    with open(f"/proc/{gdb.selected_inferior().pid}/maps") as f:
        return parse_maps(f.read())

def _regs():
    return gdb.execute("info registers", to_string=True)

def track_start():
    global TRACKER
    inferior = gdb.selected_inferior()
    regs, t = _regs(), time.perf_counter()
    TRACKER = dirty.Tracker.start(inferior.pid, gdbinject.GdbInjector(inferior), _maps())
    took = time.perf_counter() - t
    failed = TRACKER.injector.syscall(dirty.syscall_numbers()["close"], -1)
    _emit("start", uffd=TRACKER.uffd, seconds=took, regs_kept=_regs() == regs, failed=failed)

def track_scan():
    regs, maps, t = _regs(), _maps(), time.perf_counter()
    written = TRACKER.scan(maps)
    _emit("scan", written=written, seconds=time.perf_counter() - t, regs_kept=_regs() == regs,
          maps=[(m.start, m.end, m.perms, m.path) for m in _maps()])

def track_stop():
    TRACKER.stop()
    _emit("stop")
'''


def gdb_events(out):
    return [json.loads(line[3:]) for line in out.stdout.splitlines() if line.startswith("@@ ")]


def event(out, kind):
    found = [e for e in gdb_events(out) if e["kind"] == kind]
    assert found, f"no {kind!r} event; gdb said:\n{out.stdout}\n{out.stderr}"
    return found[-1]


def pages(ranges):
    return {a for s, e in ranges for a in range(s, e, PAGE)}


def printed(lines, label):
    """Values of the program's `| LABEL ...` lines, as lists of ints."""
    return [[int(v, 0) for v in line.split()[2:]] for line in lines if line.split()[1] == label]


def tracked_run(exe, tmp_path, *after_scan):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return run_gdb(exe, f"source {driver}", "break stop1", "break stop2", "run",
                   "python track_start()", "continue", "python track_scan()", *after_scan,
                   "delete", "continue")


def untracked_run(exe):
    return run_gdb(exe, "break stop1", "break stop2", "run", "continue", "delete", "continue")


@pytest.fixture(scope="module")
def dirty_pages(tmp_path_factory):
    """dirty_pages run three ways: tracked to its end, untracked, and on its own."""
    tmp = tmp_path_factory.mktemp("dirty_pages")
    exe = compile_c("dirty_pages", tmp)
    tracked = tracked_run(exe, tmp)
    assert tracked.returncode == 0, tracked.stderr
    return exe, tracked, untracked_run(exe)


def test_scan_reports_exactly_the_arena_pages_the_program_wrote(dirty_pages):
    _, tracked, _ = dirty_pages
    lines = program_output(tracked.program)
    (lo, hi), = printed(lines, "arena")
    wrote = {a for a, in printed(lines, "page")}
    written = pages(event(tracked, "scan")["written"])
    assert len(wrote) == 64
    assert {a for a in written if lo <= a < hi} == wrote


def test_new_mappings_and_the_grown_heap_are_reported_whole(dirty_pages):
    _, tracked, _ = dirty_pages
    lines = program_output(tracked.program)
    written = pages(event(tracked, "scan")["written"])
    (rlo, rhi), = printed(lines, "region")
    (blo, bhi), = printed(lines, "brk")
    assert pages([(rlo, rhi)]) <= written
    assert pages([(blo, bhi)]) <= written


def test_nothing_is_reported_outside_writable_private_mappings(dirty_pages):
    _, tracked, _ = dirty_pages
    scan = event(tracked, "scan")
    writable = [(s, e) for s, e, perms, _ in scan["maps"] if perms[1] == "w" and perms[3] == "p"]
    assert pages(scan["written"]) <= pages(writable)
    # Outside the arena, only what libc, the stack and the new memory hold: a handful of pages
    # plus the new region and heap (16 + 32).
    lines = program_output(tracked.program)
    (lo, hi), = printed(lines, "arena")
    assert len([a for a in pages(scan["written"]) if not lo <= a < hi]) < 48 + 40


def test_the_program_prints_what_it_prints_untracked_plus_one_descriptor(dirty_pages):
    exe, tracked, untracked = dirty_pages
    start = event(tracked, "start")
    with_fd = program_output(tracked.program)
    without = program_output(untracked.program)
    extra = [line for line in with_fd if line not in without]
    assert extra == [f"| fd {start['uffd']} anon_inode:[userfaultfd]"]
    assert [line for line in with_fd if line not in extra] == without
    assert "| errno 77 78" in with_fd                # errno kept, even by the failing call
    assert start["failed"] < 0
    # Checksums are address-free: the same as a run outside gdb.
    sums = [line for line in clean_run(exe) if line.startswith("| sum") or line.startswith("| reads")]
    assert sums and set(sums) <= set(with_fd)


def test_registers_are_kept_by_start_and_scan(dirty_pages):
    _, tracked, _ = dirty_pages
    assert event(tracked, "start")["regs_kept"]
    assert event(tracked, "scan")["regs_kept"]


def test_stopping_leaves_the_program_as_if_never_tracked(tmp_path):
    exe = compile_c("dirty_pages", tmp_path)
    tracked = tracked_run(exe, tmp_path, "python track_stop()")
    assert tracked.returncode == 0, tracked.stderr
    event(tracked, "stop")
    assert program_output(tracked.program) == program_output(untracked_run(exe).program)


@pytest.fixture(scope="module")
def dirty_threads(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dirty_threads")
    exe = compile_c("dirty_threads", tmp)
    tracked = tracked_run(exe, tmp)
    assert tracked.returncode == 0, tracked.stderr
    return exe, tracked, untracked_run(exe)


def test_threads_writing_while_tracked_are_seen_page_by_page(dirty_threads):
    _, tracked, _ = dirty_threads
    lines = program_output(tracked.program)
    (lo, hi), = printed(lines, "arena")
    wrote = {a for a, in printed(lines, "page")}
    written = pages(event(tracked, "scan")["written"])
    assert len(wrote) == 4 * 24 + 8           # 4 workers and a thread started while tracked
    assert {a for a in written if lo <= a < hi} == wrote


def test_threaded_program_prints_what_it_prints_untracked(dirty_threads):
    exe, tracked, untracked = dirty_threads
    uffd = event(tracked, "start")["uffd"]
    with_fd = program_output(tracked.program)
    assert [line for line in with_fd if line != f"| fd {uffd} anon_inode:[userfaultfd]"] == \
        program_output(untracked.program)
    sums = [line for line in clean_run(exe) if line.startswith("| sum")]
    assert sums and set(sums) <= set(with_fd)
