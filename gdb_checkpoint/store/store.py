"""The checkpoint store's API: save, load, list, delete and name a program's checkpoints on disk.

Ties index, packs, pipeline and compaction together; it must not import gdb nor interpret memory or state.

Store folder (0700; every file 0600):
    index.sqlite, -wal, -shm   index.py INDEX format (the store's format version lives in its meta table)
    packs/<hex>.pack           packs.py PACK format
    lock                       flock'd shared by saves and reads, exclusive by compaction
A save appends its new chunk records to a pack, fsyncs it, then commits one index transaction that
names them, whose WAL a background thread syncs right after (Index.commit_save); a crash before the
commit leaves only unreferenced pack bytes, which compaction drops.
A Store and its Checkpoints are for one thread; any number of processes may share the folder.
"""

import contextlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path

from .compact import CompactResult, compact
from .errors import BadNameError, CorruptCheckpointError, StoreError, UnknownCheckpointError
from .files import make_private_dir, store_lock, touch_private
from .index import WAL_CHECKPOINT_BYTES, Index
from .layout import (BLOCK, DEFAULT_CHUNK_SIZE, DIGEST_SIZE, PAGE, PLACE, ZERO, ZERO_PLACE, BadManifest,
                     Layout, PATCH_LIMIT, digest, encode_manifest, manifest_keys, open_manifest,
                     plan_incremental)
from .packs import PACK_TARGET, BadChunk, PackReader, PackWriter, Tables, read_runs
from .pipeline import (INLINE_BYTES, FromBothEnds, background, encode_record, fetch_chunks, meanwhile, save_chunks,
                       started)

RECLAIM_EVERY = 32          # automatic deletions between two compactions
MANIFESTS_KEPT = 8
READ_PAGES = 64             # pages per read while saving patches (a piece of encode_record)
SCRATCH_KEPT = 16 << 20     # a page bundle's buffer is kept for the next save up to this size
# Store.prefetch() reads ahead at least this much (64 pages: ~0.3 ms of reading, about what handing
# it to the helper thread costs)
PREFETCH_MIN = 256 << 10
PLACES_KEPT = 1 << 16       # record locations remembered (_locations): ~220 bytes each
PREPARE_MAX = 16 << 20      # _prepare() after saves that appended up to this much,
PREPARE_ROUND = 256 << 10   # that much rounded up to this
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_FIRST = itemgetter(0)


def check_name(name) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadNameError(f"bad checkpoint name {name!r}: use 1 to 64 letters, digits, '.', '_' "
                           f"or '-', starting with a letter or digit")
    return name


@dataclass(frozen=True)
class SaveResult:
    name: str
    logical_size: int           # bytes of memory in the checkpoint
    new_bytes: int              # bytes appended to packs (compressed records)
    read_bytes: int             # bytes asked of read(); less than logical_size when incremental
    seconds: float
    replaced: bool              # a checkpoint of that name existed and was replaced


@dataclass(frozen=True)
class Entry:
    name: str
    info: dict
    created: float              # Unix time
    logical_size: int
    new_bytes: int


