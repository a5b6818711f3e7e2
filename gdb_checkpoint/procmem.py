"""Write a local process's memory fast: process_vm_writev, falling back to /proc/PID/mem.

process_vm_writev copies each page once (/proc/PID/mem twice, through a one-page kernel buffer:
measured 0.06 s against 0.10 s for 256 MiB), but it refuses pages the process can't write
(read-only private mappings), which /proc/PID/mem writes with FOLL_FORCE. No gdb here."""

import ctypes
import os
import struct
from itertools import accumulate, chain
from operator import itemgetter, sub

from .ptrace import _Iovec

_libc = ctypes.CDLL(None, use_errno=True)
_pvw = _libc.process_vm_writev
_pvw.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                 ctypes.c_ulong]
_pvw.restype = ctypes.c_ssize_t
CHUNK = 16 << 20        # FACTS: pwrite is fastest in chunks of 64 KiB-16 MiB


def write(pid: int, mem_fd: int, addr: int, data) -> None:
    """Write all of `data` at `addr` in process `pid`; mem_fd is /proc/PID/mem opened O_RDWR."""
    view = memoryview(data).cast("B")
    done = _vm_write(pid, addr, view)
    while done < len(view):
        n = os.pwrite(mem_fd, view[done:done + CHUNK], addr + done)
        if n <= 0:
            raise OSError(5, "short write")
        done += n


def _vm_write(pid, addr, view) -> int:
    """Bytes written by process_vm_writev from the start of `view` (0 when it can't be used)."""
    if view.readonly or not len(view):
        return 0        # ctypes can't take the address of a read-only buffer; pwrite will do
    # The address of the first byte: an array type per length would cost ~5 us a call to create.
    local = ctypes.c_char.from_buffer(view)
    done = 0
    while done < len(view):
        src = _Iovec(ctypes.addressof(local) + done, len(view) - done)
        dst = _Iovec(addr + done, len(view) - done)
        n = _pvw(pid, ctypes.byref(src), 1, ctypes.byref(dst), 1, 0)
        if n <= 0:
            break       # EFAULT on a page the process may not write, ENOSYS, EPERM: fall back
        done += n
    del local
    return done


_pvr = _libc.process_vm_readv
_pvr.argtypes = _pvw.argtypes
_pvr.restype = ctypes.c_ssize_t


def read(pid: int, mem_fd: int, addr: int, length: int) -> bytearray:
    """`length` bytes at `addr` of process `pid` (process_vm_readv, else /proc/PID/mem)."""
    buf = bytearray(length)
    done = 0
    if length:
        local = ctypes.c_char.from_buffer(buf)
        while done < length:
            src = _Iovec(ctypes.addressof(local) + done, length - done)
            dst = _Iovec(addr + done, length - done)
            n = _pvr(pid, ctypes.byref(src), 1, ctypes.byref(dst), 1, 0)
            if n <= 0:
                break
            done += n
        del local
    view = memoryview(buf)
    while done < length:
        n = os.preadv(mem_fd, [view[done:done + CHUNK]], addr + done)
        if n <= 0:
            raise OSError(5, f"can't read memory at {addr + done:#x}")
        done += n
    return buf


IOV_MAX = 1024
_PAIR = struct.Struct("<QQ")


def _address(data) -> int:
    """Where the bytes of a bytes object or a writable buffer are, without copying them."""
    if type(data) is bytes and _BYTES_AT is not None:
        return id(data) + _BYTES_AT
    if isinstance(data, bytes):
        return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
    return ctypes.addressof(ctypes.c_char.from_buffer(data))


def _bytes_offset():
    """How far into a bytes object its bytes lie, when ctypes agrees for every probe (CPython: id()
    is the object's address, the bytes follow its header), else None. A restore writes ~750
    blocks: its write_many went 6.0-6.3 -> 4.3-4.8 ms of CPU in gdb (medians, 3 sessions each way)."""
    probes = [b"gdb-checkpoint" * 3, bytes(4096), bytes(range(256))]
    found = {ctypes.cast(ctypes.c_char_p(p), ctypes.c_void_p).value - id(p) for p in probes}
    return found.pop() if len(found) == 1 else None


