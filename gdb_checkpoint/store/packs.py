"""Pack files: a few large append-only files of compressed, content-addressed chunk records.

Reads and writes records at offsets; it must not decide which chunks are live (index.py and compact.py do).

PACK format, version 2 (little-endian), file name <16 hex digits>.pack, mode 0600:
    header   "<8sII": magic b"GCKPACK\\0", version 2, reserved 0             (16 bytes)
    record   "<20sBII": key, codec, raw length, stored length (29 bytes), then the stored bytes:
             codec 2 (blocks; the only one written): one "<20sBI" entry per layout.BLOCK of the
             raw bytes (block digest, block codec: 0 raw, 1 one zstd frame, 2 all zero and absent;
             stored length), then the blocks' stored bytes in order. The key is layout.content_key
             of the block digests, so the table is checked first, then each block read.
             codecs 0 and 1 (version 1 packs): the raw bytes, as is or as one zstd frame; the key is
             the digest of all of them.
The index refers to a record by (pack, offset of its header, header + stored length). Bytes no index row
refers to (the tail of a save that crashed before its index commit, chunks of deleted checkpoints) are
garbage; compact.py rewrites a pack when garbage is most of it. Each saving process appends to a pack
it holds an exclusive flock on, so concurrent writers never share a file.
"""

import os
import re
import secrets
import struct
import threading
from itertools import accumulate

import zstandard

from .errors import StoreError
from .files import fsync_dir, open_private, try_flock
from .layout import BLOCK, ZERO, block_digest, content_key, digest

HEADER = struct.Struct("<8sII")
RECORD = struct.Struct("<20sBII")
ENTRY = struct.Struct("<20sBI")
MAGIC = b"GCKPACK\0"
VERSION = 2
RAW, ZSTD, BLOCKS = 0, 1, 2         # record codecs
ZERO_BLOCK = 2                      # block codec (blocks also use RAW and ZSTD)
_HEAD_READ = 512                    # a record's header and the table of a 64 KiB chunk, with room
# Level -1, on 16 KiB blocks: a real 230 MiB Python heap compressed to 10.6% at 0.79 GB/s (level
# 1: 10.1% at 0.60 GB/s); half-random pages, the benchmark's, at 2.2 GB/s against 0.69 for level 1,
# which tries hard on bytes that don't compress. Level 3 was slower still and no smaller.
ZSTD_LEVEL = -1
PACK_TARGET = 512 << 20         # start a new pack past this; bounds what one compaction copies
_NAME = re.compile(r"[0-9a-f]{16}\.pack\Z")
_local = threading.local()


class BadChunk(Exception):
    """A record that can't be trusted; the store turns it into CorruptCheckpointError."""

    def __init__(self, digest_: bytes, pack: str, problem: str):
        super().__init__(f"chunk {digest_.hex()[:16]} in pack {pack} {problem}")


def is_pack_name(name: str) -> bool:
    return bool(_NAME.match(name))


def _compress(data):
    """(codec, stored bytes): a zstd frame, or the raw bytes when zstd can't shrink them."""
    cctx = getattr(_local, "cctx", None)
    if cctx is None:            # zstd contexts are not thread-safe; one per worker thread
        cctx = _local.cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    packed = cctx.compress(data)
    if len(packed) < len(data):
        return ZSTD, packed
    return RAW, data


def encode(data, digests):
    """(codec, [stored bytes]) of a record for `data`, whose blocks have `digests`
    (layout.block_digests): its table, then a frame per block; not joined, which would cost a copy and
    the page faults of a fresh buffer. A raw frame is a view of `data`."""
    return record_parts(encode_blocks(memoryview(data).cast("B"), 0, len(digests), digests))


def encode_blocks(data, lo: int, hi: int, digests=None) -> list:
    """[(digest, block codec, stored bytes)] of blocks lo to hi - 1 of `data` (a byte memoryview),
    hashing them unless their `digests` (all of the data's) are given."""
    out = []
    for n in range(lo, hi):
        block = data[n * BLOCK:(n + 1) * BLOCK]
        d = block_digest(block) if digests is None else digests[n]
        out.append((ZERO, ZERO_BLOCK, b"") if d == ZERO else (d, *_compress(block)))
    return out


def record_parts(blocks) -> tuple:
    """(codec, [stored bytes]) of a record of encode_blocks() `blocks`."""
    table = b"".join(ENTRY.pack(d, codec, len(frame)) for d, codec, frame in blocks)
    return BLOCKS, [table, *(frame for _, _, frame in blocks)]


def _decompress(payload, raw_len: int):
    dctx = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    return dctx.decompress(payload, max_output_size=raw_len)


