"""Thread-parallel hashing, compression and verified reading of chunks, to and from packs.

The caller's read() is only ever called from the calling thread (gdb's API is not thread-safe); worker
threads only hash, compress, decompress and pread (all of which release the GIL). No SQL here."""

import ctypes
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait

from .layout import BLOCK, ZERO, block_digests, content_key
from .packs import encode, encode_blocks, read_each, read_records, record_parts

# Measured on 2 cores: hash+compress of a real process image went 0.28 -> 0.54 GB/s with 2 threads.
WORKERS = max(1, min(4, os.cpu_count() or 1))
BATCH_BYTES = 1 << 20           # per read() call and per worker task: amortises calls, bounds memory
# Below this much work, threads cost more than they give: the GIL is taken back and forth for
# every small piece (655 scattered pages: 49-62 ms to read with two workers, 37 ms inline; see
# also fetch_chunks).
INLINE_BYTES = 16 << 20
IOV_MAX = 1024                  # runs per read_many() call
FETCH_RECORDS = 256             # records per fetch_chunks() batch: at most 16 MiB of 64 KiB chunks
SPLIT_BYTES = 256 << 10         # encode_record() shares a blob this big with a helper thread,
PIECE_BLOCKS = 16               # in pieces of this many blocks
_helpers = {}                   # lane -> its one thread (background())
_lane_tids = []                 # the native ids of the lanes' threads (own_cpu)
_placing = {}                   # while own_cpu() runs: the CPUs "own", "lanes", "anywhere"


def _hash_all(pieces):
    out = []
    for p in pieces:
        blocks = block_digests(p)
        out.append((content_key(blocks), blocks))
    return out


def _encode_all(fresh):
    return [(key, *encode(p, blocks)[1:], len(p)) for key, blocks, p in fresh]


