"""Pack files: a few large append-only files of compressed, content-addressed chunk records.

Reads and writes records at offsets; it must not decide which chunks are live (index.py and compact.py do).

PACK format, version 3 (little-endian), file name <16 hex digits>.pack, mode 0600:
    header   "<8sII": magic b"GCKPACK\\0", version 3, reserved 0             (16 bytes)
    record   "<20sBII": key, codec, raw length, stored length (29 bytes), then the stored bytes,
             which hold the raw bytes cut into layout.BLOCK blocks:
             codec 3 (checked blocks): one "<20sBI" entry per block (block digest, block codec: 1 one
             zstd frame carrying its content checksum, 2 all zero and absent; stored length), then
             the frames in order. The key is layout.content_key of the block digests: it dedupes,
             and it checks the table; each frame is checked by zstd against its own checksum (XXH64
             of the block) as it is decompressed, 2 us a block against 11 for SHA-256.
             codec 4 (unique blocks): 16 random bytes, one "<BI" entry per block (block codec,
             stored length), then the frames, checked the same way. The key is the digest of
             b"GCKU", the random bytes and the entries: no record shares it, so nothing dedupes
             against it, and no block is hashed to save it (a save's bundle of written pages: what
             changed rarely comes back byte for byte).
             codec 2 (version 2 packs): as codec 3, but a block may also be 0 (raw) and frames
             carry no checksum: each block is checked against its digest.
             codecs 0 and 1 (version 1 packs): the raw bytes, as is or as one zstd frame; the key is
             the digest of all of them.
The index refers to a record by (pack, offset of its header, header + stored length). Bytes no index row
refers to (the tail of a save that crashed before its index commit, chunks of deleted checkpoints) are
garbage; compact.py rewrites a pack when garbage is most of it (copying records as they are, of any
codec). Each saving process appends to a pack it holds an exclusive flock on, so concurrent writers
never share a file.
"""

import os
import re
import secrets
import struct
from collections import OrderedDict
from itertools import accumulate

import zstandard

from .errors import StoreError
from .files import fsync_dir, open_private, try_flock
from .layout import BLOCK, ZERO, block_digest, content_key, digest, zstd_compressor, zstd_decompressor

HEADER = struct.Struct("<8sII")
RECORD = struct.Struct("<20sBII")
ENTRY = struct.Struct("<20sBI")
UNIQUE_ENTRY = struct.Struct("<BI")
NONCE = 16
MAGIC = b"GCKPACK\0"
VERSION = 3
RAW, ZSTD, BLOCKS, CHECKED, UNIQUE = 0, 1, 2, 3, 4      # record codecs
ZERO_BLOCK = 2                      # block codec (blocks also use RAW and ZSTD)
_UNIQUE_PREFIX = b"GCKU"
_FRAME_MAGIC = b"\x28\xb5\x2f\xfd"
_CHECKSUM_FLAG = 0x04               # in a zstd frame's header descriptor, the byte after the magic
_HEAD_READ = 512                    # a record's header and the table of a 64 KiB chunk, with room
# Level -1, on 16 KiB blocks: a real 230 MiB Python heap compressed to 10.6% at 0.79 GB/s (level
# 1: 10.1% at 0.60 GB/s); half-random pages, the benchmark's, at 2.2 GB/s against 0.69 for level 1,
# which tries hard on bytes that don't compress. Level 3 was slower still and no smaller.
ZSTD_LEVEL = -1
PENDING_BYTES = 4 << 20         # appended bytes a PackWriter keeps before writing them
_IOV_MAX = 1024
PACK_TARGET = 512 << 20         # start a new pack past this; bounds what one compaction copies
_NAME = re.compile(r"[0-9a-f]{16}\.pack\Z")


class BadChunk(Exception):
    """A record that can't be trusted; the store turns it into CorruptCheckpointError."""

    def __init__(self, digest_: bytes, pack: str, problem: str):
        super().__init__(f"chunk {digest_.hex()[:16]} in pack {pack} {problem}")
        self.digest = digest_
        self.pack = pack


def is_pack_name(name: str) -> bool:
    return bool(_NAME.match(name))


def _compress(data) -> bytes:
    """One zstd frame of `data` with its content checksum (a block zstd can't shrink is stored raw
    inside it, 12 bytes more)."""
    return _compressor().compress(data)


