"""Reclaims space: drops chunk records no checkpoint refers to, and rewrites packs that are mostly garbage.

Runs only while the caller holds the store's exclusive lock; it must never change what a checkpoint holds.

Policy: mark every digest named by a manifest or a state, delete the other chunk rows, then per pack:
no live record -> delete the file; more than GARBAGE_LIMIT of its bytes dead -> copy its live records
verbatim into a new pack, sync, repoint the rows in one transaction, then delete the old file (a crash
in between leaves the old pack in use and the new one an unreferenced orphan). Orphans and leftover
temporary files are deleted. If any manifest is unreadable nothing is swept: we could not tell live
chunks from dead ones.
"""

import os
from dataclasses import dataclass

from .files import fsync_dir
from .layout import BadManifest, manifest_keys
from .packs import HEADER, PackWriter

GARBAGE_LIMIT = 0.5


@dataclass(frozen=True)
class CompactResult:
    freed_bytes: int            # drop in the size of the pack files
    rewritten_packs: int
    skipped: str = ""           # why nothing was swept, when that happened


def _live_digests(index):
    """Every digest some checkpoint refers to, or (None, reason) if a manifest can't be read."""
    live = set()
    for name, manifest, manifest_digest, state_digest in index.references():
        try:
            live.update(manifest_keys(manifest, manifest_digest))
        except BadManifest:
            return None, f"checkpoint '{name}' has a corrupt manifest"
        live.add(state_digest)
    return live, ""


def _pack_bytes(packs_dir) -> int:
    return sum(e.stat().st_size for e in os.scandir(packs_dir) if e.is_file())


def compact(index, packs_dir) -> CompactResult:
    packs_dir = os.fspath(packs_dir)
    live, reason = _live_digests(index)
    if live is None:
        return CompactResult(0, 0, reason)
    before = _pack_bytes(packs_dir)
    dead = []
    kept = {}                   # pack id -> [(digest, offset, size)]
    for d, pack_id, offset, size in index.chunk_rows():
        if d in live:
            kept.setdefault(pack_id, []).append((d, offset, size))
        else:
            dead.append(d)
    if dead:
        index.drop_chunks(dead)
    rewritten = 0
    packs = index.packs()
    for pack_id, name in packs.items():
        path = os.path.join(packs_dir, name)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            continue            # its checkpoints will report it missing; nothing to reclaim
        records = kept.get(pack_id, [])
        if not records:
            index.drop_pack(pack_id)
            os.unlink(path)
        elif size - HEADER.size - sum(r[2] for r in records) > GARBAGE_LIMIT * size:
            _rewrite(index, packs_dir, pack_id, path, records)
            rewritten += 1
    known = set(index.packs().values())
    for entry in os.scandir(packs_dir):
        if entry.name not in known:     # a crashed save's pack or temporary file
            os.unlink(entry.path)
    fsync_dir(packs_dir)
    index.shrink()
    return CompactResult(before - _pack_bytes(packs_dir), rewritten)


def _rewrite(index, packs_dir, pack_id, path, records) -> None:
    writer = PackWriter(packs_dir, fresh=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        moves = []
        for d, offset, size in sorted(records, key=lambda r: r[1]):
            # Copied verbatim, unverified: a damaged record stays detectable on load.
            new_offset, _ = writer.append_record(os.pread(fd, size, offset))
            moves.append((d, new_offset, size))
        writer.sync()
        index.move_pack(pack_id, writer.name, moves)
    finally:
        writer.close()
        os.close(fd)
    os.unlink(path)
