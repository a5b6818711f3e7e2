"""Which pages a local process wrote: userfaultfd write-protect-async + PAGEMAP_SCAN (Linux >= 6.7).

The userfaultfd lives in the tracked process (made by calls it runs through an injector, see
Injector); the scans run here, on /proc/PID/pagemap. No gdb here, no knowledge of checkpoints."""

import ctypes
import errno
import os
import re
from typing import Protocol

from .errors import TargetError
from .ranges import merge, subtract

PAGE = os.sysconf("SC_PAGE_SIZE")


def _iowr(kind, nr, size):
    return (3 << 30) | (size << 16) | (kind << 8) | nr


# Debian 12's headers predate these (FACTS, "Writing memory"); the ioctl encoding is the same on
# x86-64 and aarch64.
PAGEMAP_SCAN = _iowr(ord("f"), 16, 96)
PM_SCAN_WP_MATCHING, PM_SCAN_CHECK_WPASYNC = 1 << 0, 1 << 1
PAGE_IS_WPALLOWED, PAGE_IS_WRITTEN, PAGE_IS_PRESENT, PAGE_IS_SWAPPED = 1 << 0, 1 << 1, 1 << 3, 1 << 4
UFFD_API = 0xAA
UFFDIO_API = _iowr(0xAA, 0x3F, 24)          # struct uffdio_api {api, features, ioctls}
UFFDIO_REGISTER = _iowr(0xAA, 0x00, 32)     # struct uffdio_register {start, len, mode, ioctls}
UFFDIO_REGISTER_MODE_WP = 1 << 1
UFFD_FEATURE_WP_UNPOPULATED, UFFD_FEATURE_WP_ASYNC = 1 << 13, 1 << 15
UFFD_USER_MODE_ONLY = 1                     # allowed even where vm.unprivileged_userfaultfd = 0
O_NONBLOCK, O_CLOEXEC = 0o4000, 0o2000000
F_DUPFD_CLOEXEC = 1030
PROT_RW, MAP_PRIVATE_ANON = 0x3, 0x22       # for an injector's scratch mmap
# The tracked process runs on this machine (pagemap is local), so its syscall table is ours.
# The system calls we make the program run (tracking, and restores' memory and descriptors).
SYSCALLS = {
    "x86_64": {"open": 2, "close": 3, "lseek": 8, "mmap": 9, "mprotect": 10, "munmap": 11, "brk": 12, "ioctl": 16,
               "dup2": 33, "fcntl": 72, "chdir": 80, "userfaultfd": 323},
    "aarch64": {"close": 57, "lseek": 62, "mmap": 222, "mprotect": 226, "munmap": 215, "brk": 214, "ioctl": 29,
                "fcntl": 25, "chdir": 49, "userfaultfd": 282},
}
VEC_LEN = 1024          # page_region slots per PAGEMAP_SCAN call; more are fetched from walk_end
HIGH_FDS = 64           # the descriptor goes this far below RLIMIT_NOFILE, out of the program's way


class TrackingError(TargetError):
    """Dirty tracking can't start or has been lost (old kernel, descriptor closed, exec)."""


class Injector(Protocol):
    """Runs calls inside the tracked process (gdbinject.GdbInjector; tests use a local one)."""
    def syscall(self, nr: int, *args: int) -> int: ...   # result, or -errno on failure
    def alloc(self, size: int) -> int: ...               # scratch memory in the process
    def free(self, addr: int) -> None: ...
    def write(self, addr: int, data: bytes) -> None: ...
    def read(self, addr: int, length: int) -> bytes: ...


class _PmScanArg(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "size", "flags", "start", "end", "walk_end", "vec", "vec_len", "max_pages",
        "category_inverted", "category_mask", "category_anyof_mask", "return_mask")]


class _PageRegion(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64), ("categories", ctypes.c_uint64)]


# Made once, not per scan: ctypes keeps an array type only while something holds it, and a type
# made per call became cyclic garbage that the collector destroyed after every command that scanned.
_Vec = _PageRegion * VEC_LEN