def _compressor():
    return zstd_compressor(ZSTD_LEVEL, checksum=True)


def _zero_frame(n: int) -> bytes:
    frame = _zero_frames.get(n)
    if frame is None:
        frame = _zero_frames[n] = _compress(bytes(n))
    return frame


_zero_frames = {}


def encode(data, digests) -> tuple:
    """(key, codec, [stored bytes]) of a checked record for `data`, whose blocks have `digests`
    (layout.block_digests): its table, then a frame per block; not joined, which would cost a copy and
    the page faults of a fresh buffer."""
    return record_parts(encode_blocks(memoryview(data).cast("B"), 0, len(digests), digests))


def encode_blocks(data, lo: int, hi: int, digests=None, hashed: bool = True) -> list:
    """[(digest, frame)] of blocks lo to hi - 1 of `data` (a byte memoryview). The digest is the
    block's (from `digests`, all of the data's, when given), or, not `hashed`, None; ZERO for an
    all-zero block either way, whose frame is b"" (unhashed, it is known by its frame)."""
    if digests is None and not hashed:
        # One call for them all: zstd takes the GIL back once, not after every block, which
        # matters in the helper thread while the main one runs Python (a save's page reads).
        blocks = [data[n * BLOCK:(n + 1) * BLOCK] for n in range(lo, hi)]
        out = []
        for block, frame in zip(blocks, _compressor().multi_compress_to_buffer(blocks, threads=0)):
            zero = _zero_frame(len(block))
            out.append((ZERO, b"") if len(frame) == len(zero) and bytes(frame) == zero else (None, frame))
        return out
    out = []
    for n in range(lo, hi):
        block = data[n * BLOCK:(n + 1) * BLOCK]
        d = digests[n] if digests is not None else block_digest(block)
        out.append((ZERO, b"") if d == ZERO else (d, _compress(block)))
    return out


def record_parts(blocks) -> tuple:
    """(key, codec, [stored bytes]) of a record of encode_blocks() `blocks`: CHECKED when they were
    hashed (key ZERO, nothing to store, when all are zero), else UNIQUE."""
    frames = [frame for _, frame in blocks]
    if all(d is not None for d, _ in blocks):
        digests = [d for d, _ in blocks]
        table = b"".join(ENTRY.pack(d, ZERO_BLOCK if d == ZERO else ZSTD, len(f)) for d, f in blocks)
        return content_key(digests), CHECKED, [table, *frames]
    head = secrets.token_bytes(NONCE) + b"".join(
        UNIQUE_ENTRY.pack(ZSTD if d is None else ZERO_BLOCK, len(f)) for d, f in blocks)
    return digest(_UNIQUE_PREFIX + head), UNIQUE, [head, *frames]


def _decompress(payload, raw_len: int):
    return zstd_decompressor().decompress(payload, max_output_size=raw_len)


def read_record(fd: int, pack: str, offset: int, size: int, want: bytes, spans=None,
                tables=None) -> tuple:
    """(start, data): bytes [start, start + len(data)) of the record at `offset`, verified, covering
    every (offset, length) of `spans` (None: all of it, from 0). BadChunk if they can't be trusted.

    Of a blocks record only the table and the blocks the spans touch are read and checked; the
    table not even that when `tables` (a Tables) has it."""
    table, codec, raw_len = _table(fd, pack, offset, size, want, tables)
    if table is not None:
        return _read_blocks(fd, offset, table, want, pack, spans, tables)
    return _read_one_frame(fd, pack, offset, size, want, codec, raw_len)


def read_each(records, deliver, tables=None) -> None:
    """For each of `records`, (fd, pack, offset, size, key, spans), in order: deliver(key, start,
    data) once or more, data holding bytes [start, start + len(data)) of the record, verified;
    together they cover its spans. BadChunk for the first that fails.

    The usual record of a restore's scattered pages, one span in one block or two of a record
    whose table `tables` has, is read here without read_record()'s eight layers of calls, and
    delivered a block at a time (no joined copy of two). A spread restore's read of 657 one-block
    records went 29.9 -> 25.1 ms of CPU in gdb (medians of 45, interleaved), ~19 -> ~15 out of it;
    of 657 two-block ones (1,310 blocks), ~51 -> ~35 in gdb (9 restores each, interleaved) and
    30-46 -> 23-31 out of it. Its checks are read_record's, in the same order. Any other record is
    read_record()'s, and delivered whole."""
    if tables is None:
        for rec in records:
            deliver(rec[4], *read_record(*rec))
        return
    decompress = zstd_decompressor().decompress
    for rec in records:
        fd, pack, offset, size, want, spans = rec
        got = (_span_blocks(fd, pack, offset, size, want, *spans[0], tables, decompress)
               if spans is not None and len(spans) == 1 else None)
        if got is None:
            deliver(want, *read_record(*rec, tables))
            continue
        n, data, after = got
        deliver(want, n * BLOCK, data)
        if after is not None:
            deliver(want, (n + 1) * BLOCK, after)