def read_record(fd: int, pack: str, offset: int, size: int, want: bytes, spans=None) -> tuple:
    """(start, data): bytes [start, start + len(data)) of the record at `offset`, verified, covering
    every (offset, length) of `spans` (None: all of it, from 0). BadChunk if they can't be trusted.

    Of a blocks record only the table and the blocks the spans touch are read and checked."""
    head = os.pread(fd, min(size, _HEAD_READ), offset)
    if len(head) < RECORD.size:
        raise BadChunk(want, pack, "is cut short")
    got, codec, raw_len, stored = RECORD.unpack_from(head)
    if got != want or stored != size - RECORD.size:
        raise BadChunk(want, pack, "has a damaged header")
    if codec == BLOCKS:
        return _read_blocks(fd, head, offset, size, raw_len, want, pack, spans)
    rec = os.pread(fd, size, offset)
    if len(rec) != size:
        raise BadChunk(want, pack, "is cut short")
    return 0, _decoded(memoryview(rec)[RECORD.size:], codec, raw_len, want, want, pack)


def _decoded(stored, codec: int, length: int, expected: bytes, want: bytes, pack: str):
    """The `length` bytes `stored` with `codec` (RAW or ZSTD) holds, checked against the digest
    `expected`; BadChunk naming record `want` otherwise."""
    if codec == ZSTD:
        try:
            data = _decompress(stored, length)
        except zstandard.ZstdError:
            raise BadChunk(want, pack, "does not decompress") from None
    elif codec == RAW:
        data = stored
    else:
        raise BadChunk(want, pack, f"has unknown codec {codec}")
    if len(data) != length or digest(data) != expected:
        raise BadChunk(want, pack, "fails its hash")
    return data


def _runs(numbers):
    """Runs of consecutive numbers in a sorted list."""
    run = [numbers[0]]
    for n in numbers[1:]:
        if n != run[-1] + 1:
            yield run
            run = []
        run.append(n)
    yield run