_libc = ctypes.CDLL(None, use_errno=True)
_ioctl = _libc.ioctl
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_ioctl.restype = ctypes.c_int


# -- PAGEMAP_SCAN from this process ------------------------------------------------------------
def scan_written(pid: int, start: int, end: int, rearm: bool = True) -> list:
    """Page ranges of [start, end) written since they were last write-protected, merged.

    With rearm they are write-protected again in the same call. Every mapping in the range must be
    registered for write-protect-async (TrackingError otherwise: nothing is known about it)."""
    flags = PM_SCAN_CHECK_WPASYNC | (PM_SCAN_WP_MATCHING if rearm else 0)
    with _Pagemap(pid) as fd:
        return [(s, e) for s, e, _ in _scan(fd, pid, start, end, flags, mask=PAGE_IS_WRITTEN)]


def pagemap_scan_supported(pid: int) -> bool:
    """True when this kernel answers PAGEMAP_SCAN on process `pid` (Linux >= 6.7)."""
    try:
        with _Pagemap(pid) as fd:
            _scan(fd, pid, 0, PAGE, 0, mask=PAGE_IS_WRITTEN)
    except TrackingError:
        return False
    return True


def registered_runs(pid: int, start: int, end: int) -> list:
    """Ranges of [start, end) whose mappings are registered for write-protect-async."""
    with _Pagemap(pid) as fd:
        return _registered(fd, pid, start, end)


def _registered(fd, pid, start, end):
    return [(s, e) for s, e, _ in _scan(fd, pid, start, end, 0, mask=PAGE_IS_WPALLOWED)]


def _covered(fd, pid, targets, whole_mappings: bool) -> list:
    """The parts of `targets` registered for write-protect-async. With `whole_mappings` each
    target is one mapping, as /proc/PID/maps has it now, and being registered is a property of
    the whole mapping: its first page tells, where asking about every page walks all of its page
    table (1.2 ms of a 2.7 ms scan at 256 MiB). Given an out-of-date map, a scan fails (the kernel
    refuses to collect from a range holding an unregistered mapping) rather than miss a write."""
    if whole_mappings:
        return [(s, e) for s, e in targets if _registered(fd, pid, s, s + PAGE)]
    return [r for s, e in targets for r in _registered(fd, pid, s, e)]


def _scan(fd, pid, start, end, flags, mask, inverted=0):
    """(start, end, categories) runs of the pages of [start, end) that have every category of
    `mask`, after flipping those of `inverted` (so inverted=mask asks for pages with none)."""
    vec = _Vec()
    out = []
    while start < end:
        arg = _PmScanArg(size=ctypes.sizeof(_PmScanArg), flags=flags, start=start, end=end,
                         vec=ctypes.addressof(vec), vec_len=VEC_LEN, category_mask=mask,
                         category_inverted=inverted, return_mask=mask)
        n = _ioctl(fd, PAGEMAP_SCAN, ctypes.byref(arg))
        if n < 0:
            err = ctypes.get_errno()
            if err in (errno.ENOTTY, errno.EINVAL):
                raise TrackingError(f"this kernel ({os.uname().release}) has no PAGEMAP_SCAN "
                                    f"(Linux 6.7 added it): dirty tracking is not available")
            if err == errno.EPERM:
                raise TrackingError(f"[{start:#x}, {end:#x}) of process {pid} holds a mapping "
                                    f"that is not write-protect tracked")
            raise TrackingError(f"PAGEMAP_SCAN of process {pid} at {start:#x}: {os.strerror(err)}")
        for r in vec[:n]:
            if out and out[-1][1] == r.start and out[-1][2] == r.categories:
                out[-1] = (out[-1][0], r.end, r.categories)
            else:
                out.append((r.start, r.end, r.categories))
        if arg.walk_end <= start:
            break       # no progress: the kernel stopped at the range's end (or refused silently)
        start = arg.walk_end
    return out