_BYTES_AT = _bytes_offset()


def _many(call, single, pid: int, items) -> None:
    """Move [(remote addr, local addr, length)], IOV_MAX at a time, in one system call each; what a
    call leaves (it stops at a page it may not touch) goes through single(n, done), n being the
    item's index and done how many of its bytes moved, which falls back to /proc/PID/mem. The
    iovecs are packed by C iterators: a loop over 655 items cost 0.4 ms of the caller's GIL."""
    k = 0
    while k < len(items):
        group = items[k:k + IOV_MAX]
        local = _pairs(map(_LOCAL, group), len(group))
        remote = _pairs(map(_REMOTE, group), len(group))
        done = max(0, call(pid, _address(local), len(group), _address(remote), len(group), 0))
        if done == sum(map(_LENGTH, group)):
            k += len(group)
            continue
        for _, _, n in group:
            k += 1
            if done >= n:
                done -= n
                continue
            single(k - 1, done)
            break


_LOCAL, _REMOTE, _LENGTH = itemgetter(1, 2), itemgetter(0, 2), itemgetter(2)


def _pairs(pairs, count: int) -> bytes:
    return struct.pack(f"<{2 * count}Q", *chain.from_iterable(pairs))


def write_many(pid: int, mem_fd: int, items) -> None:
    """write() each (addr, data) of `items`, or bytes [at, at + n) of data for (addr, data, at, n),
    in as few system calls as can be (655 scattered pages: 5.5 ms one call each), straight from
    their buffers: joining them first cost a copy and the page faults of a fresh buffer (4 ms for
    1,312 pages in a VM), and so did copying a restore's read-only views of the blocks it read
    (3-5 ms more for its write), which bytes and an offset spare."""
    views = []
    for item in items:
        addr, data = item[0], item[1]
        at, n = (item[2], item[3]) if len(item) == 4 else (0, len(data))
        if n:
            view = memoryview(data).cast("B")
            if view.readonly and not isinstance(data, bytes):
                data, at = bytes(view[at:at + n]), 0   # ctypes can't take a read-only view's address
            views.append((addr, data, at, n))
    places = [(addr, _address(data) + at, n) for addr, data, at, n in views]

    def single(k, done):
        addr, data, at, n = views[k]
        write(pid, mem_fd, addr + done, memoryview(data).cast("B")[at + done:at + n])
    _many(_pvw, single, pid, places)


def read_many(pid: int, mem_fd: int, ranges, into=None) -> list:
    """read() of each (addr, length) of `ranges`, in as few system calls as can be: views into one
    buffer, `into` when given (writable, at least as long as all of them; a reused buffer saves the
    page faults of a fresh one, ~6 us a page in a VM)."""
    lengths = list(map(_SECOND, ranges))
    ends = list(accumulate(lengths))
    off = ends[-1] if ends else 0
    view = memoryview(bytearray(off) if into is None else into).cast("B")
    if len(view) < off:
        raise ValueError(f"a buffer of {len(view)} bytes can't hold {off}")
    starts = list(map(sub, ends, lengths))
    if off:
        base = _address(view)
        items = list(zip(map(_FIRST, ranges), map(base.__add__, starts), lengths))
        if 0 in lengths:
            items = [item for item in items if item[2]]

        def single(k, done):
            addr, local, n = items[k]
            at = local - base
            view[at + done:at + n] = read(pid, mem_fd, addr + done, n - done)
        _many(_pvr, single, pid, items)
    return list(map(view.__getitem__, map(slice, starts, ends)))


_FIRST, _SECOND = itemgetter(0), itemgetter(1)