def encode_record(data, filling=(), unique: bool = False) -> tuple:
    """(block digests, key, codec, [stored bytes]) of `data` as one record (packs.encode_blocks,
    record_parts); `unique`: a record of its own, whose blocks are not hashed (their digests are ZERO
    for a zero block, None for others). `filling`, when given, fills `data` bit by bit, yielding how
    many of its bytes are ready after each bit: those blocks are encoded meanwhile, a helper thread
    sharing the work (_Shared) when the record is big enough to be worth it."""
    view = memoryview(data).cast("B")
    count = -(-len(view) // BLOCK)
    hashed = not unique
    if len(view) < SPLIT_BYTES or WORKERS == 1:
        for _ in filling:
            pass
        return _record(encode_blocks(view, 0, count, hashed=hashed))
    with _Shared() as work:
        done = 0
        for ready in filling:
            end = count if ready >= len(view) else ready // BLOCK
            for lo in range(done, end, PIECE_BLOCKS):
                work.add(encode_blocks, view, lo, min(end, lo + PIECE_BLOCKS), None, hashed)
            done = max(done, end)
        for lo in range(done, count, PIECE_BLOCKS):
            work.add(encode_blocks, view, lo, min(count, lo + PIECE_BLOCKS), None, hashed)
        return _record([block for result in work.finish() for block in result])


class FromBothEnds:
    """encode_record(data, unique=True) by two threads that take pieces from either end, each
    without being handed any: the helper thread from the front (front()), once it has read the
    data (Store.prefetch), the thread that stores the record from the back (back()), when it gets
    there. Each takes half of what is left (at least PIECE_BLOCKS blocks) in one zstd call. In this
    VM the GIL took 1.5-2 ms to change hands between the two threads, and a piece handed to the
    helper (_Shared) waited as long before it began, against ~0.2 ms to compress 16 blocks: in gdb,
    a spread save's CPU time in gdb's thread went 18.6 -> 16.9 ms (means of 6 interleaved rounds
    of 14 saves; lower in 12 of 12 rounds over two such runs), its wall time 24.6 -> 23.1."""

    def __init__(self, data):
        self._view = memoryview(data).cast("B")
        self._done = {}                     # first block -> encode_blocks() of a piece
        self._lock = threading.Lock()
        self._front, self._back = 0, -(-len(self._view) // BLOCK)   # blocks not taken yet

    def front(self, whole: bool = False) -> None:
        """Take pieces from the front until none is left; `whole`: the first is all there is."""
        self._take(True, whole)

    def back(self) -> None:
        self._take(False, False)

    def _take(self, front: bool, whole: bool) -> None:
        while True:
            with self._lock:
                left = self._back - self._front
                n = left if whole else min(left, max(PIECE_BLOCKS, left // 2))
                if not n:
                    return
                if front:
                    lo = self._front
                    self._front += n
                else:
                    self._back -= n
                    lo = self._back
            self._done[lo] = encode_blocks(self._view, lo, lo + n, None, False)

    def stop(self) -> None:
        """No piece is taken from now on (one may still be under way in the other thread)."""
        with self._lock:
            self._back = self._front

    def record(self) -> tuple:
        """encode_record()'s tuple, once every piece is done (front() and back() have returned)."""
        blocks = [block for lo in sorted(self._done) for block in self._done[lo]]
        if len(blocks) != -(-len(self._view) // BLOCK):
            raise RuntimeError("a piece of the record was not encoded")
        return _record(blocks)


class _Shared:
    """Pieces of work shared with a helper thread: it takes them from the front as they are added,
    finish() does the ones it has not started from the back. hashlib, zstd, pread and the system
    calls of a read release the GIL, so on two CPUs this thread's reads, the helper's hashing and
    then both hashing overlap: 1,312 scattered pages read and encoded in ~10 ms instead of ~15.
    A pool of workers with this thread only waiting did worse: the GIL changed hands at every
    small piece. So did sharing a restore's 657 record reads this way (45 -> 89 ms): each is mostly
    Python, so two threads mostly wait for each other. Leaving the with block waits until the
    helper is done with every piece."""

    def __enter__(self):
        self.pieces = []
        return self

    def add(self, fn, *args) -> None:
        self.pieces.append((fn, args, background(fn, *args)))

    def finish(self) -> list:
        """The result of every piece, in the order added."""
        results = [None] * len(self.pieces)
        for n in reversed(range(len(self.pieces))):
            fn, args, future = self.pieces[n]
            if not future.cancel():
                break               # the helper has it, and all before it
            results[n] = (fn(*args),)
        return [got[0] if got else future.result() for got, (_, _, future) in zip(results, self.pieces)]

    def __exit__(self, *exc):
        for _, _, future in self.pieces:    # on an error: nothing may still use the caller's data
            if not future.cancel():
                futures_wait([future])


def _helper_thread(lane: str = "helper") -> ThreadPoolExecutor:
    executor = _helpers.get(lane)
    if executor is None:
        executor = _helpers[lane] = ThreadPoolExecutor(1, thread_name_prefix=f"gdb-checkpoint-{lane}",
                                                       initializer=_lane_started)
    return executor


def _forget_helpers() -> None:
    _helpers.clear()            # a forked child has none of its parent's threads: it makes its own
    _lane_tids.clear()
    _placing.clear()


class own_cpu:
    """While the with block runs, keep the calling thread on the CPU it is on and the helper lanes'
    threads (background()) on the others; afterwards all may run anywhere they could before.

    In this VM (2 CPUs) a thread woken while another of the process was running was mostly put on
    that thread's CPU, the other one idle, and waited for its turn there: a thread woken by a
    helper hashing 16 MiB without the GIL ran after 2.1 ms (median; up to 4.5), 0.06 ms with the
    two threads each kept to its own CPU. A save wakes gdb's thread several times (the helper has
    begun reading, has read, the GIL came free): in gdb, spread saves went 23.3 -> 18.8 ms (means
    of 8 interleaved rounds of 14, lower in 8 of 8), undo-on restores 55.5 -> 53.6 (6 of 8).
    Threads that others wait for in bulk (a pool of workers, zstd's own) may run on every CPU
    (anywhere()). Nested (one CPU left), or refused: nothing is done."""

    def __enter__(self):
        self._was = None
        if _sched_getcpu is None or not hasattr(os, "sched_setaffinity"):
            return self
        try:
            allowed = os.sched_getaffinity(0)
            cpu = _sched_getcpu()
            if len(allowed) < 2 or cpu not in allowed:
                return self
            os.sched_setaffinity(0, {cpu})
        except OSError:
            return self
        self._was = allowed
        _placing.update(own={cpu}, lanes=allowed - {cpu}, anywhere=allowed)
        _place_lanes(_placing["lanes"])
        return self

    def __exit__(self, *exc):
        if self._was is not None:
            _placing.clear()
            _place_lanes(self._was)
            try:
                os.sched_setaffinity(0, self._was)
            except OSError:
                pass


class anywhere:
    """Within own_cpu(), let the calling thread (and so any thread it starts, such as zstd's
    own) run on every CPU until the with block ends; elsewhere, nothing."""

    def __enter__(self):
        self._own = _placing.get("own")
        if self._own is not None:
            _set_cpus(0, _placing["anywhere"])
        return self

    def __exit__(self, *exc):
        if self._own is not None:
            _set_cpus(0, self._own)


_sched_getcpu = getattr(ctypes.CDLL(None), "sched_getcpu", None)     # None: own_cpu() does nothing


def _set_cpus(tid: int, cpus) -> None:
    try:
        os.sched_setaffinity(tid, cpus)
    except OSError:
        pass                    # gone, or refused: placement only ever costs or saves time


def _place_lanes(cpus) -> None:
    for tid in list(_lane_tids):
        _set_cpus(tid, cpus)


def _lane_started() -> None:
    _lane_tids.append(threading.get_native_id())
    if "lanes" in _placing:
        _set_cpus(0, _placing["lanes"])     # started within own_cpu(): else it has its creator's CPU


os.register_at_fork(after_in_child=_forget_helpers)


def background(fn, *args, lane: str = "helper"):
    """A Future of fn(*args) run in the thread of `lane`, after whatever it is doing; not for a
    forked child to wait on (it has no helper thread). The "helper" lane shares a save's work
    (_Shared, meanwhile); slow work that a save must not wait behind takes a lane of its own."""
    return _helper_thread(lane).submit(fn, *args)


def started(fn, *args):
    """A Future of fn(*args) in the helper thread, returned once the helper has begun it: else, while
    this thread runs Python, the helper would wait for the GIL (up to the 5 ms switch interval)
    before its first system call. For work that soon releases the GIL and keeps it released."""
    begun = threading.Event()

    def run():
        begun.set()
        return fn(*args)
    future = background(run)
    begun.wait()
    return future


class meanwhile:
    """Run fn() in the helper thread while the with block runs; leaving it waits for fn, and raises
    what fn raised. For one system call that releases the GIL, such as a save's fsync (2-3 ms)
    while its manifest is encoded; entering waits until the helper has begun fn, which otherwise
    would wait for the GIL while this thread runs Python. Not for work that needs the GIL between
    system calls: in this VM a save's 3.4 MB write took 3.5-9 ms beside the encoding, 1.5 ms
    alone, even with a shorter switch interval."""

    def __init__(self, fn):
        self.fn = fn

    def __enter__(self):
        self.future = started(self.fn)
        return self

    def __exit__(self, exc_type, *_):
        futures_wait([self.future])
        if exc_type is None:
            self.future.result()


def _record(blocks) -> tuple:
    return [d for d, _ in blocks], *record_parts(blocks)


def _runs(extents):
    """Group (start, end) extents, in address order, into runs of address-contiguous ones of at most
    BATCH_BYTES: [(run, start, end)], run being [(index in extents, start, end)]."""
    run = []
    run_start = run_end = None
    for n, (start, end) in enumerate(extents):
        if run and (start != run_end or end - run_start > BATCH_BYTES):
            yield run, run_start, run_end
            run = []
        if not run:
            run_start = start
        run.append((n, start, end))
        run_end = end
    if run:
        yield run, run_start, run_end


def _read_runs(extents, read, read_many):
    """(run, start, end, data) per run of _runs(extents); read_many([(addr, length)]), when given,
    reads up to BATCH_BYTES or IOV_MAX runs in one call (scattered pages: one system call)."""
    if read_many is None:
        for run, start, end in _runs(extents):
            yield run, start, end, read(start, end - start)
        return
    group, size = [], 0
    for item in _runs(extents):
        group.append(item)
        size += item[2] - item[1]
        if size >= BATCH_BYTES or len(group) >= IOV_MAX:
            yield from _read_group(group, read_many)
            group, size = [], 0
    if group:
        yield from _read_group(group, read_many)


def _read_group(group, read_many):
    datas = read_many([(start, end - start) for _, start, end in group])
    for (run, start, end), data in zip(group, datas):
        yield run, start, end, data


def save_chunks(extents, read, known, writer, read_many=None) -> tuple:
    """Read the pieces of memory `extents` ([(start, end)], sorted, disjoint), key each one, and
    append the ones not yet stored to `writer`. read(addr, length) reads memory; so does
    read_many([(addr, length)]) -> [data], when given, for many runs at once.

    known(keys) returns the subset already in the store. Returns (bytes read, the key of each piece
    in order, [(key, offset, size)] of the records appended)."""
    seen = set()                # keys this save has already queued for writing
    keys = [ZERO] * len(extents)
    rows = []
    hashing, encoding = deque(), deque()
    read_bytes = 0
    indices, pieces = [], []

    def submit():
        hashing.append((indices, pieces, pool.submit(_hash_all, pieces)))
        while len(hashing) > WORKERS:
            hashed()
        while len(encoding) > WORKERS:
            encoded()

    def hashed():
        task_indices, task_pieces, future = hashing.popleft()
        found = future.result()
        # One query per task, not per piece: scattered dirty pages make many one-piece runs.
        stored = known({k for k, _ in found if k != ZERO and k not in seen})
        fresh = []
        for n, piece, (key, blocks) in zip(task_indices, task_pieces, found):
            keys[n] = key
            if key != ZERO and key not in seen and key not in stored:
                seen.add(key)
                fresh.append((key, blocks, piece))
        if fresh:
            encoding.append(pool.submit(_encode_all, fresh))

    def encoded():
        for key, codec, payload, raw_len in encoding.popleft().result():
            offset, size = writer.append(key, codec, raw_len, payload)
            rows.append((key, offset, size))

    with _pool(sum(b - a for a, b in extents) < INLINE_BYTES) as pool:
        task_bytes = 0
        for run, start, end, data in _read_runs(extents, read, read_many):
            # A copy: the caller may reuse its buffer while workers still hash this one.
            data = memoryview(data if isinstance(data, bytes) else bytes(data))
            if len(data) != end - start:
                raise ValueError(f"read({start:#x}, {end - start}) returned {len(data)} bytes")
            for n, a, b in run:
                indices.append(n)
                pieces.append(data[a - start:b - start])
            read_bytes += end - start
            task_bytes += end - start
            if task_bytes >= BATCH_BYTES:
                submit()
                indices, pieces, task_bytes = [], [], 0
        if pieces:
            submit()
        while hashing:
            hashed()
        while encoding:
            encoded()
    return read_bytes, keys, rows


def fetch_chunks(records, deliver, tables=None) -> None:
    """Read and verify records [(fd, pack, offset, size, key, spans)] (spans: packs.read_record;
    `tables` a packs.Tables); deliver(key, start, data) each one, or each block of it read
    (packs.read_each): data holds the record's bytes from offset start, and all of a record's
    deliveries together its spans. Raises packs.BadChunk for the first record that fails.

    Pack by pack in file order. Much work goes in batches whose frames are decompressed together
    on WORKERS threads (packs.read_records): a 256 MiB checkpoint read in 640 ms against 890 with
    a pool of workers each reading records. Little work, a restore's scattered pages say, is read
    and delivered record by record: batched, 655 one-block reads took 23 ms against 17.5 in this
    VM. Delivering each at once (not a batch's worth later) keeps reusing the same memory: 655
    two-block reads went 48 -> 22-35 ms, and 2,542 page faults -> none."""
    records = sorted(records, key=lambda r: (r[1], r[2]))       # sequential within each pack
    if sum(r[3] if r[5] is None else BLOCK * len(r[5]) for r in records) < INLINE_BYTES or WORKERS == 1:
        read_each(records, deliver, tables)
        return
    with anywhere():                            # zstd's threads start with this thread's CPUs
        for lo in range(0, len(records), FETCH_RECORDS):
            batch = records[lo:lo + FETCH_RECORDS]
            for rec, (start, data) in zip(batch, read_records(batch, tables, WORKERS)):
                deliver(rec[4], start, data)


class _pool:
    """A ThreadPoolExecutor that, on an error, drops queued work instead of finishing it first; or,
    for little work, one that runs each task in the calling thread when its result is asked for."""

    def __init__(self, inline: bool = False):
        self.inline = inline or WORKERS == 1

    def __enter__(self):
        if self.inline:
            return _Inline()
        self.placed = anywhere().__enter__()    # the workers start with this thread's CPUs
        self.executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="gdb-checkpoint")
        return self.executor

    def __exit__(self, exc_type, *_):
        if not self.inline:
            try:
                self.executor.shutdown(wait=True, cancel_futures=exc_type is not None)
            finally:
                self.placed.__exit__()


class _Inline:
    def submit(self, fn, *args):
        return _Later(fn, args)


class _Later:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def result(self):
        return self.fn(*self.args)
