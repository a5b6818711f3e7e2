"""How memory regions are cut into address-aligned chunks, content keys, and the manifest blob.

Pure computation on ranges and bytes: no files, no SQLite, no gdb.

Chunks: each region [start, end) is cut at multiples of `chunk_size` (so chunk i of a region covers
its intersection with one aligned window); the same address always falls in the same window, which
is what lets identical memory dedupe across checkpoints.

Content keys (store formats 2 to 6): a piece of memory is cut into BLOCK-sized blocks from its start; a
block's digest is the first 20 bytes of its SHA-256 (ZERO, 20 zero bytes, for an all-zero block) and
the piece's key is SHA-256/160 of b"GCK2" and its block digests, or ZERO when every block is zero
(never stored). So a record can be checked block by block: its table of block digests against the
key, then only the blocks a restore needs, each by its zstd frame's checksum (packs.py; format 2
hashed each block again). A save's bundle of written pages is a record with a key of its own
instead, which costs no hashing (packs.py, codec UNIQUE). SHA-256 runs at 1.4-1.5 GB/s with SHA-NI
here, against 0.53 GB/s for blake2b. Format 1 keyed a chunk by the digest of all its bytes.

Patches: a chunk may be recorded as a base (its slot in the digest array) plus whole pages (PAGE
bytes at page-aligned addresses) that replace the base's. An incremental save then reads, hashes and
stores only the pages written since, not their 64 KiB chunks, all of them as one record (a bundle:
the pages one after another; per-page records cost ~50 us each in Python, 655 of them 35 ms). A
chunk of which a save finds more than PATCH_LIMIT pages written is stored whole instead, and goes
back to a plain key. Patches a chunk carries over from earlier saves never force that: a chunk may
end up with every page patched (a manifest then holds 29 bytes a page before compression, 0.7% of
the memory, and up to twice that while entries of pages patched again wait to be packed afresh).
Stopping at 8 carried-over patches made every save that reached the limit in many chunks at once
read, hash and compress them whole: 119 ms spread saves now and then, and an undo save against an
old checkpoint paid it at every restore (8.9 MiB written instead of 3.3; restores 91 -> 68 ms).

MANIFEST format, version 5 (one blob per checkpoint, little-endian):
    header   "<4sBBHII": magic b"GCKM", version 5, digest size 20, reserved 0, chunk_size, n_regions
    regions  n_regions x "<QQ": start, end (sorted, non-overlapping)
    digests  one 20-byte key per chunk, in address order (the count follows from the regions)
    patches  "<I" count of entries in all layers; if it is not 0, "<I" count of layers, then each
             layer: "<II" its entry count and stored length, and its entries as one zstd frame.
             An entry is "<IB20sI": chunk index, page index k (the page at the chunk's aligned
             window start + k * PAGE, inside the chunk), key of the record holding it, and its
             place in that record (byte offset / PAGE); or, with k = RESET and a ZERO place, "the
             chunk's pages from earlier layers are dropped" (a save stored it whole). In a layer,
             entries are sorted by (chunk, page), each once, a RESET alone for its chunk. Layers
             apply in order; the last entry of a page holds.
             A save adds a layer of the pages it patched (encode_manifest) and keeps the frames of
             its base's layers as they are: recompressing a session's pile of patches cost 1-2 ms
             a spread save at 15,000 entries, and grew with them. The layers are packed into one,
             sorted, once they hold more than twice as many entries as patched pages, or
             MAX_LAYERS of them, so the entries are bounded as in version 4.
Version 4 is version 5 with one layer, grouped by chunk in ascending order, in which a page may
appear more than once; its entries count has no layer count nor entry count of its own, only its
"<I" stored length before the frame. Version 3 is version 4 with each chunk's pages once, in
order; version 2 stores the entries uncompressed; version 1 has no patches section.
"""

import bisect
import hashlib
import struct
import threading

import zstandard

from ..ranges import merge

DIGEST_SIZE = 20
ZERO = bytes(DIGEST_SIZE)
DEFAULT_CHUNK_SIZE = 64 << 10
BLOCK = 16 << 10                # 4 KiB blocks compressed 12% worse (real heap), 64 KiB 2% better
PAGE = 4096
PATCH_LIMIT = 8                 # pages of a chunk one save may patch; more, and it is stored whole

