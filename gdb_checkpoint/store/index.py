"""The SQLite index of a checkpoint store: checkpoints with their manifests, chunk locations, packs.

Only SQL lives here; it must not touch pack files nor decide what is garbage (compact.py does).

INDEX format, version 6 (versions 1 to 5 differ only in the manifests and records they name: an
index of any of them is marked 6 when opened, and its checkpoints stay readable): index.sqlite (0600;
WAL mode, so -wal/-shm files appear, created by SQLite with the database file's mode),
synchronous=FULL, auto_vacuum=INCREMENTAL. A save's commit is the exception: it leaves syncing the WAL
to sync_wal(), in a background thread (see commit_save). The WAL is copied back into index.sqlite by
checkpoint_wal() there too, not by the commit that filled it (see WAL_AUTOCHECKPOINT).
    meta(key, value)                      'format_version' -> '6'; a store with a newer one is refused
    packs(id, name)                       pack files (packs.py PACK format) that referenced records live in
    chunks(digest, pack, offset, size)    where each stored chunk's record is; one row per distinct chunk
    checkpoints(id, program, name, created, info, logical_size, new_bytes,
                state_digest, state_size, manifest, manifest_digest)
        id orders creation; (program, name) is unique; created is Unix time; info is JSON text;
        manifest is a layout.py MANIFEST blob, checked against manifest_digest (SHA-256/160) on use;
        state_digest names the chunk record holding the caller's opaque state blob.
"""

import contextlib
import os
import sqlite3

from .errors import StoreError, UnknownCheckpointError
from .files import touch_private