def read_runs(segments, fds, out, tables) -> None:
    """For each (pack, offset, size, address, key, src, length) of `segments` (in pack order),
    append (address, data, at, n) to `out` once or twice: bytes [at, at + n) of `data` are those
    [src, src + length) of the record `key` at (pack, offset) from there on, verified; `data` a
    block read (kept in `tables`, not copied), two when they straddle two blocks, or what
    read_record() returned. `fds` maps pack -> descriptor.
    BadChunk for the first that fails. read_each()'s checks, in the same order; what read_each()
    leaves to read_record() (a table not kept, a version 2 record, more than two blocks) is
    read_record()'s here too.

    A restore's reading without a buffer a range to fill, nor a callback to fill it: see
    Checkpoint.read_runs()."""
    decompress = zstd_decompressor().decompress
    for pack, offset, size, at, want, src, length in segments:
        fd = fds[pack]
        got = _span_blocks(fd, pack, offset, size, want, src, length, tables, decompress)
        if got is None:
            start, data = read_record(fd, pack, offset, size, want, [(src, length)], tables)
            out.append((at, data, src - start, length))
            continue
        n, data, after = got
        if after is None:
            out.append((at, data, src - n * BLOCK, length))
        else:
            split = (n + 1) * BLOCK - src
            out.append((at, data, src - n * BLOCK, split))
            out.append((at + split, after, 0, length - split))


def _span_blocks(fd, pack, offset, size, want, src, length, tables, decompress):
    """(n, block n, block n + 1 or None): the blocks, verified, that hold bytes [src, src + length)
    of the record `want` at (pack, offset) whose table `tables` keeps, one or two; kept ones from
    there, the others read (two in one read, cut short or not, then each checked in turn, as
    read_record() does: a damaged record gets the same verdict either way) and kept. None when it
    is read_record()'s to read: its table not kept, a version 2 record, more than two blocks."""
    table = tables.get(pack, offset, want, size)
    if table is None or table[0] == BLOCKS or length <= 0:
        return None
    n = src // BLOCK
    last = (src + length - 1) // BLOCK
    if last >= table[2] or last > n + 1:
        return None
    data = tables.block(pack, offset, want, n)
    if last == n:
        if data is None:
            entry = table[3][n]
            frame = os.pread(fd, entry[2], offset + table[4][n])
            if len(frame) != entry[2]:
                raise BadChunk(want, pack, "is cut short")
            data = _checked_block(decompress, frame, entry, n, table[1], want, pack)
            tables.keep_block(pack, offset, want, n, data)
        return n, data, None
    after = tables.block(pack, offset, want, last) if data is not None else None
    if after is None:
        entries = table[3]
        frame, next_frame = _run_frames(fd, offset, entries, table[4], (n, last), want, pack)
        data = _checked_block(decompress, frame, entries[n], n, table[1], want, pack)
        after = _checked_block(decompress, next_frame, entries[last], last, table[1], want, pack)
        tables.keep_block(pack, offset, want, n, data)
        tables.keep_block(pack, offset, want, last, after)
    return n, data, after


def _read_one_frame(fd, pack, offset, size, want, codec, raw_len) -> tuple:
    """read_record() of a version 1 record (one frame, or the raw bytes)."""
    rec = os.pread(fd, size, offset)
    if len(rec) != size:
        raise BadChunk(want, pack, "is cut short")
    return 0, _decoded(memoryview(rec)[RECORD.size:], codec, raw_len, want, want, pack)


