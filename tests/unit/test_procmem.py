"""procmem's batched reads and writes, on this test's own process (process_vm_readv/writev on
ourselves), including the page process_vm_writev refuses and /proc/PID/mem must write."""

import ctypes
import mmap
import os
import random

import pytest

from gdb_checkpoint import procmem

PAGE = 4096
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


@pytest.fixture
def me():
    fd = os.open(f"/proc/{os.getpid()}/mem", os.O_RDWR)
    yield os.getpid(), fd
    os.close(fd)


def address(buf):
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


def test_many_scattered_ranges_read_and_write_like_one_at_a_time(me):
    rng = random.Random(3)
    buf = bytearray(rng.randbytes(4 << 20))
    base = address(buf)
    # More ranges than one system call takes (IOV_MAX), odd sizes and offsets, an empty one.
    ranges = [(base + rng.randrange(len(buf) - 9000), rng.choice([0, 1, 100, PAGE, 9000]))
              for _ in range(2500)]
    got = procmem.read_many(*me, ranges)
    assert [bytes(g) for g in got] == [bytes(buf[a - base:a - base + n]) for a, n in ranges]
    items = [(base + k * 1000 + 3, rng.randbytes(700)) for k in range(2000)]   # disjoint
    procmem.write_many(*me, items)
    assert all(buf[a - base:a - base + len(d)] == d for a, d in items)


def test_a_read_only_private_page_is_written_through_proc_mem(me):
    page = libc.mmap(None, 3 * PAGE, mmap.PROT_READ | mmap.PROT_WRITE,
                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    assert libc.mprotect(page + PAGE, PAGE, mmap.PROT_READ) == 0
    buf = bytearray(64)
    base = address(buf)
    # The middle write starts on a writable page and runs into the read-only one.
    procmem.write_many(*me, [(base, b"x" * 10), (page + PAGE - 2, bytearray(b"yyyy")),
                             (base + 20, b"z" * 5)])
    assert (bytes(buf[:10]), bytes(buf[20:25])) == (b"x" * 10, b"z" * 5)
    assert ctypes.string_at(page + PAGE - 2, 6) == b"yyyy\0\0"
    got = procmem.read_many(*me, [(base, 4), (page + PAGE - 4, 8), (base + 20, 5)])
    assert [bytes(g) for g in got] == [b"xxxx", b"\0\0yyyy\0\0", b"zzzzz"]


def test_reads_land_in_a_given_buffer_and_writes_come_from_views(me):
    page = libc.mmap(None, 2 * PAGE, mmap.PROT_READ | mmap.PROT_WRITE,
                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    ctypes.memmove(page, b"a" * PAGE + b"b" * PAGE, 2 * PAGE)
    assert libc.mprotect(page + PAGE, PAGE, 0) == 0    # PROT_NONE: process_vm_readv refuses it
    into = bytearray(b"?" * (3 * PAGE))
    got = procmem.read_many(*me, [(page + PAGE - 8, 16), (page, 4)], memoryview(into)[100:])
    assert [bytes(g) for g in got] == [b"a" * 8 + b"b" * 8, b"aaaa"]
    assert into[:100] == b"?" * 100 and into[100:120] == b"a" * 8 + b"b" * 8 + b"aaaa"
    assert into[120:] == b"?" * (len(into) - 120)
    with pytest.raises(ValueError):
        procmem.read_many(*me, [(page, 64)], bytearray(63))
    # Writes from slices of one buffer, a read-only view and bytes, to the page it may not touch too.
    source = bytearray(b"0123456789")
    view = memoryview(source)
    procmem.write_many(*me, [(page, view[2:5]), (page + 10, memoryview(b"xyz")), (page + PAGE, b"q"),
                             (page + 20, view[7:])])
    assert ctypes.string_at(page, 23) == b"234aaaaaaaxyzaaaaaaa789"
    got = procmem.read_many(*me, [(page + PAGE, 2)])
    assert bytes(got[0]) == b"qb"
    # Parts of buffers, (addr, data, at, n): of bytes and of a bytearray, one to the page it may
    # not touch (written through /proc/PID/mem from the part), and an empty one.
    procmem.write_many(*me, [(page + 30, b"..ABCD..", 2, 4), (page + 40, source, 1, 3),
                             (page + PAGE + 1, b"__RS__", 2, 2), (page + 50, b"zz", 1, 0)])
    assert ctypes.string_at(page + 30, 21) == b"ABCDaaaaaa123aaaaaaaa"
    assert bytes(procmem.read_many(*me, [(page + PAGE, 4)])[0]) == b"qRSb"


def test_the_address_of_bytes_is_where_their_bytes_are():
    import zstandard

    class Marked(bytes):
        pass
    frame = zstandard.ZstdCompressor().compress(bytes(range(256)) * 64)
    samples = [b"x", b"0123456789" * 7, bytes(PAGE), os.urandom(16384),
               zstandard.ZstdDecompressor().decompress(frame), Marked(b"subclass"), bytearray(b"array")]
    for data in samples:
        assert ctypes.string_at(procmem._address(data), len(data)) == data
