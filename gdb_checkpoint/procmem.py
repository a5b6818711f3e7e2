"""Write a local process's memory fast: process_vm_writev, falling back to /proc/PID/mem.

process_vm_writev copies each page once (/proc/PID/mem twice, through a one-page kernel buffer:
measured 0.06 s against 0.10 s for 256 MiB), but it refuses pages the process can't write
(read-only private mappings), which /proc/PID/mem writes with FOLL_FORCE. No gdb here."""

import ctypes
import os

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
    local = (ctypes.c_char * len(view)).from_buffer(view)
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
        local = (ctypes.c_char * length).from_buffer(buf)
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
