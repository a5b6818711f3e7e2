"""Benchmark restore-core-file (rcore) against raw pwrite to /proc/PID/mem and naive write_memory.

    .venv/bin/python bench/restore.py [--mib 256] [--reps 5] [--no-profile] [--keep]

Compiles bench/programs/big.c, which fills MIB MiB of heap with a pattern and stops at
bench_stop(). One `gdb -nx -batch` run (this same file, sourced inside gdb) then:
  - gcores the process three times (timed, as a reference; nothing changes in between);
  - for every repetition and every method, first makes all of the buffer differ (an inferior call
    to fill() with a new seed, checked by checksum()), then times one restore and checks that the
    checksum is the gcore-time one again, so no method can be timed doing nothing:
      rcore  `restore-core-file CORE` with checkpoint-undo off: wall time of gdb.execute around the
             command, core parsing, validation, register writes and gdb cache flushes included;
      raw    the same segments' bytes (writable PT_LOADs with file bytes, minus [vvar]/[vsyscall])
             os.pwrite to /proc/PID/mem in 16 MiB chunks from a fresh mmap of the core; opening and
             mapping the core is inside the timing, parsing its headers is not;
      naive  one gdb.selected_inferior().write_memory(vaddr, segment_bytes) per segment, with
             gdb as a user has it after looking at a frame (its target data cache set up), and
             once more with `set stack-cache off` / `set code-cache off` around it;
      process_vm_writev  every segment in one call, as a possible faster path for rcore.
      rcore, saving before-rcore  as by default (checkpoint-undo on): the restore plus a checkpoint
             of the state it replaces, which here is 256 MiB of new data every time.
  - unless --no-profile, profiles one more rcore with cProfile and prints its phases.
Prints the medians, MiB/s, ratios to raw pwrite and whether rcore <= 2x raw pwrite holds.
"""

import json
import os
import re
import sys

CHUNK = 16 << 20
TARGET_RATIO = 2.0
VSYSCALL_START = 0xFFFFFFFFFF600000
UNWRITABLE = ("[vvar]", "[vvar_vclock]", "[vsyscall]")
CONFIG_ENV = "GDB_CHECKPOINT_BENCH_CONFIG"


# ---------------------------------------------------------------------------------------------
# Inside gdb
# ---------------------------------------------------------------------------------------------