_HEADER = struct.Struct("<4sBBHII")
_REGION = struct.Struct("<QQ")
_PATCH = struct.Struct("<IB20sI")
_ENTRY = struct.Struct("<IB24s")    # the same 29 bytes, with the page's PLACE as one field
# Where a patched page is: the key of the record holding it and n, the page's place in it (byte
# offset / PAGE). Kept packed, as bytes, in Manifest.patches (see there).
PLACE = struct.Struct("<20sI")
ZERO_PLACE = PLACE.pack(ZERO, 0)     # a page of zeros
_COUNT = struct.Struct("<I")
_LAYER = struct.Struct("<II")       # a layer's entry count and stored length
_MAGIC = b"GCKM"
_VERSION = 5
RESET = 255                     # the page index of an entry that drops its chunk's earlier pages
MAX_LAYERS = 64
_PATCH_LEVEL = 1                # zstd level of the patch entries (-1: a little bigger, no faster)
_local = threading.local()        # zstd contexts: zstd_compressor()
_KEY_PREFIX = b"GCK2"
_PATCH_PREFIX = b"GCKP"
_zero_digests = {}


class BadManifest(ValueError):
    """A manifest blob that does not parse; the store reports it as a corrupt checkpoint."""


def digest(data) -> bytes:
    """The content address of `data` (whatever it holds, zeros included)."""
    return hashlib.sha256(data).digest()[:DIGEST_SIZE]


def block_digests(data) -> list:
    """The digest of each BLOCK of `data` (the last may be short), ZERO for an all-zero one."""
    data = memoryview(data)
    return [block_digest(data[at:at + BLOCK]) for at in range(0, len(data), BLOCK)]


def block_digest(block) -> bytes:
    """The digest of one block, ZERO when it is all zero."""
    d = digest(block)       # a zero block is known by its digest: no compare, no copy
    return ZERO if d == _zero_digest(len(block)) else d


def _zero_digest(n: int) -> bytes:
    d = _zero_digests.get(n)
    if d is None:
        d = _zero_digests[n] = digest(bytes(n))
    return d


def content_key(digests) -> bytes:
    """The key of a piece whose blocks have `digests`: ZERO when all of them are zero."""
    if all(d == ZERO for d in digests):
        return ZERO
    return digest(_KEY_PREFIX + b"".join(digests))


def chunk_digest(data) -> bytes:
    """The key a manifest records for a piece of memory (ZERO when it is all zero bytes)."""
    return content_key(block_digests(data))


def check_ranges(ranges, what: str) -> tuple:
    """Return `ranges` as a tuple of int pairs, or raise ValueError unless sorted, non-empty, disjoint."""
    out = []
    prev_end = 0
    for start, end in ranges:
        start, end = int(start), int(end)
        if not 0 <= start < end or start < prev_end:
            raise ValueError(f"{what} must be sorted, non-empty, non-overlapping ranges; "
                             f"got [{start:#x}, {end:#x}) after one ending at {prev_end:#x}")
        out.append((start, end))
        prev_end = end
    return tuple(out)


