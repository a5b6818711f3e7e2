"""gdb_checkpoint.dirty without gdb: PAGEMAP_SCAN and pagemap against programs' own records.

Two kinds of subject: dirty_selftrack, a program that write-protects its own buffer and prints the
pages it writes (so the oracle is never our arming code), and this test process itself, tracked
through a LocalInjector that runs the tracker's syscalls here (so the Tracker's bookkeeping is
tested on memory whose every write the test makes by hand)."""

import ctypes
import errno
import os
import subprocess

import pytest

from gdb_checkpoint import dirty
from gdb_checkpoint.model import LiveMapping
from helpers import compile_c

PAGE = dirty.PAGE
NEEDS = "PAGEMAP_SCAN and userfaultfd write-protect-async (Linux >= 6.7)"
pytestmark = pytest.mark.skipif(not dirty.pagemap_scan_supported(os.getpid()),
                                reason=f"this kernel ({os.uname().release}) lacks {NEEDS}")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
MAP_FIXED, MADV_DONTNEED = 0x10, 4


# -- dirty_selftrack: a program that arms its own buffer ---------------------------------------
class Selftrack:
    """dirty_selftrack running and waiting on stdin; [start, end) and `wrote` are what it printed."""

    def __init__(self, exe, mode, npages, *ops):
        self.proc = subprocess.Popen([str(exe), mode, str(npages), *ops], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.lines = []
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if line.startswith(("| ready", "| unsupported")):
                break
        if any(line.startswith("| unsupported") for line in self.lines):
            self.close()
            pytest.skip(f"dirty_selftrack: {self.lines[-1][2:]}: this kernel lacks {NEEDS}")
        (lo, n), = [line.split()[2:] for line in self.lines if line.startswith("| buffer")]
        self.start, self.end = int(lo, 16), int(lo, 16) + int(n) * PAGE
        self.wrote = {int(line.split()[2], 16) for line in self.lines if line.startswith("| wrote")}
        self.pid = self.proc.pid

    def page(self, k):
        return self.start + k * PAGE

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def selftrack_exe(tmp_path_factory):
    return compile_c("dirty_selftrack", tmp_path_factory.mktemp("selftrack"))


@pytest.fixture
def selftrack(selftrack_exe):
    running = []

    def start(mode, npages, *ops):
        running.append(Selftrack(selftrack_exe, mode, npages, *ops))
        return running[-1]

    yield start
    for p in running:
        p.close()


def pages(ranges):
    return {a for s, e in ranges for a in range(s, e, PAGE)}


def test_scan_from_outside_finds_exactly_the_pages_the_program_wrote(selftrack):
    writes = [f"w{k}" for k in (0, 1, 2, 9, 100, 101, 4095)]
    reads = [f"r{k}" for k in (3, 50, 200)]
    p = selftrack("track", 4096, *writes, *reads)
    assert len(p.wrote) == 7
    assert pages(dirty.scan_written(p.pid, p.start, p.end)) == p.wrote
    assert dirty.scan_written(p.pid, p.start, p.end) == []      # re-armed by the first scan


def test_scan_without_rearm_leaves_the_pages_written(selftrack):
    p = selftrack("track", 64, "w5", "w6", "w40")
    for _ in range(2):
        assert dirty.scan_written(p.pid, p.start, p.end, rearm=False) == \
            [(p.page(5), p.page(7)), (p.page(40), p.page(41))]
    assert pages(dirty.scan_written(p.pid, p.start, p.end)) == p.wrote
    assert dirty.scan_written(p.pid, p.start, p.end, rearm=False) == []


def test_more_runs_than_one_call_returns_are_all_found(selftrack):
    n = dirty.VEC_LEN * 2 + 100           # every other page: that many separate runs
    p = selftrack("track", 2 * n, *[f"w{2 * k}" for k in range(n)])
    found = dirty.scan_written(p.pid, p.start, p.end)
    assert len(found) == n and pages(found) == p.wrote


def test_a_range_that_is_not_tracked_is_refused_not_guessed(selftrack):
    p = selftrack("plain", 16, "w1")
    with pytest.raises(dirty.TrackingError, match="not write-protect tracked"):
        dirty.scan_written(p.pid, p.start, p.end)


def test_present_runs_are_the_pages_the_program_touched(selftrack):
    p = selftrack("plain", 65536, "w0", "w1", "w2", "w777", "r900", "w65535")
    # A read maps the shared zero page: present too.
    assert pages(dirty.present_runs(p.pid, p.start, p.end)) == p.wrote | {p.page(900)}


@pytest.mark.skipif(os.geteuid() != 0, reason="only CAP_SYS_ADMIN sees which swap entries are "
                                              "write-protect markers")
def test_present_runs_skip_write_protect_markers(selftrack):
    p = selftrack("track", 4096, "w3", "r7", "w4000")
    assert pages(dirty.present_runs(p.pid, p.start, p.end)) == p.wrote | {p.page(7)}


# -- the Tracker, on this very process ---------------------------------------------------------
class LocalInjector:
    """The Injector protocol for the calling process itself: syscalls through libc, scratch
    memory from ctypes. Counts the syscalls so tests can see when none were needed."""

    def __init__(self):
        self.buffers, self.calls = {}, 0

    def syscall(self, nr, *args):
        self.calls += 1
        ctypes.set_errno(0)
        r = _libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
        return -ctypes.get_errno() if r == -1 else r

    def alloc(self, size):
        buf = ctypes.create_string_buffer(size)
        self.buffers[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def free(self, addr):
        del self.buffers[addr]

    def write(self, addr, data):
        ctypes.memmove(addr, bytes(data), len(data))

    def read(self, addr, length):
        return ctypes.string_at(addr, length)


def anon(npages, at=0):
    addr = _libc.mmap(at, npages * PAGE, 3, 0x22 | (MAP_FIXED if at else 0), -1, 0)
    assert addr not in (None, ctypes.c_void_p(-1).value)
    return addr


def poke(addr, value=1):
    ctypes.c_ubyte.from_address(addr).value = value


def peek(addr):
    return ctypes.c_ubyte.from_address(addr).value


def mapping(start, npages, perms="rw-p"):
    return LiveMapping(start, start + npages * PAGE, perms, 0, "")


@pytest.fixture
def memory():
    """Fresh anonymous mappings of this process, unmapped after the test."""
    made = []

    def make(npages, at=0):
        made.append((anon(npages, at), npages))
        return made[-1][0]

    yield make
    for addr, n in made:
        _libc.munmap(addr, n * PAGE)


@pytest.fixture
def tracker():
    started = []

    def start(maps):
        started.append(dirty.Tracker.start(os.getpid(), LocalInjector(), maps))
        return started[-1]

    yield start
    for t in started:
        t.stop()


def test_tracker_reports_each_written_page_once(memory, tracker):
    a = memory(512)
    for k in range(0, 512, 3):
        poke(a + k * PAGE)                  # before tracking: stale
    maps = [mapping(a, 512)]
    t = tracker(maps)
    poke(a + 10 * PAGE), peek(a + 11 * PAGE), poke(a + 511 * PAGE), peek(a + 400 * PAGE)
    assert t.scan(maps) == [(a + 10 * PAGE, a + 11 * PAGE), (a + 511 * PAGE, a + 512 * PAGE)]
    assert t.scan(maps) == []


def test_new_mappings_are_registered_and_reported_whole_once(memory, tracker):
    a = memory(64)
    t = tracker([mapping(a, 64)])
    b = memory(32)
    poke(b + 3 * PAGE)
    maps = [mapping(a, 64), mapping(b, 32)]
    calls = t.injector.calls
    assert t.scan(maps) == [(b, b + 32 * PAGE)]
    assert t.new_ranges == [(b, b + 32 * PAGE)]
    assert t.new_present == [(b + 3 * PAGE, b + 4 * PAGE)]
    assert t.injector.calls > calls                  # it had to register b
    poke(b + 5 * PAGE)
    calls = t.injector.calls
    assert t.scan(maps) == [(b + 5 * PAGE, b + 6 * PAGE)]
    assert t.injector.calls == calls                 # a plain scan runs nothing in the process


def test_a_mapping_replaced_in_place_is_reported_whole(memory, tracker):
    a = memory(64)
    t = tracker([mapping(a, 64)])
    anon(16, at=a + 16 * PAGE)          # MAP_FIXED: a new, untracked mapping in the middle
    poke(a + 40 * PAGE)
    maps = [mapping(a, 16), mapping(a + 16 * PAGE, 16), mapping(a + 32 * PAGE, 32)]   # as maps says
    assert t.scan(maps) == [(a + 16 * PAGE, a + 32 * PAGE), (a + 40 * PAGE, a + 41 * PAGE)]
    assert t.scan(maps) == []
    # The same place mapped again, alike: the same line in /proc/PID/maps, a new mapping.
    anon(16, at=a + 16 * PAGE)
    poke(a + 3 * PAGE), poke(a + 50 * PAGE)
    assert t.scan(maps) == [(a + 3 * PAGE, a + 4 * PAGE), (a + 16 * PAGE, a + 32 * PAGE),
                            (a + 50 * PAGE, a + 51 * PAGE)]


def test_an_out_of_date_map_fails_the_scan_rather_than_miss_a_write(memory, tracker):
    a = memory(64)
    maps = [mapping(a, 64)]
    t = tracker(maps)
    anon(16, at=a + 16 * PAGE)          # maps still says one mapping; the kernel has three
    poke(a + 2 * PAGE)
    with pytest.raises(dirty.TrackingError):
        t.scan(maps)


def test_unmapped_ranges_are_dropped(memory, tracker):
    a, b = memory(16), memory(16)
    t = tracker([mapping(a, 16), mapping(b, 16)])
    poke(a), poke(b)
    _libc.munmap(b, 16 * PAGE)
    assert t.scan([mapping(a, 16)]) == [(a, a + PAGE)]
    memory(16, at=b)                    # so the fixture's munmap has something to unmap


def test_discarded_pages_count_as_written(memory, tracker):
    a = memory(1024)
    block = (a + (2 << 20) - 1) & ~((2 << 20) - 1)       # a 2 MiB page table's worth inside
    for k in range(1024):
        poke(a + k * PAGE)
    maps = [mapping(a, 1024)]
    t = tracker(maps)
    _libc.madvise(a + PAGE, PAGE, MADV_DONTNEED)         # one page: now zero
    _libc.madvise(block, 2 << 20, MADV_DONTNEED)         # a whole table, which the kernel frees
    assert pages(t.scan(maps)) == {a + PAGE} | pages([(block, block + (2 << 20))])


def test_writes_through_proc_mem_count(memory, tracker):
    a = memory(8)
    maps = [mapping(a, 8)]
    t = tracker(maps)
    fd = os.open("/proc/self/mem", os.O_RDWR)
    try:
        os.pwrite(fd, b"restored", a + 6 * PAGE)         # what a restore does
    finally:
        os.close(fd)
    assert t.scan(maps) == [(a + 6 * PAGE, a + 7 * PAGE)]


def test_writes_while_read_only_show_once_writable_again(memory, tracker):
    a = memory(8)
    t = tracker([mapping(a, 8)])
    _libc.mprotect(a + 4 * PAGE, 2 * PAGE, 1)
    poke(a + PAGE)
    ro = [mapping(a, 4), mapping(a + 4 * PAGE, 2, "r--p"), mapping(a + 6 * PAGE, 2)]
    assert t.scan(ro) == [(a + PAGE, a + 2 * PAGE)]
    _libc.mprotect(a + 4 * PAGE, 2 * PAGE, 3)
    poke(a + 5 * PAGE)
    assert t.scan([mapping(a, 8)]) == [(a + 5 * PAGE, a + 6 * PAGE)]


def test_shared_mappings_are_reported_whole_and_read_only_ones_not_at_all(memory, tracker):
    a = memory(8)
    maps = [mapping(a, 4), mapping(a + 4 * PAGE, 2, "rw-s"), mapping(a + 6 * PAGE, 2, "r--p")]
    t = tracker(maps)
    assert dirty.registered_runs(os.getpid(), a, a + 8 * PAGE) == [(a, a + 4 * PAGE)]
    for _ in range(2):
        assert t.scan(maps) == [(a + 4 * PAGE, a + 6 * PAGE)]
        assert t.untracked == [(a + 4 * PAGE, a + 6 * PAGE)] and t.new_ranges == []


def test_a_forked_childs_writes_are_not_the_parents(memory, tracker):
    a = memory(8)
    for k in range(8):
        poke(a + k * PAGE)              # present, so that fork shares them copy-on-write
    maps = [mapping(a, 8)]
    t = tracker(maps)
    poke(a + PAGE)
    child = os.fork()
    if child == 0:
        poke(a + 2 * PAGE), poke(a + 3 * PAGE)
        os._exit(0)
    os.waitpid(child, 0)
    poke(a + 5 * PAGE)                  # after fork: a copy-on-write fault, still seen
    assert t.scan(maps) == [(a + PAGE, a + 2 * PAGE), (a + 5 * PAGE, a + 6 * PAGE)]


def test_a_range_the_kernel_refuses_is_written_at_every_scan(memory, tracker):
    a, b = memory(8), memory(8)
    for k in range(8):
        poke(b + k * PAGE)              # populated, so that nothing waits on the other handler
    other = claim_missing_mode(b, 8)    # another userfaultfd owns b, not in write-protect-async
    try:
        maps = [mapping(a, 8), mapping(b, 8)]
        t = tracker(maps)
        assert t.refused == {(b, b + 8 * PAGE)}
        calls = t.injector.calls
        for _ in range(2):
            assert t.scan(maps) == [(b, b + 8 * PAGE)]
            assert t.untracked == [(b, b + 8 * PAGE)] and t.new_ranges == []
        assert t.injector.calls == calls                 # refused once, not asked again
    finally:
        os.close(other)


def test_another_async_tracker_is_taken_for_ours(memory, tracker):
    """A range the program itself tracks write-protect-async looks tracked: the bits are shared,
    so each scan steals the other's dirty pages. Documented as a limit; pinned here."""
    b = memory(8)
    other = dirty.Tracker.start(os.getpid(), LocalInjector(), [mapping(b, 8)])
    try:
        t = tracker([mapping(b, 8)])
        assert t.refused == set()
        poke(b)
        assert t.scan([mapping(b, 8)]) == [(b, b + PAGE)]
        assert other.scan([mapping(b, 8)]) == []
    finally:
        other.stop()


def claim_missing_mode(addr, npages):
    """A userfaultfd of this process registered on the range in MISSING mode; its descriptor."""
    inj = LocalInjector()
    calls = dirty.syscall_numbers()
    fd = inj.syscall(calls["userfaultfd"], dirty.O_CLOEXEC | dirty.UFFD_USER_MODE_ONLY)
    assert fd >= 0
    buf = inj.alloc(32)
    inj.write(buf, dirty._u64s(dirty.UFFD_API, 0, 0))
    assert inj.syscall(calls["ioctl"], fd, dirty.UFFDIO_API, buf) == 0
    inj.write(buf, dirty._u64s(addr, npages * PAGE, 1, 0))     # UFFDIO_REGISTER_MODE_MISSING
    assert inj.syscall(calls["ioctl"], fd, dirty.UFFDIO_REGISTER, buf) == 0
    return fd


def test_the_descriptor_sits_high_and_leaves_the_low_numbers_alone(memory, tracker):
    a = memory(4)
    before = os.open("/dev/null", os.O_RDONLY)
    os.close(before)
    t = tracker([mapping(a, 4)])
    assert os.readlink(f"/proc/self/fd/{t.uffd}") == "anon_inode:[userfaultfd]"
    soft = int([line for line in open("/proc/self/limits") if line.startswith("Max open files")][0].split()[3])
    assert soft - dirty.HIGH_FDS <= t.uffd < soft
    after = os.open("/dev/null", os.O_RDONLY)
    os.close(after)
    assert after == before


def test_stop_closes_the_descriptor_and_unprotects(memory):
    a = memory(4)
    t = dirty.Tracker.start(os.getpid(), LocalInjector(), [mapping(a, 4)])
    uffd = t.uffd
    t.stop()
    assert not os.path.exists(f"/proc/self/fd/{uffd}")
    assert dirty.registered_runs(os.getpid(), a, a + 4 * PAGE) == []
    with pytest.raises(dirty.TrackingError, match="tracking is lost"):
        t.scan([mapping(a, 4)])


def test_a_descriptor_closed_behind_the_trackers_back_is_noticed(memory):
    a = memory(4)
    t = dirty.Tracker.start(os.getpid(), LocalInjector(), [mapping(a, 4)])
    os.close(t.uffd)                    # what a program that closes every descriptor does
    with pytest.raises(dirty.TrackingError, match="no longer holds"):
        t.scan([mapping(a, 4)])
    t.stop()                            # and stopping then is harmless


def test_range_arithmetic():
    assert dirty.merge([(5, 8), (0, 2), (2, 3), (7, 9), (4, 4)]) == [(0, 3), (5, 9)]
    assert dirty.subtract([(0, 10), (20, 30)], [(2, 4), (8, 22), (29, 40)]) == \
        [(0, 2), (4, 8), (22, 29)]
    assert dirty.trackable([mapping(PAGE, 1), mapping(0, 1), mapping(3 * PAGE, 1, "rw-s"),
                            mapping(5 * PAGE, 1, "r-xp"), (9 * PAGE, 10 * PAGE)]) == \
        [(0, PAGE), (PAGE, 2 * PAGE), (9 * PAGE, 10 * PAGE)]
    assert dirty.runs([(5, 6), (0, 2), (2, 3)]) == [[(0, 2), (2, 3)], [(5, 6)]]


def test_unsupported_kernels_answer_false_not_raise(monkeypatch):
    def refuse(*args):
        ctypes.set_errno(errno.ENOTTY)
        return -1
    monkeypatch.setattr(dirty, "_ioctl", refuse)
    assert dirty.pagemap_scan_supported(os.getpid()) is False
    with pytest.raises(dirty.TrackingError, match="Linux 6.7"):
        dirty.Tracker.start(os.getpid(), LocalInjector(), [])