class _Pagemap:
    def __init__(self, pid):
        self.path = f"/proc/{pid}/pagemap"

    def __enter__(self):
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise TrackingError(f"can't open {self.path}: {e.strerror}") from None
        return self.fd

    def __exit__(self, *exc):
        os.close(self.fd)


# -- plain pagemap reads -----------------------------------------------------------------------
# pagemap entry: bit 63 present, bit 62 swapped; a swap entry of type 31 (the low 5 bits) is the
# kernel's PTE marker (a write-protected page with nothing behind it, or a guard page): no content.
_PRESENT = bytes(1 if b & 0x80 else 0 for b in range(256))
_SWAPPED = bytes(1 if b & 0xC0 == 0x40 else 0 for b in range(256))
_MARKER = bytes(1 if b & 0x1F == 0x1F else 0 for b in range(256))


def present_runs(pid: int, start: int, end: int) -> list:
    """Runs of pages of [start, end) in memory or swapped out; the rest were never touched (zero).

    Reads pagemap's 8 bytes per page (512 KiB for 256 MiB) and looks at two bytes of each entry.
    Once a range is write-protect tracked its untouched pages hold markers, which only a reader
    with CAP_SYS_ADMIN can tell from swapped pages (others see swap entries with no details):
    without it they count as present, so ask before Tracker.start for the tightest answer."""
    first = start // PAGE
    want = (end - start) // PAGE * 8
    raw = bytearray()
    try:
        with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as f:
            while len(raw) < want:
                chunk = os.pread(f.fileno(), min(want - len(raw), 8 << 20), first * 8 + len(raw))
                if not chunk:
                    break       # past the end of the address space
                raw += chunk
    except OSError as e:
        raise TrackingError(f"can't read /proc/{pid}/pagemap: {e.strerror}") from None
    n = len(raw) // 8
    top, low = bytes(raw[7::8]), bytes(raw[0::8])
    # Byte-wise AND/OR of 0/1 byte strings, done on big integers (65,536 pages in ~1 ms).
    ones = int.from_bytes(b"\x01" * n, "big")
    present = int.from_bytes(top.translate(_PRESENT), "big")
    swapped = int.from_bytes(top.translate(_SWAPPED), "big")
    marker = int.from_bytes(low.translate(_MARKER), "big")
    flags = (present | (swapped & (marker ^ ones))).to_bytes(n, "big")
    return [(start + m.start() * PAGE, start + m.end() * PAGE)
            for m in re.finditer(b"\x01+", flags)]


# -- range arithmetic --------------------------------------------------------------------------
def trackable(maps) -> list:
    """The writable private ranges of `maps` (objects with .start .end .perms, or (start, end)),
    sorted, one per mapping: a range the kernel refuses must not take its neighbours along."""
    return sorted(m if isinstance(m, tuple) else (m.start, m.end)
                  for m in maps if isinstance(m, tuple) or m.perms[1:4:2] == "wp")


def _mappings(maps) -> bool:
    """Whether `maps` are mappings (lines of /proc/PID/maps), not bare (start, end) ranges."""
    return all(not isinstance(m, tuple) for m in maps)


def shared_writable(maps) -> list:
    """The writable MAP_SHARED ranges of `maps`: other processes write them too, nothing here
    can see that, so they are never tracked."""
    return sorted((m.start, m.end) for m in maps
                  if not isinstance(m, tuple) and m.perms[1:4:2] == "ws")


def runs(ranges) -> list:
    """Sorted ranges grouped into lists of touching neighbours."""
    out = []
    for r in sorted(ranges):
        if out and out[-1][-1][1] == r[0]:
            out[-1].append(r)
        else:
            out.append([r])
    return out


