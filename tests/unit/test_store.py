"""Scenarios for the checkpoint store: what a user of `checkpoint save/load/list/delete` relies on.

Runs without gdb: memory is a bytearray behind a read(addr, length) function that counts its calls."""

import multiprocessing
import os
import random
import shutil
import sqlite3
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zstandard

from gdb_checkpoint.ranges import merge
from gdb_checkpoint.store import (ZERO, BadNameError, CorruptCheckpointError, Store, StoreError,
                                  UnknownCheckpointError, chunk_digest, default_store_dir)
from gdb_checkpoint.store.index import Index
from gdb_checkpoint.store.layout import (BadManifest, Layout, Manifest, decode_manifest, digest, encode_manifest,
                                         PLACE, RESET, ZERO_PLACE, _ENTRY, _sections, manifest_keys,
                                         plan_incremental)
from gdb_checkpoint.store.store import PREPARE_ROUND

KiB, MiB = 1 << 10, 1 << 20
PAGE = 4 * KiB
CHUNK = 64 * KiB
BASE = 0x7F00_0000_0000
PROG = "5f0c6d2e-build-id"


def noise(size, seed):
    """Incompressible bytes, fast: a random MiB tiled, every page stamped so no two chunks are equal."""
    block = random.Random(seed).randbytes(MiB)
    out = bytearray(block * (size // MiB + 1))
    del out[size:]
    for off in range(0, size, PAGE):
        struct.pack_into("<QQ", out, off, seed, off)
    return out


class Memory:
    """A fake process: bytes at addresses, and a log of every read() the store makes (`mine`: of
    those made by the thread that made this Memory, not by the store's helper)."""

    def __init__(self, size, seed=1, base=BASE):
        self.base = base
        self.data = noise(size, seed)
        self.calls = []
        self.mine = []
        self._thread = threading.get_ident()

    def _log(self, call):
        self.calls.append(call)
        if threading.get_ident() == self._thread:
            self.mine.append(call)

    @property
    def regions(self):
        return [(self.base, self.base + len(self.data))]

    def read(self, addr, length):
        self._log((addr, length))
        off = addr - self.base
        assert 0 <= off and off + length <= len(self.data), "store read outside the regions"
        return bytes(self.data[off:off + length])

    def read_many(self, ranges, into=None):
        """procmem.read_many's contract: the ranges one after another in `into` (or a new buffer)."""
        self._log(("many", list(ranges)))
        view = memoryview(bytearray(sum(n for _, n in ranges)) if into is None else into)
        out, at = [], 0
        for addr, n in ranges:
            off = addr - self.base
            assert 0 <= off and off + n <= len(self.data), "store read outside the regions"
            view[at:at + n] = self.data[off:off + n]
            out.append(view[at:at + n])
            at += n
        return out

    def poke(self, addr, payload):
        off = addr - self.base
        self.data[off:off + len(payload)] = payload


def save(store, name, mem, **kw):
    kw.setdefault("info", {"pc": 0x401000, "function": "main"})
    kw.setdefault("state", b"registers of " + str(name).encode())
    return store.save(PROG, name, regions=mem.regions, read=mem.read, **kw)


def _read_runs(cp, ranges):
    """cp.read_runs(ranges) joined back into [(lo, hi, bytes)] runs of touching pieces, after
    checking the pieces are in address order, apart or touching, and never empty."""
    runs = []
    for at, data, offset, n in cp.read_runs(ranges):
        data = memoryview(data)[offset:offset + n]
        assert len(data) == n > 0 and (not runs or at >= runs[-1][1])
        if runs and runs[-1][1] == at:
            lo, _, parts = runs[-1]
            runs[-1] = (lo, at + len(data), parts + [bytes(data)])
        else:
            runs.append((at, at + len(data), [bytes(data)]))
    return [(lo, hi, b"".join(parts)) for lo, hi, parts in runs]


def memory_of(store, name, program=PROG):
    ((start, data),) = store.load(program, name).read_all()
    return start, data


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "store") as s:
        yield s


# -- basics -------------------------------------------------------------------------------------

def test_a_saved_checkpoint_loads_back_byte_for_byte_with_its_info_and_state(store):
    mem = Memory(3 * MiB + 5 * PAGE, base=BASE + 3 * PAGE)     # not chunk-aligned at either end
    mem.poke(mem.base + MiB, bytes(MiB))                        # a zero stretch
    info = {"pc": 0x401136, "function": "main", "threads": [1, 2], "time": 12.5}
    result = save(store, "first", mem, info=info, state=b"\x00regs\xff" * 1000)
    assert result.logical_size == len(mem.data) and result.read_bytes == len(mem.data)
    assert 0 < result.new_bytes < len(mem.data)                 # the zero MiB costs nothing
    cp = store.load(PROG, "first")
    assert (cp.name, cp.info, cp.state) == ("first", info, b"\x00regs\xff" * 1000)
    assert cp.regions == mem.regions
    assert memory_of(store, "first") == (mem.base, mem.data)


def test_many_regions_and_partial_reads_come_back_exactly(store):
    a, b = Memory(MiB, seed=2), Memory(200 * KiB, seed=3, base=BASE + 16 * MiB + PAGE)
    regions = a.regions + b.regions

    def read(addr, length):
        return (a if addr < b.base else b).read(addr, length)

    store.save(PROG, "two-regions", regions=regions, read=read, info={}, state=b"")
    cp = store.load(PROG, "two-regions")
    assert [(s, bytes(d)) for s, d in cp.read_all()] == [(a.base, a.data), (b.base, b.data)]
    ranges = [(a.base + CHUNK - 10, a.base + 3 * CHUNK + 7), (b.base + 5, b.base + 6)]
    got = cp.read(ranges)
    assert got[0] == (ranges[0][0], a.data[CHUNK - 10:3 * CHUNK + 7])
    assert got[1] == (b.base + 5, b.data[5:6])
    with pytest.raises(ValueError, match="not inside checkpoint 'two-regions'"):
        cp.read([(a.base + MiB - 1, a.base + MiB + 1)])         # runs past the region


def test_list_and_names_show_checkpoints_in_creation_order(store):
    mem = Memory(256 * KiB)
    for k, name in enumerate(["zeta", "alpha", "mid"]):
        save(store, name, mem, info={"pc": k})
    entries = store.list(PROG)
    assert [e.name for e in entries] == ["zeta", "alpha", "mid"] == store.names(PROG)
    assert [e.info for e in entries] == [{"pc": 0}, {"pc": 1}, {"pc": 2}]
    assert entries[0].logical_size == 256 * KiB and entries[0].new_bytes > 256 * KiB
    assert entries[1].new_bytes < 1 * KiB                       # same memory: deduplicated
    assert entries[0].created <= entries[1].created <= entries[2].created <= time.time()
    assert store.list("other-program") == [] and store.names("other-program") == []


@pytest.mark.parametrize("name", ["", "-x", ".hidden", "a b", "a/b", "x" * 65, "caf\u00e9", "a\n", 7])
def test_a_bad_name_is_refused_before_anything_is_read(store, name):
    mem = Memory(64 * KiB)
    with pytest.raises(BadNameError, match="bad checkpoint name"):
        save(store, name, mem)
    assert mem.calls == [] and store.names(PROG) == []


@pytest.mark.parametrize("name", ["a", "A.b_c-9", "9", "x" * 64, "before-rcore"])
def test_good_names_are_accepted(store, name):
    save(store, name, Memory(PAGE))
    assert store.names(PROG) == [name]


def test_saving_an_existing_name_replaces_it(store):
    save(store, "x", Memory(MiB, seed=1), info={"v": 1})
    save(store, "y", Memory(MiB, seed=2))
    newer = Memory(MiB, seed=3)
    assert save(store, "x", newer, info={"v": 2}).replaced
    assert store.names(PROG) == ["y", "x"]                      # the new one is the newest
    assert store.load(PROG, "x").info == {"v": 2}
    assert memory_of(store, "x")[1] == newer.data


def test_replacing_a_checkpoint_over_and_over_keeps_the_store_near_its_live_size(store):
    one = None
    for k in range(8):                                          # like an automatic `before-rcore`
        r = save(store, "before-rcore", Memory(2 * MiB, seed=k))
        one = one or r.new_bytes
    assert store.disk_usage() < 3 * one + 256 * KiB             # not 8x: replaced data is reclaimed
    assert memory_of(store, "before-rcore")[1] == Memory(2 * MiB, seed=7).data


def test_unknown_names_raise_unknown_checkpoint_error(store):
    save(store, "a", Memory(PAGE))
    with pytest.raises(UnknownCheckpointError, match="'nope'"):
        store.load(PROG, "nope")
    with pytest.raises(UnknownCheckpointError, match="'a'"):
        store.load("another-program", "a")
    with pytest.raises(UnknownCheckpointError, match="'nope'"):
        store.delete(PROG, ["a", "nope"])
    assert store.names(PROG) == ["a"]                           # all or nothing
    with pytest.raises(UnknownCheckpointError, match="'gone'"):
        save(store, "b", Memory(PAGE), base="gone", dirty=[])


def test_a_name_given_twice_to_delete_is_deleted_once(store):
    save(store, "ok", Memory(PAGE))
    save(store, "other", Memory(PAGE, seed=2))
    store.delete(PROG, ["ok", "ok"])
    assert store.names(PROG) == ["other"]
    with pytest.raises(UnknownCheckpointError, match="'ok'"):
        store.load(PROG, "ok")


def test_errors_are_one_line_and_share_a_base_class():
    for cls in (CorruptCheckpointError, UnknownCheckpointError, BadNameError):
        assert issubclass(cls, StoreError)


def test_the_store_never_imports_gdb():
    code = ("import sys, gdb_checkpoint.store as s; s.Store; "
            "assert 'gdb' not in sys.modules, 'gdb imported'")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_default_store_dir_follows_the_environment():
    assert str(default_store_dir({"GDB_CHECKPOINT_DIR": "/x/y", "XDG_STATE_HOME": "/s"})) == "/x/y"
    assert str(default_store_dir({"XDG_STATE_HOME": "/s", "HOME": "/h"})) == "/s/gdb-checkpoint"
    assert str(default_store_dir({"XDG_STATE_HOME": "rel", "HOME": "/h"})) == \
        "/h/.local/state/gdb-checkpoint"                        # relative XDG paths are ignored
    assert str(default_store_dir({"HOME": "/h"})) == "/h/.local/state/gdb-checkpoint"


# -- files on disk -------------------------------------------------------------------------------

def test_store_files_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        with Store(tmp_path / "deep" / "store") as s:
            save(s, "a", Memory(MiB))
            save(s, "b", Memory(MiB, seed=2))
            s.delete(PROG, ["a"])
            found = {}
            for d, dirs, files in os.walk(s.path):
                found[d] = stat.S_IMODE(os.stat(d).st_mode)
                for f in files:
                    found[os.path.join(d, f)] = stat.S_IMODE(os.stat(os.path.join(d, f)).st_mode)
    finally:
        os.umask(old)
    names = {os.path.basename(p) for p in found}
    assert {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "lock", "packs"} <= names
    assert any(p.endswith(".pack") for p in found)
    wrong = {p: oct(m) for p, m in found.items() if m != (0o700 if os.path.isdir(p) else 0o600)}
    assert wrong == {}


def test_a_newer_store_format_is_refused_with_a_clear_error(tmp_path):
    Store(tmp_path / "s").close()
    con = sqlite3.connect(tmp_path / "s" / "index.sqlite")
    with con:
        con.execute("UPDATE meta SET value = '7' WHERE key = 'format_version'")
    con.close()
    with pytest.raises(StoreError, match="has format 7, newer than this gdb-checkpoint"):
        Store(tmp_path / "s")


def _older_store(path, version, pack, rows, manifest, state_key, state_size):
    """Make the store at `path` one of format `version` holding checkpoint 'old' of PROG, 2 chunks:
    one pack file of bytes `pack`, whose records are `rows` [(key, offset, size)]."""
    from gdb_checkpoint.store import layout
    (path / "packs" / "00000000000000aa.pack").write_bytes(pack)
    con = sqlite3.connect(path / "index.sqlite")
    with con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (str(version),))
        con.execute("INSERT INTO packs VALUES (1, '00000000000000aa.pack')")
        con.executemany("INSERT INTO chunks VALUES (?, 1, ?, ?)", rows)
        con.execute("INSERT INTO checkpoints (program, name, created, info, logical_size, new_bytes,"
                    " state_digest, state_size, manifest, manifest_digest)"
                    " VALUES (?, 'old', 0, '{}', ?, 0, ?, ?, ?, ?)",
                    (PROG, 2 * CHUNK, state_key, state_size, manifest, layout.digest(manifest)))
    con.close()


