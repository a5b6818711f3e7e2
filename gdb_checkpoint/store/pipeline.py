"""Thread-parallel hashing, compression and verified reading of chunks, to and from packs.

The caller's read() is only ever called from the calling thread (gdb's API is not thread-safe); worker
threads only hash, compress, decompress and pread (all of which release the GIL). No SQL here."""

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from .layout import DIGEST_SIZE, ZERO, chunk_digest
from .packs import encode, read_record

# Measured on 2 cores: hash+compress of a real process image went 0.28 -> 0.54 GB/s with 2 threads.
WORKERS = max(1, min(4, os.cpu_count() or 1))
BATCH_BYTES = 1 << 20           # per read() call and per worker task: amortises calls, bounds memory


def _hash_all(pieces):
    return [chunk_digest(p) for p in pieces]


def _encode_all(fresh):
    return [(d, *encode(p), len(p)) for d, p in fresh]


def _runs(layout, need):
    """Group chunk indices into runs of address-contiguous chunks of at most BATCH_BYTES."""
    run = []
    run_start = run_end = None
    for i in need:
        start, end = layout.extent(i)
        if run and (start != run_end or end - run_start > BATCH_BYTES):
            yield run, run_start, run_end
            run = []
        if not run:
            run_start = start
        run.append((i, start, end))
        run_end = end
    if run:
        yield run, run_start, run_end


def save_chunks(layout, need, read, digests, known, writer) -> tuple:
    """Read the chunks `need`, set their digests in `digests`, append the ones not yet stored to `writer`.

    known(digests) returns the subset already in the store. Returns (bytes read, [(digest, offset, size)]
    of the records appended)."""
    seen = set()                # digests this save has already queued for writing
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
        # One query per task, not per chunk: scattered dirty pages make many one-chunk runs.
        stored = known({d for d in found if d != ZERO and d not in seen})
        fresh = []
        for i, piece, d in zip(task_indices, task_pieces, found):
            digests[i * DIGEST_SIZE:(i + 1) * DIGEST_SIZE] = d
            if d != ZERO and d not in seen and d not in stored:
                seen.add(d)
                fresh.append((d, piece))
        if fresh:
            encoding.append(pool.submit(_encode_all, fresh))

    def encoded():
        for d, codec, payload, raw_len in encoding.popleft().result():
            offset, size = writer.append(d, codec, raw_len, payload)
            rows.append((d, offset, size))

    with _pool() as pool:
        task_bytes = 0
        for run, start, end in _runs(layout, need):
            data = read(start, end - start)
            # A copy: the caller may reuse its buffer while workers still hash this one.
            data = memoryview(data if isinstance(data, bytes) else bytes(data))
            if len(data) != end - start:
                raise ValueError(f"read({start:#x}, {end - start}) returned {len(data)} bytes")
            for i, a, b in run:
                indices.append(i)
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
    return read_bytes, rows


def _read_all(tasks):
    return [read_record(*t) for t in tasks]


def fetch_chunks(records, deliver) -> None:
    """Read and verify records [(fd, pack, offset, size, digest)]; deliver(digest, data) each one.

    Raises packs.BadChunk for the first record that fails; deliver() runs in the calling thread."""
    records = sorted(records, key=lambda r: (r[1], r[2]))       # sequential within each pack
    pending = deque()
    with _pool() as pool:
        batch, batch_bytes = [], 0
        for rec in records:
            batch.append(rec)
            batch_bytes += rec[3]
            if batch_bytes >= BATCH_BYTES:
                pending.append((batch, pool.submit(_read_all, batch)))
                batch, batch_bytes = [], 0
                while len(pending) > 2 * WORKERS:
                    _deliver(pending.popleft(), deliver)
        if batch:
            pending.append((batch, pool.submit(_read_all, batch)))
        while pending:
            _deliver(pending.popleft(), deliver)


def _deliver(item, deliver) -> None:
    batch, future = item
    for rec, data in zip(batch, future.result()):
        deliver(rec[4], data)


class _pool:
    """A ThreadPoolExecutor that, on an error, drops queued work instead of finishing it first."""

    def __enter__(self):
        self.executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="gdb-checkpoint")
        return self.executor

    def __exit__(self, exc_type, *_):
        self.executor.shutdown(wait=True, cancel_futures=exc_type is not None)
