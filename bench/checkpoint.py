"""Benchmark `checkpoint save/restore` against gdb's gcore and gdb's own fork `checkpoint`/`restart`.

    .venv/bin/python bench/checkpoint.py [--mib 256] [--reps 5] [--no-profile] [--keep]

Compiles bench/programs/ckpt_big.c: MIB MiB of heap filled page by page with varied, partly
compressible data (random words, small-alphabet text, repeated records, half-zero pages), stopped
at bench_stop(). touch(seed, first, count, stride) rewrites pages with new content (1% of them:
spread = every 100th page, so each lands in its own 64 KiB store chunk; contiguous = one run) and
checksum() hashes the buffer, so every timed operation is checked to have done its job.

Two `gdb -nx -batch` runs of this same file, sourced inside gdb:
  A, with the extension (checkpoint-dir in a temp folder):
    1. first save: per repetition a fresh process and a fresh store, `checkpoint save` timed
       (dirty tracking starts there); gcore of the same process timed as the reference, into
       tmpfs (/dev/shm, when writable) and onto the disk that holds the stores;
    2. incremental save after touch() changed 1% (spread, contiguous), with gcore after the same
       change; then restores of older checkpoints verify what was saved;
    3. same-process `checkpoint restore` after a 1% change, with checkpoint-undo on (the default:
       it first saves before-restore) and off, each at pages no restore read before; then undo on
       again at pages a restore just read (info); each restore must bring checksum() back;
    4. 2 and 3 again in a new process with GDB_CHECKPOINT_TRACKING=off (compare by hashing);
    5. store growth: STORE_MIB MiB process, CHECKPOINTS checkpoints each after a 4 KiB change:
       the folder's bytes (as du counts them, and apparent) and the store's own new-bytes;
    6. per-stop cost of `set checkpoint-auto on`: STOPS `next`s in stepper() with it off and on,
       on a SMALL_MIB and a MIB process, then once the ring is full (checkpoint-auto-limit, 100,
       reached: every stop also deletes the oldest automatic checkpoint);
       `checkpoint back` verifies one;
    7. unless --no-profile: cProfile of one incremental save and of restores (undo on and off).
  B, without the extension (gdb's fork checkpoints, same program and size): the first
    `checkpoint`, then per repetition `checkpoint` after a 1% change and `restart N` after
    another 1% change (verified by checksum()).
Prints medians, ratios and PASS/FAIL for each target. Exit status 0 when every target passes.
"""

import json
import os
import re
import sys

CONFIG_ENV = "GDB_CHECKPOINT_BENCH_CONFIG"
TARGET_INC_VS_GCORE = 0.1       # incremental save < 1/10 of gcore
TARGET_INC_VS_FORK = 1.0        # incremental save <= fork checkpoint
TARGET_RESTORE_VS_FORK = 2.0    # restore within 2x of fork restart
TARGET_STORE_GROWTH = 2.0       # 100 checkpoints < 2x the first one's bytes
SPREAD_STEP = 21                # repetition r's spread starts at page 21 * r (+ 50): 0, 21, 42, 63,
                                # 84 (50, 71, 92, 13, 34) cover every residue mod 4 and 16
COLD_OFFSET = 48                # undo off's restores start here further on: 48, 69, 90, 11, 32