def read_records(items, tables=None, threads: int = 0) -> list:
    """[read_record(*item, tables) for item in items], items being (fd, pack, offset, size, want,
    spans), but with the zstd frames of the checked and unique blocks records among them
    decompressed in one call on `threads` threads (below 2: one at a time, in this thread, which
    in zstd's one call was no faster). For big reads (pipeline.fetch_chunks): a 256 MiB checkpoint
    in 640 ms against 890. BadChunk names the first record that fails, and nothing is returned."""
    results = [None] * len(items)
    frames, sizes, jobs = [], [], []
    for i, item in enumerate(items):
        fd, pack, offset, size, want, spans = item
        table, codec, raw_len = _table(fd, pack, offset, size, want, tables)
        if table is None:
            results[i] = _read_one_frame(fd, pack, offset, size, want, codec, raw_len)
            continue
        if codec == BLOCKS:                         # blocks checked by digest: one at a time
            results[i] = _read_blocks(fd, offset, table, want, pack, spans, tables)
            continue
        _, _, count, entries, starts = table
        needed = _needed(spans, count, raw_len)
        if not needed:
            results[i] = (0, b"")
            continue
        parts = []                      # (block, index in frames or None for a zero block)
        for run in _runs(needed):
            for n, frame in zip(run, _run_frames(fd, offset, entries, starts, run, want, pack)):
                if _checked_frame(frame, entries[n], want, pack):
                    parts.append((n, len(frames)))
                    frames.append(frame)
                    sizes.append(_block_size(n, raw_len))
                else:
                    parts.append((n, None))
        jobs.append((i, raw_len, parts))
    out = _decompress_many(frames, sizes, threads, jobs, items) if frames else []
    for i, raw_len, parts in jobs:
        first = parts[0][0]
        if len(parts) == 1:             # the usual case: no copy
            k = parts[0][1]
            results[i] = (first * BLOCK, out[k] if k is not None else bytes(_block_size(first, raw_len)))
            continue
        blocks = [(n, None if k is None else out[k]) for n, k in parts]
        results[i] = (first * BLOCK, _joined(first, parts[-1][0], raw_len, blocks))
    return results


def _decompress_many(frames, sizes, threads, jobs, items) -> list:
    """The blocks of `frames` (checked by _checked_frame), each of its size in `sizes` exactly:
    sizes given, zstd neither trusts nor allocates what a frame's header claims. One at a time
    when `threads` < 2 or that failed, so that a BadChunk names the record at fault."""
    if threads > 1:
        try:
            out = zstd_decompressor().multi_decompress_to_buffer(
                frames, decompressed_sizes=struct.pack(f"={len(sizes)}Q", *sizes), threads=threads)
            blocks = [memoryview(out[k]) for k in range(len(frames))]
            if all(len(b) == n for b, n in zip(blocks, sizes)):
                return blocks
        except zstandard.ZstdError:
            pass
    blocks = [None] * len(frames)
    for i, _, parts in jobs:
        for _, k in parts:
            if k is not None:
                blocks[k] = _decoded_frame(frames[k], sizes[k], items[i][4], items[i][1])
    return blocks


def _table(fd, pack, offset, size, want, tables) -> tuple:
    """(table, codec, raw length) of the record at `offset`: its verified block table (from
    `tables` when there, else read and kept there), or None for a one-frame record."""
    table = tables.get(pack, offset, want, size) if tables is not None else None
    if table is not None:
        return table, table[0], table[1]
    head = os.pread(fd, min(size, _HEAD_READ), offset)
    if len(head) < RECORD.size:
        raise BadChunk(want, pack, "is cut short")
    got, codec, raw_len, stored = RECORD.unpack_from(head)
    if got != want or stored != size - RECORD.size:
        raise BadChunk(want, pack, "has a damaged header")
    if codec not in (BLOCKS, CHECKED, UNIQUE):
        return None, codec, raw_len
    table = _read_table(fd, head, offset, size, raw_len, codec, want, pack)
    if tables is not None:
        tables.put(pack, offset, want, size, table)
    return table, codec, raw_len