FORMAT_VERSION = 6               # 6: manifest version 5 (layout.py), which format 5 code can't read
BUSY_MS = 30_000
_BATCH = 500                    # bound on SQL parameters per statement
# SQLite copies the WAL into the database, and syncs both, in the commit that takes the WAL past
# 1,000 pages: with a save's manifest of 0.5 MB, one commit in eight took 13-36 ms instead of 2-6.
# Saves copy it in the background instead (checkpoint_wal, past WAL_CHECKPOINT_BYTES); SQLite's own
# stays as a bound on the WAL, at a size nothing but a failing background copy reaches.
WAL_AUTOCHECKPOINT = 16384      # pages (64 MiB)
WAL_CHECKPOINT_BYTES = 4 << 20  # what a Store's saves committed since its last checkpoint_wal()

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS packs(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS chunks(digest BLOB PRIMARY KEY, pack INTEGER NOT NULL,"
    " offset INTEGER NOT NULL, size INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS checkpoints(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " program TEXT NOT NULL, name TEXT NOT NULL, created REAL NOT NULL, info TEXT NOT NULL,"
    " logical_size INTEGER NOT NULL, new_bytes INTEGER NOT NULL,"
    " state_digest BLOB NOT NULL, state_size INTEGER NOT NULL,"
    " manifest BLOB NOT NULL, manifest_digest BLOB NOT NULL, UNIQUE(program, name))",
    # Records a read found damaged: saves store their content again instead of sharing them.
    "CREATE TABLE IF NOT EXISTS bad(digest BLOB PRIMARY KEY) WITHOUT ROWID",
)


def _batches(items):
    items = list(items)
    for k in range(0, len(items), _BATCH):
        yield items[k:k + _BATCH]


class Index:
    """One connection to a store's index; used from one thread."""

    def __init__(self, path):
        self.path = str(path)
        try:
            touch_private(self.path)    # before SQLite: its -wal and -shm copy this file's mode
            self.con = sqlite3.connect(self.path, timeout=BUSY_MS / 1000, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open checkpoint index {self.path}: {e}") from None
        self.con.row_factory = sqlite3.Row
        try:
            self._setup()
        except BaseException:
            self.con.close()
            raise

    def _setup(self) -> None:
        with self._guard():
            self.con.execute(f"PRAGMA busy_timeout={BUSY_MS}")
            self.con.execute("PRAGMA auto_vacuum=INCREMENTAL")   # only takes effect on a new file
            self.con.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk when it returns (NORMAL in WAL mode may lose the last one).
            self.con.execute("PRAGMA synchronous=FULL")
            self.con.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
            with self.transaction():
                for statement in _SCHEMA:
                    self.con.execute(statement)
                self.con.execute("INSERT OR IGNORE INTO meta VALUES ('format_version', ?)",
                                 (str(FORMAT_VERSION),))
                value = self.con.execute(
                    "SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0]
                if value in ("1", "2", "3", "4", "5"):    # their manifests and packs are still read
                    self.con.execute("UPDATE meta SET value = ? WHERE key = 'format_version'",
                                     (str(FORMAT_VERSION),))
        try:
            version = int(value)
        except ValueError:
            raise StoreError(f"checkpoint index {self.path} has a bad format version {value!r}") from None
        if version > FORMAT_VERSION:
            raise StoreError(f"checkpoint store {self.path} has format {version}, newer than this "
                             f"gdb-checkpoint understands ({FORMAT_VERSION}); upgrade gdb-checkpoint "
                             f"or use another GDB_CHECKPOINT_DIR")

    def close(self) -> None:
        self.con.close()

    def sync_wal(self, copy: bool = False) -> None:
        """Put the commits so far on disk: fsync the WAL, which commit_save() leaves to this; then, if
        `copy`, checkpoint_wal(). From any thread; best effort, like checkpoint_wal(): a disk that
        fails this fails the next commit too, which is synced (a save's pack first, then this)."""
        try:
            fd = os.open(os.fspath(self.path) + "-wal", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = None
        if fd is not None:
            try:
                os.fsync(fd)
            except OSError:
                pass
            finally:
                os.close(fd)
        if copy:
            self.checkpoint_wal()

    def checkpoint_wal(self) -> None:
        """Copy what it can of the WAL into the database (PRAGMA wal_checkpoint(PASSIVE): it waits for
        no reader nor writer), on a connection of its own, so from any thread. Best effort: a
        failure leaves the WAL to the next try or to SQLite's own checkpoint."""
        try:
            con = sqlite3.connect(self.path, timeout=BUSY_MS / 1000, isolation_level=None,
                                  check_same_thread=False)
        except sqlite3.Error:
            return
        try:
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            pass
        finally:
            con.close()

    @contextlib.contextmanager
    def _guard(self):
        try:
            yield
        except sqlite3.Error as e:
            raise StoreError(f"checkpoint index {self.path}: {e}") from None

    @contextlib.contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front so it can't deadlock on upgrade."""
        with self._guard():
            self.con.execute("BEGIN IMMEDIATE")
            try:
                yield self.con
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            self.con.execute("COMMIT")

    # -- reads -------------------------------------------------------------------------------

    def bad(self) -> set:
        """The digests of records a read found damaged and no save has stored again since."""
        with self._guard():
            return {r[0] for r in self.con.execute("SELECT digest FROM bad")}

    def mark_bad(self, digests) -> None:
        with self.transaction() as con:
            con.executemany("INSERT OR IGNORE INTO bad VALUES (?)", ((d,) for d in digests))

    def beyond(self, pack: str, size: int) -> list:
        """The digests of the records in pack `pack` that end past byte `size` (a pack cut short)."""
        with self._guard():
            return [r[0] for r in self.con.execute(
                "SELECT digest FROM chunks JOIN packs ON chunks.pack = packs.id"
                " WHERE packs.name = ? AND offset + size > ?", (pack, size))]

    def existing(self, digests) -> set:
        """Those of `digests` that have a chunk record."""
        found = set()
        with self._guard():
            for part in _batches(digests):
                marks = ",".join("?" * len(part))
                found.update(r[0] for r in self.con.execute(
                    f"SELECT digest FROM chunks WHERE digest IN ({marks})", part))
        return found

    def locations(self, digests) -> dict:
        """digest -> (pack name, offset, size) for those of `digests` that are stored."""
        out = {}
        with self._guard():
            for part in _batches(digests):
                marks = ",".join("?" * len(part))
                for d, pack, offset, size in self.con.execute(
                        "SELECT c.digest, p.name, c.offset, c.size FROM chunks c"
                        f" JOIN packs p ON p.id = c.pack WHERE c.digest IN ({marks})", part):
                    out[d] = (pack, offset, size)
        return out

    def data_version(self) -> int:
        """Changes whenever another connection commits (SQLite's PRAGMA data_version)."""
        with self._guard():
            return self.con.execute("PRAGMA data_version").fetchone()[0]

    def checkpoint(self, program: str, name: str):
        with self._guard():
            return self.con.execute("SELECT * FROM checkpoints WHERE program = ? AND name = ?",
                                    (program, name)).fetchone()

    def still_there(self, checkpoint_id: int) -> bool:
        with self._guard():
            return self.con.execute("SELECT 1 FROM checkpoints WHERE id = ?",
                                    (checkpoint_id,)).fetchone() is not None

    def entries(self, program: str) -> list:
        with self._guard():
            return self.con.execute(
                "SELECT name, info, created, logical_size, new_bytes FROM checkpoints"
                " WHERE program = ? ORDER BY id", (program,)).fetchall()

    def names(self, program: str) -> list:
        with self._guard():
            return [r[0] for r in self.con.execute(
                "SELECT name FROM checkpoints WHERE program = ? ORDER BY id", (program,))]

    # -- writes ------------------------------------------------------------------------------

    def commit_save(self, row: dict, pack: str, chunks, healed=()) -> bool:
        """Record a saved checkpoint (replacing one of the same name) and its new chunks, atomically.

        `chunks` is [(digest, offset, size)] in pack `pack`, already synced to disk. True if replaced.
        Those of them in `healed` were bad: their rows move to the new records (every checkpoint
        that names them reads the good copy from then on) and they leave the bad table.

        Committed with synchronous=NORMAL: the WAL is written, not synced, and the caller has
        sync_wal() do that in the background (2-3 ms a save here, ~1 once taken out of the commit).
        Until it has, a power failure or a kernel crash may take the commit back, never more: the
        index stays whole, and the records it names were synced before (a crash of gdb loses
        nothing; the kernel has the WAL). Every other commit syncs before it returns."""
        with self._guard():
            self.con.execute("PRAGMA synchronous=NORMAL")
        try:
            with self.transaction() as con:
                if chunks:
                    pack_id = self._pack_id(pack)
                    con.executemany("INSERT OR IGNORE INTO chunks VALUES (?, ?, ?, ?)",
                                    ((d, pack_id, off, size) for d, off, size in chunks))
                    healed = set(healed)
                    again = [(pack_id, off, size, d) for d, off, size in chunks if d in healed]
                    con.executemany("UPDATE chunks SET pack = ?, offset = ?, size = ? WHERE digest = ?", again)
                    con.executemany("DELETE FROM bad WHERE digest = ?", ((d,) for *_, d in again))
                replaced = con.execute("DELETE FROM checkpoints WHERE program = ? AND name = ?",
                                       (row["program"], row["name"])).rowcount > 0
                cols = ", ".join(row)
                con.execute(f"INSERT INTO checkpoints ({cols}) VALUES ({', '.join('?' * len(row))})",
                            tuple(row.values()))
        finally:
            with self._guard():
                self.con.execute("PRAGMA synchronous=FULL")
        return replaced

    def delete(self, program: str, names) -> None:
        """Delete all of `names` (a name given twice counts once) or, if one is unknown, none of them."""
        with self.transaction() as con:
            for name in dict.fromkeys(names):
                if con.execute("DELETE FROM checkpoints WHERE program = ? AND name = ?",
                               (program, name)).rowcount == 0:
                    raise UnknownCheckpointError(
                        f"No checkpoint named '{name}' for this program (see \"checkpoint list\").")

    def _pack_id(self, name: str) -> int:
        self.con.execute("INSERT OR IGNORE INTO packs (name) VALUES (?)", (name,))
        return self.con.execute("SELECT id FROM packs WHERE name = ?", (name,)).fetchone()[0]

    # -- for compaction (called with the store's exclusive lock held) ---------------------------

    def references(self) -> list:
        """(name, manifest, manifest_digest, state_digest) of every checkpoint of every program."""
        with self._guard():
            return self.con.execute(
                "SELECT name, manifest, manifest_digest, state_digest FROM checkpoints").fetchall()

    def chunk_rows(self) -> list:
        with self._guard():
            return self.con.execute("SELECT digest, pack, offset, size FROM chunks").fetchall()

    def packs(self) -> dict:
        with self._guard():
            return {r[0]: r[1] for r in self.con.execute("SELECT id, name FROM packs")}

    def drop_chunks(self, digests) -> None:
        with self.transaction() as con:
            con.executemany("DELETE FROM chunks WHERE digest = ?", ((d,) for d in digests))

    def drop_pack(self, pack_id: int) -> None:
        with self.transaction() as con:
            con.execute("DELETE FROM chunks WHERE pack = ?", (pack_id,))
            con.execute("DELETE FROM packs WHERE id = ?", (pack_id,))

    def move_pack(self, old_id: int, new_name: str, moves) -> None:
        """Point chunks [(digest, offset, size)] at pack `new_name` and forget pack `old_id`."""
        with self.transaction() as con:
            new_id = self._pack_id(new_name)
            con.executemany("UPDATE chunks SET pack = ?, offset = ?, size = ? WHERE digest = ?",
                            ((new_id, off, size, d) for d, off, size in moves))
            con.execute("DELETE FROM packs WHERE id = ?", (old_id,))

    def shrink(self) -> None:
        """Give freed SQLite pages and the WAL back to the file system."""
        with self._guard():
            self.con.execute("PRAGMA incremental_vacuum").fetchall()
            self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