class Layout:
    """The chunks of a list of regions: chunk i has an extent (start, end) and a place in the manifest."""

    def __init__(self, regions, chunk_size: int):
        self.regions = check_ranges(regions, "regions")
        self.chunk_size = chunk_size
        self.starts = [s for s, _ in self.regions]
        self.first = []             # index of each region's first chunk
        n = 0
        for start, end in self.regions:
            self.first.append(n)
            n += -(-end // chunk_size) - start // chunk_size
        self.count = n
        self.size = sum(e - s for s, e in self.regions)

    def region_chunks(self, r: int) -> range:
        end = self.first[r + 1] if r + 1 < len(self.first) else self.count
        return range(self.first[r], end)

    def extent(self, i: int) -> tuple:
        r = bisect.bisect_right(self.first, i) - 1
        return self._extent(r, i)

    def _extent(self, r: int, i: int) -> tuple:
        start, end = self.regions[r]
        cs = self.chunk_size
        w = start // cs + i - self.first[r]
        return max(start, w * cs), min(end, (w + 1) * cs)

    def extents(self):
        """(start, end) of every chunk, in index order."""
        cs = self.chunk_size
        for start, end in self.regions:
            a = start
            while a < end:
                b = min(end, (a // cs + 1) * cs)
                yield a, b
                a = b

    def touching(self, lo: int, hi: int):
        """Indices of the chunks that overlap [lo, hi)."""
        cs = self.chunk_size
        r = max(0, bisect.bisect_right(self.starts, lo) - 1)
        while r < len(self.regions) and self.regions[r][0] < hi:
            start, end = self.regions[r]
            a, b = max(lo, start), min(hi, end)
            if a < b:
                base = self.first[r] - start // cs
                yield from range(base + a // cs, base + -(-b // cs))
            r += 1

    def covers(self, lo: int, hi: int) -> bool:
        """True when every byte of [lo, hi) lies in some region."""
        r = max(0, bisect.bisect_right(self.starts, lo) - 1)
        while lo < hi and r < len(self.regions):
            start, end = self.regions[r]
            if start > lo:
                return False
            lo = max(lo, end)
            r += 1
        return lo >= hi

    def find_chunk(self, start: int, end: int):
        """Index of the chunk whose extent is exactly [start, end), or None."""
        r = bisect.bisect_right(self.starts, start) - 1
        if r < 0 or self.regions[r][1] <= start:
            return None
        i = self.first[r] + start // self.chunk_size - self.regions[r][0] // self.chunk_size
        return i if self._extent(r, i) == (start, end) else None


def patchable(layout: Layout, start: int, end: int) -> bool:
    """Whether a chunk with extent [start, end) can carry patches: whole pages, at most 64 of them."""
    cs = layout.chunk_size
    return cs % PAGE == 0 and cs // PAGE <= 64 and start % PAGE == 0 and end % PAGE == 0


class Manifest:
    """A checkpoint's memory: chunk keys by address, and pages patched over some chunks.

    patches maps chunk index -> {page index in the chunk's aligned window: PLACE.pack(key, n)}: the
    page is the n-th PAGE of the record `key` (ZERO: a page of zeros). Packed: a dict of bytes is
    never tracked by Python's cyclic garbage collector, a dict of (key, n) tuples is until a full
    collection, and each command that kept a save's 657 of them ended with a collection walking
    them (0.3-0.8 ms, and every tenth or so one of 4-6 ms, measured in gdb). A pages dict is never
    changed once the manifest is encoded: a manifest planned from this one shares them, and a save
    patching a chunk makes a new one.

    layers: the [(entry count, zstd frame)] of the blob last encoded or decoded (version 5), None
    when not known (encode_manifest then packs every patch afresh), and `pending` what set_pages()
    changed since: chunk -> the page indices it set, ascending, or None for a chunk whose patches
    were dropped (RESET)."""

    def __init__(self, layout: Layout, digests, patches=None, layers=None):
        self.layout = layout
        self.digests = digests
        self.patches = patches or {}
        self.layers = layers
        self.pending = {}

    def set_pages(self, new: dict, added: dict = None) -> None:
        """Each chunk i of `new` gets new[i] as its patches (a new dict: see above); added[i] lists
        the page indices of new[i] set since its patches before (all of them, if it had none), in
        ascending order (a layer's). Without `added`, or for a chunk set twice between encodings,
        the next encoding packs every patch afresh."""
        self.patches.update(new)
        self._changed(added if added is not None and added.keys() == new.keys() else None)

    def drop(self, i: int) -> None:
        """Chunk i has no patches any more (it is stored whole)."""
        if self.patches.pop(i, None) is not None:
            self._changed({i: None})

    def _changed(self, pending) -> None:
        if self.layers is None:
            return
        if pending is None or not self.pending.keys().isdisjoint(pending):
            self.layers = None
        else:
            self.pending.update(pending)

    def base_key(self, i: int) -> bytes:
        return digest_at(self.digests, i)

    def chunk_key(self, i: int) -> bytes:
        """What chunk i's bytes compare by: its key, or for a patched chunk a digest of its base and
        patches (equal for equal records, never equal to chunk_digest() of live memory)."""
        key = self.base_key(i)
        pages = self.patches.get(i)
        if not pages:
            return key
        return digest(_PATCH_PREFIX + key + b"".join(
            _ENTRY.pack(i, k, pages[k]) for k in sorted(pages)))

    def pieces(self, ranges, owner: str) -> tuple:
        """Where the bytes of each (lo, hi) of `ranges` are, which must lie in the regions (else
        ValueError naming `owner`): ([(lo, zero-filled bytearray of hi - lo)], {key: [(that
        bytearray, offset in it, offset in the key's piece, length)]}), ZERO keys left out."""
        segments = self.segments(ranges, owner)
        out, wanted, k = [], {}, 0
        for lo, hi in ranges:
            buf = bytearray(hi - lo)
            out.append((lo, buf))
            while k < len(segments) and segments[k][0] < hi:
                at, key, src, n = segments[k]
                k += 1
                if key != ZERO:
                    wanted.setdefault(key, []).append((buf, at - lo, src, n))
                if at + n == hi:
                    break
        return out, wanted

    def segments(self, ranges, owner: str) -> list:
        """Where the bytes of each (lo, hi) of `ranges` are, which must lie in the regions (else
        ValueError naming `owner`): [(address, key, offset in the key's piece, length)], range by
        range, each range's in address order and together exactly it; ZERO keys for zeros.

        Inline, region by region (they may touch) and chunk by chunk: a restore asks for hundreds
        of scattered page runs, most of them in patched chunks after a session's saves (655 runs
        of two pages, out of gdb: 3.9-5.7 ms with a generator per chunk, 2.1-3.2 inline)."""
        layout, digests, patches = self.layout, self.digests, self.patches
        regions, starts, firsts, cs = layout.regions, layout.starts, layout.first, layout.chunk_size
        unpack = PLACE.unpack
        out = []
        for lo, hi in ranges:
            r = bisect.bisect_right(starts, lo) - 1
            if not (lo < hi and (r >= 0 and hi <= regions[r][1] or layout.covers(lo, hi))):
                raise ValueError(f"[{lo:#x}, {hi:#x}) is not inside {owner}")
            pos = lo
            while pos < hi:
                start, end = regions[r]
                if pos >= end:
                    r += 1
                    continue
                w = pos // cs
                i = firsts[r] + w - start // cs
                window = w * cs
                stop = window + cs
                if end < stop:
                    stop = end
                if hi < stop:
                    stop = hi
                first = start if start > window else window         # the chunk's first byte
                pages = patches.get(i)
                base_key = None
                at = pos
                while at < stop:
                    got = pages.get((at - window) // PAGE) if pages else None
                    if got is None:         # the run of the base chunk's pages from here
                        until = stop
                        if pages:
                            until = window + ((at - window) // PAGE + 1) * PAGE
                            while until < stop and (until - window) // PAGE not in pages:
                                until += PAGE
                            if until > stop:
                                until = stop
                        if base_key is None:
                            # digest_at(), inline: calling it cost ~0.4 ms of the 3 here
                            base_key = bytes(digests[i * DIGEST_SIZE:(i + 1) * DIGEST_SIZE])
                        key, src = base_key, at - first
                    else:                   # a patched page: the n-th of record `key`
                        key, n = unpack(got)
                        page = at - (at - window) % PAGE
                        until = page + PAGE if page + PAGE < stop else stop
                        src = n * PAGE + at - page
                    out.append((at, key, src, until - at))
                    at = until
                pos = stop
        return out


class SavePlan:
    """What a save must read: whole chunks, and single pages to patch over carried-over chunks."""

    def __init__(self, manifest: Manifest, full: list, pages: list):
        self.manifest = manifest
        self.full = full            # chunk indices, sorted
        self.pages = pages          # (chunk index, page index, page address), sorted


def plan_incremental(layout: Layout, base, dirty) -> SavePlan:
    """Keys known without reading memory, and what must be read.

    `base` is the Manifest of an earlier checkpoint of the same memory, or None; `dirty` lists the
    ranges that may differ from it. Chunks whose bounds `base` had carry its key and patches over;
    dirty pages of those become patches unless more than PATCH_LIMIT of one chunk are dirty; other
    dirty chunks, and chunks `base` lacks, are read whole. Costs O(regions + patches + dirty
    chunks) when regions match the base's, and O(chunks) only for regions whose bounds changed."""
    digests = bytearray(layout.count * DIGEST_SIZE)
    manifest = Manifest(layout, digests, {})
    if base is None or base.layout.chunk_size != layout.chunk_size:
        return SavePlan(manifest, list(range(layout.count)), [])
    bl, bd, patches = base.layout, base.digests, manifest.patches
    same_region = {extent: r for r, extent in enumerate(bl.regions)}
    shift = {}                  # base region index -> index shift, for regions with the same bounds
    full = set()
    for r, extent in enumerate(layout.regions):
        mine = layout.region_chunks(r)
        b = same_region.get(extent)
        if b is not None:           # unchanged bounds: the whole run of keys carries over
            theirs = bl.region_chunks(b)
            digests[mine.start * DIGEST_SIZE:mine.stop * DIGEST_SIZE] = \
                bd[theirs.start * DIGEST_SIZE:theirs.stop * DIGEST_SIZE]
            shift[b] = mine.start - theirs.start
            continue
        for i in mine:
            j = bl.find_chunk(*layout._extent(r, i))
            if j is None:
                full.add(i)
            else:
                digests[i * DIGEST_SIZE:(i + 1) * DIGEST_SIZE] = digest_at(bd, j)
                if j in base.patches:
                    patches[i] = base.patches[j]
    if len(shift) == len(bl.regions) and not any(shift.values()):
        patches.update(base.patches)        # the usual case: the same regions, in one C call
        if base.layers is not None and not base.pending:
            manifest.layers = list(base.layers)     # a layer is added to them (encode_manifest)
    else:
        for j, pages in base.patches.items():
            b = bisect.bisect_right(bl.first, j) - 1
            if b in shift:
                patches[j + shift[b]] = pages
    cs = layout.chunk_size
    pages_fit = cs % PAGE == 0 and cs // PAGE <= 64
    regions, firsts, count = layout.regions, layout.first, len(layout.regions)
    pages = []
    r = 0
    run_i, run_n, last_k = -1, 0, -1        # the chunk whose pages are being listed
    # One walk over the sorted dirty ranges and the regions, without a lookup per chunk, and lean:
    # a save after scattered writes has a dirty range per page or two (655 of them: 3.7 ms at first,
    # then 1.8-2.8; 1.1-1.2 standalone once ranges already merged were no longer merged again, and
    # pages are listed as found). Chunks come in address order, so a chunk's pages are found one
    # run after another, in order; only the page two ranges share can come twice.
    for lo, hi in merge(dirty):             # as they are if merged already (a History's are)
        while r < count and regions[r][1] <= lo:
            r += 1
        q = r
        while q < count:
            start, end = regions[q]
            if start >= hi:
                break
            x = lo if lo > start else start
            y = hi if hi < end else end
            base = firsts[q] - start // cs
            for w in range(x // cs, (y - 1) // cs + 1):
                i = base + w
                if i in full:
                    continue
                window = w * cs
                a = start if start > window else window
                b = end if end < window + cs else window + cs
                if not pages_fit or a % PAGE or b % PAGE:
                    full.add(i)
                    continue
                k0 = ((x if x > a else a) - window) // PAGE
                k1 = ((y if y < b else b) - 1 - window) // PAGE
                if i != run_i:
                    run_i, run_n, last_k = i, 0, -1
                elif k0 <= last_k:
                    k0 = last_k + 1
                run_n += k1 - k0 + 1
                last_k = k1
                if run_n > PATCH_LIMIT:
                    full.add(i)
                    continue
                for k in range(k0, k1 + 1):
                    pages.append((i, k, window + k * PAGE))
            q += 1
    if full:
        pages = [page for page in pages if page[0] not in full]
        for i in full:
            manifest.drop(i)
    return SavePlan(manifest, sorted(full), pages)


def encode_manifest(manifest: Manifest) -> bytes:
    """The blob of `manifest`: its layers and one more of the pages set_pages() set since (only
    those are packed and compressed), or, when its layers are not known or would hold too much,
    one layer of every patch."""
    layout, digests = manifest.layout, manifest.digests
    assert len(digests) == layout.count * DIGEST_SIZE
    parts = [_HEADER.pack(_MAGIC, _VERSION, DIGEST_SIZE, 0, layout.chunk_size, len(layout.regions))]
    parts.extend(_REGION.pack(s, e) for s, e in layout.regions)
    parts.append(bytes(digests))
    patches, layers, pending = manifest.patches, manifest.layers, manifest.pending
    if layers is not None and len(layers) >= MAX_LAYERS:
        layers = None
    fields = []                         # what is packed, 3 fields an entry, in one call
    if layers is not None:
        for i in sorted(pending):
            ks = pending[i]
            if ks is None:
                fields += (i, RESET, ZERO_PLACE)
            else:
                pages = patches[i]
                for k in ks:
                    fields += (i, k, pages[k])
        if sum(n for n, _ in layers) + len(fields) // 3 > 2 * sum(map(len, patches.values())):
            layers = None
    if layers is None:                  # one layer of every patch
        layers, fields = [], []
        for i in sorted(patches):
            pages = patches[i]
            for k in sorted(pages):
                fields += (i, k, pages[k])
    if fields:
        packed = struct.pack("<" + _ENTRY.format[1:] * (len(fields) // 3), *fields)
        layers = layers + [(len(fields) // 3, zstd_compressor(_PATCH_LEVEL).compress(packed))]
    manifest.layers, manifest.pending = layers, {}
    count = sum(n for n, _ in layers)
    parts.append(_COUNT.pack(count))
    if count:
        parts.append(_COUNT.pack(len(layers)))
        for n, frame in layers:
            parts += [_LAYER.pack(n, len(frame)), frame]
    return b"".join(parts)


def zstd_compressor(level: int, checksum: bool = False):
    """This thread's zstd compression context of `level` (contexts are not thread-safe; the store's
    worker threads compress at once), each frame carrying its content checksum if `checksum`."""
    contexts = _contexts()
    cctx = contexts.get((level, checksum))
    if cctx is None:
        cctx = contexts[level, checksum] = zstandard.ZstdCompressor(level=level, write_checksum=checksum)
    return cctx


def zstd_decompressor():
    """This thread's zstd decompression context."""
    contexts = _contexts()
    dctx = contexts.get(None)
    if dctx is None:
        dctx = contexts[None] = zstandard.ZstdDecompressor()
    return dctx


def _contexts() -> dict:
    contexts = getattr(_local, "contexts", None)
    if contexts is None:
        contexts = _local.contexts = {}
    return contexts


def digest_at(digests, i: int) -> bytes:
    """Chunk i's digest in a manifest's digest array."""
    return bytes(digests[i * DIGEST_SIZE:(i + 1) * DIGEST_SIZE])


def open_manifest(blob: bytes, expected: bytes) -> Manifest:
    """The Manifest of a stored blob, checked against its digest; BadManifest if it fails."""
    if digest(blob) != expected:
        raise BadManifest("its manifest fails its hash")
    return decode_manifest(blob)


def manifest_keys(blob: bytes, expected: bytes) -> set:
    """Every key a stored manifest refers to (ZERO included), the blob checked against its digest,
    without building its patches: what compaction needs of every checkpoint (a manifest of the
    benchmark's 256 MiB took ~7 ms to decode, an auto ring holds 100 of them)."""
    if digest(blob) != expected:
        raise BadManifest("its manifest fails its hash")
    _, digests, layers, _ = _sections(blob)
    keys = {digests[k:k + DIGEST_SIZE] for k in range(0, len(digests), DIGEST_SIZE)}
    for _, _, entries in layers:
        keys.update(key for _, _, key, _ in _PATCH.iter_unpack(entries))
    return keys


def decode_manifest(blob: bytes) -> Manifest:
    """The Manifest of a blob (version 1 to 5); BadManifest when it does not parse."""
    layout, digests, layers, version = _sections(blob)
    chunk_size, count = layout.chunk_size, layout.count
    patches = {}                # its own dicts: nothing else has them until this returns
    for _, _, entries in layers:
        prev, pages = (-1, -1), None
        for i, k, place in _ENTRY.iter_unpack(entries):
            # Chunks in order; each page once and in order, but in version 4's one layer; a RESET
            # alone for its chunk (version 5).
            if i < prev[0] or i >= count:
                raise BadManifest("its manifest has a bad patch")
            if i == prev[0]:
                if k <= prev[1] and version != 4 or prev[1] == RESET or k == RESET:
                    raise BadManifest("its manifest has a bad patch")
            else:
                a, b = layout.extent(i)
                window = a - a % chunk_size
                if not patchable(layout, a, b):
                    raise BadManifest("its manifest has a bad patch")
                if k == RESET and version >= 5:
                    if place != ZERO_PLACE:
                        raise BadManifest("its manifest has a bad patch")
                    patches.pop(i, None)
                    prev = (i, k)
                    continue
                pages = patches.get(i)
                if pages is None:
                    pages = patches[i] = {}
            if not (a <= window + k * PAGE and window + (k + 1) * PAGE <= b):
                raise BadManifest("its manifest has a bad patch")
            pages[k] = place
            prev = (i, k)
    return Manifest(layout, digests, patches,
                    [(n, frame) for n, frame, _ in layers] if version >= 5 else None)


def _sections(blob: bytes) -> tuple:
    """(Layout, digest array, [(entry count, stored frame, patch entries)] of each layer, version)
    of a manifest blob, its sizes checked; BadManifest when it does not parse. Before version 5
    there is one layer or none, its frame None (version 2 does not compress)."""
    if len(blob) < _HEADER.size:
        raise BadManifest("its manifest is truncated")
    magic, version, dsize, _, chunk_size, n = _HEADER.unpack_from(blob)
    if magic != _MAGIC or version not in (1, 2, 3, 4, _VERSION) or dsize != DIGEST_SIZE or chunk_size == 0:
        raise BadManifest(f"its manifest header is not version 1 to {_VERSION}")
    off = _HEADER.size + n * _REGION.size
    if len(blob) < off:
        raise BadManifest("its manifest is truncated")
    regions = [_REGION.unpack_from(blob, _HEADER.size + k * _REGION.size) for k in range(n)]
    try:
        layout = Layout(regions, chunk_size)
    except ValueError as e:
        raise BadManifest(str(e)) from None
    end = off + layout.count * DIGEST_SIZE
    digests = blob[off:end]
    if version == 1:
        if len(blob) != end:
            raise BadManifest("its manifest digest count does not match its regions")
        return layout, digests, [], version
    if len(blob) < end + _COUNT.size:
        raise BadManifest("its manifest is truncated")
    (count,) = _COUNT.unpack_from(blob, end)
    off = end + _COUNT.size
    # Each patches a page of its own; from version 4 there are at most twice as many as pages.
    if count > layout.size // PAGE * (2 if version >= 4 else 1):
        raise BadManifest("its manifest's patch count does not match its regions")
    if version == 2 or count == 0:
        if len(blob) != off + count * _PATCH.size:
            raise BadManifest("its manifest's patch count does not match its size")
        return layout, digests, [(count, None, blob[off:])] if count else [], version
    if version >= 5:
        (n,), off = _field(blob, off, _COUNT)
        if not 0 < n <= MAX_LAYERS:
            raise BadManifest("its manifest's layer count is out of bounds")
    else:
        n = 1                       # one layer: a frame after its "<I" stored length
    layers = []
    for _ in range(n):
        if version >= 5:
            (entries, stored), off = _field(blob, off, _LAYER)
        else:
            ((stored,), off), entries = _field(blob, off, _COUNT), count
        frame = blob[off:off + stored]
        if len(frame) != stored or not 0 < entries <= count:
            raise BadManifest("its manifest's patch section does not match its size")
        off += stored
        count -= entries
        layers.append((entries, frame if version >= 5 else None, _unpacked(frame, entries * _PATCH.size)))
    if off != len(blob) or count:
        raise BadManifest("its manifest's patch section does not match its size")
    return layout, digests, layers, version


def _field(blob: bytes, off: int, fields: struct.Struct) -> tuple:
    """(fields unpacked at blob[off:], the offset after them); BadManifest if the blob ends first."""
    if len(blob) < off + fields.size:
        raise BadManifest("its manifest is truncated")
    return fields.unpack_from(blob, off), off + fields.size


def _unpacked(frame: bytes, size: int) -> bytes:
    """The `size` bytes of patch entries in the zstd `frame`, which must say it holds exactly
    `size` bytes; BadManifest when they aren't there."""
    try:
        if zstandard.frame_content_size(frame) != size:
            raise BadManifest("its manifest's patch count does not match its patches")
        entries = zstd_decompressor().decompress(frame, max_output_size=size)
    except zstandard.ZstdError:
        raise BadManifest("its manifest's patches do not decompress") from None
    if len(entries) != size:
        raise BadManifest("its manifest's patch count does not match its patches")
    return entries