class Tables:
    """Verified block tables of records by place, so that reading a record again (a restore after
    a restore) costs only its blocks: no header read, no table read nor hashed. A record never
    changes at its place, and an entry is used only for the key and size the index names there,
    which only that record has; every block is still checked as it is read. Bounded: emptied when
    full. Safe to share between threads (dict operations are atomic).

    It also keeps the BLOCKS_KEPT blocks small reads (read_record) last used, by place and record
    key: going back to a checkpoint again after the program ran the same way (the point of
    going back) rewrites the same pages, from the same blocks. They were checked when read, and a
    key names one content. Big reads (read_records: a whole checkpoint) keep none."""

    LIMIT = 1 << 15             # tables kept (a 2 GiB process's chunks): ~0.9 KB each parsed
    BLOCKS_KEPT = 2048          # 32 MiB of blocks: a restore of 1% of 1.5 GiB written scattered

    def __init__(self):
        self._tables = {}
        self._blocks = OrderedDict()

    def block(self, pack: str, offset: int, key: bytes, n: int):
        """Block n of the record `key` at (pack, offset), as a read of it returned it, or None."""
        place = (pack, offset, key, n)
        data = self._blocks.get(place)
        if data is not None:
            try:
                self._blocks.move_to_end(place)     # kept longest: what is read again and again
            except KeyError:
                pass
        return data

    def keep_block(self, pack: str, offset: int, key: bytes, n: int, data) -> None:
        if data is None:
            return
        blocks = self._blocks
        try:
            while len(blocks) >= self.BLOCKS_KEPT:
                # An OrderedDict: a dict's next(iter()) walks the holes its deletions left at the
                # front, which made keeping a restore's 1,314 blocks cost 2-4 ms, not 0.6.
                blocks.popitem(last=False)
        except KeyError:                # another thread emptied it meanwhile
            pass
        blocks[(pack, offset, key, n)] = data

    def get(self, pack: str, offset: int, key: bytes, size: int):
        got = self._tables.get((pack, offset))
        if got is None or got[0] != key or got[1] != size:
            return None
        table = got[2]
        if len(table) == 3:                     # a written record's (codec, raw_len, table bytes)
            table = _parse_table(*table, size)
            if table is None:
                del self._tables[(pack, offset)]
                return None
            self._tables[(pack, offset)] = (key, size, table)
        return table

    def put(self, pack: str, offset: int, key: bytes, size: int, table) -> None:
        if len(self._tables) >= self.LIMIT:
            self._tables.clear()
        self._tables[(pack, offset)] = (key, size, table)

    def wrote(self, pack: str, offset: int, size: int, key: bytes, codec: int, raw_len: int,
              table: bytes) -> None:
        """Remember the table (the stored bytes before the frames) of a record just appended;
        it is parsed when first read."""
        if codec in (CHECKED, UNIQUE):
            self.put(pack, offset, key, size, (codec, raw_len, table))


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