# ---------------------------------------------------------------------------------------------
# Inside gdb
# ---------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, cfg):
        import time

        import gdb
        self.gdb, self.time, self.cfg = gdb, time, cfg
        self.seeds = iter(range(1000, 1 << 40))
        self.result = {"gdb": gdb.VERSION, "uname": os.uname().release, "verified": [],
                       "times": {}, "notes": {}}

    # -- small helpers --------------------------------------------------------------------------
    def run(self, cmd):
        return self.gdb.execute(cmd, to_string=True)

    def timed(self, cmd):
        t = self.time.perf_counter()
        out = self.run(cmd)
        return self.time.perf_counter() - t, out

    def value(self, expr):
        return int(self.gdb.parse_and_eval(expr)) & 0xFFFFFFFFFFFFFFFF

    def record(self, key, seconds):
        self.result["times"].setdefault(key, []).append(seconds)

    def note(self, key, text):
        self.result["notes"].setdefault(key, text.strip())

    def checksum(self):
        return self.value("checksum()")

    def verify(self, what, expected):
        got = self.checksum()
        if got != expected:
            raise self.gdb.GdbError(f"{what}: checksum {got:#x}, expected {expected:#x}")
        self.result["verified"].append(what)

    def start(self, mib):
        """A new process of the program with `mib` MiB, stopped at bench_stop."""
        if self.gdb.selected_inferior().pid:
            self.run("kill")
        self.run(f"run {mib} > /dev/null")
        frame = self.gdb.selected_frame()
        if frame.name() != "bench_stop":
            raise self.gdb.GdbError(f"the program stopped in {frame.name()}, not bench_stop")
        self.pages = self.value("pages")

    def touch(self, mode, key=None, start=None):
        """Rewrite 1% of the pages ('spread': every 100th, from page `start` when given, else
        seed % 100; 'contig': one run) with a fresh seed, or one page ('page'). Checks that the
        buffer changed; times the call under `key`.

        Callers comparing variants (undo on and off, say) give each the same starts: what a
        scattered restore reads depends on them. Each page of the buffer spans two pages of
        memory, and at one start in four every such pair straddles two 16 KiB blocks of the
        store, so twice the blocks are read. Starting at seed % 100 gave undo on that start in
        every repetition (a repetition's seeds are consecutive) and undo off never."""
        before = self.checksum()
        seed = next(self.seeds)
        count = max(1, self.pages // 100)
        if mode == "spread":
            first = seed % 100 if start is None else start % 100
            stride = self.pages // count
        elif mode == "contig":
            first, stride = (seed * 7919) % self.pages, 1
        else:
            first, stride, count = (seed * 7919) % self.pages, 1, 1
        s, _ = self.timed(f"call (long)touch({seed}, {first}, {count}, {stride})")
        if key:
            self.record(key, s)
        after = self.checksum()
        if after == before:
            raise self.gdb.GdbError("touch() did not change the buffer")
        return after

    def gcore(self):
        """Time gcore of the process into memory (tmpfs: the reference for the targets) and onto
        the disk that holds the stores (which also pays for the kernel's writeback)."""
        shm, tmp = self.cfg["shm"], self.cfg["tmp"]
        places = [("gcore", shm), ("gcore_disk", tmp)] if shm else [("gcore", tmp)]
        for key, folder in places:
            core = os.path.join(folder, f"gdb-checkpoint-bench-{os.getpid()}.core")
            try:
                s, _ = self.timed(f"gcore {core}")
                self.record(key, s)
                self.result["core_size"] = os.path.getsize(core)
            finally:
                if os.path.exists(core):
                    os.unlink(core)
        # Untimed: the disk's share of the reference (writeback of a 258 MiB core, and with the
        # `discard` mount option the discards its unlink queues) would otherwise land on the next
        # timed operation that fsyncs: spread saves right after it took 98-109 ms, the others 26-35.
        os.sync()

    def store_dir(self, label):
        path = os.path.join(self.cfg["tmp"], "store-" + label)
        self.run(f"set checkpoint-dir {path}")
        return path

    # -- run A: the extension ---------------------------------------------------------------------
    def extension(self):
        cfg = self.cfg
        self.run("set pagination off")
        self.run("set confirm off")
        self.run("break bench_stop")
        reps = cfg["reps"]

        # 1. first save, gcore of the same process.
        for r in range(reps):
            self.start(cfg["mib"])
            self.store_dir(f"first-{r}")
            ref = self.checksum()
            s, out = self.timed("checkpoint save base")
            self.record("first_save", s)
            self.note("first_save", out)
            self.gcore()
        self.result["first_store_bytes"] = du(os.path.join(cfg["tmp"], f"store-first-{reps - 1}"))

        # 2. incremental saves after 1% changes (tracking on), gcore after the same change.
        refs = {"base": ref}
        self.incremental_saves(refs, "tracked", "", each_rep=self.gcore)
        self.restore_older(refs, ("inc-spread-0", "inc-contig-1", "base", f"inc-spread-{reps - 1}"),
                           "incremental chain, tracking on", key="restore_older")

        # 3. same-process restore after a 1% change.
        self.restores("tracked")

        if cfg["profile"]:
            self.profile()

        # 4. the same without dirty tracking: a new process, a new store.
        os.environ["GDB_CHECKPOINT_TRACKING"] = "off"
        try:
            self.start(cfg["mib"])
            self.store_dir("untracked")
            ref = self.checksum()
            s, out = self.timed("checkpoint save base")
            self.record("first_save_untracked", s)
            refs = {"base": ref}
            self.incremental_saves(refs, "untracked", "_untracked")
            self.restore_older(refs, ("inc-contig-0", "base"), "tracking off")
            self.restores("untracked")
        finally:
            del os.environ["GDB_CHECKPOINT_TRACKING"]

        # 5. store growth.
        self.store_growth()

        # 6. checkpoint-auto while stepping.
        for label, mib in (("small", cfg["small_mib"]), ("big", cfg["mib"])):
            self.auto_stepping(label, mib)

        self.run("kill")

    def incremental_saves(self, refs, touch_label, key_suffix, each_rep=lambda: None):
        """Per repetition a 1% spread, then contig change, each saved as inc-MODE-R (refs[name]: its
        checksum); times under inc_MODE + key_suffix, the touches under touch_MODE_touch_label."""
        for r in range(self.cfg["reps"]):
            for mode in ("spread", "contig"):
                refs[f"inc-{mode}-{r}"] = self.touch(mode, f"touch_{mode}_{touch_label}",
                                                         start=SPREAD_STEP * r + 50)
                s, out = self.timed(f"checkpoint save inc-{mode}-{r}")
                self.record(f"inc_{mode}{key_suffix}", s)
                self.note(f"inc_{mode}{key_suffix}", out)
            each_rep()

    def restore_older(self, refs, names, what, key=None):
        """After a 1% spread change, restore each of `names` (undo off) and check its checksum;
        the time goes under `key` when given."""
        for name in names:
            self.touch("spread")
            self.run("set checkpoint-undo off")
            s, _ = self.timed(f"checkpoint restore {name}")
            self.run("set checkpoint-undo on")
            if key:
                self.record(key, s)
            self.verify(f"restore of {name} ({what})", refs[name])

    def restores(self, label):
        """Save R; per repetition and change kind, change 1% and restore R, undo on then off.

        Each spread restore rewrites pages no restore before it read: a restore keeps the blocks
        it read (packs.Tables), so undo off at undo on's pages would be timed with them in hand.
        Undo off's pages are COLD_OFFSET further on, which keeps the residue mod 4 (see touch).
        Then, tracked, undo on's pages are changed and restored again: the blocks kept (the
        program ran the same way and is taken back again), an info row."""
        self.run("set checkpoint-undo off")
        self.run(f"checkpoint save R-{label}")
        ref = self.checksum()
        for r in range(self.cfg["reps"]):
            for mode in ("spread", "contig"):
                runs = [("on", 0, ""), ("off", COLD_OFFSET, "")]
                if mode == "spread" and label == "tracked":
                    runs.append(("on", 0, "_again"))
                for undo, offset, again in runs:
                    self.run(f"set checkpoint-undo {undo}")
                    self.touch(mode, start=SPREAD_STEP * r + offset)    # none of the saves' starts
                    s, out = self.timed(f"checkpoint restore R-{label}")
                    self.record(f"restore_{mode}_undo_{undo}{again}_{label}", s)
                    self.note(f"restore_{mode}_undo_{undo}{again}_{label}", out)
                    self.verify(f"restore after a 1% {mode} change{again.replace('_', ' ')}, undo {undo}, "
                                f"tracking {'on' if label == 'tracked' else 'off'}", ref)
        self.run("set checkpoint-undo on")

    def store_growth(self):
        cfg = self.cfg
        n = cfg["checkpoints"]
        self.start(cfg["store_mib"])
        path = self.store_dir("growth")
        from gdb_checkpoint.commands import checkpoint as cmd
        refs = {}
        du_first = None
        for k in range(1, n + 1):
            if k > 1:
                self.touch("page")
            if k in (1, n // 2, n):
                refs[k] = self.checksum()
            s, out = self.timed(f"checkpoint save s{k}")
            self.record("growth_first" if k == 1 else "growth_save", s)
            if k == 1:
                du_first = du(path)
        entries = {e.name: e for e in cmd.store().list(cmd.current_program())}
        new = [entries[f"s{k}"].new_bytes for k in range(1, n + 1)]
        self.result["growth"] = {"du_first": du_first, "du_all": du(path), "new": new,
                                 "files": files(path), "logical": entries["s1"].logical_size}
        self.run("set checkpoint-undo off")
        for k in (n // 2, 1, n):
            self.touch("spread")
            self.run(f"checkpoint restore s{k}")
            self.verify(f"restore of checkpoint {k} of {n} ({cfg['store_mib']} MiB, 4 KiB changes)",
                        refs[k])
        self.run("set checkpoint-undo on")

    def auto_stepping(self, label, mib):
        stops = self.cfg["stops"]
        self.start(mib)
        self.store_dir(f"auto-{label}")
        self.run("tbreak stepper")
        self.run("continue")
        for _ in range(3):
            self.run("next")

        def steps(key):
            before = self.value("steps")
            t = self.time.perf_counter()
            for _ in range(stops):
                self.run("next")
            self.record(key, (self.time.perf_counter() - t) / stops)
            if self.value("steps") <= before:
                raise self.gdb.GdbError("stepping made no progress")

        steps(f"auto_off_{label}")
        self.run("set checkpoint-auto on")
        s, _ = self.timed("next")               # the process's first checkpoint: a full save
        self.record(f"auto_first_{label}", s)
        steps(f"auto_on_{label}")
        # Going back: the state of 5 stops ago.
        ref, count = self.checksum(), self.value("steps")
        for _ in range(5):
            self.run("next")
        self.run("checkpoint back 5")
        if self.value("steps") != count:
            raise self.gdb.GdbError("checkpoint back 5 did not bring `steps` back")
        self.verify(f"checkpoint back 5 after {stops} auto stops ({mib} MiB)", ref)
        # Steady state: the ring is full, every stop also deletes the oldest checkpoint.
        from gdb_checkpoint.commands import checkpoint as cmd
        limit = self.cfg["trim_limit"]
        self.run(f"set checkpoint-auto-limit {limit}")
        ring = cmd.SESSION.ring(cmd.store(), cmd.current_program())
        while len(ring) < limit:
            self.run("next")
        steps(f"auto_trim_{label}")
        if len(ring) != limit:
            raise self.gdb.GdbError(f"{len(ring)} automatic checkpoints kept, limit {limit}")
        self.run("set checkpoint-auto off")
        self.run("set checkpoint-auto-limit 100")
        # The ring of automatic checkpoints belongs to the program, not to the process or the
        # store: delete them (as a user would) so the next measure starts with an empty ring.
        self.run("checkpoint delete " + " ".join(ring))
        if ring:
            raise self.gdb.GdbError(f"checkpoint delete left {len(ring)} names in the ring")

    # -- profiles ------------------------------------------------------------------------------
    def profile(self):
        import cProfile
        import pstats
        from gdb_checkpoint.commands import checkpoint as ext
        out = {}
        for kind, mode, undo in (("save", "spread", None), ("save", "contig", None),
                                 ("restore", "spread", "off"), ("restore", "spread", "on")):
            self.run("set checkpoint-undo off")
            if kind == "save":
                self.touch(mode)
                cmd = f"checkpoint save prof-{mode}"
            else:
                self.run("checkpoint save prof-R")
                ref = self.checksum()
                self.touch(mode)
                self.run(f"set checkpoint-undo {undo}")
                cmd = "checkpoint restore prof-R"
            history = ext.SESSION.history(self.gdb.selected_inferior().pid)
            known = history.extent()
            profiler = cProfile.Profile()
            t = self.time.perf_counter()
            profiler.runcall(self.run, cmd)
            wall = self.time.perf_counter() - t
            if kind == "restore":
                self.verify(f"profiled restore (undo {undo})", ref)
            stats = pstats.Stats(profiler)
            label = f"{kind} after 1% {mode} change" + (f", undo {undo}" if undo else "")
            table = SAVE_PHASES if kind == "save" else RESTORE_PHASES
            out[label] = {"wall": wall, "history": known, "phases": phases(stats, table),
                          "top": top(stats)}
        self.run("set checkpoint-undo on")
        self.result["profiles"] = out

    # -- run B: gdb's fork checkpoints ------------------------------------------------------------
    def fork(self):
        cfg = self.cfg
        self.run("set pagination off")
        self.run("set confirm off")
        self.run("break bench_stop")
        self.start(cfg["mib"])
        s, _ = self.timed("checkpoint")
        self.record("fork_first", s)
        for r in range(cfg["reps"]):
            self.touch("spread" if r % 2 == 0 else "contig", start=SPREAD_STEP * r)
            s, _ = self.timed("checkpoint")
            self.record("fork_checkpoint", s)
            ref = self.checksum()
            n = newest_checkpoint(self.run("info checkpoints"))
            self.touch("spread" if r % 2 == 0 else "contig", "touch_fork", start=SPREAD_STEP * r)
            s, out = self.timed(f"restart {n}")
            self.record("fork_restart", s)
            self.verify(f"fork restart {n} (gdb's checkpoint)", ref)
        self.run("kill")


def cpu_ticks():
    """(steal, all) CPU ticks of the machine since boot, from /proc/stat, or None. In a virtual
    machine "steal" counts ticks in which the host ran something else while one of our CPUs had
    work. In 10 ms ticks, so only a whole run's share means much."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    return int(fields[8]), sum(int(x) for x in fields[1:9])


def newest_checkpoint(text):
    nums = [int(m.group(1)) for m in re.finditer(r"^[* ]\s*(\d+) ", text, re.M)]
    if not nums:
        raise RuntimeError(f"no fork checkpoint listed in {text!r}")
    return max(nums)


def du(path):
    """(bytes on disk as du counts them, apparent bytes) of a folder."""
    blocks = size = 0
    for d, _, names in os.walk(path):
        for n in names:
            st = os.lstat(os.path.join(d, n))
            blocks += st.st_blocks * 512
            size += st.st_size
    return blocks, size


def files(path):
    out = {}
    for d, _, names in os.walk(path):
        for n in names:
            rel = os.path.relpath(os.path.join(d, n), path)
            key = "packs/*.pack" if rel.startswith("packs" + os.sep) else rel
            out[key] = out.get(key, 0) + os.lstat(os.path.join(d, n)).st_size
    return out


# Phases: (label, file under gdb_checkpoint/ or "~" for builtins, function). Cumulative seconds
# and calls of each; indented labels are parts of the row above them (main thread only: the
# worker threads that hash, compress and decompress show as waits on their futures).
SAVE_PHASES = (
    ("checkpoint save (save_current)", "commands/checkpoint.py", "save_current"),
    ("  dirty-tracking scan (tracked_history)", "commands/checkpoint.py", "tracked_history"),
    ("    History.written (merge into every name)", "history.py", "written"),
    ("    Tracker.scan", "dirty.py", "scan"),
    ("      inferior calls (GdbInjector.syscall)", "gdbinject.py", "syscall"),
    ("        gdb parse_and_eval (the calls)", "~", "parse_and_eval"),
    ("        set/restore scheduler-locking etc.", "gdbinject.py", "__enter__"),
    ("      PAGEMAP_SCAN ioctls (_scan)", "dirty.py", "_scan"),
    ("  live facts (_gather: maps, identity, regs)", "gdbtarget.py", "_gather"),
    ("    /proc/PID/maps (_maps)", "gdbtarget.py", "_maps"),
    ("    program identity (_identity)", "gdbtarget.py", "_identity"),
    ("  next name (store.names)", "session.py", "next_name"),
    ("  where() (gdb frame)", "commands/checkpoint.py", "where"),
    ("  checkpoints.save", "checkpoints.py", "save"),
    ("    capture (registers, fds, auxv)", "gdbtarget.py", "capture"),
    ("    state encoding", "state.py", "dumps"),
    ("    Store.save", "store/store.py", "save"),
    ("      base manifest (_manifest)", "store/store.py", "_manifest"),
    ("      plan_incremental", "store/layout.py", "plan_incremental"),
    ("      save_chunks", "store/pipeline.py", "save_chunks"),
    ("        read memory (read_memory)", "gdbtarget.py", "read_memory"),
    ("        wait for hashes + dedupe query", "store/pipeline.py", "hashed"),
    ("          index.existing (SQL)", "store/index.py", "existing"),
    ("        wait for compression + append", "store/pipeline.py", "encoded"),
    ("      pack fsync (PackWriter.sync)", "store/packs.py", "sync"),
    ("      encode_manifest", "store/layout.py", "encode_manifest"),
    ("      index commit (commit_save)", "store/index.py", "commit_save"),
    ("      compaction (replaced name)", "store/store.py", "_compact"),
    ("  all os.fsync calls", "~", "posix.fsync"),
)
RESTORE_PHASES = (
    ("checkpoint restore (restore_named)", "commands/checkpoint.py", "restore_named"),
    ("  dirty-tracking scan (tracked_history)", "commands/checkpoint.py", "tracked_history"),
    ("    History.written (merge into every name)", "history.py", "written"),
    ("    inferior calls (GdbInjector.syscall)", "gdbinject.py", "syscall"),
    ("  History.restored (merge into every name)", "history.py", "restored"),
    ("  checkpoints.restore", "checkpoints.py", "restore"),
    ("    live facts (_gather)", "gdbtarget.py", "_gather"),
    ("    Store.load (manifest, state)", "store/store.py", "load"),
    ("    plan_checkpoint_restore", "snapshot.py", "plan_checkpoint_restore"),
    ("    file descriptors (_fd_actions)", "checkpoints.py", "_fd_actions"),
    ("    what to write (_to_write)", "checkpoints.py", "_to_write"),
    ("    Checkpoint.read (fetch, decompress, verify)", "store/store.py", "read"),
    ("      index.locations (SQL)", "store/index.py", "locations"),
    ("      fetch_chunks", "store/pipeline.py", "fetch_chunks"),
    ("    prepare_registers", "restore.py", "prepare_registers"),
    ("    undo save (before-restore)", "commands/checkpoint.py", "save_current"),
    ("      its Store.save", "store/store.py", "save"),
    ("      its compaction (replaced name)", "store/store.py", "_compact"),
    ("    write memory (write_memory)", "gdbtarget.py", "write_memory"),
    ("    registers (set_regset)", "gdbtarget.py", "set_regset"),
    ("    gdb cache flushes (flush)", "gdbtarget.py", "flush"),
    ("  all os.fsync calls", "~", "posix.fsync"),
)


def phases(stats, table):
    out = []
    for label, suffix, func in table:
        rows = []
        for (path, _, name), row in stats.stats.items():
            if suffix == "~":
                if path == "~" and func in name:
                    rows.append(row)
            elif name == func and path.replace(os.sep, "/").endswith("gdb_checkpoint/" + suffix):
                rows.append(row)
        out.append((label, sum(r[3] for r in rows) if rows else None, sum(r[1] for r in rows)))
    return out


def top(stats, n=12):
    """The n functions with the most own time: (own s, cumulative s, calls, where)."""
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:n]
    out = []
    for (path, line, name), (_, calls, own, cum, _) in rows:
        where = name if path == "~" else f"{short(path)}:{line} {name}"
        out.append((own, cum, calls, where))
    return out


def short(path):
    path = path.replace(os.sep, "/")
    i = path.rfind("gdb_checkpoint/")
    return path[i:] if i >= 0 else os.path.basename(path)


def in_gdb(cfg):
    bench = Bench(cfg)
    try:
        bench.fork() if cfg["mode"] == "fork" else bench.extension()
    except Exception as e:      # noqa: BLE001 - reported through the result file
        import traceback
        bench.result["error"] = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    with open(cfg["result"], "w") as f:
        json.dump(bench.result, f)


# ---------------------------------------------------------------------------------------------
# Outside gdb: compile, drive gdb, print
# ---------------------------------------------------------------------------------------------

def main(argv=None):
    import argparse
    import shutil
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    here = Path(__file__).resolve().parent
    root = here.parent
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mib", type=int, default=256, help="the big program's buffer (default 256)")
    p.add_argument("--reps", type=int, default=5, help="repetitions; medians are shown (default 5)")
    p.add_argument("--store-mib", type=int, default=64, help="store-growth program size (default 64)")
    p.add_argument("--checkpoints", type=int, default=100, help="store-growth checkpoints (default 100)")
    p.add_argument("--small-mib", type=int, default=1, help="small program for auto stepping (default 1)")
    p.add_argument("--stops", type=int, default=50, help="nexts per auto-stepping measure (default 50)")
    p.add_argument("--trim-limit", type=int, default=100,
                   help="checkpoint-auto-limit for the trimming measure (default 100, the setting's default)")
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip the profiles")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--gdb", default=os.environ.get("GDB", "gdb"))
    p.add_argument("--cc", default=os.environ.get("CC", "gcc"))
    args = p.parse_args(argv)
    if args.mib < 1 or args.reps < 1 or args.store_mib < 1 or args.checkpoints < 2 or args.stops < 1:
        p.error("sizes and counts must be positive (--checkpoints at least 2)")

    started = time.perf_counter()
    load_before = os.getloadavg()
    ticks_before = cpu_ticks()
    tmp = Path(tempfile.mkdtemp(prefix="gdb-checkpoint-bench-"))
    results = {}
    try:
        exe = tmp / "ckpt_big"
        subprocess.run([args.cc, "-g", "-O2", "-o", str(exe), str(here / "programs" / "ckpt_big.c")],
                       check=True)
        for mode in ("extension", "fork"):
            cfg = {"mode": mode, "mib": args.mib, "reps": args.reps, "profile": args.profile,
                   "store_mib": args.store_mib, "checkpoints": args.checkpoints,
                   "small_mib": args.small_mib, "stops": args.stops, "trim_limit": args.trim_limit,
                   "tmp": str(tmp), "result": str(tmp / f"result-{mode}.json"),
                   "shm": "/dev/shm" if os.access("/dev/shm", os.W_OK) else None}
            (tmp / "config.json").write_text(json.dumps(cfg))
            env = dict(os.environ, **{CONFIG_ENV: str(tmp / "config.json")})
            env.pop("GDB_CHECKPOINT_TRACKING", None)
            env["GDB_CHECKPOINT_DIR"] = str(tmp / "store-default")
            # gdbinit.py on the command line (see bench/restore.py); none for gdb's own checkpoints.
            load = ["-ex", f"source {root / 'gdbinit.py'}"] if mode == "extension" else []
            t = time.perf_counter()
            proc = subprocess.run([args.gdb, "-nx", "-batch", *load, "-x", str(Path(__file__).resolve()),
                                   str(exe)], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=900)
            result_path = Path(cfg["result"])
            if not result_path.exists():
                sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
                sys.stderr.write(f"\nbench/checkpoint.py: gdb ({mode}) exited {proc.returncode} "
                                 f"without a result\n")
                return 1
            results[mode] = json.loads(result_path.read_text())
            results[mode]["run_s"] = time.perf_counter() - t
            if "error" in results[mode]:
                sys.stderr.write(proc.stderr[-3000:])
                sys.stderr.write(f"\nbench/checkpoint.py: the {mode} run failed: "
                                 f"{results[mode]['error']}\n")
                return 1
    finally:
        if args.keep:
            print(f"(kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    loads = (load_before, os.getloadavg())
    ticks_after = cpu_ticks()
    steal = ((ticks_after[0] - ticks_before[0]) / max(1, ticks_after[1] - ticks_before[1])
             if ticks_before and ticks_after else None)
    ok = report(results["extension"], results["fork"], args, time.perf_counter() - started, loads, steal)
    return 0 if ok else 1


def report(a, b, args, total_s, loads, steal=None):
    import statistics
    mib = 1 << 20
    t = dict(a["times"])
    t.update(b["times"])
    med = {k: statistics.median(v) for k, v in t.items()}
    gcore = med["gcore"]
    fork_ck = statistics.median(t["fork_checkpoint"] + t["fork_first"])
    fork_rs = med["fork_restart"]
    verdicts = []

    def ms(x):
        return f"{x * 1000:.1f}"

    def verdict(label, ok, detail):
        if ok is not None:
            verdicts.append(ok)
        print(f"  {'info' if ok is None else 'PASS' if ok else 'FAIL'}  {label}: {detail}")

    print(f"checkpoint benchmark: {args.mib} MiB program, {args.reps} repetitions (medians), gdb "
          f"{a['gdb']}, Linux {a['uname']}, {os.cpu_count()} CPUs; total {total_s:.0f} s "
          f"(extension run {a['run_s']:.0f} s, fork run {b['run_s']:.0f} s); load average "
          f"{loads[0][0]:.2f} before, {loads[1][0]:.2f} after (other work on the machine skews "
          f"every number)")
    if steal is not None:
        print(f"CPU time the host took from this machine during the run (/proc/stat steal): "
              f"{100 * steal:.1f}%")
    fb, fs = a["first_store_bytes"]
    print(f"program memory: {args.mib} MiB buffer; gcore file {a['core_size'] / mib:.1f} MiB; first "
          f"checkpoint's store {fs / mib:.1f} MiB apparent, {fb / mib:.1f} MiB on disk")
    where = "tmpfs /dev/shm" if "gcore_disk" in t else "the temp folder's disk"
    print(f"x gcore: against gcore written to {where} (the stores are on disk and fsync'd)")
    print(f"1% change = {args.mib * 256 // 100} pages of 4 KiB: 'spread' = every 100th page (each in "
          f"its own 64 KiB chunk), 'contig' = one run")
    print()
    rows = [
        (f"gdb gcore into {'tmpfs' if 'gcore_disk' in t else 'temp dir'} (reference)", "gcore"),
        ("gdb gcore onto the stores' disk", "gcore_disk"),
        ("gdb fork checkpoint, first", "fork_first"),
        ("gdb fork checkpoint, after 1% change", "fork_checkpoint"),
        ("gdb fork restart N, after 1% change", "fork_restart"),
        ("checkpoint save, first (tracking starts)", "first_save"),
        ("checkpoint save, 1% spread", "inc_spread"),
        ("checkpoint save, 1% contig", "inc_contig"),
        ("checkpoint save, first, tracking off", "first_save_untracked"),
        ("checkpoint save, 1% spread, tracking off", "inc_spread_untracked"),
        ("checkpoint save, 1% contig, tracking off", "inc_contig_untracked"),
        ("restore, 1% spread, undo on (default)", "restore_spread_undo_on_tracked"),
        ("restore, 1% spread, undo off", "restore_spread_undo_off_tracked"),
        ("restore, 1% spread, same pages again, undo on", "restore_spread_undo_on_again_tracked"),
        ("restore, 1% contig, undo on (default)", "restore_contig_undo_on_tracked"),
        ("restore, 1% contig, undo off", "restore_contig_undo_off_tracked"),
        ("restore of an older checkpoint, undo off", "restore_older"),
        ("restore, 1% spread, undo on, tracking off", "restore_spread_undo_on_untracked"),
        ("restore, 1% spread, undo off, tracking off", "restore_spread_undo_off_untracked"),
        ("restore, 1% contig, undo on, tracking off", "restore_contig_undo_on_untracked"),
        ("restore, 1% contig, undo off, tracking off", "restore_contig_undo_off_untracked"),
    ]
    print(f"{'operation (' + str(args.mib) + ' MiB)':<44} {'median ms':>10} {'x gcore':>8} "
          f"{'x fork ck':>9} {'x restart':>9}   all runs (ms)")
    for label, key in rows:
        if key not in t:
            continue
        s = med[key]
        runs = t[key]
        every = " ".join(ms(x) for x in runs)
        # Getting slower run after run means the cost depends on the session's past, not just on
        # the change: say so, the median alone hides it.
        ups = sum(y > x for x, y in zip(runs, runs[1:]))
        rising = len(runs) >= 4 and ups >= len(runs) - 2 and runs[-1] > 1.5 * runs[0]
        trend = f"  (rises {runs[-1] / runs[0]:.1f}x over the runs)" if rising else ""
        print(f"{label:<44} {ms(s):>10} {s / gcore:>8.2f} {s / fork_ck:>9.2f} {s / fork_rs:>9.2f}   "
              f"{every}{trend}")
    print("program-side cost of touch() (1% spread), ms: "
          f"tracked {ms(med['touch_spread_tracked'])}, untracked {ms(med['touch_spread_untracked'])}, "
          f"after a fork checkpoint {ms(med['touch_fork'])} (spread/contig alternating)")
    print()
    print("targets:")
    verdict("first save vs gcore / fork checkpoint (no target, for scale)", None,
            f"{ms(med['first_save'])} ms = {med['first_save'] / gcore:.1f}x gcore "
            f"({ms(gcore)} ms), {med['first_save'] / fork_ck:.1f}x fork checkpoint ({ms(fork_ck)} ms)")
    for mode in ("spread", "contig"):
        s = med[f"inc_{mode}"]
        verdict(f"incremental save, 1% {mode} < 1/10 gcore", s < TARGET_INC_VS_GCORE * gcore,
                f"{ms(s)} ms vs {ms(TARGET_INC_VS_GCORE * gcore)} ms (gcore {ms(gcore)} ms; ratio "
                f"{s / gcore:.3f})")
        verdict(f"incremental save, 1% {mode} <= fork checkpoint", s <= TARGET_INC_VS_FORK * fork_ck,
                f"{ms(s)} ms vs {ms(fork_ck)} ms ({s / fork_ck:.2f}x)")
    for mode in ("spread", "contig"):
        for undo in ("on", "off"):
            s = med[f"restore_{mode}_undo_{undo}_tracked"]
            verdict(f"restore after 1% {mode}, undo {undo}{' (default)' if undo == 'on' else ''} "
                    f"<= 2x fork restart", s <= TARGET_RESTORE_VS_FORK * fork_rs,
                    f"{ms(s)} ms vs {ms(TARGET_RESTORE_VS_FORK * fork_rs)} ms (restart {ms(fork_rs)} "
                    f"ms; {s / fork_rs:.2f}x)")

    g = a["growth"]
    n = args.checkpoints
    du_first, du_all = g["du_first"], g["du_all"]
    new = g["new"]
    ratio_du, ratio_new = du_all[0] / du_first[0], sum(new) / new[0]
    verdict(f"store for {n} checkpoints of {args.store_mib} MiB (4 KiB change each) < "
            f"{TARGET_STORE_GROWTH:g}x the first (du)", ratio_du < TARGET_STORE_GROWTH,
            f"{du_all[0] / mib:.1f} MiB vs first {du_first[0] / mib:.1f} MiB = {ratio_du:.2f}x "
            f"(apparent {du_all[1] / mib:.1f} vs {du_first[1] / mib:.1f} MiB = "
            f"{du_all[1] / du_first[1]:.2f}x)")
    verdict("same, the store's own new bytes", ratio_new < TARGET_STORE_GROWTH,
            f"sum {sum(new) / mib:.2f} MiB vs first {new[0] / mib:.2f} MiB = {ratio_new:.3f}x; "
            f"per later checkpoint median {statistics.median(new[1:]) / 1024:.1f} KiB, "
            f"max {max(new[1:]) / 1024:.1f} KiB")
    print(f"        store files after {n}: " + ", ".join(
        f"{k} {v / mib:.2f} MiB" for k, v in sorted(g["files"].items())))
    print(f"        save times: first {ms(med['growth_first'])} ms, later median "
          f"{ms(med['growth_save'])} ms (max {ms(max(t['growth_save']))} ms)")

    print()
    print(f"checkpoint-auto while stepping ({args.stops} nexts each; ms per stop):")
    print(f"  {'program':<10} {'auto off':>9} {'auto on':>9} {'cost/stop':>10} "
          f"{'on+trimming':>12} {'cost/stop':>10} {'1st stop (full save)':>21}")
    for label, size in (("small", args.small_mib), ("big", args.mib)):
        off, on = med[f"auto_off_{label}"], med[f"auto_on_{label}"]
        trim = med[f"auto_trim_{label}"]
        print(f"  {str(size) + ' MiB':<10} {ms(off):>9} {ms(on):>9} {ms(on - off):>10} "
              f"{ms(trim):>12} {ms(trim - off):>10} {ms(med[f'auto_first_{label}']):>21}")
    print(f"  (trimming: checkpoint-auto-limit {args.trim_limit} reached, so every stop also deletes "
          f"the oldest automatic checkpoint: the steady state of a long session)")

    print()
    print(f"verified: {len(a['verified']) + len(b['verified'])} restores brought checksum() back "
          f"(kinds: {len(set(a['verified'] + b['verified']))}):")
    seen = []
    for v in a["verified"] + b["verified"]:
        if v not in seen:
            seen.append(v)
    for v in seen:
        print(f"  - {v} x{(a['verified'] + b['verified']).count(v)}")
    print("what the extension said:")
    for key in ("first_save", "inc_spread", "inc_contig", "inc_spread_untracked",
                "restore_spread_undo_on_tracked", "restore_spread_undo_off_tracked",
                "restore_spread_undo_off_untracked"):
        if key in a["notes"]:
            for line in a["notes"][key].splitlines():
                print(f"  {key}: {line}")

    for label, prof in a.get("profiles", {}).items():
        print()
        print(f"profile: {label} ({prof['wall'] * 1000:.1f} ms wall under cProfile; main thread "
              f"only, hashing/compression workers show as waits; the session's history then held "
              f"{prof['history'][0]} checkpoints with {prof['history'][1]} written ranges in all)")
        for name, s, calls in prof["phases"]:
            if s is None:
                continue
            print(f"  {name:<48} {s * 1000:8.1f} ms  {calls:>5} calls")
        print("  top own time:")
        for own, cum, calls, where in prof["top"]:
            print(f"    {own * 1000:7.1f} ms own {cum * 1000:7.1f} ms cum {calls:>6}  {where}")
    print()
    print(f"{sum(verdicts)}/{len(verdicts)} targets pass")
    return all(verdicts)


if __name__ == "__main__" and os.environ.get(CONFIG_ENV) and "gdb" in sys.modules:
    with open(os.environ[CONFIG_ENV]) as _f:
        in_gdb(json.load(_f))
elif __name__ == "__main__":
    sys.exit(main())