# -- the tracker -------------------------------------------------------------------------------
class Tracker:
    """Dirty tracking of one process: its userfaultfd and what this debugger knows about it.

    Only writable private mappings are tracked; writable MAP_SHARED ones and ranges the kernel
    refuses to register are reported as written at every scan (`untracked` says which). Every
    thread of the process must be stopped during start, scan and stop."""

    def __init__(self, pid: int, uffd: int, injector):
        self.pid = pid
        self.uffd = uffd            # the descriptor number in the tracked process: hide it
        self.injector = injector
        self.refused = set()        # (start, end) the kernel would not register
        # Of the last scan, what it reported whole: `new_ranges` had just been mapped (or mapped
        # again) and are tracked from now on; `new_present` are their pages that were in memory
        # or swap before tracking began (the rest of an anonymous one is zero, of a file-backed
        # one file content); `untracked` are shared or refused, and will be reported every time.
        self.new_ranges, self.new_present, self.untracked = [], [], []
        # Whether the last scan ran anything in the process (registering, which may split
        # mappings, and its scratch memory): if not, the process's mappings are as they were.
        self.touched_maps = False

    @classmethod
    def start(cls, pid: int, injector, ranges) -> "Tracker":
        """Create the userfaultfd in process `pid`, register `ranges` (mappings or (start, end)
        pairs; of mappings only the writable private ones) and write-protect them."""
        if not pagemap_scan_supported(pid):
            raise TrackingError(f"this kernel ({os.uname().release}) has no PAGEMAP_SCAN "
                                f"(Linux 6.7 added it): dirty tracking is not available")
        calls = syscall_numbers()
        fd = injector.syscall(calls["userfaultfd"], O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)
        if fd < 0:
            raise TrackingError(f"process {pid} can't create a userfaultfd: {_strerror(fd)}")
        tracker = cls(pid, _move_high(pid, injector, fd, calls), injector)
        try:
            with _Scratch(injector) as scratch:
                tracker._api(scratch)
                tracker._sweep(trackable(ranges), [], injector, scratch, starting=True,
                               whole_mappings=_mappings(ranges))
        except BaseException:
            tracker.stop()
            raise
        return tracker

    def scan(self, maps, injector=None) -> list:
        """Page ranges written since the previous scan (or start), write-protected again.

        Writable private mappings of `maps` that are not tracked yet (new since the last scan, or
        replaced by a new mapping at the same place) are registered first and reported whole;
        ranges no longer in `maps` are not looked at."""
        self.check()
        injector = injector or self.injector
        scratch = _Scratch(injector)
        try:
            with scratch:
                return self._sweep(trackable(maps), shared_writable(maps), injector, scratch,
                                   whole_mappings=_mappings(maps))
        finally:
            self.touched_maps = scratch.used

    def stop(self, injector=None) -> None:
        """Close the userfaultfd in the process: the kernel unregisters and unprotects everything."""
        if self.uffd is None:
            return
        if self._is_ours():
            (injector or self.injector).syscall(syscall_numbers()["close"], self.uffd)
        self.uffd = None

    def check(self) -> None:
        """TrackingError unless the process still holds our userfaultfd (it may have closed it or
        called exec, which closes it: O_CLOEXEC)."""
        if self.uffd is None or not self._is_ours():
            raise TrackingError(f"process {self.pid} no longer holds the dirty-tracking "
                                f"descriptor {self.uffd}: tracking is lost")

    def _is_ours(self) -> bool:
        try:
            return os.readlink(f"/proc/{self.pid}/fd/{self.uffd}") == "anon_inode:[userfaultfd]"
        except OSError:
            return False

    def _sweep(self, targets, shared, injector, scratch, starting=False, whole_mappings=False):
        """Register what of `targets` isn't yet, then collect and re-arm the written pages (when
        `starting`, everything is new and what is found is stale: only arm). `whole_mappings`:
        see _covered()."""
        with _Pagemap(self.pid) as fd:
            covered = _covered(fd, self.pid, targets, whole_mappings)
            new = [piece for t in targets for piece in subtract([t], covered)]
            fresh = [r for r in new if r not in self.refused]
            for run in runs(fresh):
                # One call for touching mappings; each on its own only if the kernel refuses.
                if not self._register(injector, scratch, run[0][0], run[-1][1]):
                    for s, e in run:
                        if len(run) == 1 or not self._register(injector, scratch, s, e):
                            self.refused.add((s, e))    # hugetlb, another userfaultfd's, ...
            # Registering installs no markers yet: pagemap still tells untouched pages apart.
            self.new_ranges = [] if starting else merge(r for r in fresh if r not in self.refused)
            self.new_present = [r for s, e in self.new_ranges for r in present_runs(self.pid, s, e)]
            self.untracked = merge([r for r in new if r in self.refused] + shared)
            if fresh:
                covered = _covered(fd, self.pid, targets, whole_mappings)
            written = [r for cs, ce in merge(covered) for r in _collect(fd, self.pid, cs, ce)]
        return merge(written + new + shared)

    def _register(self, injector, scratch, start, end) -> bool:
        injector.write(scratch.addr, _u64s(start, end - start, UFFDIO_REGISTER_MODE_WP, 0))
        r = injector.syscall(syscall_numbers()["ioctl"], self.uffd, UFFDIO_REGISTER, scratch.addr)
        return r >= 0

    def _api(self, scratch):
        want = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED
        self.injector.write(scratch.addr, _u64s(UFFD_API, want, 0))
        r = self.injector.syscall(syscall_numbers()["ioctl"], self.uffd, UFFDIO_API, scratch.addr)
        if r < 0:
            raise TrackingError(f"this kernel ({os.uname().release}) refuses userfaultfd "
                                f"write-protect-async (UFFDIO_API: {_strerror(r)})")