def _read_table(fd, head, offset, size, raw_len, codec, want, pack) -> tuple:
    """The verified table of a blocks record whose first bytes are `head`: (codec, raw length,
    block count, ((digest or None, block codec, stored length), ...), (where each block's frame
    starts, ...))."""
    count = -(-raw_len // BLOCK)
    unique = codec == UNIQUE
    table_start = RECORD.size + NONCE if unique else RECORD.size
    table_end = table_start + count * (UNIQUE_ENTRY.size if unique else ENTRY.size)
    if table_end > size:
        raise BadChunk(want, pack, "is cut short")
    if table_end > len(head):
        head = os.pread(fd, table_end, offset)
        if len(head) != table_end:
            raise BadChunk(want, pack, "is cut short")
    if unique:
        if digest(_UNIQUE_PREFIX + head[RECORD.size:table_end]) != want:
            raise BadChunk(want, pack, "fails its hash")
    elif content_key([d for d, _, _ in ENTRY.iter_unpack(head[table_start:table_end])]) != want:
        raise BadChunk(want, pack, "fails its hash")
    table = _parse_table(codec, raw_len, head[RECORD.size:table_end], size)
    if table is None:
        raise BadChunk(want, pack, "has a damaged block table")
    return table


def _parse_table(codec, raw_len, stored, size):
    """_read_table()'s tuple from the bytes after a record's header (nonce and entries), or None
    when the frames they describe don't end where the record does. Tuples all through, no lists:
    a kept table (Tables) of atomic values is soon untracked by Python's cyclic collector, where
    the lists of one restore's 657 tables were walked by every collection after it (~6,600
    objects: 1.1-2.3 ms right after the restore, measured in gdb)."""
    count = -(-raw_len // BLOCK)
    if codec == UNIQUE:
        table_end = RECORD.size + NONCE + count * UNIQUE_ENTRY.size
        entries = tuple([(None, c, n) for c, n in UNIQUE_ENTRY.iter_unpack(stored[NONCE:table_end - RECORD.size])])
    elif codec == CHECKED:      # its frames check themselves: the digests aren't kept
        table_end = RECORD.size + count * ENTRY.size
        entries = tuple([(None, c, n) for _, c, n in ENTRY.iter_unpack(stored[:table_end - RECORD.size])])
    else:
        table_end = RECORD.size + count * ENTRY.size
        entries = tuple(ENTRY.iter_unpack(stored[:table_end - RECORD.size]))
    starts = tuple(accumulate((e[2] for e in entries), initial=table_end))
    if starts[-1] != size:
        return None
    return codec, raw_len, count, entries, starts[:-1]


def _needed(spans, count: int, raw_len: int):
    """The blocks, in order, that hold the (offset, length) `spans` of a record (None: all)."""
    if spans is None:
        return range(count)
    if len(spans) == 1:         # the usual case: one piece of the record
        src, length = spans[0]
        needed = range(src // BLOCK, (src + length - 1) // BLOCK + 1) if length > 0 else ()
    else:
        needed = sorted({n for src, length in spans if length > 0
                         for n in range(src // BLOCK, (src + length - 1) // BLOCK + 1)})
    if needed and not 0 <= needed[0] <= needed[-1] < count:
        raise ValueError(f"blocks {needed[0]}-{needed[-1]} are outside a record of {raw_len} bytes")
    return needed


def _read_blocks(fd, offset, table, want, pack, spans, tables=None) -> tuple:
    codec, raw_len, count, entries, starts = table
    checked = codec != BLOCKS
    needed = _needed(spans, count, raw_len)
    if not needed:
        return 0, b""
    first = needed[0]
    kept = tables.block if tables is not None else lambda *_: None
    if len(needed) == 1:        # a page or so, the common case of a scattered restore: no copy
        data = kept(pack, offset, want, first)
        if data is None:
            frame, = _run_frames(fd, offset, entries, starts, [first], want, pack)
            data = _block_bytes(frame, entries[first], first, raw_len, checked, want, pack)
            if tables is not None:
                tables.keep_block(pack, offset, want, first, data)
        return first * BLOCK, data
    blocks = []
    for run in _runs(needed):           # one pread per run of consecutive blocks
        datas = [kept(pack, offset, want, n) for n in run]
        if None in datas:
            frames = _run_frames(fd, offset, entries, starts, run, want, pack)
            datas = [_block_data(frame, entries[n], n, raw_len, checked, want, pack)
                     for n, frame in zip(run, frames)]
            if tables is not None:
                for n, data in zip(run, datas):
                    tables.keep_block(pack, offset, want, n, data)
        blocks.extend(zip(run, datas))
    return first * BLOCK, _joined(first, needed[-1], raw_len, blocks)


def _run_frames(fd, offset, entries, starts, run, want, pack) -> list:
    """The stored frames of the consecutive blocks `run` of the record at `offset`, in one pread."""
    lo, hi = starts[run[0]], starts[run[-1]] + entries[run[-1]][2]
    stored = memoryview(os.pread(fd, hi - lo, offset + lo)) if hi > lo else memoryview(b"")
    if len(stored) != hi - lo:
        raise BadChunk(want, pack, "is cut short")
    return [stored[starts[n] - lo:starts[n] - lo + entries[n][2]] for n in run]


def _joined(first: int, last: int, raw_len: int, blocks) -> bytearray:
    """Blocks first to last of a record in one buffer, from (block, its bytes or None for zeros)."""
    out = bytearray(min(raw_len, (last + 1) * BLOCK) - first * BLOCK)
    for n, data in blocks:
        if data is not None:
            at = (n - first) * BLOCK
            out[at:at + len(data)] = data
    return out


def _block_size(n: int, raw_len: int) -> int:
    return min(BLOCK, raw_len - n * BLOCK)


def _block_data(frame, entry, n, raw_len, checked, want, pack):
    """Block n's bytes from its stored `frame` and table `entry`, checked (`checked`: by the frame's
    own checksum, else against the entry's digest); None for a zero block."""
    if entry[1] == ZERO_BLOCK:
        _checked_frame(frame, entry, want, pack)        # False, or BadChunk for a damaged entry
        return None
    if not checked:
        return _decoded(frame, entry[1], _block_size(n, raw_len), entry[0], want, pack)
    _checked_frame(frame, entry, want, pack)
    return _decoded_frame(frame, _block_size(n, raw_len), want, pack)


def _block_bytes(frame, entry, n, raw_len, checked, want, pack):
    """_block_data(), with a zero block's zeros instead of None."""
    data = _block_data(frame, entry, n, raw_len, checked, want, pack)
    return bytes(_block_size(n, raw_len)) if data is None else data


def _checked_block(decompress, frame, entry, n, raw_len, want, pack):
    """_block_bytes(frame, entry, n, raw_len, True, want, pack), its checks in the same order, but
    a frame that checks itself is decompressed here (`decompress`: this thread's context's), not
    four calls down: read_each() does it ~700 times a spread restore, where those calls cost
    0.6-1.3 ms of its ~19 in gdb (a checkpoint's read of 655 one-block runs, 30 times each way
    interleaved, three times: medians 19.5 -> 18.2, 19.0 -> 17.7, 18.3 -> 17.7 ms)."""
    if entry[1] != ZSTD or frame[:4] != _FRAME_MAGIC or len(frame) < 5 or not frame[4] & _CHECKSUM_FLAG:
        return _block_bytes(frame, entry, n, raw_len, True, want, pack)    # a zero block, or damage
    length = _block_size(n, raw_len)
    try:
        data = decompress(frame, max_output_size=length)
    except zstandard.ZstdError:
        raise BadChunk(want, pack, "fails its hash") from None
    if len(data) != length:
        raise BadChunk(want, pack, "fails its hash")
    return data


def _checked_frame(frame, entry, want, pack) -> bool:
    """Whether `frame`, of a block with table `entry`, is a zstd frame to decompress (False: a zero
    block); BadChunk when it can't be one that checks itself."""
    d, codec, stored = entry
    if codec == ZERO_BLOCK:
        if stored or d not in (ZERO, None):
            raise BadChunk(want, pack, "has a damaged block table")
        return False
    # Only a frame that says it carries a checksum is checked by zstd: a flipped flag would not be.
    if codec != ZSTD or frame[:4] != _FRAME_MAGIC or len(frame) < 5 or not frame[4] & _CHECKSUM_FLAG:
        raise BadChunk(want, pack, "has a damaged block")
    return True


def _decoded_frame(frame, length: int, want, pack):
    try:
        data = _decompress(frame, length)
    except zstandard.ZstdError:
        raise BadChunk(want, pack, "fails its hash") from None
    if len(data) != length:
        raise BadChunk(want, pack, "fails its hash")
    return data


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


def _write_all(fd: int, parts, offset: int) -> None:
    """Write `parts` one after another from `offset` with pwritev, whatever a call leaves unwritten
    written by the next."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    at = 0
    while at < len(views):
        done = os.pwritev(fd, views[at:at + _IOV_MAX], offset)
        offset += done
        while done:
            if done >= len(views[at]):
                done -= len(views[at])
                at += 1
            else:
                views[at] = views[at][done:]
                done = 0


class PackWriter:
    """Appends records to one pack this process holds exclusively; opened on the first append.

    Records are written in batches: append() returns where a record will be and keeps its parts
    (which must not change until then) until PENDING_BYTES are waiting or flush() writes them with
    writev (hundreds of frames in one system call, not copied through a buffer first)."""

    def __init__(self, packs_dir, *, target_size: int = PACK_TARGET, fresh: bool = False, tables=None,
                 tail=None):
        self.dir = os.fspath(packs_dir)
        self.tables = tables        # a Tables told of every record appended
        self.tail = tail            # what prepare() returned, last time
        self.target = target_size
        self.fresh = fresh          # compaction always writes a new pack
        self.name = None
        self.created = False
        self.appended = 0
        self._fd = None
        self._offset = 0
        self._size = 0              # the file's
        self._pending = []
        self._pending_bytes = 0

    def append(self, digest_: bytes, codec: int, raw_len: int, parts) -> tuple:
        """Append one record whose stored bytes are `parts` in order (what encode() returns);
        returns (offset, size) for the index."""
        head = RECORD.pack(digest_, codec, raw_len, sum(len(p) for p in parts))
        offset, size = self._write(head, *parts)
        if self.tables is not None:
            self.tables.wrote(self.name, offset, size, digest_, codec, raw_len, parts[0])
        return offset, size

    def append_record(self, record) -> tuple:
        """Append an already-encoded record verbatim (compaction copies them)."""
        return self._write(record)

    def _write(self, *parts) -> tuple:
        if self._fd is None:
            self._open()
        offset = self._offset
        size = sum(len(p) for p in parts)
        self._pending.extend(parts)
        self._pending_bytes += size
        self._offset += size
        self.appended += size
        if self._pending_bytes >= PENDING_BYTES:
            self.flush()
        return offset, size

    def flush(self) -> None:
        """Write every record appended so far (the first half of sync()).

        The pack is first made long enough to hold them, then written at their offsets: on ext4
        here an append that grows the file right after an fsync often waits ~10 ms for the journal
        (8 of 16 writes of 3.4 MB took 6-11 ms instead of 1), a write inside the file's size less
        often, and one over blocks already written (prepare()) never did in 120 tries.
        A crash between the two leaves zeros at the end, garbage like any unreferenced tail."""
        pending, size = self._pending, self._pending_bytes
        self._pending, self._pending_bytes = [], 0
        if pending:
            try:
                if self._offset > self._size:
                    os.ftruncate(self._fd, self._offset)
                    self._size = self._offset
                _write_all(self._fd, pending, self._offset - size)
            except OSError as e:
                raise self._error("cannot write", e) from None

    def prepare(self, length: int):
        """Write `length` zero bytes after the last record, where the next appends will go (garbage
        until records are written over them), sync them, and return what a PackWriter(tail=...)
        of the same pack needs to append there; None if it can't. For after a flush(), in the
        background: the next save's write then goes over blocks that already exist (see flush()),
        and its fsync has no blocks to allocate. Unsynced, the zeros made that fsync slower (5.3-7.6
        against 4.2-5.9 ms in gdb); synced, the disk writes each save's size twice."""
        if self._fd is None or self._pending:
            return None
        zeros = bytes(min(length, 1 << 20))
        # What lies between the last record and the file's end is the last prepare()'s, already
        # written and synced (any bytes do): only the file's growth is written, or a save of a few
        # KiB would rewrite a whole tail each time.
        at, end = max(self._offset, self._size), self._offset + length
        try:
            if at < end:
                while at < end:
                    at += os.pwrite(self._fd, zeros[:end - at], at)
                os.fsync(self._fd)
            self._size = max(self._size, end)
            return self.name, self._offset, self._size
        except OSError:
            return None

    def sync(self) -> None:
        """Make every appended record durable; the index may refer to them after this returns."""
        self.flush()
        self.fsync()

    def fsync(self) -> None:
        """The second half of sync(), after flush(): one system call (two for a new pack), which
        another thread may make (pipeline.meanwhile)."""
        if self._fd is None:
            return
        try:
            os.fsync(self._fd)
            if self.created:
                fsync_dir(self.dir)
        except OSError as e:
            raise self._error("cannot sync", e) from None

    def close(self) -> None:
        """Close the pack (which releases the flock); records not yet synced may be lost, which is
        harmless as long as no index row names them."""
        self._pending, self._pending_bytes = [], 0
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _error(self, what: str, e: OSError) -> StoreError:
        return StoreError(f"checkpoint store {os.path.dirname(self.dir)}: {what} pack {self.name}: "
                          f"{e.strerror or e}")

    def _open(self) -> None:
        fd = None if self.fresh else self._reuse()
        if fd is None:
            fd = self._create()
        self._size = self._offset = os.fstat(fd).st_size
        if self.tail is not None and self.tail[0] == self.name and self.tail[2] == self._size:
            # Nobody appended since our prepare(): its zeros are still the pack's tail.
            self._offset = self.tail[1]
        self._fd = fd

    def _reuse(self):
        """An existing, not-full pack nobody else is appending to, locked; or None. The one
        prepare() made a tail for, first."""
        preferred = self.tail[0] if self.tail is not None else None
        for entry in sorted(os.scandir(self.dir), key=lambda e: (e.name != preferred, e.name)):
            if not is_pack_name(entry.name) or entry.stat().st_size >= self.target:
                continue
            try:
                fd = open_private(entry.path, os.O_RDWR)
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
            fd = open_private(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR)
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
