"""Stock gdb, without the extension, opens an exported core and sees what it sees on gcore's core.

The oracle is gdb itself on the original gcore core of the same stop: threads, backtraces,
globals and heap values through pointers must print the same on the export."""

import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from gdb_checkpoint.core.reader import CoreFile
from gdb_checkpoint.core.writer import READ_PIECE, write_core
from gdb_checkpoint.snapshot import saved_regions
from helpers import run_gdb

# The scenario's helpers (gcore a stopped writer_target, turn the core into a ProcessState) live
# beside the unit tests of the writer; one copy serves both.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))
import test_writer as scenario  # noqa: E402

MARK = "=== views ==="
VIEWS = ("info threads", "thread apply all bt", "info auxv", "info proc mappings",
         "print writer_counter", "print writer_config",
         "print *writer_list", "print writer_list->next->next->label",
         "print *writer_list->next->next->next->next", "print writer_big_mib",
         "thread 3", "frame 1", "print mine", "print id", "info registers rip rsp rbp fs_base")


def gdb_views(exe, core, *extra):
    """What stock gdb prints for VIEWS on `core` (after the marker: the banner names psargs)."""
    out = run_gdb(exe, f"core-file {core}", f"echo {MARK}\\n", *VIEWS, *extra, load=False)
    assert MARK in out.stdout, out.stderr
    return out.stdout.split(MARK, 1)[1].splitlines(), out.stderr


@pytest.fixture(scope="module")
def source(tmp_path_factory, have_gdb):
    return scenario.gcore_source(tmp_path_factory.mktemp("writer-gdb"))


def test_stock_gdb_reads_the_export_as_it_reads_gcores_core(source):
    exported = source.core.parent / "export.core"
    scenario.export_core(source, exported)
    want, _ = gdb_views(source.exe, source.core)
    got, errors = gdb_views(source.exe, exported)
    assert got == want
    text = "\n".join(got)
    assert text.count("Thread 0x") >= 6                       # 3 in `info threads`, 3 backtraces
    assert "worker_park (id=1)" in text and "$1 = 42" in text
    assert 'label = "node-5' in text                           # five nodes down the heap list
    assert "Failed to read" not in errors


def test_stock_gdb_reads_an_export_of_what_a_checkpoint_keeps(source):
    with CoreFile(str(source.core)) as cf:
        state, _ = scenario.state_from_core(cf, source)
        # What a checkpoint keeps, as far as the gcore core (our memory source here) holds it:
        # gcore skips unmodified read-only file pages that a live checkpoint does read.
        dumped = [(sg.vaddr, sg.vaddr + sg.filesz) for sg in cf.core.segments if sg.filesz]
        kept = [(max(lo, a), min(hi, b)) for lo, hi in saved_regions(state.maps)
                for a, b in dumped if max(lo, a) < min(hi, b)]

        def read(ranges):
            for lo, hi in ranges:
                yield lo, cf.read_memory(lo, hi - lo)
        exported = source.core.parent / "checkpoint.core"
        write_core(exported, state, kept, read)
    want, _ = gdb_views(source.exe, source.core)
    got, errors = gdb_views(source.exe, exported)
    assert got == want
    assert "Failed to read" not in errors


def test_a_256_mib_export_streams_and_reads_back_in_stock_gdb(tmp_path_factory, have_gdb):
    src = scenario.gcore_source(tmp_path_factory.mktemp("writer-big"), big_mib=256)
    exported = src.core.parent / "export.core"
    with CoreFile(str(src.core)) as cf:
        state, regions = scenario.state_from_core(cf, src)
        total = sum(hi - lo for lo, hi in regions)
        tracemalloc.start()
        started = time.perf_counter()
        result = write_core(exported, state, regions, scenario.read_from(cf))
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert total > 256 << 20
    assert peak < READ_PIECE, f"peak {peak / (1 << 20):.1f} MiB"
    print(f"\nexport of {total / (1 << 20):.0f} MiB: {seconds:.3f} s, "
          f"{total / (1 << 20) / seconds:.0f} MiB/s, {result.segments} segments, peak {peak >> 10} KiB")
    last = "print (int)writer_big[(writer_big_mib << 20) - 4096]"
    want, _ = gdb_views(src.exe, src.core, last)
    got, _ = gdb_views(src.exe, exported, last)
    assert got == want
    assert got[-1].endswith("= -1")        # (char)(65535): the program wrote page number i's low byte
