"""Seeded mutation fuzzing of real cores: CoreFile accepts a damaged core or refuses it with one
BadCoreError line naming the file; any other exception is a bug and fails with its case's seed.

Replay or widen a run with GDBCKPT_FUZZ_SEED=N GDBCKPT_FUZZ_CASES=M (case i of seed N is always
the same mutation). Mutations hit the ELF header, the program header table and the notes, where
pyelftools says they lie, plus random truncation."""

import os
import random
import struct
import traceback

import pytest

from gdb_checkpoint.core.reader import CoreFile
from gdb_checkpoint.errors import BadCoreError
from oracles import pyelf_core

BASE_SEED = int(os.environ.get("GDBCKPT_FUZZ_SEED", "20240601"))
CASES = {"gcore": int(os.environ.get("GDBCKPT_FUZZ_CASES", "2000")), "kernel": 500}
INTERESTING = (0, 1, 2, 4, 0x38, 0x40, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFF, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1)
PHDR_FIELDS = ((0, 4), (4, 4), (8, 8), (16, 8), (32, 8), (40, 8))   # type flags offset vaddr filesz memsz


class Layout:
    """Where the structures worth damaging lie in one core, by pyelftools' reading."""

    def __init__(self, path):
        elf = pyelf_core(path)
        self.size = path.stat().st_size
        self.phdrs = [elf.phoff + i * 56 for i in range(elf.phnum)]
        self.note_area = elf.note_segment
        self.note_headers = [desc_at - 12 - (len(name) + 4) // 4 * 4 for name, _, desc_at, _ in elf.note_offsets]
        self.regions = [(0, 64), (elf.phoff, elf.phnum * 56), elf.note_segment]


def mutation(layout: Layout, seed: int, case: int):
    """(description, patches [(offset, bytes)], truncate-to size or None) for one case."""
    rng = random.Random(f"{seed}/{case}")
    kind = rng.choice(("flip", "flip", "word", "phdr field", "note header", "run", "truncate"))
    if kind == "truncate":
        size = rng.randrange(layout.size)
        return f"truncate to {size} bytes", [], size
    if kind == "phdr field":
        at = rng.choice(layout.phdrs)
        off, width = rng.choice(PHDR_FIELDS)
        value = rng.choice(INTERESTING) if rng.random() < 0.6 else rng.getrandbits(width * 8)
        value &= (1 << width * 8) - 1
        return (f"phdr at {at}: field +{off} = {value:#x}",
                [(at + off, value.to_bytes(width, "little"))], None)
    if kind == "note header":
        at = rng.choice(layout.note_headers) + rng.choice((0, 4, 8))      # namesz, descsz, type
        value = rng.choice(INTERESTING) if rng.random() < 0.6 else rng.getrandbits(32)
        value &= 0xFFFFFFFF
        return f"note header word at {at} = {value:#x}", [(at, struct.pack("<I", value))], None
    start, length = rng.choice(layout.regions)
    if kind == "word":
        width = rng.choice((2, 4, 8))
        at = start + rng.randrange(max(1, length - width)) // width * width
        value = rng.choice(INTERESTING) & ((1 << width * 8) - 1)
        return f"{width}-byte word at {at} = {value:#x}", [(at, value.to_bytes(width, "little"))], None
    if kind == "run":
        n = rng.randint(1, 64)
        at = start + rng.randrange(max(1, length - n))
        return f"{n} random bytes at {at}", [(at, rng.randbytes(n))], None
    picks = sorted(start + rng.randrange(length) for _ in range(rng.randint(1, 8)))
    return f"bit flips at {picks}", [(at, None) for at in picks], rng


def apply(fd, base: bytes, patches, rng):
    """Write the patches into the case file; return what restores it."""
    undo = []
    for at, data in patches:
        if data is None:                           # a bit flip: its bit is drawn here
            data = bytes([base[at] ^ (1 << rng.randrange(8))])
        data = data[:max(0, len(base) - at)]
        os.pwrite(fd, data, at)
        undo.append((at, base[at:at + len(data)]))
    return undo


def outcome(path: str):
    """("accepted" | "refused" | "broken", problem or None) for one damaged core."""
    try:
        with CoreFile(path) as cf:
            size = os.path.getsize(path)
            for seg in cf.core.segments:
                if seg.offset + seg.filesz > size:
                    return "broken", f"accepted segment {seg.index} ending at {seg.offset + seg.filesz}, past {size}"
    except BadCoreError as e:
        message = str(e)
        if path not in message or "\n" in message:
            return "broken", f"BadCoreError without the path or on several lines: {message!r}"
        return "refused", None
    except Exception:                                    # noqa: BLE001 -- the point of the test
        return "broken", traceback.format_exc(limit=-3)
    return "accepted", None


@pytest.mark.parametrize("which", ["gcore", "kernel"])
def test_damaged_cores_are_read_or_refused_with_one_line(which, request, tmp_path):
    real = request.getfixturevalue(f"{which}_core")
    base = real.path.read_bytes()
    layout = Layout(real.path)
    path = tmp_path / "case.core"
    path.write_bytes(base)
    failures, seen = [], {"accepted": 0, "refused": 0, "broken": 0}
    fd = os.open(path, os.O_RDWR)
    try:
        for case in range(CASES[which]):
            what, patches, extra = mutation(layout, BASE_SEED, case)
            if patches:
                undo = apply(fd, base, patches, extra)
            else:
                os.ftruncate(fd, extra)
                undo = [(extra, base[extra:])]
            result, problem = outcome(str(path))
            for at, data in undo:
                os.pwrite(fd, data, at)
            seen[result] += 1
            if problem:
                failures.append(f"seed {BASE_SEED} case {case} ({what}):\n{problem}")
    finally:
        os.close(fd)
    assert not failures, (f"{len(failures)} of {CASES[which]} damaged {which} cores broke CoreFile; "
                          f"replay with GDBCKPT_FUZZ_SEED={BASE_SEED}:\n\n" + "\n\n".join(failures[:5]))
    # A fuzzer whose mutations were all harmless, or all fatal, would test nothing.
    assert seen["refused"] > CASES[which] // 4 and seen["accepted"] > CASES[which] // 20, seen
    addr, value = real.printed_global()
    with CoreFile(str(path)) as cf:            # the undo left the pristine core behind
        assert cf.read_memory(addr, 8) == struct.pack("<q", value)