class Store:
    """A checkpoint store folder, created (0700) if absent."""

    def __init__(self, path, *, chunk_size: int = DEFAULT_CHUNK_SIZE, pack_target: int = PACK_TARGET,
                 lock_timeout: float = 60.0):
        self.path = Path(path)
        self.packs_dir = self.path / "packs"
        self.chunk_size = chunk_size
        self.pack_target = pack_target
        self.lock_timeout = lock_timeout
        self._unreclaimed = 0       # deletions and replacements since the last compaction
        self._manifests = {}        # manifest digest -> Manifest, least recently used first
        self._buffer = bytearray()  # _scratch()
        self._places = {}           # digest -> (pack, offset, size): _locations()
        self._places_version = None
        self._tables = Tables()     # verified record tables, by place
        self._bad = frozenset()     # damaged records, as the index had them when this save began
        self._preparing = None      # (pid, Future of PackWriter.prepare()): _prepare()
        self._tail = None           # what it returned
        self._wal = None            # (pid, Future of Index.sync_wal()), the last: _sync_wal()
        self._wal_written = 0       # bytes of manifests and info committed since
        try:
            make_private_dir(self.path)
            make_private_dir(self.packs_dir)
            self._lock_path = self.path / "lock"
            touch_private(self._lock_path)
        except OSError as e:
            if self.path.is_dir():      # there, but not ours to write: even reading takes its lock
                raise StoreError(f"cannot use checkpoint store {self.path}: {e.strerror or e} (a store "
                                 f"must be writable, reading it too)") from None
            raise StoreError(f"cannot create checkpoint store {self.path}: {e.strerror or e}") from None
        self.index = Index(self.path / "index.sqlite")

    def close(self) -> None:
        self._settle()
        self._wait_wal()
        self.index.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    def _shared(self):
        return store_lock(self._lock_path, exclusive=False, timeout=self.lock_timeout)

    # -- the API -------------------------------------------------------------------------------

    def prefetch(self, dirty, read_many, encode: bool = False) -> "Prefetch":
        """Start reading the pages a save against `dirty` (sorted page ranges) will likely patch
        (a Prefetch for save(prefetched=)), with read_many([(addr, length)], into) in the helper
        thread: it must be safe to call from any thread. Meanwhile the caller gathers the rest of
        what it saves, and save() plans. None when there is too little to read (PREFETCH_MIN) or
        too much. Once read, the helper compresses them too, until the save takes the rest
        (Prefetch); `encode`: all of them in one go, for a caller that has other work to do first
        (a restore reads its checkpoint before its undo save).

        The likely pages are those of the ranges of at most PATCH_LIMIT pages: a longer one makes
        its chunks be saved whole. Finding exactly which chunks have at most PATCH_LIMIT pages
        written cost 0.8-1.3 ms for 655 ranges here, most of what this saves."""
        self._settle()
        runs = [(lo, hi - lo) for lo, hi in dirty if 0 < hi - lo <= PATCH_LIMIT * PAGE]
        size = sum(n for _, n in runs)
        if not PREFETCH_MIN <= size <= SCRATCH_KEPT:
            return None
        return Prefetch(runs, memoryview(self._scratch(size))[:size], read_many, encode)

    def save(self, program: str, name: str, *, regions, read, info: dict, state: bytes,
             base: str = None, dirty=None, reclaim: bool = True, read_many=None,
             prefetched: "Prefetch" = None) -> SaveResult:
        """Save memory `regions` (read with read(addr, length)), `info` and `state` as `name`.

        An existing `name` of `program` is replaced atomically. With `base` and `dirty`, bytes outside
        `dirty` are taken to equal `base`'s where it had them, and read() is only called for chunks
        that touch `dirty` or that `base` did not have (same bounds); `base` without `dirty` is a full
        save. Chunks already in the store are never written twice, whichever checkpoint has them.
        read_many([(addr, length)]) -> [data], when given, reads many scattered pieces at once;
        `prefetched` (from prefetch()) holds some of the pages to read, read already."""
        try:
            return self._save(program, name, regions, read, info, state, base, dirty, reclaim,
                              read_many, prefetched)
        finally:
            if prefetched is not None:
                prefetched.close()          # its buffer is the next save's

    def _save(self, program, name, regions, read, info, state, base, dirty, reclaim, read_many,
              prefetched) -> SaveResult:
        began = time.perf_counter()
        check_name(name)
        layout = Layout(regions, self.chunk_size)
        info_text = json.dumps(info, separators=(",", ":"))     # fail before reading anything
        state = bytes(state)
        self._settle()
        with self._shared():
            known = None
            self._bad = frozenset(self.index.bad())     # almost always empty: one small query
            if base is not None and dirty is not None:
                row = self.index.checkpoint(program, base)
                if row is None:
                    raise UnknownCheckpointError(f"no checkpoint '{base}' to save '{name}' against")
                # A base that names a damaged record would hand its damage on: save whole instead.
                if not (self._bad and self._bad & manifest_keys(row["manifest"], row["manifest_digest"])):
                    known = self._manifest(row)
            plan = plan_incremental(layout, known, dirty or ())
            manifest = plan.manifest
            writer = PackWriter(self.packs_dir, target_size=self.pack_target, tables=self._tables,
                                tail=self._tail)
            self._tail = None
            handed = False
            try:
                read_bytes, keys, records = save_chunks([layout.extent(i) for i in plan.full], read,
                                                        self._existing, writer, read_many)
                for i, key in zip(plan.full, keys):
                    manifest.digests[i * DIGEST_SIZE:(i + 1) * DIGEST_SIZE] = key
                state_key, _ = self._store_record(state, writer, records)
                bundle = (self._save_pages(plan, read, read_many, writer, records, prefetched)
                          if plan.pages else None)
                # The index may name the records only once they are synced: meanwhile, the manifest.
                writer.flush()
                with meanwhile(writer.fsync):
                    if bundle is not None:
                        read_bytes += _patch(plan, *bundle)
                    blob = encode_manifest(manifest)
                    blob_digest = digest(blob)
                replaced = self.index.commit_save(dict(
                    program=program, name=name, created=time.time(), info=info_text,
                    logical_size=layout.size, new_bytes=writer.appended,
                    state_digest=state_key, state_size=len(state),
                    manifest=blob, manifest_digest=blob_digest), writer.name, records,
                    [key for key, _, _ in records if key in self._bad])      # healed
                handed = known is not None and self._prepare(writer)
            finally:
                if not handed:
                    writer.close()
            self._sync_wal(len(blob) + len(info_text))
            self._remember(blob_digest, manifest)
            self._known_places().update((key, (writer.name, offset, size)) for key, offset, size in records)
        if replaced:                # reclaim the old one's space if nobody is busy; else later
            self._maybe_compact(reclaim, wait=0)
        return SaveResult(name, layout.size, writer.appended, read_bytes,
                          time.perf_counter() - began, replaced)

    def _save_pages(self, plan, read, read_many, writer, records, prefetched=None) -> tuple:
        """Read plan.pages into one bundle record; returns its key and block digests, for _patch()."""
        addrs = [addr for _, _, addr in plan.pages]
        bundle, encoded = prefetched.take(addrs) if prefetched is not None else (None, None)
        if bundle is not None:
            return self._store_record(bundle, writer, records, unique=True, encoded=encoded)
        size = PAGE * len(plan.pages)
        bundle = memoryview(self._scratch(size))[:size]

        def filling():          # a piece at a time, hashed and compressed while the next is read
            for lo in range(0, len(addrs), READ_PAGES):
                part = addrs[lo:lo + READ_PAGES]
                at = bundle[lo * PAGE:(lo + len(part)) * PAGE]
                # Neighbouring pages in one range (they are neighbours in the bundle too): a
                # range costs the kernel more than a page, 655 two-page ranges read in 4.9 ms
                # against 6.6 for the 1,310 pages one by one.
                runs = _page_runs(part)
                datas = read_many(runs, at) if read_many is not None else [read(a, n) for a, n in runs]
                done = 0
                for (_, n), data in zip(runs, datas):
                    if len(data) != n:
                        raise ValueError(f"a read of {n} bytes returned {len(data)}")
                    if read_many is None:
                        at[done:done + n] = data
                    done += n
                yield (lo + len(part)) * PAGE

        return self._store_record(bundle, writer, records, filling(), unique=True)

    def _scratch(self, size: int) -> bytearray:
        """A buffer of at least `size` bytes, the same one from save to save while it is small: a
        fresh one costs a page fault a page (~4 ms for 1,312 pages in this VM)."""
        if len(self._buffer) >= size:
            return self._buffer
        buf = bytearray(size)
        if size <= SCRATCH_KEPT:
            self._buffer = buf
        return buf

    def _existing(self, digests) -> set:
        """Those of `digests` stored and sound, as far as reads have found: a save shares them."""
        found = self.index.existing(digests)
        return found - self._bad if self._bad else found

    def _quarantine(self, digests, pack=None) -> None:
        """Remember records a read found damaged, so that saves store their content again rather
        than name them (which would hand the damage on to every later checkpoint); with `pack`,
        also every record of that pack that ends past its end (a pack cut short)."""
        try:
            if pack is not None:
                with contextlib.suppress(OSError):
                    digests = [*digests, *self.index.beyond(pack, os.path.getsize(self.packs_dir / pack))]
            self.index.mark_bad(digests)
        except StoreError:
            pass        # a read-only or busy index: the read's own error is what matters

    def _store_record(self, data, writer, records, filling=(), unique=False, encoded=None) -> tuple:
        """Append `data` as one record unless it is all zero or already stored (in the index or in
        `records`, this save's new [(key, offset, size)], which it extends); returns its key and
        block digests (ZERO or None for each block of a `unique` record: see encode_record, which
        `filling` is passed to, unless `encoded` is its result already)."""
        blocks, key, codec, parts = encoded or encode_record(data, filling, unique)    # then new?
        new = unique or key not in {r[0] for r in records} and not self._existing([key])
        if key != ZERO and new:
            records.append((key, *writer.append(key, codec, len(data), parts)))
        return key, blocks

    def load(self, program: str, name: str) -> "Checkpoint":
        """The checkpoint `name` with its info and verified state; its memory is read on demand."""
        with self._shared():
            row = self.index.checkpoint(program, name)
            if row is None:
                raise UnknownCheckpointError(
                    f"No checkpoint named '{name}' for this program (see \"checkpoint list\").")
            manifest = self._manifest(row)
            state = bytearray(row["state_size"])
            if row["state_digest"] != ZERO:
                self._fetch(row, {row["state_digest"]: [(state, 0, 0, len(state))]})
        return Checkpoint(self, row, manifest, bytes(state))

    def list(self, program: str) -> list:
        """Entries of `program`'s checkpoints, oldest first."""
        return [Entry(r["name"], json.loads(r["info"]), r["created"], r["logical_size"],
                      r["new_bytes"]) for r in self.index.entries(program)]

    def names(self, program: str) -> list:
        return self.index.names(program)

    def delete(self, program: str, names, reclaim: bool = True) -> CompactResult:
        """Delete all of `names` (or none if one is unknown; a name given twice counts once), then
        reclaim the space they alone used.

        reclaim=False (automatic deletions: the auto ring, replaced undo checkpoints) defers the
        reclaiming to every RECLAIM_EVERY-th such call: compaction reads the keys of every
        checkpoint and walks every record in the store (23 ms for 11 checkpoints of 256 MiB, ~1.5
        ms more a checkpoint), too much for every stop."""
        self.index.delete(program, list(names))
        return self._maybe_compact(reclaim, wait=self.lock_timeout)

    def compact(self) -> CompactResult:
        """Reclaim space now (delete does this itself): see compact.py for the policy."""
        return self._compact(wait=self.lock_timeout)

    def disk_usage(self) -> int:
        """Bytes in all of the store's files."""
        return sum(os.path.getsize(os.path.join(d, f))
                   for d, _, files in os.walk(self.path) for f in files)

    # -- helpers -------------------------------------------------------------------------------

    def _prepare(self, writer) -> bool:
        """After an incremental save, have the helper thread write zeros where the next one will
        append (PackWriter.prepare: on this ext4, writes over blocks already written never waited
        for the journal; appends often did, ~10 ms), then close `writer`, whose flock keeps others
        from appending there meanwhile. True if it took the writer. Only after incremental saves:
        the next is likely the same size, and a first save's tail would only be disk space."""
        length = -(-writer.appended // PREPARE_ROUND) * PREPARE_ROUND
        if writer.name is None or not 0 < length <= PREPARE_MAX:
            return False

        def run():
            try:
                return writer.prepare(length)
            finally:
                writer.close()
        try:
            self._preparing = (os.getpid(), background(run))
        except RuntimeError:        # no new threads: Python is shutting down
            return False
        return True

    def _settle(self) -> None:
        """Wait for _prepare()'s work, and keep what it returned for the next save."""
        if self._preparing is not None:
            job, self._preparing = self._preparing, None
            self._tail = _finished(job)

    def _sync_wal(self, written: int) -> None:
        """After a save's commit, which wrote `written` bytes to the index's WAL and left it unsynced
        (Index.commit_save): sync it in a thread of its own, which the next saves do not wait for
        (the thread takes one job after another, so waiting for the last waits for all). Once this
        Store's saves have written WAL_CHECKPOINT_BYTES, that job also copies the WAL into the
        database, rather than one of their commits."""
        self._wal_written += written
        copy = self._wal_written >= WAL_CHECKPOINT_BYTES
        if copy:
            self._wal_written = 0
        try:
            self._wal = (os.getpid(), background(self.index.sync_wal, copy, lane="wal"))
        except RuntimeError:        # no new threads: Python is shutting down
            self.index.sync_wal(copy)

    def _wait_wal(self) -> None:
        if self._wal is not None:
            job, self._wal = self._wal, None
            _finished(job)

    def _maybe_compact(self, reclaim: bool, wait: float) -> CompactResult:
        self._unreclaimed += 1
        if not reclaim and self._unreclaimed < RECLAIM_EVERY:
            return CompactResult(0, 0, "deferred: space is reclaimed by a later delete")
        self._unreclaimed = 0
        return self._compact(wait)

    def _compact(self, wait: float) -> CompactResult:
        with store_lock(self._lock_path, exclusive=True, timeout=wait, required=False) as held:
            if not held:
                return CompactResult(0, 0, "the store is in use; space is reclaimed by a later delete")
            self._settle()
            self._places.clear()        # compaction moves and drops records
            try:
                return compact(self.index, self.packs_dir)
            except (StoreError, OSError) as e:
                # The delete itself is committed; failing to reclaim only postpones it.
                return CompactResult(0, 0, f"compaction failed: {e}")

    def _manifest(self, row):
        """The checkpoint's Manifest (shared: callers must not change it). The last few decoded
        are kept by digest: the base of the next save is usually the last one saved, and decoding
        a manifest with thousands of patches takes milliseconds, hashing it a fraction of one."""
        key = row["manifest_digest"]
        manifest = self._manifests.pop(key, None)
        try:
            if manifest is None:
                manifest = open_manifest(row["manifest"], key)
            elif digest(row["manifest"]) != key:       # the blob on disk is checked every time
                raise BadManifest("its manifest fails its hash")
        except BadManifest as e:
            raise CorruptCheckpointError(f"checkpoint '{row['name']}' is corrupt: {e}") from None
        self._remember(key, manifest)
        return manifest

    def _remember(self, key: bytes, manifest) -> None:
        self._manifests[key] = manifest
        while len(self._manifests) > MANIFESTS_KEPT:
            del self._manifests[next(iter(self._manifests))]

    def _locations(self, digests) -> dict:
        """index.locations() of `digests`, remembered: a record stays where it is until compaction
        moves or drops it, which this Store's own does under the exclusive lock (and forgets them
        all then), another process's after a commit, which PRAGMA data_version tells. A restore's
        lookup of 700 records took 2.5-3.5 ms in SQLite. Call with the store lock held."""
        places = self._known_places()
        missing = [d for d in digests if d not in places]
        if missing:
            if len(places) + len(missing) > PLACES_KEPT:
                places.clear()
            places.update(self.index.locations(missing))
        return {d: places[d] for d in digests if d in places}

    def _known_places(self) -> dict:
        """_places, emptied first if another connection committed since they were last checked (it
        may have compacted the store). Saves add theirs through this too: else the first lookup
        after them found the version unknown and forgot all (a restore after saves asked SQLite for
        every record it read). Call with the store lock held."""
        version = self.index.data_version()
        if version != self._places_version:
            self._places.clear()
            self._places_version = version
        return self._places

    def _places_of(self, row, keys) -> dict:
        """_locations() of every one of `keys`, those of checkpoint `row`; else the error."""
        places = self._locations(keys)
        missing = [d for d in keys if d not in places]
        if missing:
            if not self.index.still_there(row["id"]):
                raise UnknownCheckpointError(f"checkpoint '{row['name']}' was deleted while in use")
            raise CorruptCheckpointError(f"checkpoint '{row['name']}' is corrupt: chunk "
                                         f"{missing[0].hex()[:16]} is missing from the store")
        return places

    def _pack_fd(self, reader, row, pack: str, places) -> int:
        try:
            return reader.fd(pack)
        except FileNotFoundError:
            self._quarantine([d for d, (p, _, _) in places.items() if p == pack])
            raise CorruptCheckpointError(
                f"checkpoint '{row['name']}' is corrupt: its pack {pack} is missing") from None

    def _fetch_runs(self, row, segments) -> list:
        """Checkpoint.read_runs() of the Manifest.segments() `segments` of checkpoint `row`."""
        places = self._places_of(row, {key for _, key, _, _ in segments if key != ZERO})
        reader = PackReader(self.packs_dir)
        try:
            fds = {pack: self._pack_fd(reader, row, pack, places) for pack, _, _ in places.values()}
            out = [(at, bytes(n), 0, n) for at, key, _, n in segments if key == ZERO]
            read_runs(sorted(places[key] + (at, key, src, n) for at, key, src, n in segments if key != ZERO),
                      fds, out, self._tables)
        except BadChunk as e:
            self._quarantine([e.digest], e.pack)
            raise CorruptCheckpointError(f"checkpoint '{row['name']}' is corrupt: {e}") from None
        finally:
            reader.close()
        out.sort(key=_FIRST)
        return out

    def _fetch(self, row, wanted: dict) -> None:
        """Copy verified chunks into buffers: wanted maps digest -> [(buffer, at, chunk offset, length)].

        Raises if any chunk is missing or fails its hash; callers then drop the half-filled buffers."""
        name = row["name"]
        places = self._places_of(row, wanted)
        reader = PackReader(self.packs_dir)
        try:
            records = []
            for d, (pack, offset, size) in places.items():
                fd = self._pack_fd(reader, row, pack, places)
                records.append((fd, pack, offset, size, d, [(src, n) for _, _, src, n in wanted[d]]))

            def deliver(d, start, data):        # data may hold part of what is wanted of d
                data = memoryview(data)
                end = start + len(data)
                for buf, at, src, n in wanted[d]:
                    lo = src if src > start else start
                    hi = src + n if src + n < end else end
                    if lo < hi:
                        buf[at + lo - src:at + hi - src] = data[lo - start:hi - start]

            fetch_chunks(records, deliver, self._tables)
        except BadChunk as e:
            self._quarantine([e.digest], e.pack)
            raise CorruptCheckpointError(f"checkpoint '{name}' is corrupt: {e}") from None
        finally:
            reader.close()


def _finished(job):
    """The result of a (pid, Future of background()), waited for; None in a forked child, which has
    no helper thread to wait for (nor, after _prepare(), the parent's flock)."""
    pid, future = job
    return future.result() if pid == os.getpid() else None


def _page_runs(addrs) -> list:
    """[(addr, length)] of the sorted page addresses `addrs`, neighbours joined."""
    runs = []
    for addr in addrs:
        if runs and runs[-1][0] + runs[-1][1] == addr:
            runs[-1][1] += PAGE
        else:
            runs.append([addr, PAGE])
    return [(a, n) for a, n in runs]


def _patch(plan, key, blocks) -> int:
    """Patch plan.pages, stored as the record `key` with `blocks` (_save_pages), into plan.manifest;
    returns the bytes they take. Pages of all-zero blocks are patched as ZERO; a zero page beside
    written ones stays in the bundle (a few bytes compressed), which saves checking each page."""
    patches, pages, pack = plan.manifest.patches, plan.pages, PLACE.pack
    new, added = {}, {}
    for n, (i, k, _) in enumerate(pages):           # chunk by chunk: plan.pages is sorted
        mine = new.get(i)
        if mine is None:
            # A new dict, not the old one changed: the base's manifest may share it (see Manifest).
            mine = new[i] = dict(patches.get(i) or ())
            ks = added[i] = []
        mine[k] = pack(key, n)
        ks.append(k)
    if ZERO in blocks:
        per_block = BLOCK // PAGE
        for b, block in enumerate(blocks):
            if block == ZERO:
                for i, k, _ in pages[b * per_block:(b + 1) * per_block]:
                    new[i][k] = ZERO_PLACE
    plan.manifest.set_pages(new, added)
    return PAGE * len(pages)


class Prefetch:
    """Pages read by the helper thread into `bundle` (Store.prefetch), which take() hands to the save
    that planned to read them: a spread save's 1,310 scattered pages take ~6 ms to read, which now
    overlap with capturing the process's state and planning (~5 ms) instead of following them.
    Once read, the helper goes on compressing them, as encode_record(bundle, unique=True), piece by
    piece from the front; take() does the rest from the back (pipeline.FromBothEnds). `encode`: all
    of them in one zstd call, for a save that will get there late (a restore's undo save): in
    pieces, undo-on restores took 73.9 -> 76.2 ms (means of 6 interleaved rounds), the helper
    having to get the GIL back between them from gdb's thread, busy reading the checkpoint."""

    def __init__(self, runs: list, bundle: memoryview, read_many, encode: bool = False):
        self._runs = runs
        self._bundle = bundle
        self._encoding = FromBothEnds(bundle)
        self._read_done = threading.Event()
        self._read_ok = False
        # A save waits until the helper has begun: its read is the save's longest part, and would
        # otherwise wait for the GIL while this thread runs Python. A restore's undo save needs it
        # only after the restore's read, ~20 ms later: not waiting saved it 0.5-3.5 ms.
        self._future = (background if encode else started)(self._read, read_many, encode)

    def _read(self, read_many, encode) -> bool:
        try:
            self._read_ok = all(len(data) == n for (_, n), data in
                                zip(self._runs, read_many(self._runs, self._bundle)))
        finally:
            self._read_done.set()
        if self._read_ok:
            self._encoding.front(whole=encode)
        return self._read_ok

    def take(self, addrs: list) -> tuple:
        """(the bytes of the pages at `addrs` (sorted), one after another, if every one of them was
        read, else None, and the save reads them itself; their encode_record(unique=True), if they
        are all that was read, else None)."""
        mine = []                           # what was read, page by page, while it is read
        for lo, n in self._runs:
            if (lo | n) % PAGE:
                mine = None
                break
            mine += range(lo, lo + n, PAGE)
        self._read_done.wait()
        if self._read_ok and addrs == mine:
            self._encoding.back()
            if self.close():
                return self._bundle, self._encoding.record()
        if not self.close() or mine is None:
            return None, None
        # Some were read for nothing (their chunk is saved whole): the others are moved to the
        # front in place, in order, each down to where no page still to be moved lies.
        at = {addr: n for n, addr in enumerate(mine)}
        view, last = self._bundle, -1
        for k, addr in enumerate(addrs):
            n = at.get(addr, -1)
            if n <= last:
                return None, None           # not read, or out of order
            last = n
            if n != k:
                view[k * PAGE:(k + 1) * PAGE] = view[n * PAGE:(n + 1) * PAGE]
        return view[:PAGE * len(addrs)], None

    def close(self) -> bool:
        """Stop the helper's compressing, wait for what it is doing; whether every page was read (a
        failure is the save's to meet)."""
        self._encoding.stop()
        try:
            return self._future.result()
        except Exception:
            return False


class Checkpoint:
    """A loaded checkpoint: info and state in hand, memory read (and verified) on demand."""

    def __init__(self, store: Store, row, manifest, state: bytes):
        self._store = store
        self._row = row
        self._manifest = manifest
        self.program = row["program"]
        self.name = row["name"]
        self.info = json.loads(row["info"])
        self.created = row["created"]
        self.logical_size = row["logical_size"]
        self.state = state
        self.regions = list(manifest.layout.regions)
        self.chunk_size = manifest.layout.chunk_size

    def chunks(self) -> list:
        """(start, end, key) of every chunk. Equal keys mean equal bytes, and a chunk of live
        memory whose chunk_digest() equals its key holds the same bytes; other keys may still
        hold equal bytes (a chunk with patched pages compares unequal to any live chunk)."""
        key = self._manifest.chunk_key
        return [(a, b, key(i)) for i, (a, b) in enumerate(self._manifest.layout.extents())]

    def chunk_map(self) -> dict:
        """Chunk start address -> key (ZERO for an all-zero chunk), to diff without decompressing."""
        return {a: d for a, _, d in self.chunks()}

    def read_all(self) -> list:
        """[(start, bytearray)] for every region, every chunk verified."""
        return self.read(self.regions)

    def read_runs(self, ranges) -> list:
        """read(ranges), for a restore: [(address, data, at, n)] in address order, bytes [at, at +
        n) of data being the checkpoint's at address, together exactly the `ranges` (a range may
        take more than one); data is a block as read, not copied into a buffer a range. The same
        checks, the same errors, nothing returned if one fails. See packs.read_runs."""
        if sum(hi - lo for lo, hi in ranges) >= INLINE_BYTES:
            # Big: read() decompresses batches on several threads.
            return [(lo, buf, 0, len(buf)) for lo, buf in self.read(ranges)]
        segments = self._manifest.segments(ranges, f"checkpoint '{self.name}'")
        with self._store._shared():
            return self._store._fetch_runs(self._row, segments)

    def read(self, ranges) -> list:
        """[(start, bytearray)] for each (start, end) of `ranges`, which must lie in the regions.

        Every block read is verified before anything is returned: CorruptCheckpointError means no
        data. Only the blocks and patched pages that hold the bytes asked for are read."""
        out, wanted = self._manifest.pieces(ranges, f"checkpoint '{self.name}'")
        with self._store._shared():
            self._store._fetch(self._row, wanted)
        return out