def test_a_format_1_store_is_still_read_and_marked_format_6(tmp_path):
    # Built by hand as format 1 wrote it: a version 1 pack of whole-chunk records keyed by the
    # digest of all their bytes (one zstd, one raw), a version 1 manifest, meta format_version 1.
    import zstandard

    from gdb_checkpoint.store import layout, packs
    mem = Memory(2 * CHUNK)
    Store(tmp_path / "s").close()
    chunks = [bytes(mem.data[:CHUNK]), bytes(mem.data[CHUNK:])]
    keys = [layout.digest(c) for c in chunks]
    state = b"registers of old"
    records = [(keys[0], packs.ZSTD, chunks[0], zstandard.ZstdCompressor().compress(chunks[0])),
               (keys[1], packs.RAW, chunks[1], chunks[1]),
               (layout.digest(state), packs.RAW, state, state)]
    blob = bytearray(packs.HEADER.pack(packs.MAGIC, 1, 0))
    rows = []
    for key, codec, raw, stored in records:
        rows.append((key, len(blob), packs.RECORD.size + len(stored)))
        blob += packs.RECORD.pack(key, codec, len(raw), len(stored)) + stored
    manifest = (struct.pack("<4sBBHII", b"GCKM", 1, 20, 0, CHUNK, 1)
                + struct.pack("<QQ", *mem.regions[0]) + b"".join(keys))
    _older_store(tmp_path / "s", 1, blob, rows, manifest, layout.digest(state), len(state))
    with Store(tmp_path / "s") as store:
        old = store.load(PROG, "old")
        assert old.state == state and memory_of(store, "old")[1] == mem.data
        assert old.read([(mem.base + CHUNK - 3, mem.base + CHUNK + 3)])[0][1] == \
            mem.data[CHUNK - 3:CHUNK + 3]
        mem.poke(mem.base + 5, b"new")
        save(store, "new", mem)                 # written in format 6 beside it
        assert memory_of(store, "new")[1] == mem.data and memory_of(store, "old")[1] != mem.data
        assert store.index.con.execute(
            "SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0] == "6"


def test_a_format_2_store_is_still_read_and_its_blocks_checked_by_digest(tmp_path):
    # Built by hand as format 2 wrote it: version 2 pack, records of codec 2 whose blocks are raw,
    # zstd frames without a checksum, or zero, each checked against its SHA-256 digest.
    import zstandard

    from gdb_checkpoint.store import layout, packs
    mem = Memory(2 * CHUNK)
    mem.data[CHUNK + 3 * layout.BLOCK:] = bytes(layout.BLOCK)       # a zero block in chunk 1
    Store(tmp_path / "s").close()

    def record(data):
        entries, frames = [], []
        for at in range(0, len(data), layout.BLOCK):
            block = bytes(data[at:at + layout.BLOCK])
            d = layout.block_digest(block)
            packed = zstandard.ZstdCompressor().compress(block)
            codec, frame = ((packs.ZERO_BLOCK, b"") if d == layout.ZERO else
                            (packs.ZSTD, packed) if len(packed) < len(block) else (packs.RAW, block))
            entries.append(packs.ENTRY.pack(d, codec, len(frame)))
            frames.append(frame)
        key = layout.content_key([packs.ENTRY.unpack(e)[0] for e in entries])
        stored = b"".join(entries + frames)
        return key, packs.RECORD.pack(key, packs.BLOCKS, len(data), len(stored)) + stored

    state = b"registers of old"
    blob = bytearray(packs.HEADER.pack(packs.MAGIC, 2, 0))
    rows, keys = [], []
    for data in (mem.data[:CHUNK], mem.data[CHUNK:], state):
        key, rec = record(data)
        rows.append((key, len(blob), len(rec)))
        keys.append(key)
        blob += rec
    assert {packs.ENTRY.unpack_from(blob, o + packs.RECORD.size)[1] for _, o, _ in rows} >= {packs.RAW}
    blob[rows[1][1] + rows[1][2] - 1] ^= 1      # damage the last byte of chunk 1's last stored block
    manifest = (struct.pack("<4sBBHII", b"GCKM", 2, 20, 0, CHUNK, 1) + struct.pack("<QQ", *mem.regions[0])
                + b"".join(keys[:2]) + struct.pack("<I", 0))
    _older_store(tmp_path / "s", 2, blob, rows, manifest, keys[2], len(state))
    with Store(tmp_path / "s") as store:
        old = store.load(PROG, "old")
        assert old.state == state
        assert old.read([(mem.base, mem.base + CHUNK + 2 * layout.BLOCK)])[0][1] == \
            mem.data[:CHUNK + 2 * layout.BLOCK]
        with pytest.raises(CorruptCheckpointError, match="'old'"):
            old.read([(mem.base + 2 * CHUNK - layout.BLOCK - 10, mem.base + 2 * CHUNK - layout.BLOCK)])


def test_a_store_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("hi")
    with pytest.raises(StoreError, match="not a folder"):
        Store(tmp_path / "f")


# -- durability ----------------------------------------------------------------------------------

def test_packs_are_fsynced_before_the_index_commit_that_names_them_and_its_wal_after(store, monkeypatch):
    events = []
    real_fsync, real_commit = os.fsync, Index.commit_save

    def fsync(fd):
        events.append(("fsync " + os.path.basename(os.readlink(f"/proc/self/fd/{fd}")),
                       threading.current_thread().name))
        real_fsync(fd)

    def commit(self, row, pack, chunks, healed=()):
        events.append(("commit " + pack, threading.current_thread().name))
        return real_commit(self, row, pack, chunks, healed)

    statements = []
    store.index.con.set_trace_callback(statements.append)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Index, "commit_save", commit)
    for name in ("a", "b"):
        save(store, name, Memory(MiB, seed=len(name) + ord(name)))
        store._wait_wal()
    done = [what for what, _ in events]
    commits = [n for n, what in enumerate(done) if what.startswith("commit ")]
    for n in commits:
        pack = done[n].split()[1]
        assert pack.endswith(".pack") and done.index("fsync " + pack) < n
    # Each commit's WAL is synced after it, by the "wal" thread, before the next save's commit.
    wal = [n for n, (what, thread) in enumerate(events)
           if what == "fsync index.sqlite-wal" and thread.startswith("gdb-checkpoint-wal")]
    assert len(wal) == 2 and commits[0] < wal[0] < commits[1] < wal[1]
    # The commit itself doesn't sync (the rest of the index's do), and the connection says so.
    inserts = [n for n, sql in enumerate(statements) if sql.startswith("INSERT INTO checkpoints")]
    normal = [n for n, sql in enumerate(statements) if sql == "PRAGMA synchronous=NORMAL"]
    full = [n for n, sql in enumerate(statements) if sql == "PRAGMA synchronous=FULL"]
    assert len(inserts) == len(normal) == len(full) == 2
    assert all(a < i < f for a, i, f in zip(normal, inserts, full))
    assert store.index.con.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_the_wal_is_copied_into_the_index_in_a_thread_of_its_own_not_by_a_save_s_commit(tmp_path, monkeypatch):
    from gdb_checkpoint.store import index as index_module
    from gdb_checkpoint.store import store as store_module
    ran = []
    real = Index.checkpoint_wal

    def checkpoint_wal(self):
        ran.append(threading.current_thread().name)
        real(self)

    monkeypatch.setattr(Index, "checkpoint_wal", checkpoint_wal)
    monkeypatch.setattr(store_module, "WAL_CHECKPOINT_BYTES", 1)      # after every save
    path = tmp_path / "s"
    mem = Memory(MiB)
    with Store(path) as store:
        assert store.index.con.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == \
            index_module.WAL_AUTOCHECKPOINT
        save(store, "a", mem)
        store._wait_wal()
        # Copied: index.sqlite alone, without its WAL, already names the checkpoint.
        alone = tmp_path / "alone.sqlite"
        alone.write_bytes((path / "index.sqlite").read_bytes())
        con = sqlite3.connect(alone)
        assert [r[0] for r in con.execute("SELECT name FROM checkpoints")] == ["a"]
        con.close()
        save(store, "b", mem)
    assert len(ran) == 2 and all(name.startswith("gdb-checkpoint-wal") for name in ran)
    with Store(path) as store:
        assert memory_of(store, "b")[1] == mem.data


def _die_mid_save(path, where):
    s = Store(path)
    mem = Memory(6 * MiB, seed=9)
    if where == "commit":
        Index.commit_save = lambda *a: os._exit(3)              # packs written and synced, no commit
        read = mem.read
    else:
        def read(addr, length):
            if len(mem.calls) == 2:
                os._exit(3)                                     # half the chunks read
            return mem.read(addr, length)
    s.save(PROG, "doomed", regions=mem.regions, read=read, info={}, state=b"s")


@pytest.mark.parametrize("where", ["read", "commit"])
def test_a_crash_mid_save_leaves_the_previous_checkpoints_intact(tmp_path, where):
    path = tmp_path / "store"
    with Store(path) as s:
        save(s, "good", Memory(2 * MiB, seed=1))
    child = multiprocessing.get_context("fork").Process(target=_die_mid_save, args=(path, where))
    child.start()
    child.join()
    assert child.exitcode == 3
    with Store(path) as s:
        assert s.names(PROG) == ["good"]
        assert memory_of(s, "good")[1] == Memory(2 * MiB, seed=1).data
        save(s, "after", Memory(2 * MiB, seed=2))               # the store still takes saves
        assert memory_of(s, "after")[1] == Memory(2 * MiB, seed=2).data
        s.compact()
        assert s.disk_usage() < 5 * MiB                         # the dead tail is gone


def test_a_failing_read_commits_nothing(store):
    save(store, "a", Memory(MiB))
    mem = Memory(3 * MiB, seed=2)                               # read in 1 MiB calls

    def read(addr, length):
        if mem.calls:
            raise OSError("Cannot access memory at address 0x%x" % addr)
        return mem.read(addr, length)

    with pytest.raises(OSError, match="Cannot access memory"):
        store.save(PROG, "b", regions=mem.regions, read=read, info={}, state=b"")
    with pytest.raises(ValueError, match="returned 3 bytes"):
        store.save(PROG, "b", regions=mem.regions, read=lambda a, n: b"abc", info={}, state=b"")
    assert store.names(PROG) == ["a"]


# -- integrity -----------------------------------------------------------------------------------

def _flip(store, digest, where=0.5):
    """Flip one byte of the record holding `digest`, inside its payload."""
    pack, offset, size = store.index.locations([digest])[digest]
    with open(store.packs_dir / pack, "r+b") as f:
        f.seek(offset + int(size * where) if where else offset)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x40]))


def test_a_flipped_byte_in_a_pack_fails_only_the_checkpoints_that_use_it(store):
    a, b = Memory(MiB, seed=1), Memory(MiB, seed=2)
    save(store, "a", a)
    save(store, "b", b)
    victim_addr, digest = sorted(store.load(PROG, "a").chunk_map().items())[5]
    _flip(store, digest)
    cp = store.load(PROG, "a")                                  # info and state are still fine
    with pytest.raises(CorruptCheckpointError,
                       match=rf"checkpoint 'a' is corrupt: chunk {digest.hex()[:16]} in pack "
                             r"[0-9a-f]{16}\.pack fails its hash"):
        cp.read_all()
    with pytest.raises(CorruptCheckpointError):
        cp.read([(victim_addr, victim_addr + CHUNK)])
    # Reads of part of the chunk check only the blocks they need: each page of it comes back
    # right, or not at all; the damaged block's pages fail.
    failed = 0
    for page in range(victim_addr, victim_addr + CHUNK, PAGE):
        try:
            ((_, got),) = cp.read([(page, page + PAGE)])
        except CorruptCheckpointError:
            failed += 1
        else:
            assert got == a.data[page - a.base:page - a.base + PAGE]
    assert 0 < failed < CHUNK // PAGE
    # A restore's read: the same verdict, page by page, and nothing returned when it fails.
    failed_runs = 0
    for page in range(victim_addr, victim_addr + CHUNK, PAGE):
        try:
            pieces = _read_runs(store.load(PROG, "a"), [(page, page + PAGE)])
        except CorruptCheckpointError:
            failed_runs += 1
        else:
            assert pieces == [(page, page + PAGE, a.data[page - a.base:page - a.base + PAGE])]
    assert failed_runs == failed
    with pytest.raises(CorruptCheckpointError, match="fails its hash"):
        store.load(PROG, "a").read_runs([(a.base, a.base + PAGE), (victim_addr, victim_addr + CHUNK)])
    assert cp.read([(a.base, victim_addr)]) == [(a.base, a.data[:victim_addr - a.base])]
    assert memory_of(store, "b")[1] == b.data