def in_gdb(cfg):
    import cProfile
    import ctypes
    import mmap
    import pstats
    import struct
    import time

    import gdb

    def run(cmd):
        return gdb.execute(cmd, to_string=True)

    def value(expr):
        return int(gdb.parse_and_eval(expr)) & 0xFFFFFFFFFFFFFFFF

    run("set pagination off")
    run("set confirm off")
    run("break bench_stop")
    run(f"run {cfg['mib']} > /dev/null")
    inferior = gdb.selected_inferior()
    pid = inferior.pid
    # Looking at a frame also sets up gdb's target data cache (stack-cache/code-cache), as any
    # stop the user inspects does: from then on every write_memory also updates that cache.
    if not pid or gdb.selected_frame().name() != "bench_stop":
        raise gdb.GdbError("the program did not stop at bench_stop")

    reference = value("checksum()")
    core = cfg["core"]
    gcore_s = []
    for _ in range(3):          # nothing runs in between: the same core every time
        t = time.perf_counter()
        run(f"gcore {core}")
        gcore_s.append(time.perf_counter() - t)

    segments = writable_segments(core, pid, struct)
    seeds = iter(range(100, 1 << 30))

    def dirty():
        run(f"call (void) fill({next(seeds)})")
        if value("checksum()") == reference:
            raise gdb.GdbError("fill() did not change the buffer")

    def rcore():
        # The restore alone: the target compares rcore's copy with raw writes of the same bytes.
        run("set checkpoint-undo off")
        t = time.perf_counter()
        out = run(f"restore-core-file {core}")
        return time.perf_counter() - t, out

    def rcore_undo():
        # As by default: first save the current state as checkpoint before-rcore. fill() has just
        # rewritten every byte, so this stores 256 MiB of new data each time (the worst case).
        run("set checkpoint-undo on")
        t = time.perf_counter()
        out = run(f"restore-core-file {core}")
        return time.perf_counter() - t, out

    def raw():
        t = time.perf_counter()
        fd = os.open(core, os.O_RDONLY)
        m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        os.close(fd)
        mem = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        with memoryview(m) as view:
            for vaddr, offset, length in segments:
                done = 0
                while done < length:
                    n = min(CHUNK, length - done)
                    done += os.pwrite(mem, view[offset + done:offset + done + n], vaddr + done)
        os.close(mem)
        m.close()
        s = time.perf_counter() - t
        run("maintenance flush dcache")     # not timed: gdb's view of the stack, for the next call
        return s, ""

    def naive():
        t = time.perf_counter()
        fd = os.open(core, os.O_RDONLY)
        m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        os.close(fd)
        with memoryview(m) as view:
            for vaddr, offset, length in segments:
                inferior.write_memory(vaddr, view[offset:offset + length])
        m.close()
        return time.perf_counter() - t, ""

    def naive_nocache():
        run("set stack-cache off")
        run("set code-cache off")
        try:
            return naive()
        finally:
            run("set stack-cache on")
            run("set code-cache on")

    libc = ctypes.CDLL(None, use_errno=True)
    libc.process_vm_writev.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong,
                                       ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    libc.process_vm_writev.restype = ctypes.c_ssize_t

    class Iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    def vm_writev():
        """Every segment in one process_vm_writev call (a possible faster path for rcore)."""
        t = time.perf_counter()
        fd = os.open(core, os.O_RDONLY)
        # Private and writable only so that ctypes can take its address; nothing writes to it.
        m = mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        os.close(fd)
        anchor = ctypes.c_char.from_buffer(m)
        base = ctypes.addressof(anchor)
        n = len(segments)
        local = (Iovec * n)(*(Iovec(base + off, length) for _, off, length in segments))
        remote = (Iovec * n)(*(Iovec(vaddr, length) for vaddr, _, length in segments))
        want = sum(length for _, _, length in segments)
        got = libc.process_vm_writev(pid, local, n, remote, n, 0)
        if got != want:
            raise OSError(ctypes.get_errno(), f"process_vm_writev wrote {got} of {want} bytes")
        del anchor
        m.close()
        s = time.perf_counter() - t
        run("maintenance flush dcache")     # not timed, as for raw
        return s, ""

    methods = {"rcore": rcore, "rcore_undo": rcore_undo, "raw": raw, "naive": naive, "naive_nocache": naive_nocache,
               "vm_writev": vm_writev}
    times = {name: [] for name in methods}
    summaries = []
    verified = 0
    for _ in range(cfg["reps"]):
        for name, fn in methods.items():     # interleaved, so drift hits every method alike
            dirty()
            s, out = fn()
            got = value("checksum()")
            if got != reference:
                raise gdb.GdbError(f"{name}: checksum {got:#x} after the restore, expected {reference:#x}")
            verified += 1
            times[name].append(s)
            if name == "rcore":     # its summary line, before the frame it shows
                summaries.append(next((line for line in out.splitlines() if line.startswith("Restored ")), ""))

    result = {"pid": pid, "core_size": os.path.getsize(core), "gcore_s": gcore_s,
              "segments": segments, "times": times, "summaries": summaries, "verified": verified,
              "uname": os.uname().release, "gdb": gdb.VERSION}
    if cfg["profile"]:
        dirty()
        profiler = cProfile.Profile()
        t = time.perf_counter()
        profiler.runcall(run, f"restore-core-file {core}")
        result["profiled_s"] = time.perf_counter() - t
        if value("checksum()") != reference:
            raise gdb.GdbError("profiled rcore: wrong checksum")
        result["phases"] = phases(pstats.Stats(profiler))
        result["flush"] = time_flushes(run, time)
    with open(cfg["result"], "w") as f:
        json.dump(result, f)