def _read_blocks(fd, head, offset, size, raw_len, want, pack, spans) -> tuple:
    count = -(-raw_len // BLOCK)
    table_end = RECORD.size + count * ENTRY.size
    if table_end > size:
        raise BadChunk(want, pack, "is cut short")
    if table_end > len(head):
        head = os.pread(fd, table_end, offset)
        if len(head) != table_end:
            raise BadChunk(want, pack, "is cut short")
    entries = list(ENTRY.iter_unpack(head[RECORD.size:table_end]))
    if content_key([e[0] for e in entries]) != want:
        raise BadChunk(want, pack, "fails its hash")
    starts = list(accumulate((e[2] for e in entries), initial=table_end))
    if starts.pop() != size:
        raise BadChunk(want, pack, "has a damaged block table")
    if spans is None:
        needed = range(count)
    else:
        needed = sorted({n for src, length in spans if length > 0
                         for n in range(src // BLOCK, (src + length - 1) // BLOCK + 1)})
        if needed and not 0 <= needed[0] <= needed[-1] < count:
            raise ValueError(f"blocks {needed[0]}-{needed[-1]} are outside a record of {raw_len} bytes")
    if not needed:
        return 0, b""
    first = needed[0]
    if len(needed) == 1:        # a page or so, the common case of a scattered restore: no copy
        return first * BLOCK, _block(fd, offset, starts[first], entries[first], first, raw_len,
                                     want, pack)
    out = bytearray(min(raw_len, (needed[-1] + 1) * BLOCK) - first * BLOCK)
    for run in _runs(needed):           # one pread per run of consecutive blocks
        lo, hi = starts[run[0]], starts[run[-1]] + entries[run[-1]][2]
        frames = os.pread(fd, hi - lo, offset + lo)
        if len(frames) != hi - lo:
            raise BadChunk(want, pack, "is cut short")
        frames = memoryview(frames)
        for n in run:
            stored = entries[n][2]
            data = _block_data(frames[starts[n] - lo:starts[n] - lo + stored], entries[n], n, raw_len,
                               want, pack)
            if data is not None:
                at = (n - first) * BLOCK
                out[at:at + len(data)] = data
    return first * BLOCK, out


def _block(fd, offset, start, entry, n, raw_len, want, pack):
    """Block n of the record at `offset`, whose stored bytes begin `start` bytes into it."""
    stored = entry[2]
    frame = os.pread(fd, stored, offset + start) if stored else b""
    if len(frame) != stored:
        raise BadChunk(want, pack, "is cut short")
    data = _block_data(frame, entry, n, raw_len, want, pack)
    return bytes(min(BLOCK, raw_len - n * BLOCK)) if data is None else data


def _block_data(frame, entry, n, raw_len, want, pack):
    """Block n's bytes from its stored `frame` and table `entry`, checked; None for a zero block."""
    d, codec, stored = entry
    if codec == ZERO_BLOCK:
        if d != ZERO or stored:
            raise BadChunk(want, pack, "has a damaged block table")
        return None
    return _decoded(frame, codec, min(BLOCK, raw_len - n * BLOCK), d, want, pack)


def _check_header(fd: int, path: str) -> int:
    """The pack's format version; StoreError if it is not a pack or is newer than this code."""
    head = os.pread(fd, HEADER.size, 0)
    if len(head) != HEADER.size or head[:8] != MAGIC:
        raise StoreError(f"{path} is not a gdb-checkpoint pack file")
    version = HEADER.unpack(head)[1]
    if version > VERSION:
        raise StoreError(f"{path} has pack format {version}, newer than this gdb-checkpoint "
                         f"understands ({VERSION}); upgrade gdb-checkpoint")
    return version


class PackReader:
    """Open pack files by name, once each, checking their header."""

    def __init__(self, packs_dir):
        self.dir = os.fspath(packs_dir)
        self._fds = {}

    def fd(self, name: str) -> int:
        fd = self._fds.get(name)
        if fd is None:
            if not is_pack_name(name):
                raise StoreError(f"checkpoint index names a bad pack file {name!r}")
            path = os.path.join(self.dir, name)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _check_header(fd, path)
            except BaseException:
                os.close(fd)
                raise
            self._fds[name] = fd
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class PackWriter:
    """Appends records to one pack this process holds exclusively; opened on the first append."""

    def __init__(self, packs_dir, *, target_size: int = PACK_TARGET, fresh: bool = False):
        self.dir = os.fspath(packs_dir)
        self.target = target_size
        self.fresh = fresh          # compaction always writes a new pack
        self.name = None
        self.created = False
        self.appended = 0
        self._file = None
        self._offset = 0

    def append(self, digest_: bytes, codec: int, raw_len: int, parts) -> tuple:
        """Append one record whose stored bytes are `parts` in order (what encode() returns);
        returns (offset, size) for the index."""
        head = RECORD.pack(digest_, codec, raw_len, sum(len(p) for p in parts))
        return self._write(head, *parts)

    def append_record(self, record) -> tuple:
        """Append an already-encoded record verbatim (compaction copies them)."""
        return self._write(record)

    def _write(self, *parts) -> tuple:
        if self._file is None:
            self._open()
        offset = self._offset
        try:
            for part in parts:
                self._file.write(part)
        except OSError as e:
            raise self._error("cannot write", e) from None
        size = sum(len(p) for p in parts)
        self._offset += size
        self.appended += size
        return offset, size

    def sync(self) -> None:
        """Make every appended record durable; the index may refer to them after this returns."""
        if self._file is None:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            if self.created:
                fsync_dir(self.dir)
        except OSError as e:
            raise self._error("cannot sync", e) from None

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()      # also releases the flock
            except OSError:
                pass                    # nothing unsynced is referenced by the index
            self._file = None

    def _error(self, what: str, e: OSError) -> StoreError:
        return StoreError(f"checkpoint store {os.path.dirname(self.dir)}: {what} pack {self.name}: "
                          f"{e.strerror or e}")

    def _open(self) -> None:
        fd = None if self.fresh else self._reuse()
        if fd is None:
            fd = self._create()
        self._offset = os.fstat(fd).st_size
        self._file = os.fdopen(fd, "ab", buffering=1 << 20)

    def _reuse(self):
        """An existing, not-full pack nobody else is appending to, locked; or None."""
        for entry in sorted(os.scandir(self.dir), key=lambda e: e.name):
            if not is_pack_name(entry.name) or entry.stat().st_size >= self.target:
                continue
            try:
                fd = open_private(entry.path, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                continue
            if try_flock(fd, True, 0):
                try:
                    if _check_header(fd, entry.path) == VERSION:
                        self.name = entry.name
                        return fd
                except StoreError:
                    pass                # not ours to append to: leave it alone
            os.close(fd)
        return None

    def _create(self) -> int:
        # Made under a temporary name and renamed once locked and headed, so a writer scanning
        # for a pack to reuse never sees it half-made or unlocked (the flock survives the rename).
        name = secrets.token_hex(8) + ".pack"
        tmp = os.path.join(self.dir, "tmp-" + name)
        fd = None
        try:
            fd = open_private(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_APPEND)
            try_flock(fd, True, 0)
            os.write(fd, HEADER.pack(MAGIC, VERSION, 0))
            os.rename(tmp, os.path.join(self.dir, name))
        except OSError as e:
            if fd is not None:
                os.close(fd)
            raise StoreError(f"checkpoint store {os.path.dirname(self.dir)}: "
                             f"cannot create a pack: {e.strerror or e}") from None
        self.name = name
        self.created = True
        return fd