def test_a_damaged_record_header_or_missing_pack_is_reported_as_corrupt(store):
    memory = Memory(MiB)
    save(store, "a", memory)
    digest = next(iter(store.load(PROG, "a").chunk_map().values()))
    _flip(store, digest, where=0)                               # the digest in the record header
    # The Store that wrote the records knows their tables and reads only blocks, each checked:
    # what it returns is still right. A later session reads and checks the header.
    assert store.load(PROG, "a").read_all() == [(memory.base, memory.data)]
    with Store(store.path) as later:
        with pytest.raises(CorruptCheckpointError, match="checkpoint 'a' is corrupt: .* damaged header"):
            later.load(PROG, "a").read_all()
    with Store(store.path) as later:                            # a restore's read, the same
        with pytest.raises(CorruptCheckpointError, match="checkpoint 'a' is corrupt: .* damaged header"):
            later.load(PROG, "a").read_runs([(memory.base + 100, memory.base + 200)])
    cp = store.load(PROG, "a")
    for pack in store.packs_dir.iterdir():
        os.rename(pack, pack.with_suffix(".gone"))              # gone after the load, before the read
    with pytest.raises(CorruptCheckpointError, match=r"checkpoint 'a' is corrupt: its pack .* missing"):
        cp.read_runs([(memory.base, memory.base + PAGE)])
    for pack in store.packs_dir.iterdir():
        os.rename(pack, pack.with_suffix(".pack"))
    for pack in store.packs_dir.iterdir():
        pack.unlink()
    with pytest.raises(CorruptCheckpointError, match=r"checkpoint 'a' is corrupt: its pack .* missing"):
        store.load(PROG, "a")


def test_a_save_after_a_damaged_read_stores_the_content_again_and_heals_the_old_checkpoint(tmp_path):
    path, memory = tmp_path / "store", Memory(MiB)
    with Store(path) as s:
        save(s, "a", memory)
        victim = sorted(s.load(PROG, "a").chunk_map().items())[5][1]
        _flip(s, victim)
    with Store(path) as later:
        with pytest.raises(CorruptCheckpointError, match="checkpoint 'a' is corrupt"):
            later.load(PROG, "a").read_all()
        assert later.index.bad() == {victim}
        r = save(later, "b", memory)                # the same memory: the damaged record's content
        assert r.new_bytes > 0
    with Store(path) as fresh:                      # another session: nothing remembered
        assert memory_of(fresh, "b") == (memory.base, memory.data)
        assert memory_of(fresh, "a") == (memory.base, memory.data)      # a names that content too
        assert fresh.index.bad() == set()


def test_a_pack_cut_short_puts_every_record_past_its_end_aside(tmp_path):
    path, memory = tmp_path / "store", Memory(MiB)
    with Store(path) as s:
        save(s, "a", memory)
        places = s.index.locations(set(s.load(PROG, "a").chunk_map().values()))
        (pack,) = {p for p, _, _ in places.values()}
        cut = sorted(off for _, off, _ in places.values())[4] + 10        # inside the fifth record
        os.truncate(s.packs_dir / pack, cut)
        lost = {d for d, (_, off, size) in places.items() if off + size > cut}
    with Store(path) as later:
        with pytest.raises(CorruptCheckpointError, match="checkpoint 'a' is corrupt: .* cut short"):
            later.load(PROG, "a").read_all()
        bad = later.index.bad()
        assert lost <= bad and len(lost) == len(places) - 4         # and the state record, past it too
        assert all(off + size > cut for _, off, size in later.index.locations(bad).values())
        save(later, "b", memory)
    with Store(path) as fresh:
        assert memory_of(fresh, "b") == (memory.base, memory.data)


def test_a_save_against_a_base_that_names_a_damaged_record_saves_whole(tmp_path):
    path, mem = tmp_path / "store", Memory(MiB)
    addr = mem.base + 5 * PAGE
    with Store(path) as s:
        save(s, "a", mem)
        mem.poke(addr, b"x" * PAGE)
        save(s, "b", mem, base="a", dirty=[(addr, addr + PAGE)])
        carried = sorted(s.load(PROG, "b").chunk_map().items())[-1][1]     # far from the page
        _flip(s, carried)
    with Store(path) as later:
        with pytest.raises(CorruptCheckpointError, match="checkpoint 'b' is corrupt"):
            later.load(PROG, "b").read_all()
        mem.poke(addr, b"y" * PAGE)
        r = save(later, "c", mem, base="b", dirty=[(addr, addr + PAGE)])
        assert r.read_bytes == MiB                  # whole: the base would hand its damage on
    with Store(path) as fresh:
        assert memory_of(fresh, "c") == (mem.base, mem.data)


def test_a_corrupt_state_blob_fails_the_load(store):
    save(store, "a", Memory(MiB), state=os.urandom(5000))
    save(store, "b", Memory(MiB), state=os.urandom(5000))
    _flip(store, store.index.checkpoint(PROG, "a")["state_digest"])
    with pytest.raises(CorruptCheckpointError, match="checkpoint 'a' is corrupt: chunk .* fails its hash"):
        store.load(PROG, "a")
    assert len(store.load(PROG, "b").state) == 5000


def test_a_corrupt_manifest_fails_the_load_and_stops_compaction_from_guessing(store):
    save(store, "a", Memory(MiB))
    save(store, "b", Memory(MiB, seed=2))
    manifest = bytearray(store.index.checkpoint(PROG, "a")["manifest"])
    manifest[-1] ^= 1
    with store.index.transaction() as con:
        con.execute("UPDATE checkpoints SET manifest = ? WHERE name = 'a'", (bytes(manifest),))
    with pytest.raises(CorruptCheckpointError, match="checkpoint 'a' is corrupt: its manifest"):
        store.load(PROG, "a")
    assert "checkpoint 'a' has a corrupt manifest" in store.delete(PROG, ["b"]).skipped


# -- sharing ---------------------------------------------------------------------------------------

def _writer(path, prefix, barrier):
    shared = noise(MiB, 4242)                   # both writers store these chunks at the same time
    s = Store(path)
    barrier.wait()
    for k in range(6):
        mine = noise(MiB, ord(prefix) + k)
        mem = Memory(2 * MiB)
        mem.data[:MiB], mem.data[MiB:] = mine, shared
        save(s, f"{prefix}{k}", mem, info={"k": k})
        if prefix == "b" and k % 2:
            s.delete(PROG, [f"b{k - 1}"])      # compaction while the other process saves
    s.close()


def test_two_processes_saving_at_once_do_not_corrupt_the_store(tmp_path):
    path = tmp_path / "store"
    Store(path).close()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    writers = [ctx.Process(target=_writer, args=(path, p, barrier)) for p in "ab"]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    assert [w.exitcode for w in writers] == [0, 0]
    with Store(path) as s:
        assert sorted(s.names(PROG)) == ["a0", "a1", "a2", "a3", "a4", "a5", "b1", "b3", "b5"]
        for name in s.names(PROG):
            k = int(name[1:])
            data = memory_of(s, name)[1]
            assert data[:MiB] == noise(MiB, ord(name[0]) + k), name
            assert data[MiB:] == noise(MiB, 4242), name
            assert s.load(PROG, name).info == {"k": k}


# -- space -----------------------------------------------------------------------------------------

def test_deleting_checkpoints_gives_their_space_back(store):
    first = save(store, "c0", Memory(4 * MiB, seed=0))
    for k in range(1, 10):
        save(store, f"c{k}", Memory(4 * MiB, seed=k))
    assert store.disk_usage() > 10 * first.new_bytes
    result = store.delete(PROG, [f"c{k}" for k in range(9)])
    assert result.skipped == "" and result.freed_bytes > 8 * first.new_bytes
    assert store.disk_usage() < 1.1 * first.new_bytes + 128 * KiB
    assert memory_of(store, "c9")[1] == Memory(4 * MiB, seed=9).data


def test_all_zero_memory_costs_nothing_and_identical_memory_is_stored_once(store):
    zeros = Memory(PAGE)
    zeros.data = bytearray(32 * MiB)
    r = save(store, "zeros", zeros, state=b"")
    assert r.new_bytes < KiB
    assert set(store.load(PROG, "zeros").chunk_map().values()) == {ZERO}
    assert memory_of(store, "zeros")[1] == bytes(32 * MiB)
    mem = Memory(4 * MiB)
    first = save(store, "a", mem)
    again = store.save("another-program", "a", regions=mem.regions, read=mem.read, info={},
                       state=b"registers of a")
    assert first.new_bytes > 4 * MiB and again.new_bytes == 0


def test_chunk_maps_show_what_changed_without_reading_memory(store):
    mem = Memory(MiB)
    save(store, "before", mem)
    mem.poke(mem.base + 300 * KiB, b"changed")
    save(store, "after", mem)
    before, after = store.load(PROG, "before").chunk_map(), store.load(PROG, "after").chunk_map()
    assert before.keys() == after.keys()
    assert [a for a in before if before[a] != after[a]] == [mem.base + 256 * KiB]
    live = {a: chunk_digest(mem.data[a - mem.base:a - mem.base + CHUNK]) for a in after}
    assert live == after                                        # live memory compares the same way