def writable_segments(core, pid, struct):
    """(vaddr, offset, filesz) of each PT_LOAD rcore writes: writable, with file bytes, not kernel's."""
    with open(f"/proc/{pid}/maps") as f:
        kernel = []
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5] in UNWRITABLE:
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                kernel.append((lo, hi))
    with open(core, "rb") as f:
        ehdr = f.read(64)
        phoff, = struct.unpack_from("<Q", ehdr, 32)
        phnum, = struct.unpack_from("<H", ehdr, 56)
        f.seek(phoff)
        table = f.read(56 * phnum)
    out = []
    for i in range(phnum):
        ptype, flags, offset, vaddr, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", table, 56 * i)
        if ptype != 1 or not flags & 2 or filesz == 0 or vaddr >= VSYSCALL_START:
            continue
        if any(lo < vaddr + filesz and vaddr < hi for lo, hi in kernel):
            continue
        out.append((vaddr, offset, filesz))
    return out


# Phases of one rcore: (label, file under gdb_checkpoint/, function); cumulative time of each.
# Indented labels are parts of the row above them.
PHASES = (
    ("command (gdb dispatch excluded)", "commands/base.py", "invoke"),
    ("  core: mmap, parse, validate", "core/reader.py", "__init__"),
    ("  live process facts", "gdbtarget.py", "_gather"),
    ("    /proc/PID/maps", "gdbtarget.py", "_maps"),
    ("    program identity", "gdbtarget.py", "_identity"),
    ("  plan (checks, segments)", "plan.py", "plan_restore"),
    ("  registers: read live, merge", "restore.py", "prepare_registers"),
    ("  memory: create missing", "restore.py", "create_memory"),
    ("  memory: pwrite", "gdbtarget.py", "write_memory"),
    ("  registers: PTRACE_SETREGSET", "gdbtarget.py", "set_regset"),
    ("  gdb cache flushes", "gdbtarget.py", "flush"),
    ("  close core (munmap)", "core/reader.py", "__exit__"),
    ("  summary line", "restore.py", "summary"),
)


def phases(stats):
    """[(label, cumulative seconds or None)] from a pstats.Stats of one restore-core-file run."""
    out = []
    for label, suffix, func in PHASES:
        rows = [row for (path, _, name), row in stats.stats.items()
                if name == func and path.replace(os.sep, "/").endswith("gdb_checkpoint/" + suffix)]
        out.append((label, sum(r[3] for r in rows) if rows else None))
    return out


def time_flushes(run, time):
    out = {}
    for cmd in ("maintenance flush register-cache", "maintenance flush dcache"):
        t = time.perf_counter()
        run(cmd)
        out[cmd] = time.perf_counter() - t
    return out


# ---------------------------------------------------------------------------------------------
# Outside gdb: compile, drive gdb, print
# ---------------------------------------------------------------------------------------------