def _collect(fd, pid, start, end):
    """Written pages of tracked [start, end), write-protected again: those the kernel calls written,
    then those with nothing behind them at all. Arming left a marker on every page, so a page
    with neither page nor marker was discarded (MADV_DONTNEED: now zero). Linux reports such a
    page as written only when its page table survived, unless it has the 2026 fix to
    pagemap_scan_pte_hole ("reads as written on a uffd-wp VMA"); the second call covers the
    kernels without it (and arms the holes, which the first call there doesn't)."""
    flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC
    nothing = PAGE_IS_PRESENT | PAGE_IS_SWAPPED
    return ([(s, e) for s, e, _ in _scan(fd, pid, start, end, flags, mask=PAGE_IS_WRITTEN)] +
            [(s, e) for s, e, _ in _scan(fd, pid, start, end, flags, mask=nothing, inverted=nothing)])


class _Scratch:
    """Scratch memory in the tracked process for the ioctl structs: mapped on first use, unmapped
    on exit, so the program never sees it between our calls."""
    SIZE = 64

    def __init__(self, injector):
        self.injector, self._addr = injector, None

    @property
    def used(self) -> bool:
        """Whether it was ever mapped (it stays known after the unmapping on exit)."""
        return self._addr is not None

    @property
    def addr(self):
        if self._addr is None:
            self._addr = self.injector.alloc(self.SIZE)
        return self._addr

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._addr is not None:
            self.injector.free(self._addr)


def _move_high(pid, injector, fd, calls):
    """Put descriptor `fd` high, out of the way of the descriptors the program opens next, so they
    get the numbers they would get untracked. Returns the descriptor to use."""
    limit = _nofile(pid)
    if limit is None or limit <= HIGH_FDS + 3:
        return fd
    high = injector.syscall(calls["fcntl"], fd, F_DUPFD_CLOEXEC, limit - HIGH_FDS)
    if high < 0:
        return fd
    injector.syscall(calls["close"], fd)
    return high


def _nofile(pid):
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        pass
    return None


def syscall_numbers() -> dict:
    """The numbers of the few syscalls the tracker runs in the process, on this machine."""
    machine = os.uname().machine
    if machine not in SYSCALLS:
        raise TrackingError(f"dirty tracking knows no syscall numbers for {machine}")
    return SYSCALLS[machine]


def _u64s(*values) -> bytes:
    return b"".join(v.to_bytes(8, "little") for v in values)


def _strerror(result):
    return os.strerror(-result)