def test_a_hundred_checkpoints_of_a_changing_64mib_process_take_under_twice_the_first(store):
    mem = Memory(64 * MiB)
    first = save(store, "ck0", mem)
    rng = random.Random(100)
    undo = []
    for k in range(1, 100):
        addr = mem.base + rng.randrange(len(mem.data) // PAGE) * PAGE
        undo.append((addr, bytes(mem.data[addr - mem.base:addr - mem.base + PAGE])))
        mem.poke(addr, os.urandom(PAGE))
        save(store, f"ck{k}", mem, base=f"ck{k - 1}", dirty=[(addr, addr + PAGE)])
    usage = store.disk_usage()
    print(f"\n100 checkpoints of 64 MiB: {usage / MiB:.1f} MiB on disk, "
          f"{usage / first.new_bytes:.3f}x the first ({first.new_bytes / MiB:.1f} MiB)")
    assert usage < 2 * first.new_bytes
    assert memory_of(store, "ck99")[1] == mem.data
    # No base: every chunk is read and keyed whole. Those the chain stored as a base with patched
    # pages are stored whole now (at most 99 of them); every other one dedupes.
    full = save(store, "full", mem)
    assert full.new_bytes < 99 * (CHUNK + KiB) and full.read_bytes == len(mem.data)
    assert save(store, "full-again", mem).new_bytes < 200
    for addr, old in reversed(undo[50:]):
        mem.poke(addr, old)
    assert memory_of(store, "ck50")[1] == mem.data


def test_an_incremental_save_reads_only_dirty_chunks_and_is_fast(store):
    mem = Memory(256 * MiB)
    full = save(store, "base", mem)
    print(f"\nfull save of 256 MiB: {full.seconds:.3f} s ({256 / full.seconds:.0f} MiB/s)")
    rng = random.Random(7)
    one_percent = len(mem.data) // 100 // PAGE * PAGE
    start = mem.base + rng.randrange(len(mem.data) // PAGE - 700) * PAGE
    pages = rng.sample(range(len(mem.data) // PAGE), one_percent // PAGE)
    cases = {"contiguous": [(start, start + one_percent)],
             "scattered": [(mem.base + p * PAGE, mem.base + (p + 1) * PAGE) for p in pages]}
    base = "base"
    for kind, dirty in cases.items():
        before = store.load(PROG, base).chunk_map()
        for lo, hi in dirty:
            mem.poke(lo, os.urandom(hi - lo))
        mem.calls.clear()
        r = save(store, kind, mem, base=base, dirty=dirty)
        print(f"incremental save, 1% of 256 MiB {kind}: {r.seconds * 1000:.1f} ms, "
              f"read {r.read_bytes / MiB:.1f} MiB in {len(mem.calls)} calls")
        touched = {(a // CHUNK) * CHUNK for lo, hi in dirty for a in range(lo, hi, PAGE)}
        dirty_pages = {a for lo, hi in dirty for a in range(lo, hi, PAGE)}
        read = {a for addr, n in mem.calls for a in range(addr, addr + n, PAGE)}
        assert dirty_pages <= read                              # every dirty page is read
        assert {a // CHUNK * CHUNK for a in read} == touched    # clean chunks are never read
        if kind == "scattered":     # one page in most chunks: pages are read, not their chunks
            assert read == dirty_pages
        after = store.load(PROG, kind).chunk_map()
        assert {a for a in after if after[a] != before[a]} == touched
        got = store.load(PROG, kind).read(dirty)
        assert all(d == mem.data[lo - mem.base:lo - mem.base + len(d)] for lo, d in got)
        base = kind
        if kind == "contiguous":
            assert r.seconds < 0.5          # aim: well under 50 ms; loose for slow CI machines


def test_chains_of_patched_saves_read_back_exactly_whatever_range_is_asked(store):
    # Random writes (whole pages, odd bytes, runs across chunks, zeroed pages) saved incrementally,
    # then random ranges of random checkpoints compared with copies taken at each save.
    rng = random.Random(11)
    mem = Memory(2 * MiB, base=BASE + 3 * PAGE)         # chunks cut short at both ends
    copies = {"c0": bytes(mem.data)}
    save(store, "c0", mem)
    for n in range(1, 40):
        dirty = []
        for _ in range(rng.randrange(1, 12)):
            off = rng.randrange(len(mem.data) - 64)
            size = rng.choice([1, 7, PAGE, 3 * PAGE, CHUNK + 5])
            size = min(size, len(mem.data) - off)
            payload = bytes(size) if rng.random() < 0.2 else os.urandom(size)
            mem.poke(mem.base + off, payload)
            dirty.append((mem.base + off, mem.base + off + size))
        save(store, f"c{n}", mem, base=f"c{n - 1}", dirty=dirty)
        copies[f"c{n}"] = bytes(mem.data)
    for _ in range(300):
        name = rng.choice(sorted(copies))
        lo = rng.randrange(len(mem.data) - 1)
        hi = rng.randrange(lo + 1, min(len(mem.data), lo + 3 * CHUNK) + 1)
        ((start, got),) = store.load(PROG, name).read([(mem.base + lo, mem.base + hi)])
        assert (start, bytes(got)) == (mem.base + lo, copies[name][lo:hi]), (name, lo, hi)
    assert memory_of(store, "c39")[1] == mem.data
    # A restore's read (read_runs): pieces, views of the blocks read, that together are the ranges.
    for _ in range(60):
        name = rng.choice(sorted(copies))
        ranges = merge((mem.base + lo, mem.base + lo + rng.choice([1, 100, PAGE, 2 * PAGE, CHUNK + 3]))
                       for lo in rng.sample(range(len(mem.data) - CHUNK - 3), rng.randrange(1, 40)))
        pieces = _read_runs(store.load(PROG, name), ranges)
        assert [(lo, hi) for lo, hi, _ in pieces] == ranges
        for lo, hi, got in pieces:
            assert got == copies[name][lo - mem.base:hi - mem.base], (name, lo, hi)
    assert sum(len(store.load(PROG, n)._manifest.patches) for n in copies) > 100   # patches were made
    # Each save added a layer of the pages it patched to its base's (manifest version 5), so some
    # stored manifests hold a page twice, and some drop a chunk's pages (RESET) when a save stored
    # it whole: the last entry is the one read back below.
    layered = repeats = resets = 0
    for name in copies:
        blob = store.index.checkpoint(PROG, name)["manifest"]
        layers = _sections(blob)[2]
        layered += len(layers) > 1
        repeats += sum(n for n, _, _ in layers) > sum(map(len, decode_manifest(blob).patches.values()))
        resets += any(k == RESET for _, _, entries in layers for _, k, _ in _ENTRY.iter_unpack(entries))
    assert layered > 20 and repeats > 5 and resets > 5
    fresh = Store(store.path)       # no manifests in memory: each decoded from what was stored
    for name, copy in copies.items():
        assert memory_of(fresh, name)[1] == copy, name


def test_an_incremental_save_copes_with_grown_shrunk_and_new_regions(store):
    a = Memory(MiB, seed=1)
    c = Memory(MiB, seed=2, base=BASE + 64 * MiB)
    d = Memory(MiB, seed=3, base=BASE + 128 * MiB)

    def read_from(regions_mem):
        def read(addr, length):
            m = next(m for m in regions_mem if m.base <= addr < m.base + len(m.data))
            return m.read(addr, length)
        return read

    store.save(PROG, "base", regions=[a.regions[0], c.regions[0]], read=read_from([a, c]),
               info={}, state=b"")
    regions = [(a.base, a.base + MiB + 512 * KiB),              # grew by half a MiB
               (c.base + PAGE, c.base + MiB),                   # lost its first page
               (d.base, d.base + 256 * KiB)]                    # new
    a.data += noise(512 * KiB, 5)
    a.poke(a.base + 100 * KiB, b"dirty")
    for m in (a, c, d):
        m.calls.clear()
    r = store.save(PROG, "next", regions=regions, read=read_from([a, c, d]), info={}, state=b"",
                   base="base", dirty=[(a.base + 100 * KiB, a.base + 100 * KiB + 5)])
    assert sorted(a.calls) == [(a.base + 100 * KiB, PAGE), (a.base + MiB, 512 * KiB)]    # a dirty page
    assert c.calls == [(c.base + PAGE, CHUNK - PAGE)]
    assert d.calls == [(d.base, 256 * KiB)]
    assert r.read_bytes == PAGE + 512 * KiB + CHUNK - PAGE + 256 * KiB
    got = store.load(PROG, "next").read_all()
    assert got == [(a.base, a.data), (c.base + PAGE, c.data[PAGE:]), (d.base, d.data[:256 * KiB])]


# -- the pure chunk arithmetic -------------------------------------------------------------------

def test_layout_cuts_regions_at_aligned_windows():
    lay = Layout([(0x1000, 0x21000), (0x30000, 0x31000)], 0x10000)
    assert list(lay.extents()) == [(0x1000, 0x10000), (0x10000, 0x20000), (0x20000, 0x21000),
                                   (0x30000, 0x31000)]
    assert lay.count == 4 and lay.size == 0x21000
    assert list(lay.touching(0xFFFF, 0x10001)) == [0, 1]
    assert list(lay.touching(0x21000, 0x30000)) == []
    assert lay.covers(0x1000, 0x21000) and not lay.covers(0x1000, 0x21001)
    assert lay.find_chunk(0x20000, 0x21000) == 2 and lay.find_chunk(0x20000, 0x30000) is None
    with pytest.raises(ValueError, match="sorted"):
        Layout([(0x2000, 0x3000), (0x1000, 0x2000)], 0x10000)


def test_planning_without_dirty_ranges_reuses_every_digest_of_an_unchanged_layout():
    lay = Layout([(0, 0x40000)], 0x10000)
    base = Manifest(lay, bytes(range(80)))
    plan = plan_incremental(lay, base, [])
    assert (bytes(plan.manifest.digests), plan.full, plan.pages) == (base.digests, [], [])
    plan = plan_incremental(lay, base, [(0x1FFFF, 0x20001), (0x20000, 0x20004)])
    assert (plan.full, plan.pages) == ([], [(1, 15, 0x1F000), (2, 0, 0x20000)])  # pages, not chunks
    plan = plan_incremental(lay, base, [(0x10000, 0x19000)])              # 9 pages: too many
    assert (plan.full, plan.pages) == ([1], [])
    assert plan_incremental(lay, None, []).full == [0, 1, 2, 3]


def test_dirty_ranges_plan_the_same_whatever_their_order_overlaps_and_container():
    # Several regions, some not chunk-aligned; page-sized and odd ranges, some straddling chunks.
    lay = Layout([(0x1000, 0x23000), (0x40000, 0x80000), (0x90000, 0x91000)], 0x10000)
    base = Manifest(lay, bytes(range(lay.count * 20)))
    rng = random.Random(5)
    for _ in range(200):
        ranges = []
        for _ in range(rng.randrange(1, 30)):
            lo = rng.randrange(0, 0x92000)
            ranges.append((lo, lo + rng.choice([1, 100, PAGE, 2 * PAGE, 5 * PAGE, 0x9000])))
        merged = sorted(ranges)
        out = []
        for lo, hi in merged:                 # merged by hand: sorted, apart
            if out and lo <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        plans = [plan_incremental(lay, base, dirty) for dirty in
                 (out, ranges, ranges + ranges[:3], tuple(reversed(out)), iter(ranges))]
        assert all((p.full, p.pages) == (plans[0].full, plans[0].pages) for p in plans)
        # Against a plain count: each chunk's written pages, once each, unless more than 8.
        written = {}
        for lo, hi in ranges:
            for page in range(lo // PAGE, -(-hi // PAGE)):
                for r, (start, end) in enumerate(lay.regions):
                    if start <= page * PAGE < end:
                        i = lay.first[r] + page * PAGE // 0x10000 - start // 0x10000
                        written.setdefault(i, set()).add(page)
        expected = sorted((i, page % 16, page * PAGE) for i, got in written.items() if len(got) <= 8
                          for page in got)
        assert plans[0].pages == expected
        assert plans[0].full == sorted(i for i, got in written.items() if len(got) > 8)


def test_patches_carry_over_and_a_chunk_is_read_whole_when_a_save_dirties_much_of_it():
    lay = Layout([(0, 0x40000)], 0x10000)
    page = [PLACE.pack(bytes([k]) * 20, k) for k in range(20)]
    base = Manifest(lay, bytes(range(80)), {1: {k: page[k] for k in range(15)}})
    plan = plan_incremental(lay, base, [(0x1F000, 0x20000)])     # the 16th page: still patched
    assert (plan.full, plan.pages, plan.manifest.patches) == ([], [(1, 15, 0x1F000)], base.patches)
    plan = plan_incremental(lay, base, [(0x10000, 0x18000)])     # 8 pages at once: patched
    assert (plan.full, len(plan.pages)) == ([], 8)
    plan = plan_incremental(lay, base, [(0x10000, 0x19000)])     # 9: the chunk is read whole
    assert (plan.full, plan.pages, plan.manifest.patches) == ([1], [], {})
    # A region that moved up by one chunk: its patched chunk moves with it.
    moved = Layout([(0x10000, 0x50000)], 0x10000)
    plan = plan_incremental(moved, Manifest(lay, bytes(range(80)), {3: {0: page[0]}}), [])
    assert plan.full == [3] and plan.manifest.patches == {2: {0: page[0]}}


def test_a_manifest_round_trips_and_bad_patches_are_refused():
    lay = Layout([(0x1000, 0x21000)], 0x10000)
    keys = os.urandom(3 * 20)
    m = Manifest(lay, keys, {1: {0: PLACE.pack(b"a" * 20, 0), 15: PLACE.pack(b"b" * 20, 7)},
                             0: {1: PLACE.pack(bytes(20), 0)}})
    blob = encode_manifest(m)
    assert manifest_keys(blob, digest(blob)) == {keys[:20], keys[20:40], keys[40:], b"a" * 20,
                                                 b"b" * 20, bytes(20)}
    with pytest.raises(BadManifest, match="fails its hash"):
        manifest_keys(blob, digest(blob + b"x"))
    back = decode_manifest(blob)
    assert (back.layout.regions, bytes(back.digests), back.patches) == (lay.regions, keys, m.patches)
    assert [back.chunk_key(i) for i in range(3)] == [m.chunk_key(i) for i in range(3)]
    assert back.chunk_key(2) == keys[40:] and back.chunk_key(1) != keys[20:40]
    # Page 0 of chunk 0 lies below the region's start (0x1000): not a page it can patch.
    bad = encode_manifest(Manifest(lay, keys, {0: {0: PLACE.pack(b"c" * 20, 0)}}))
    for blob in (bad, blob[:-1], blob + b"x"):
        with pytest.raises(BadManifest):
            decode_manifest(blob)


def _blob_head(version, lay, keys, count):
    """A manifest blob's header, regions, chunk keys and patch entry count, packed by hand."""
    return (struct.pack("<4sBBHII", b"GCKM", version, 20, 0, lay.chunk_size, len(lay.regions))
            + b"".join(struct.pack("<QQ", *r) for r in lay.regions) + keys + struct.pack("<I", count))


def _packed_entries(entries):
    return b"".join(struct.pack("<IB20sI", *e) for e in entries)


def _manifest_blob(version, lay, keys, entries):
    """A manifest blob of `version` (2 to 4) with the patch `entries` [(i, k, key, n)] as given:
    version 2 has them as they are, later ones in a zstd frame after its stored length."""
    section = _packed_entries(entries)
    if version > 2:
        packed = zstandard.ZstdCompressor().compress(section)
        section = struct.pack("<I", len(packed)) + packed
    return _blob_head(version, lay, keys, len(entries)) + section


def test_a_version_2_manifest_with_its_patches_unpacked_is_still_read():
    # Format 3 stores wrote the patch entries as they are; version 3 compresses them.
    lay = Layout([(0x10000, 0x50000)], 0x10000)
    keys = os.urandom(4 * 20)
    patches = {1: {0: PLACE.pack(b"a" * 20, 0), 3: PLACE.pack(b"b" * 20, 2)}, 2: {15: PLACE.pack(bytes(20), 0)}}
    entries = [(i, k, *PLACE.unpack(patches[i][k])) for i in sorted(patches) for k in sorted(patches[i])]
    old = _manifest_blob(2, lay, keys, entries)
    back = decode_manifest(old)
    assert (bytes(back.digests), back.patches) == (keys, patches)
    assert manifest_keys(old, digest(old)) == \
        {keys[k:k + 20] for k in range(0, 80, 20)} | {b"a" * 20, b"b" * 20, bytes(20)}
    new = encode_manifest(Manifest(lay, keys, patches))
    assert new[4] == 5 and len(new) < len(old) and decode_manifest(new).patches == patches
    # A count the regions can't hold is refused before anything is decompressed.
    count_at = len(old) - len(entries) * 29 - 4
    for blob in (old, new):
        huge = blob[:count_at] + struct.pack("<I", 0x10000000) + blob[count_at + 4:]
        with pytest.raises(BadManifest, match="patch count"):
            decode_manifest(huge)


def test_a_format_4_store_s_version_3_manifests_are_read_and_saved_against(tmp_path):
    # Format 4 wrote each chunk's pages once, in order (manifest version 3): the checkpoint is read
    # as it was, and a save against it packs its entries and its own into one layer of version 5.
    mem = Memory(4 * CHUNK)
    with Store(tmp_path / "s") as store:
        save(store, "c0", mem)
        for n, page in enumerate((3, 5, 3)):
            mem.poke(mem.base + page * PAGE + 9, os.urandom(64))
            save(store, f"c{n + 1}", mem, base=f"c{n}",
                 dirty=[(mem.base + page * PAGE, mem.base + (page + 1) * PAGE)])
        blob = store.index.checkpoint(PROG, "c3")["manifest"]
    back = decode_manifest(blob)
    assert blob[4] == 5 and [n for n, _, _ in _sections(blob)[2]] == [1, 1, 1]
    assert back.patches[0].keys() == {3, 5}
    entries = [(0, k, *PLACE.unpack(back.patches[0][k])) for k in (3, 5)]
    old = _manifest_blob(3, back.layout, bytes(back.digests), entries)
    con = sqlite3.connect(tmp_path / "s" / "index.sqlite")
    with con:
        con.execute("UPDATE checkpoints SET manifest = ?, manifest_digest = ? WHERE name = 'c3'",
                    (old, digest(old)))
        con.execute("UPDATE meta SET value = '4' WHERE key = 'format_version'")
    con.close()
    with Store(tmp_path / "s") as store:
        assert memory_of(store, "c3")[1] == mem.data
        mem.poke(mem.base + 5 * PAGE, b"again")
        save(store, "c4", mem, base="c3", dirty=[(mem.base + 5 * PAGE, mem.base + 6 * PAGE)])
        assert memory_of(store, "c4")[1] == mem.data
        blob = store.index.checkpoint(PROG, "c4")["manifest"]
        assert blob[4] == 5 and [n for n, _, _ in _sections(blob)[2]] == [2]
        assert store.index.con.execute(
            "SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0] == "6"
    with Store(tmp_path / "s") as store:
        assert memory_of(store, "c4")[1] == mem.data


def test_a_version_4_manifest_repeats_pages_and_the_last_entry_holds():
    lay = Layout([(0x10000, 0x50000)], 0x10000)
    keys = os.urandom(4 * 20)
    a, b, c = b"a" * 20, b"b" * 20, b"c" * 20
    entries = [(1, 3, a, 0), (1, 0, a, 1), (1, 3, b, 5), (2, 15, c, 2), (2, 15, a, 9)]
    back = decode_manifest(_manifest_blob(4, lay, keys, entries))
    assert back.patches == {1: {3: PLACE.pack(b, 5), 0: PLACE.pack(a, 1)}, 2: {15: PLACE.pack(a, 9)}}
    # Version 3 had each page once, in order; chunks out of order are refused in either.
    with pytest.raises(BadManifest, match="bad patch"):
        decode_manifest(_manifest_blob(3, lay, keys, entries))
    for version in (3, 4):
        with pytest.raises(BadManifest, match="bad patch"):
            decode_manifest(_manifest_blob(version, lay, keys, [(2, 0, a, 0), (1, 0, a, 0)]))
    # Up to twice as many entries as the regions have pages, from version 4 only.
    pages = lay.size // PAGE
    twice = [(1, n % 16, a, n) for n in range(2 * pages)]
    assert decode_manifest(_manifest_blob(4, lay, keys, twice)).patches == \
        {1: {k: PLACE.pack(a, 2 * pages - 16 + k) for k in range(16)}}
    with pytest.raises(BadManifest, match="patch count"):
        decode_manifest(_manifest_blob(4, lay, keys, twice + [(1, 0, a, 0)]))
    with pytest.raises(BadManifest, match="patch count"):
        decode_manifest(_manifest_blob(3, lay, keys, twice[:pages + 1]))


def _layered_blob(lay, keys, layers, count=None, n_layers=None):
    """A version 5 manifest blob whose layers are the entry lists `layers` [[(i, k, key, n)]], as
    given; `count` and `n_layers` override the counts it states."""
    body = b""
    for entries in layers:
        frame = zstandard.ZstdCompressor().compress(_packed_entries(entries))
        body += struct.pack("<II", len(entries), len(frame)) + frame
    total = sum(map(len, layers)) if count is None else count
    return _blob_head(5, lay, keys, total) + (
        struct.pack("<I", len(layers) if n_layers is None else n_layers) + body if total else b"")


def test_a_version_5_manifest_s_layers_apply_in_order_and_bad_ones_are_refused():
    lay = Layout([(0x10000, 0x50000)], 0x10000)
    keys = os.urandom(4 * 20)
    a, b, zero = b"a" * 20, b"b" * 20, bytes(20)
    layers = [[(1, 0, a, 0), (1, 3, a, 1), (2, 15, a, 2)],
              [(1, 3, b, 0), (2, RESET, zero, 0), (3, 4, b, 1)],
              [(2, 1, a, 7)]]
    back = decode_manifest(_layered_blob(lay, keys, layers))
    assert back.patches == {1: {0: PLACE.pack(a, 0), 3: PLACE.pack(b, 0)}, 2: {1: PLACE.pack(a, 7)},
                            3: {4: PLACE.pack(b, 1)}}
    assert [n for n, _ in back.layers] == [3, 3, 1]
    bad_layers = [[(1, 3, a, 0), (1, 3, b, 1)],             # a page twice in a layer
                  [(1, 3, a, 0), (1, 0, a, 1)],             # pages out of order
                  [(2, 0, a, 0), (1, 0, a, 1)],             # chunks out of order
                  [(1, 3, a, 0), (1, RESET, zero, 0)],      # a RESET beside pages of its chunk
                  [(1, RESET, zero, 0), (1, 3, a, 0)],
                  [(1, RESET, a, 0)],                       # a RESET with a place
                  [(4, 0, a, 0)]]                           # no such chunk
    for layer in bad_layers:
        with pytest.raises(BadManifest, match="bad patch"):
            decode_manifest(_layered_blob(lay, keys, [layers[0], layer]))
    for count, n_layers in ((6, None), (8, None), (7, 2), (7, 4), (7, 0)):
        with pytest.raises(BadManifest):
            decode_manifest(_layered_blob(lay, keys, layers, count, n_layers))
    with pytest.raises(BadManifest, match="layer count"):
        decode_manifest(_layered_blob(lay, keys, [[(1, 0, a, 0)]] * 65))
    blob = _layered_blob(lay, keys, layers)
    for cut in range(len(blob) - 60, len(blob)):
        with pytest.raises(BadManifest):
            decode_manifest(blob[:cut])
    # Pages set twice before an encoding (no save does, but the manifest allows it): one layer of all.
    m = decode_manifest(blob)
    m.set_pages({1: {**m.patches[1], 5: PLACE.pack(a, 9)}}, {1: [5]})
    m.set_pages({1: {**m.patches[1], 6: PLACE.pack(a, 10)}}, {1: [6]})
    again = encode_manifest(m)
    assert decode_manifest(again).patches == m.patches and len(m.layers) == 1


def test_a_manifest_planned_from_another_encodes_what_one_made_from_scratch_does():
    # A save's manifest keeps its base's layers as they are and adds one of the pages it patched
    # and the chunks it stored whole (RESET); layers holding more than twice as many entries as
    # pages patched, or too many layers, are packed into one. Either way the blob decodes to the
    # manifest's patches, as one packed from scratch does.
    from gdb_checkpoint.store.layout import MAX_LAYERS
    from gdb_checkpoint.store.store import _patch
    lay = Layout([(0, 64 * CHUNK)], CHUNK)
    moved = Layout([(CHUNK, 65 * CHUNK)], CHUNK)
    rng = random.Random(5)
    m = Manifest(lay, os.urandom(64 * 20))
    appended = packed = resets = max_layers = 0
    for step in range(200):
        layout = moved if step == 40 else m.layout        # one save where the region moved
        # Pages of a few chunks, again and again: patches pile up and pages are patched anew.
        spread = 6 if step < 100 else 60
        dirty = [(p * PAGE, p * PAGE + 10) for p in rng.sample(range(16, spread * 16), 12)]
        if step % 5 == 0:               # more than PATCH_LIMIT pages of a chunk: stored whole
            w = rng.randrange(1, spread) * CHUNK
            dirty.append((w, w + 10 * PAGE))
        if layout is moved:
            dirty = [(a + CHUNK, b + CHUNK) for a, b in dirty]
        plan = plan_incremental(layout, m, dirty)
        m = plan.manifest
        assert (m.layers is None) == (step in (0, 40))      # unknown: a new base, a moved region
        before = None if m.layers is None else len(m.layers)
        for i in plan.full:
            m.digests[i * 20:(i + 1) * 20] = os.urandom(20)
        _patch(plan, os.urandom(20), [None] * len(plan.pages))
        if step % 17 == 3:              # the base decoded from its blob, as a new session has it
            m = decode_manifest(encode_manifest(m))
            before = len(m.layers)
        blob = encode_manifest(m)
        assert decode_manifest(blob).patches == m.patches == \
            decode_manifest(encode_manifest(Manifest(m.layout, m.digests, m.patches))).patches
        layers = _sections(blob)[2]
        assert [n for n, _, _ in layers] == [n for n, _ in m.layers] and len(layers) <= MAX_LAYERS
        assert sum(n for n, _ in m.layers) <= 2 * sum(map(len, m.patches.values()))
        appended += before is not None and len(layers) == before + 1
        packed += len(layers) == 1
        max_layers = max(max_layers, len(layers))
        resets += any(k == RESET for _, k, _ in _ENTRY.iter_unpack(layers[-1][2]))
    # Each path ran, and is checked above.
    assert appended > 100 and packed > 10 and resets > 10 and max_layers == MAX_LAYERS


def test_mutated_manifests_and_records_fail_cleanly(tmp_path):
    # The store's own readers of bytes from disk: a damaged manifest or record raises BadManifest or
    # BadChunk (a ValueError for a span outside a record), never anything else and never bad data.
    from gdb_checkpoint.store.layout import PAGE as LPAGE
    from gdb_checkpoint.store.packs import BadChunk, Tables, _table, read_each, read_record, read_records
    lay = Layout([(0x10000, 0x50000)], CHUNK)
    m = Manifest(lay, os.urandom(4 * 20), {1: {0: PLACE.pack(b"a" * 20, 0), 3: PLACE.pack(b"b" * 20, 2)}})
    blob = encode_manifest(m)
    data = bytes(noise(CHUNK, 4)[:CHUNK // 2]) + bytes(CHUNK // 2)
    from gdb_checkpoint.store.layout import BLOCK, block_digests
    from gdb_checkpoint.store.packs import RECORD, encode, encode_blocks, record_parts
    records = []
    for key, codec, parts in (encode(data, block_digests(data)),                 # checked
                              record_parts(encode_blocks(memoryview(data), 0, 4, hashed=False))):  # unique
        payload = b"".join(parts)
        records.append((key, RECORD.pack(key, codec, len(data), len(payload)) + payload))
    path = tmp_path / "rec"

    tables_before = {}          # each record's table, read before the damage (as a session keeps it)

    def joined(got, spans):
        """read_each's deliveries of one record, (start, bytes), as one: they follow each other and
        cover every span."""
        start, out = got[0][0], b""
        for at, piece in got:
            assert at == start + len(out)
            out += bytes(piece)
        for src, n in spans or [(0, len(data))]:
            assert start <= src and src + n <= start + len(out)
        return start, out

    def read(rec, key, spans, threads=None):
        path.write_bytes(rec)
        fd = os.open(path, os.O_RDONLY)
        try:
            if threads is None:
                return read_record(fd, "p", 0, len(rec), key, spans)
            if threads == "table kept":
                return read_record(fd, "p", 0, len(rec), key, spans, tables_before[key])
            if threads == "each":
                got = []
                read_each([(fd, "p", 0, len(rec), key, spans)], lambda _, *r: got.append(r), tables_before[key])
                return joined(got, spans)
            return read_records([(fd, "p", 0, len(rec), key, spans)], threads=threads)[0]   # batched
        finally:
            os.close(fd)

    for key, rec in records:
        assert read(rec, key, None) == (0, data)
        path.write_bytes(rec)
        fd = os.open(path, os.O_RDONLY)
        tables = tables_before[key] = Tables()
        tables.put("p", 0, key, len(rec), _table(fd, "p", 0, len(rec), key, None)[0])
        os.close(fd)
    rng = random.Random(5)
    caught = kept_caught = fast = two = 0
    for _ in range(1500):
        mutated = bytearray(blob)
        for _ in range(rng.randrange(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        mutated = bytes(mutated[:rng.choice([len(mutated), rng.randrange(len(mutated))])])
        try:
            keys = manifest_keys(mutated, digest(mutated))        # a blob that passes its hash
        except BadManifest:
            keys = None
        try:
            back = decode_manifest(mutated)
        except BadManifest:
            pass
        else:
            assert keys is not None and keys >= {bytes(back.digests[k:k + 20]) for k in range(0, len(back.digests), 20)}
            back.pieces(list(back.layout.extents()), "the fuzzed manifest")
        key, rec = rng.choice(records)
        rec = bytearray(rec)
        for _ in range(rng.randrange(1, 3)):
            rec[rng.randrange(len(rec))] ^= 1 << rng.randrange(8)
        spans = rng.choice([None, [(LPAGE * rng.randrange(16), LPAGE)], [(LPAGE * rng.randrange(14), 3 * LPAGE)]])
        outcomes = []
        for threads in (None, 1, 2):
            try:
                start, got = read(rec, key, spans, threads)
                assert got == data[start:start + len(got)]       # a damaged block is never returned
                outcomes.append("read")
            except (BadChunk, ValueError) as e:
                outcomes.append(str(e))
        assert outcomes[0] == outcomes[1] == outcomes[2]        # batched or not, the same verdict
        caught += outcomes[0] != "read"
        # With the table kept from before the damage (no block kept), read_each's own path for
        # one block gives read_record's verdict, and right bytes.
        for how in ("table kept", "each"):
            try:
                start, got = read(rec, key, spans, how)
                assert got == data[start:start + len(got)]
                outcomes.append("read")
            except (BadChunk, ValueError) as e:
                outcomes.append(str(e))
        assert outcomes[3] == outcomes[4]
        kept_caught += outcomes[3] != "read"
        fast += spans is not None and spans[0][1] == LPAGE
        two += spans is not None and spans[0][0] // BLOCK != (sum(spans[0]) - 1) // BLOCK
    assert caught > 500 and kept_caught > 20 and fast > 400 and two > 100, (caught, kept_caught, fast, two)


def test_a_batch_of_records_reads_as_each_one_does_and_names_a_damaged_one(tmp_path):
    # packs.read_records decompresses a batch's frames together (on threads): what it returns for
    # each record and span is what read_record returns, and a damaged frame anywhere in the batch
    # raises BadChunk naming its own record, whichever thread found it.
    from gdb_checkpoint.store.layout import BLOCK, block_digests
    from gdb_checkpoint.store.packs import (RECORD, BadChunk, encode, encode_blocks, read_record,
                                            read_records, record_parts)
    rng = random.Random(11)
    blob, places = bytearray(), []
    for n in range(40):
        data = bytes(noise(CHUNK, n)[:rng.randrange(1, CHUNK)]) + bytes(rng.randrange(CHUNK))
        data = data[:CHUNK]
        if n % 2:
            key, codec, parts = encode(data, block_digests(data))
        else:
            key, codec, parts = record_parts(encode_blocks(memoryview(data), 0, -(-len(data) // BLOCK), hashed=False))
        payload = b"".join(parts)
        places.append((len(blob), RECORD.size + len(payload), key, data))
        blob += RECORD.pack(key, codec, len(data), len(payload)) + payload
    path = tmp_path / "pack"
    path.write_bytes(blob)
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(20):
            items = []
            for off, size, key, data in rng.sample(places, 25):
                lo = rng.randrange(len(data))
                spans = rng.choice([None, [(lo, rng.randrange(1, len(data) - lo + 1))]])
                items.append((fd, "p", off, size, key, spans))
            for threads in (1, 2):
                got = read_records(items, threads=threads)
                assert [(s, bytes(d)) for s, d in got] == [(s, bytes(d)) for s, d in (read_record(*i) for i in items)]
                for (start, d), item in zip(got, items):        # and what each one holds is right
                    data = next(p[3] for p in places if p[0] == item[2])
                    assert bytes(d) == data[start:start + len(d)]
        off, size, key, data = places[17]
        damaged = bytearray(blob)
        damaged[off + size - 3] ^= 0x40                 # the checksum of its last frame
        path.write_bytes(damaged)
        items = [(fd, "p", o, n, k, None) for o, n, k, _ in places]
        for threads in (1, 2):
            with pytest.raises(BadChunk, match=key.hex()[:16]):
                read_records(items, threads=threads)
    finally:
        os.close(fd)


def test_small_reads_keep_their_blocks_for_the_next_read_of_the_same_place(tmp_path, monkeypatch):
    # Tables keeps the blocks small reads decompressed: a second read of the same spans returns
    # them without reading the pack (damaged since, it still gets the bytes checked before), a
    # new Tables reads and rejects the damage, and only the last BLOCKS_KEPT blocks are kept.
    from gdb_checkpoint.store.layout import BLOCK, block_digests
    from gdb_checkpoint.store.packs import RECORD, BadChunk, Tables, encode, read_record
    monkeypatch.setattr(Tables, "BLOCKS_KEPT", 6)
    records, blob = [], bytearray()
    for n in range(3):
        data = bytes(noise(CHUNK, 40 + n))
        key, codec, parts = encode(data, block_digests(data))
        payload = b"".join(parts)
        records.append((len(blob), RECORD.size + len(payload), key, data))
        blob += RECORD.pack(key, codec, len(data), len(payload)) + payload
    path = tmp_path / "pack"
    path.write_bytes(blob)
    spans = [[(BLOCK - 100, 200)], [(2 * BLOCK + 5, 10)]]      # two blocks, then one
    fd = os.open(path, os.O_RDONLY)
    try:
        tables = Tables()
        for off, size, key, data in records:
            for span in spans:
                start, got = read_record(fd, "p", off, size, key, span, tables)
                assert bytes(got) == data[start:start + len(got)]
        path.write_bytes(bytes(len(blob)))          # every frame gone
        for off, size, key, data in records[1:]:    # the last 6 blocks: kept
            for span in spans:
                start, got = read_record(fd, "p", off, size, key, span, tables)
                assert bytes(got) == data[start:start + len(got)]
        off, size, key, _ = records[0]              # the first record's: forgotten, read again
        with pytest.raises(BadChunk, match=key.hex()[:16]):
            read_record(fd, "p", off, size, key, spans[1], tables)
        with pytest.raises(BadChunk):               # and a new session reads the damage
            read_record(fd, "p", records[2][0], records[2][1], records[2][2], spans[1], Tables())
    finally:
        os.close(fd)


def _four_block_record(tmp_path, seed):
    """A blocks record of three blocks of noise and a zero one, alone in a pack file: (its data,
    key, stored bytes, the file, an open descriptor of it, its table, where each block's frame
    starts in it)."""
    from gdb_checkpoint.store.layout import BLOCK, block_digests
    from gdb_checkpoint.store.packs import ENTRY, RECORD, _table, encode
    data = bytes(noise(3 * BLOCK, seed)) + bytes(BLOCK)
    key, codec, parts = encode(data, block_digests(data))
    payload = b"".join(parts)
    rec = RECORD.pack(key, codec, len(data), len(payload)) + payload
    path = tmp_path / "pack"
    path.write_bytes(rec)
    fd = os.open(path, os.O_RDONLY)
    table = _table(fd, "p", 0, len(rec), key, None)[0]
    frame_at = [RECORD.size + 4 * ENTRY.size + sum(e[2] for e in table[3][:n]) for n in range(4)]
    return data, key, rec, path, fd, table, frame_at


def test_reads_of_one_block_with_the_table_kept_check_what_they_read(tmp_path):
    # packs.read_each reads one block of a record whose table it has by itself: each way a block
    # can be damaged after its table was read is caught as read_record catches it.
    from gdb_checkpoint.store.layout import BLOCK
    from gdb_checkpoint.store.packs import BadChunk, Tables, read_each, read_record
    data, key, rec, path, fd, table, frame_at = _four_block_record(tmp_path, 9)
    try:

        def each(n, damage=None):
            """Bytes 100-300 of block n read with the table kept, the pack damaged by damage()."""
            path.write_bytes(damage(bytearray(rec)) if damage else rec)
            tables, got = Tables(), []
            tables.put("p", 0, key, len(rec), table)
            read_each([(fd, "p", 0, len(rec), key, [(n * BLOCK + 100, 200)])], lambda _, *r: got.append(r), tables)
            (start, block), = got
            return start, bytes(block[100:300])

        def flipped(at, bit=0x10):
            def damage(b):
                b[at] ^= bit
                return b
            return damage

        for n in range(4):
            assert each(n) == (n * BLOCK, data[n * BLOCK + 100:n * BLOCK + 300])
        with pytest.raises(BadChunk, match="fails its hash"):
            each(1, flipped(frame_at[1] + 40))                  # its content
        with pytest.raises(BadChunk, match="has a damaged block"):
            each(2, flipped(frame_at[2] + 4, 0x04))             # the flag that says it has a checksum
        with pytest.raises(BadChunk, match="is cut short"):
            each(2, lambda b: b[:frame_at[2] + 10])
        assert each(0, flipped(frame_at[1] + 40))[1] == data[100:300]     # another block's damage
        for n, damage in [(1, flipped(frame_at[1] + 40)), (2, flipped(frame_at[2] + 4, 0x04))]:
            path.write_bytes(damage(bytearray(rec)))            # the same verdicts as read_record's
            tables = Tables()
            tables.put("p", 0, key, len(rec), table)
            with pytest.raises(BadChunk):
                read_record(fd, "p", 0, len(rec), key, [(n * BLOCK + 100, 200)], tables)
    finally:
        os.close(fd)


def test_a_restore_s_read_of_runs_checks_what_it_reads_as_read_record_does(tmp_path):
    # packs.read_runs (Checkpoint.read_runs): with the table kept, a run in one block or across
    # two comes back as views of the blocks, right; damage gets read_record's verdict; without the
    # table it is read_record's read.
    from gdb_checkpoint.store.layout import BLOCK
    from gdb_checkpoint.store.packs import BadChunk, Tables, read_record, read_runs
    data, key, rec, path, fd, table, frame_at = _four_block_record(tmp_path, 21)
    spans = [(BLOCK + 100, 200), (BLOCK - 300, 600), (2 * BLOCK - 300, 600), (3 * BLOCK + 8, 40),
             (100, 3 * BLOCK)]

    def runs(span, damage=None, kept=True):
        path.write_bytes(damage(bytearray(rec)) if damage else rec)
        tables, out = Tables(), []
        if kept:
            tables.put("p", 0, key, len(rec), table)
        read_runs([("p", 0, len(rec), 1000 + span[0], key, *span)], {"p": fd}, out, tables)
        return out

    def flipped(at, bit=0x10):
        def damage(b):
            b[at] ^= bit
            return b
        return damage

    try:
        for span in spans:
            for kept in (True, False):
                out = [(a, bytes(memoryview(d)[at:at + n])) for a, d, at, n in runs(span, kept=kept)]
                assert b"".join(d for _, d in out) == data[span[0]:span[0] + span[1]]
                assert out[0][0] == 1000 + span[0]
                assert all(a + len(d) == b for (a, d), (b, _) in zip(out, out[1:]))
        for span, damage in [((BLOCK + 100, 200), flipped(frame_at[1] + 40)),
                             ((BLOCK + 100, 200), flipped(frame_at[1] + 4, 0x04)),
                             ((BLOCK + 100, 200), lambda b: b[:frame_at[1] + 10]),
                             ((BLOCK - 300, 600), flipped(frame_at[1] + 40)),
                             ((2 * BLOCK - 300, 600), lambda b: b[:frame_at[2] + 10])]:
            verdicts = []
            for read in (lambda: runs(span, damage),
                         lambda: read_record(fd, "p", 0, len(rec), key, [span], Tables())):
                path.write_bytes(damage(bytearray(rec)))
                with pytest.raises(BadChunk) as e:
                    read()
                verdicts.append(str(e.value))
            assert verdicts[0] == verdicts[1], (span, verdicts)
    finally:
        os.close(fd)


def test_a_kept_table_entry_naming_another_codec_fails_the_read_as_read_record_fails_it(tmp_path):
    # Only a frame whose entry says ZSTD and that carries its checksum is decompressed: an entry
    # saying raw or unknown over a good frame (a table damaged in memory, say) is refused, one
    # block or two, with read_record's verdict.
    from gdb_checkpoint.store.layout import BLOCK
    from gdb_checkpoint.store.packs import BadChunk, Tables, read_each, read_record
    data, key, rec, path, fd, table, frame_at = _four_block_record(tmp_path, 5)
    codec, raw_len, count, entries, starts = table
    try:
        for bad in (0, 3, 7):
            damaged = (codec, raw_len, count, tuple((d, bad, n) if k == 1 else (d, c, n)
                                                    for k, (d, c, n) in enumerate(entries)), starts)
            for span in [(BLOCK + 100, 200), (BLOCK - 300, 600), (2 * BLOCK - 300, 600)]:
                verdicts = []
                for read in (lambda tables: read_each([(fd, "p", 0, len(rec), key, [span])],
                                                      lambda *_: None, tables),
                             lambda tables: read_record(fd, "p", 0, len(rec), key, [span], tables)):
                    tables = Tables()
                    tables.put("p", 0, key, len(rec), damaged)
                    with pytest.raises(BadChunk) as e:
                        read(tables)
                    verdicts.append(str(e.value))
                assert verdicts[0] == verdicts[1] and "has a damaged block" in verdicts[0]
            good = []
            tables = Tables()
            tables.put("p", 0, key, len(rec), damaged)
            read_each([(fd, "p", 0, len(rec), key, [(100, 200)])], lambda _, *r: good.append(r), tables)
            assert bytes(good[0][1][100:300]) == data[100:300]      # block 0's entry is whole
    finally:
        os.close(fd)


def test_reads_of_two_blocks_with_the_table_kept_check_both_and_deliver_each(tmp_path):
    # A span across a block boundary (a page pair at one start in four, in a scattered restore):
    # read_each reads both frames at once as read_record does, delivers each block by itself, and
    # gives read_record's verdict whatever the damage, kept blocks included.
    from gdb_checkpoint.store.layout import BLOCK
    from gdb_checkpoint.store.packs import BadChunk, Tables, read_each, read_record
    data, key, rec, path, fd, table, frame_at = _four_block_record(tmp_path, 12)
    try:

        def tables_with(*kept):
            tables = Tables()
            tables.put("p", 0, key, len(rec), table)
            for n in kept:
                tables.keep_block("p", 0, key, n, data[n * BLOCK:(n + 1) * BLOCK])
            return tables

        def each(n, damage=None, kept=()):
            """Deliveries of a span across blocks n and n + 1, the pack damaged by damage()."""
            path.write_bytes(damage(bytearray(rec)) if damage else rec)
            got = []
            read_each([(fd, "p", 0, len(rec), key, [((n + 1) * BLOCK - 300, 600)])],
                      lambda _, start, block: got.append((start, bytes(block))), tables_with(*kept))
            return got

        def verdicts(n, damage, kept=()):
            """read_each's and read_record's errors for the same read."""
            out = []
            for read in (lambda: each(n, damage, kept),
                         lambda: read_record(fd, "p", 0, len(rec), key, [((n + 1) * BLOCK - 300, 600)],
                                             tables_with(*kept))):
                path.write_bytes(damage(bytearray(rec)))
                with pytest.raises(BadChunk) as e:
                    read()
                out.append(str(e.value))
            return out

        def flipped(*spots):
            def damage(b):
                for at, bit in spots:
                    b[at] ^= bit
                return b
            return damage

        for n in range(3):
            assert each(n) == [(m * BLOCK, data[m * BLOCK:(m + 1) * BLOCK]) for m in (n, n + 1)]
        assert each(0, lambda b: bytearray(len(b)), kept=(0, 1))[1][1] == data[BLOCK:2 * BLOCK]   # not read
        cases = [(0, flipped((frame_at[1] + 40, 0x10)), (), "fails its hash"),       # the second's content
                 (0, flipped((frame_at[1] + 4, 0x04)), (), "has a damaged block"),   # its checksum flag
                 (1, flipped((frame_at[1] + 40, 0x10), (frame_at[2] + 40, 0x10)), (), "fails its hash"),
                 (0, lambda b: b[:frame_at[1] + 10], (), "is cut short"),
                 (1, lambda b: flipped((frame_at[1] + 40, 0x10))(b)[:frame_at[2] + 10], (), "is cut short"),
                 (0, flipped((frame_at[0] + 40, 0x10)), (1,), "fails its hash"),     # one kept: both read
                 (0, flipped((frame_at[1] + 40, 0x10)), (0,), "fails its hash")]
        for n, damage, kept, verdict in cases:
            mine, theirs = verdicts(n, damage, kept)
            assert verdict in mine and mine == theirs
        assert each(2, flipped((frame_at[1] + 40, 0x10)))[1] == (3 * BLOCK, bytes(BLOCK))   # another's damage
    finally:
        os.close(fd)


def test_a_read_may_span_regions_that_touch(store):
    a = Memory(3 * PAGE + 100, seed=7)                              # ends inside a chunk
    b = Memory(CHUNK + 2 * PAGE, seed=8, base=a.base + len(a.data))  # starts right there
    both = bytes(a.data + b.data)

    def read(addr, length):         # the store reads runs of touching regions in one go
        return both[addr - a.base:addr - a.base + length]
    store.save(PROG, "two", regions=[a.regions[0], b.regions[0]], read=read, info={}, state=b"")
    cp = store.load(PROG, "two")
    for lo, hi in [(a.base + 5, b.base + CHUNK + 9), (a.base, b.base + 1), (b.base - 1, b.base + 1)]:
        ((start, got),) = cp.read([(lo, hi)])
        assert (start, bytes(got)) == (lo, both[lo - a.base:hi - a.base])


def test_pack_writes_survive_short_writes(tmp_path, monkeypatch):
    # writev may write less than asked: whatever is left is written by the next call, in order.
    from gdb_checkpoint.store import packs
    real = os.pwritev
    calls = []

    def short(fd, views, offset):
        calls.append(len(views))
        return real(fd, [b"".join(views[:3])[:4097]], offset)     # a prefix of what was asked

    monkeypatch.setattr(packs.os, "pwritev", short)
    parts = [os.urandom(n) for n in (50, 0, 1, 3000, 7)] * 300 + [os.urandom(300 << 10)]
    path = tmp_path / "out"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.write(fd, b"head")
        packs._write_all(fd, parts, 4)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"head" + b"".join(parts)
    assert max(calls) == packs._IOV_MAX


def test_records_another_session_moved_are_read_where_they_went(tmp_path):
    # One Store remembers where records are (its own saves, its reads); another's compaction moves
    # them to a new pack and deletes the old one.
    with Store(tmp_path / "s") as one, Store(tmp_path / "s") as two:
        a, b = Memory(3 * MiB, seed=1), Memory(MiB, seed=2, base=BASE + 16 * MiB)
        save(one, "a", a)
        save(one, "b", b)
        assert memory_of(one, "b")[1] == b.data
        packs = {p.name for p in one.packs_dir.iterdir()}
        two.delete(PROG, ["a"])
        assert {p.name for p in one.packs_dir.iterdir()}.isdisjoint(packs)     # all rewritten
        assert memory_of(one, "b")[1] == b.data
        ck = one.load(PROG, "b")
        assert ck.read([(b.base + 5 * PAGE, b.base + 7 * PAGE)]) == [(b.base + 5 * PAGE, b.data[5 * PAGE:7 * PAGE])]


def test_a_store_reads_what_it_saved_without_asking_the_index_where(store, monkeypatch):
    # Its saves remember where they wrote each record, and a read after them uses that: in gdb a
    # restore after saves asked SQLite for all its 655 records (0.7-1.8 ms) until this was fixed.
    mem = Memory(2 * MiB)
    save(store, "a", mem)
    first = bytes(mem.data)
    mem.poke(mem.base + 5 * PAGE, os.urandom(PAGE))
    save(store, "b", mem, base="a", dirty=[(mem.base + 5 * PAGE, mem.base + 6 * PAGE)])
    asked = []
    real = store.index.locations
    monkeypatch.setattr(store.index, "locations", lambda digests: asked.extend(digests) or real(digests))
    assert memory_of(store, "a")[1] == first
    assert memory_of(store, "b")[1] == mem.data
    assert asked == []
    with Store(store.path) as other:            # another session's commit: it may have moved some
        save(other, "c", Memory(MiB, seed=3))
    assert memory_of(store, "b")[1] == mem.data
    assert asked


def _pack_sizes(store):
    return {p.name: p.stat().st_size for p in store.packs_dir.iterdir()}


def test_incremental_saves_write_over_the_zeros_the_one_before_left_for_them(tmp_path):
    with Store(tmp_path / "s") as store, Store(tmp_path / "s") as other:
        mem = Memory(4 * MiB)
        save(store, "c0", mem)
        snaps = [bytes(mem.data)]
        rng = random.Random(7)
        for k in range(1, 6):
            addr = mem.base + rng.randrange(len(mem.data) // PAGE) * PAGE
            mem.poke(addr, os.urandom(PAGE))
            save(store, f"c{k}", mem, base=f"c{k - 1}", dirty=[(addr, addr + PAGE)])
            snaps.append(bytes(mem.data))
            store._settle()
            (pack, size), = _pack_sizes(store).items()
            live = sum(r[3] for r in store.index.chunk_rows())
            # Records, and past them only the zeros prepared for the next save: not one per save.
            assert live < size - 16 <= live + PREPARE_ROUND
            assert not any(open(store.packs_dir / pack, "rb").read()[16 + live:])
        # Another session appends to the pack: this one's next save goes after what it wrote.
        other_mem = Memory(MiB, seed=9, base=BASE + 64 * MiB)
        save(other, "o", other_mem)
        mem.poke(mem.base, os.urandom(PAGE))
        save(store, "c6", mem, base="c5", dirty=[(mem.base, mem.base + PAGE)])
        snaps.append(bytes(mem.data))
        assert [memory_of(store, f"c{k}")[1] for k in range(7)] == snaps
        assert memory_of(store, "o")[1] == other_mem.data


def test_neighbouring_dirty_pages_are_read_as_one_range_and_come_back_exact(store):
    mem = Memory(2 * MiB)
    save(store, "a", mem)
    # Pages 15 and 16 straddle a chunk boundary; 40-41 are neighbours; 100 is alone.
    dirty = []
    for page in (15, 16, 40, 41, 100):
        addr = mem.base + page * PAGE
        mem.poke(addr + 7, os.urandom(100))
        dirty.append((addr + 7, addr + 107))
    mem.calls.clear()
    save(store, "b", mem, base="a", dirty=dirty, read_many=mem.read_many)
    assert mem.calls == [("many", [(mem.base + 15 * PAGE, 2 * PAGE), (mem.base + 40 * PAGE, 2 * PAGE),
                                   (mem.base + 100 * PAGE, PAGE)])]
    with Store(store.path) as later:
        assert memory_of(later, "b")[1] == mem.data


# -- prefetch: a save's written pages read while the caller captures the rest ----------------------

def _page_ranges(mem, pages):
    return [(mem.base + p * PAGE, mem.base + (p + 1) * PAGE) for p in pages]


def _reads_of(calls, addrs):
    """The addresses of `addrs` that any of `calls` read."""
    hit = set()
    for call in calls:
        ranges = call[1] if call[0] == "many" else [call]
        hit.update(a for a in addrs for lo, n in ranges if lo <= a < lo + n)
    return hit


@pytest.fixture
def prefetch_all(monkeypatch):
    from gdb_checkpoint.store import store as store_module
    monkeypatch.setattr(store_module, "PREFETCH_MIN", PAGE)


@pytest.mark.parametrize("encode", [False, True], ids=["read", "read-and-encoded"])
def test_prefetched_pages_are_the_ones_saved_and_none_is_read_twice(store, prefetch_all, encode):
    mem = Memory(2 * MiB)
    save(store, "a", mem)
    # Scattered pages (patched; 15 and 16 straddle two chunks); chunk 2 written whole (too long a
    # range: saved whole, not prefetched); and nine pages of chunk 4 in short ranges, so prefetched,
    # but that is more than a chunk may patch: saved whole, those pages were read for nothing.
    scattered = [3, 15, 16, 100, 101, 150]
    in_vain = [64, 65, 67, 69, 71, 73, 75, 77, 79]
    for p in scattered + list(range(32, 48)) + in_vain:
        mem.poke(mem.base + p * PAGE + 11, os.urandom(50))
    dirty = merge(_page_ranges(mem, scattered + in_vain) + [(mem.base + 32 * PAGE, mem.base + 48 * PAGE)])
    mem.calls.clear()
    prefetched = store.prefetch(dirty, mem.read_many, encode)
    prefetched.close()
    assert _reads_of(mem.calls, [mem.base + p * PAGE for p in range(512)]) == \
        {mem.base + p * PAGE for p in scattered + in_vain}
    before = len(mem.calls)
    save(store, "b", mem, base="a", dirty=dirty, read_many=mem.read_many, prefetched=prefetched)
    # Not one scattered page read again; the two whole chunks were.
    assert not _reads_of(mem.calls[before:], [mem.base + p * PAGE for p in scattered])
    assert _reads_of(mem.calls[before:], [mem.base + 32 * PAGE, mem.base + 64 * PAGE])
    with Store(store.path) as later:
        assert memory_of(later, "b")[1] == mem.data
    # Every page read ahead is saved: what the helper encoded, if it did, is the record stored.
    for p in scattered:
        mem.poke(mem.base + p * PAGE + 7, os.urandom(9))
    start, before = len(mem.calls), len(mem.mine)
    prefetched = store.prefetch(_page_ranges(mem, scattered), mem.read_many, encode)
    save(store, "c", mem, base="b", dirty=_page_ranges(mem, scattered), read_many=mem.read_many,
         prefetched=prefetched)
    # The helper read them (now or later: encode's is not waited for), the save none of them.
    assert _reads_of(mem.calls[start:], [mem.base + p * PAGE for p in range(512)]) == \
        {mem.base + p * PAGE for p in scattered}
    assert not _reads_of(mem.mine[before:], [mem.base + p * PAGE for p in range(512)])
    with Store(store.path) as later:
        assert memory_of(later, "c")[1] == mem.data


@pytest.mark.parametrize("encode", [False, True], ids=["read", "read-and-encoded"])
def test_a_prefetch_that_failed_or_missed_pages_leaves_the_save_to_read_them(store, prefetch_all, encode):
    mem = Memory(MiB)
    save(store, "a", mem)

    def broken(ranges, into=None):
        raise OSError(14, "Bad address")

    def short(ranges, into=None):
        return [data[:-1] for data in mem.read_many(ranges, into)]

    for k, (reader, prefetch_pages) in enumerate([(broken, [5, 9]), (short, [5, 9]),
                                                  (mem.read_many, [5])]):
        name = f"b{k}"
        for p in (5, 9):
            mem.poke(mem.base + p * PAGE, os.urandom(PAGE))
        before = len(mem.mine)
        prefetched = store.prefetch(_page_ranges(mem, prefetch_pages), reader, encode)
        save(store, name, mem, base="a", dirty=_page_ranges(mem, [5, 9]), read_many=mem.read_many,
             prefetched=prefetched)
        assert _reads_of(mem.mine[before:], [mem.base + 5 * PAGE, mem.base + 9 * PAGE]) == \
            {mem.base + 5 * PAGE, mem.base + 9 * PAGE}
        assert memory_of(store, name)[1] == mem.data
    # Nothing worth reading ahead: a whole chunk's range, or nothing.
    assert store.prefetch([(mem.base, mem.base + CHUNK)], mem.read_many) is None
    assert store.prefetch([], mem.read_many) is None


@pytest.mark.parametrize("count", [1, 15, 16, 17, 100, 329])
def test_a_bundle_encoded_from_both_ends_is_the_record_one_thread_makes(count):
    from gdb_checkpoint.store.layout import BLOCK
    from gdb_checkpoint.store.packs import NONCE, UNIQUE
    from gdb_checkpoint.store.pipeline import FromBothEnds, encode_record
    rng = random.Random(count)
    data = bytearray()
    for n in range(count):          # random, zero and repeated blocks; the last one short
        data += (rng.randbytes(BLOCK), bytes(BLOCK), bytes([n % 251]) * BLOCK)[n % 3]
    data = memoryview(data)[:len(data) - 100]
    blocks = [bytes(data[lo:lo + BLOCK]) for lo in range(0, len(data), BLOCK)]
    digests, _, codec, parts = encode_record(data, unique=True)
    assert codec == UNIQUE and len(digests) == count
    frames = [bytes(f) for f in parts[1:]]

    def both(enc):
        helper = threading.Thread(target=enc.front)
        helper.start()
        enc.back()
        helper.join()

    for way in (lambda enc: enc.front(whole=True), lambda enc: enc.front(), lambda enc: enc.back(),
                both, lambda enc: (enc.front(), enc.back())):
        enc = FromBothEnds(data)
        way(enc)
        got_digests, _, got_codec, got_parts = enc.record()
        got_frames = [bytes(f) for f in got_parts[1:]]
        assert (got_digests, got_codec, got_frames) == (digests, codec, frames)
        assert got_parts[0][NONCE:] == parts[0][NONCE:]         # the block table, after its nonce
        # And each block is there, checked against the data itself rather than the other encoding.
        assert len(got_frames) == len(blocks)
        for block, d, frame in zip(blocks, got_digests, got_frames):
            if d == ZERO:
                assert frame == b"" and block == bytes(len(block))
            else:
                assert zstandard.ZstdDecompressor().decompress(frame, max_output_size=BLOCK) == block
    enc = FromBothEnds(data)
    enc.stop()                      # nothing taken: no record
    with pytest.raises(RuntimeError):
        enc.record()


def test_written_pages_of_zeros_are_patched_as_zero_not_read_from_the_bundle(store):
    mem = Memory(2 * MiB)
    save(store, "a", mem)
    # Four pages in four chunks: one block of the bundle, all zero; then one page of noise.
    zeroed = [0, 16, 32, 48]
    for p in zeroed:
        mem.poke(mem.base + p * PAGE, bytes(PAGE))
    mem.poke(mem.base + 64 * PAGE, os.urandom(PAGE))
    save(store, "b", mem, base="a", dirty=_page_ranges(mem, zeroed + [64]), read_many=mem.read_many)
    with Store(store.path) as later:
        patches = later.load(PROG, "b")._manifest.patches
        assert [patches[p // 16][0] for p in zeroed] == [ZERO_PLACE] * 4
        assert PLACE.unpack(patches[4][0])[0] != ZERO
        assert memory_of(later, "b")[1] == mem.data


def test_what_a_store_keeps_stays_out_of_the_garbage_collector_s_way(store):
    # Manifests' patches are dicts of bytes, which Python's cyclic collector never tracks: a dict of
    # tuples was walked by the collection that followed each save (Manifest). Saved, planned from
    # and decoded, every chunk's pages and their encodings stay untracked.
    import gc
    mem = Memory(2 * MiB)
    save(store, "a", mem)
    for n, name in enumerate(("b", "c")):
        pages = [p for p in range(n, 512, 16)]
        for p in pages:
            mem.poke(mem.base + p * PAGE + 8, os.urandom(32))
        save(store, name, mem, base="ab"[n], dirty=_page_ranges(mem, pages), read_many=mem.read_many)
    with Store(store.path) as later:
        manifests = [store._manifest(store.index.checkpoint(PROG, "c")),
                     later._manifest(later.index.checkpoint(PROG, "c"))]
        for m in manifests:
            assert len(m.patches) == 32 and all(len(pages) == 2 for pages in m.patches.values())
            assert not any(map(gc.is_tracked, m.patches.values()))
        assert memory_of(later, "c")[1] == mem.data
        # The record tables that read kept are tuples of plain values, which collections untrack
        # (nested ones a level per pass), where lists would stay tracked.
        # So are a manifest's layers (entry count, frame).
        kept = list(later._tables._tables.values())
        layers = [layer for m in manifests for layer in m.layers]
        for _ in range(4):
            gc.collect()
        assert len(kept) > 3 and not any(map(gc.is_tracked, kept))
        assert len(layers) == 4 and not any(map(gc.is_tracked, layers))


def test_a_few_pages_are_not_read_ahead_but_many_are(store):
    mem = Memory(5 * MiB)
    save(store, "a", mem)
    few = _page_ranges(mem, range(0, 16 * 63, 16))             # 63 pages, each in its own chunk
    assert store.prefetch(few, mem.read_many) is None
    many = _page_ranges(mem, range(0, 16 * 64, 16))
    prefetched = store.prefetch(many, mem.read_many)
    assert prefetched is not None and prefetched.take([lo for lo, _ in many]) is not None


def test_a_new_sessions_ring_holds_the_stores_automatic_checkpoints_and_trims_them(store):
    from gdb_checkpoint.session import Session
    mem = Memory(64 * KiB)
    first = Session()
    for _ in range(12):
        name = first.next_auto(store, PROG)
        save(store, name, mem)
        first.ring(store, PROG).append(name)
    save(store, "mine", mem)
    later = Session()           # a later gdb session on the same store
    assert later.ring(store, PROG) == [f"auto-{k}" for k in range(1, 13)]      # by number, not by name
    later.trim(store, PROG, 5)
    assert later.ring(store, PROG) == [f"auto-{k}" for k in range(8, 13)]
    assert store.names(PROG) == [*(f"auto-{k}" for k in range(8, 13)), "mine"]      # in creation order
    assert later.next_auto(store, PROG) == "auto-13"


def test_a_store_that_is_there_but_not_ours_to_write_says_so(tmp_path):
    """Opening a store takes its lock, even to read it: a folder another user owns is named as
    there and not writable, not as one that could not be created."""
    import tempfile
    shared = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        shared.chmod(0o755)
        Store(shared / "store").close()                 # 0700, this user's
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                    # the child: some other user
            os.close(r)
            try:
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                else:
                    (shared / "store").chmod(0o500)    # without root: take our own write away
                Store(shared / "store")
                message = "opened"
            except StoreError as e:
                message = str(e)
            os.write(w, message.encode())
            os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        with os.fdopen(r) as f:
            message = f.read()
        assert message.startswith(f"cannot use checkpoint store {shared / 'store'}: Permission denied"), message
    finally:
        (shared / "store").chmod(0o700)
        shutil.rmtree(shared)