def main(argv=None):
    import argparse
    import shutil
    import statistics
    import subprocess
    import tempfile
    from pathlib import Path

    here = Path(__file__).resolve().parent
    root = here.parent
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mib", type=int, default=256, help="size of the program's buffer (default 256)")
    p.add_argument("--reps", type=int, default=5, help="repetitions per method; medians are shown (default 5)")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip the profiled rcore run and its phase table")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (program, core)")
    p.add_argument("--gdb", default=os.environ.get("GDB", "gdb"))
    p.add_argument("--cc", default=os.environ.get("CC", "gcc"))
    args = p.parse_args(argv)
    if args.mib < 1 or args.reps < 1:
        p.error("--mib and --reps must be at least 1")

    tmp = Path(tempfile.mkdtemp(prefix="gdb-checkpoint-bench-"))
    try:
        exe = tmp / "big"
        subprocess.run([args.cc, "-g", "-O2", "-o", str(exe), str(here / "programs" / "big.c")], check=True)
        cfg = {"mib": args.mib, "reps": args.reps, "profile": args.profile,
               "core": str(tmp / "big.core"), "result": str(tmp / "result.json"),
}
        (tmp / "config.json").write_text(json.dumps(cfg))
        env = dict(os.environ, **{CONFIG_ENV: str(tmp / "config.json")})
        # gdbinit.py on the command line: sourced from inside this script, gdb 13 would leave
        # __file__ as this file's and gdbinit.py would look for the venv under bench/.
        proc = subprocess.run([args.gdb, "-nx", "-batch", "-ex", f"source {root / 'gdbinit.py'}",
                               "-x", str(Path(__file__).resolve()), str(exe)],
                              env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=900)
        result_path = Path(cfg["result"])
        if not result_path.exists():
            sys.stderr.write(proc.stdout + proc.stderr)
            sys.stderr.write(f"\nbench/restore.py: gdb exited {proc.returncode} without a result\n")
            return 1
        r = json.loads(result_path.read_text())
    finally:
        if args.keep:
            print(f"(kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    report(r, args, statistics)
    ratio = statistics.median(r["times"]["rcore"]) / statistics.median(r["times"]["raw"])
    return 0 if ratio <= TARGET_RATIO and r["summary_ok"] else 1


def report(r, args, statistics):
    mib = 1 << 20
    written = sum(s[2] for s in r["segments"])
    med = {k: statistics.median(v) for k, v in r["times"].items()}
    raw = med["raw"]
    print(f"restore-core-file benchmark: {args.mib} MiB buffer, {args.reps} repetitions per method "
          f"(median), gdb {r['gdb']}, Linux {r['uname']}, {os.cpu_count()} CPUs")
    print(f"core file:     {r['core_size']:,} bytes ({r['core_size'] / mib:.1f} MiB)")
    print(f"bytes written: {written:,} bytes ({written / mib:.1f} MiB) per restore, "
          f"{len(r['segments'])} writable segments")

    # What rcore said it did, against what the baselines write.
    first = r["summaries"][0] if r["summaries"] else ""
    m = re.match(r"Restored (\d+) segments? \(([^)]+)\)", first)
    r["summary_ok"] = bool(m and int(m.group(1)) == len(r["segments"]) and m.group(2) == human(written))
    print(f"rcore says:    {first or '(nothing)'}")
    if not r["summary_ok"]:
        print("WARNING: rcore's segment count or size differs from what the baselines write")
    own = [float(g.group(1)) for g in (re.search(r" in ([0-9.]+) s\.", t) for t in r["summaries"]) if g]
    print()
    rows = [("gcore (reference)", r["gcore_s"], r["core_size"]),
            ("restore-core-file (rcore)", r["times"]["rcore"], written),
            ("  same, saving before-rcore", r["times"]["rcore_undo"], written),
            ("raw os.pwrite /proc/PID/mem", r["times"]["raw"], written),
            ("naive write_memory/segment", r["times"]["naive"], written),
            ("  same, stack/code-cache off", r["times"]["naive_nocache"], written),
            ("process_vm_writev (1 call)", r["times"]["vm_writev"], written)]
    print(f"{'method':<30} {'median s':>9} {'MiB/s':>8} {'x raw':>6}   all runs (s)")
    for name, runs, nbytes in rows:
        s = statistics.median(runs)
        every = " ".join(f"{x:.3f}" for x in runs)
        print(f"{name:<30} {s:>9.3f} {nbytes / mib / s:>8.0f} {s / raw:>6.2f}   {every}")
    ratio = med["rcore"] / raw
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print()
    print(f"rcore / raw pwrite = {ratio:.2f}   target rcore <= {TARGET_RATIO:g}x raw pwrite: {verdict}")
    if own:
        print(f"rcore's own timer (its summary line): median {statistics.median(own):.3f} s; the rest of "
              f"the wall time is gdb's command dispatch and output")
    print(f"verified: {r['verified']} restores, each after fill() had changed the whole buffer; every "
          f"one brought checksum() back to its gcore-time value")

    if "phases" in r:
        print()
        print(f"rcore phases (one more run under cProfile: {r['profiled_s']:.3f} s wall; the profiler "
              f"inflates Python-heavy phases)")
        for label, s in r["phases"]:
            print(f"  {label:<34} {'n/a' if s is None else f'{s * 1000:8.1f} ms'}")
        for cmd, s in r["flush"].items():
            print(f"  (alone: {cmd}: {s * 1000:.2f} ms)")


def human(n):
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


if __name__ == "__main__" and os.environ.get(CONFIG_ENV) and "gdb" in sys.modules:
    with open(os.environ[CONFIG_ENV]) as _f:
        in_gdb(json.load(_f))
elif __name__ == "__main__":
    sys.exit(main())
